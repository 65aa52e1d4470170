"""Base of the dataset sources over converted real datasets (NYUv2, Tiny-Taskonomy).

The files come from ``scripts/prepare_nyuv2.py`` / ``scripts/prepare_taskonomy.py``; the sources
only check them and attach the paper's preprocessing (:mod:`mtl_attack.data.transforms`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mtl_attack.data.base import DatasetSource
from mtl_attack.data.h5dataset import H5TaskDataset
from mtl_attack.data.schema import DatasetFileError, check_task_names, read_attrs
from mtl_attack.data.transforms import Resize, ScaleCropFlip


class ConvertedDataset(DatasetSource):
    """A real dataset converted to the schema: ``root/{split}.h5`` for each of ``splits``."""

    splits: tuple[str, ...] = ("train", "test")
    prepare_command: str = ""
    # v2: OpenCV-exact resizes, truncated scale, image centred in the padding (was PIL, rounded,
    # bottom/right); checked against the reference loader (docs/datasets.md, Preprocessing)
    preprocessing: str | None = "opencv-2"

    def __init__(
        self,
        root: str,
        tasks: Sequence[str],
        crop: int | Sequence[int],
        scale: Sequence[float] = (0.5, 1.5),
        flip: bool = True,
        preload: bool = False,
        metrics: str = "reference",
    ):
        self.root = Path(root)
        self.tasks = check_task_names(tasks)
        side = isinstance(crop, int)
        sides = [crop] if side else list(crop)
        if (
            len(sides) not in (1, 2)
            or min(sides) < 16
            or len(scale) != 2
            or not (0 < scale[0] <= scale[1])
        ):
            raise ValueError(
                "dataset.crop must be a side >= 16 or [height, width] >= 16, and dataset.scale "
                f"[lo, hi] with 0 < lo <= hi; got crop={sides if not side else crop}, "
                f"scale={list(scale)}"
            )
        self.crop = int(crop) if side else (int(sides[0]), int(sides[-1]))
        self.scale = (float(scale[0]), float(scale[1]))
        self.flip = flip
        self.preload = preload
        self.metrics = metrics

    def path(self, split: str) -> Path:
        return self.root / f"{split}.h5"

    @property
    def hint(self) -> str:
        return f"create it with: {self.prepare_command.format(out=self.root)}"

    def prepare(self, progress: bool = True) -> None:
        """Check that every split file exists, follows the schema and stores ``tasks``."""
        infos = [read_attrs(self.path(s), hint=self.hint) for s in self.splits]
        for split, info in zip(self.splits, infos):
            missing = [t for t in self.tasks if t not in info["tasks"]]
            if missing:
                raise DatasetFileError(
                    f"{self.path(split)} stores tasks {info['tasks']}, not {missing[0]!r}; "
                    f"drop it from dataset.tasks or {self.hint}"
                )
        self.info = infos[0]

    def fields(self) -> dict[str, str]:
        """Task -> the stored dataset its target is read from, where not the task's own."""
        return {}

    def train_transform(self):
        return ScaleCropFlip(self.crop, self.scale, self.flip)

    def test_transform(self):
        return Resize(self.crop)

    def split(self, name: str, train: bool = False) -> H5TaskDataset:
        if name not in self.splits:
            raise ValueError(f"{self.name} has splits {list(self.splits)}, not {name!r}")
        transform = self.train_transform() if train else self.test_transform()
        return H5TaskDataset(
            self.path(name),
            self.tasks,
            transform,
            preload=self.preload,
            hint=self.hint,
            fields=self.fields(),
        )
