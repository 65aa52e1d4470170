"""``dataset=nyuv2``: NYUv2 in the schema, with the paper's 321x321 preprocessing."""

from __future__ import annotations

from collections.abc import Sequence

from mtl_attack.data.converted import ConvertedDataset
from mtl_attack.data.schema import DatasetFileError, read_attrs
from mtl_attack.data.transforms import Compose, PaperNormals, ScaleCropFlip


class NYUv2(ConvertedDataset):
    """NYUv2 (795 train / 654 test), 40 or 13 classes, with the paper's 321x321 preprocessing.

    Args:
        root: folder with ``train.h5`` and ``test.h5`` from ``scripts/prepare_nyuv2.py``.
        tasks: subset of segment_semantic, normal, depth_zbuffer.
        crop: training crop and test resize side (321 in the paper).
        scale: training random scale range [lo, hi).
        flip: random horizontal flip in training (negates the normal's x).
        preload: read each split into memory once.
        metrics: ``reference`` (the paper's code) | ``libmtl``.
        normal_target: ``unit`` (the decoded unit normals of the schema) | ``paper`` (the
            paper's code: the direction of the raw AdaShare PNG values in B, G, R order, see
            :class:`~mtl_attack.data.transforms.PaperNormals`; needs a file converted from
            ``--source adashare``, and the flip leaves the targets unchanged as there).
    """

    name = "nyuv2"
    prepare_command = (
        "python scripts/prepare_nyuv2.py --source labeled-mat --mat nyu_depth_v2_labeled.mat "
        "--splits splits.mat --class-map classMapping40.mat --out {out} "
        "(or --source adashare|mtan --root DIR; see docs/datasets.md)"
    )

    def __init__(
        self,
        root: str,
        tasks: Sequence[str] = ("segment_semantic", "normal", "depth_zbuffer"),
        crop: int = 321,
        scale: Sequence[float] = (0.5, 1.5),
        flip: bool = True,
        preload: bool = False,
        metrics: str = "reference",
        normal_target: str = "unit",
    ):
        super().__init__(root, tasks, crop, scale, flip, preload, metrics)
        if normal_target not in ("unit", "paper"):
            raise ValueError(
                f"dataset.normal_target must be 'unit' or 'paper', got {normal_target!r}"
            )
        self.normal_target = normal_target

    @property
    def paper_normals(self) -> bool:
        return self.normal_target == "paper" and "normal" in self.tasks

    def prepare(self, progress: bool = True) -> None:
        super().prepare(progress)
        if self.paper_normals:
            for split in self.splits:
                if "normal_raw" not in read_attrs(self.path(split))["extras"]:
                    raise DatasetFileError(
                        f"dataset.normal_target=paper needs the raw AdaShare normal PNG values, "
                        f"which {self.path(split)} does not hold (only --source adashare "
                        "stores them); re-convert with python scripts/prepare_nyuv2.py "
                        f"--source adashare --root DIR --out {self.root} --force, or use "
                        "dataset.normal_target=unit"
                    )

    def fields(self) -> dict[str, str]:
        return {"normal": "normal_raw"} if self.paper_normals else {}

    def train_transform(self):
        if not self.paper_normals:
            return super().train_transform()
        # per pixel, so it commutes with the nearest resize, flip and crop: applied last, on the
        # cropped pixels only (padded raw pixels are (0, 0, 0), i.e. the zero vector: invalid)
        augment = ScaleCropFlip(self.crop, self.scale, self.flip, negate_normal_x=False)
        return Compose(augment, PaperNormals())

    def test_transform(self):
        if not self.paper_normals:
            return super().test_transform()
        return Compose(super().test_transform(), PaperNormals())
