"""``dataset=nyuv2``: NYUv2 in the schema, with the paper's 321x321 preprocessing."""

from __future__ import annotations

from collections.abc import Sequence

from mtl_attack.data.converted import ConvertedDataset


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
    """

    name = "nyuv2"
    prepare_command = (
        "python scripts/prepare_nyuv2.py --source labeled-mat --mat nyu_depth_v2_labeled.mat "
        "--splits splits.mat --class-map classMapping40.mat --out {out} "
        "(or --source adashare|mtan --root DIR; see README)"
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
    ):
        super().__init__(root, tasks, crop, scale, flip, preload, metrics)
