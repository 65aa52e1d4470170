"""The built-in synthetic benchmark: procedural indoor scenes, generated once into HDF5."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mtl_attack.data.base import DatasetSource
from mtl_attack.data.h5dataset import H5TaskDataset
from mtl_attack.data.render import Camera, class_names, render_scene
from mtl_attack.data.schema import ALL_TASKS, SplitWriter, check_task_names, read_attrs
from mtl_attack.utils.io import file_lock

_SPLIT_STREAM = {"train": 0, "test": 1}


def generate_split(
    path: str | Path,
    split: str,
    num_images: int,
    resolution: int,
    num_classes: int,
    seed: int,
    progress: bool = True,
) -> Path:
    """Render ``num_images`` scenes into ``path`` (atomically). Image i of a split depends only
    on (seed, split, i), so the data is identical whatever the order or batch of generation."""
    camera = Camera.for_size(resolution, resolution)
    attrs = {
        "num_classes": num_classes,
        "class_names": class_names(num_classes),
        "source_format": "synthetic",
        "split": split,
        "seed": seed,
        "fx": camera.fx,
        "fy": camera.fy,
        "cx": camera.cx,
        "cy": camera.cy,
    }
    with SplitWriter(path, num_images, resolution, resolution, ALL_TASKS, attrs) as writer:
        for i in tqdm(range(num_images), desc=f"render {split}", disable=not progress):
            rng = np.random.default_rng([seed, _SPLIT_STREAM[split], i])
            sample = render_scene(rng, camera, num_classes)
            writer.write(i, sample.pop("image"), sample)
    return Path(path)


class SyntheticBenchmark(DatasetSource):
    """Procedural indoor multi-task benchmark (the default dataset).

    Args:
        root: cache folder; files go to ``root/<hash of the generation settings>/``.
        tasks: task subset to train and attack (all five are always stored).
        num_train, num_test: images per split.
        resolution: square image side in pixels.
        num_classes: segmentation classes (3 room surfaces + object classes), >= 4.
        seed: generation seed (independent of the training seed).
        preload: load the split into memory (the default data is a few MB).
    """

    name = "synthetic"

    def __init__(
        self,
        root: str,
        tasks: Sequence[str] = ("segment_semantic", "normal", "depth_zbuffer"),
        num_train: int = 800,
        num_test: int = 200,
        resolution: int = 64,
        num_classes: int = 6,
        seed: int = 0,
        preload: bool = True,
        metrics: str = "reference",
    ):
        self.tasks = check_task_names(tasks)
        class_names(num_classes)  # validates num_classes
        if resolution < 16 or num_train < 1 or num_test < 1:
            raise ValueError("dataset.resolution must be >= 16 and num_train/num_test >= 1")
        self.settings = {
            "num_train": num_train,
            "num_test": num_test,
            "resolution": resolution,
            "num_classes": num_classes,
            "seed": seed,
            "version": 1,
        }
        digest = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()
        self.dir = Path(root) / digest[:12]
        self.preload = preload
        self.metrics = metrics

    def path(self, split: str) -> Path:
        return self.dir / f"{split}.h5"

    def prepare(self, progress: bool = True) -> None:
        """Generate the missing split files (a complete file is never regenerated)."""
        s = self.settings
        with file_lock(self.dir / ".lock"):  # parallel sweep jobs generate only once
            for split, n in (("train", s["num_train"]), ("test", s["num_test"])):
                if not self.path(split).is_file():
                    generate_split(
                        self.path(split),
                        split,
                        n,
                        s["resolution"],
                        s["num_classes"],
                        s["seed"],
                        progress,
                    )
        self.info = read_attrs(self.path("train"), hint=self._hint)
        read_attrs(self.path("test"), hint=self._hint)

    @property
    def _hint(self) -> str:
        return f"delete {self.dir} and run again to regenerate it"

    def split(self, name: str, train: bool = False) -> H5TaskDataset:
        return H5TaskDataset(self.path(name), self.tasks, preload=self.preload, hint=self._hint)
