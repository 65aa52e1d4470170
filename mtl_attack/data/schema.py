"""The one HDF5 schema every dataset is stored in (synthetic, NYUv2, Tiny-Taskonomy).

One file per split (``train.h5``, ``test.h5``). Datasets, all chunked one image per chunk:

==================  =====================  =======  ===========================================
name                shape                  dtype    meaning / invalid marker
==================  =====================  =======  ===========================================
image               (N, H, W, 3)           uint8    RGB
segment_semantic    (N, H, W)              uint8    class id, 255 = ignore
depth_zbuffer       (N, H, W)              float32  z-buffer depth in metres, 0 = invalid
normal              (N, H, W, 3)           float32  unit vector, camera frame x right, y down,
                                                    z forward, facing the camera; 0 = invalid
keypoints2d         (N, H, W)              float32  keypoint heat map in [0, 1]
edge_texture        (N, H, W)              float32  edge strength in [0, 1]
normal_raw          (N, H, W, 3)           uint8    optional extra: the release's own normal
                                                    PNG values (AdaShare NYUv2), R, G, B as
                                                    stored; (255, 255, 255) = invalid
==================  =====================  =======  ===========================================

Root attributes: ``schema_version``, ``tasks`` (the task datasets present), ``extras`` (the
optional extra datasets present, e.g. ``normal_raw``), ``num_classes``,
``class_names``, ``source_format``, ``split``, and optionally ``class_weights`` (float64 array of
``num_classes`` loss weights), camera intrinsics ``fx, fy, cx, cy`` (pixels) and
``source_fingerprint`` (a hash of the converter's inputs and options; equal fingerprints let a
converter skip work that is already done). Datasets may be compressed (``lzf``/``gzip``);
readers need not care.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

SCHEMA_VERSION = 1
IGNORE_INDEX = 255

#: task name -> (per-image trailing shape suffix, dtype). ``None`` means (H, W) only.
TASK_LAYOUT: dict[str, tuple[tuple[int, ...], str]] = {
    "segment_semantic": ((), "uint8"),
    "depth_zbuffer": ((), "float32"),
    "normal": ((3,), "float32"),
    "keypoints2d": ((), "float32"),
    "edge_texture": ((), "float32"),
}
ALL_TASKS: tuple[str, ...] = tuple(TASK_LAYOUT)

#: optional extra datasets (not tasks) -> (trailing shape suffix, dtype); the root attribute
#: ``extras`` lists those a file holds
EXTRA_LAYOUT: dict[str, tuple[tuple[int, ...], str]] = {
    "normal_raw": ((3,), "uint8"),
}


class DatasetFileError(RuntimeError):
    """A dataset file is missing, corrupt or not in the expected schema."""


def check_task_names(tasks: Sequence[str], available: Sequence[str] = ALL_TASKS) -> list[str]:
    """Return ``tasks`` as a list, or raise naming the unknown task and the allowed names."""
    tasks = list(tasks)
    unknown = [t for t in tasks if t not in available]
    if unknown:
        raise ValueError(
            f"unknown task {unknown[0]!r}; choose from {list(available)} "
            f"(e.g. dataset.tasks=[segment_semantic,depth_zbuffer])"
        )
    if len(set(tasks)) != len(tasks) or not tasks:
        raise ValueError(f"dataset.tasks must be a non-empty list without repeats, got {tasks}")
    return tasks


class SplitWriter:
    """Write one split file atomically: data goes to ``<path>.partial`` and is renamed on close.

    An interrupted conversion therefore never leaves a file at ``path`` that looks complete.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        num_images: int,
        height: int,
        width: int,
        tasks: Sequence[str],
        attrs: dict[str, Any],
        compression: str | None = None,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        self.tasks = check_task_names(tasks)
        self.file = h5py.File(self.tmp, "w")
        self.file.create_dataset(
            "image",
            (num_images, height, width, 3),
            "uint8",
            chunks=(1, height, width, 3),
            compression=compression,
        )
        self.extras = list(attrs.get("extras", []))
        unknown = [e for e in self.extras if e not in EXTRA_LAYOUT]
        if unknown:
            raise ValueError(f"unknown extra dataset {unknown[0]!r}; known: {list(EXTRA_LAYOUT)}")
        layouts = {
            **{t: TASK_LAYOUT[t] for t in self.tasks},
            **{e: EXTRA_LAYOUT[e] for e in self.extras},
        }
        for name, (suffix, dtype) in layouts.items():
            shape = (num_images, height, width, *suffix)
            self.file.create_dataset(
                name, shape, dtype, chunks=(1, *shape[1:]), compression=compression
            )
        attrs = {"schema_version": SCHEMA_VERSION, "tasks": list(self.tasks), **attrs}
        for key, value in attrs.items():
            self.file.attrs[key] = value

    def write(self, index: int | slice, image: np.ndarray, targets: dict[str, np.ndarray]) -> None:
        self.file["image"][index] = image
        for name in [*self.tasks, *self.extras]:
            self.file[name][index] = targets[name]

    def close(self) -> Path:
        self.file.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_attrs(path: str | os.PathLike, hint: str = "") -> dict[str, Any]:
    """Open ``path`` and return its root attributes, checking the schema.

    Raises :class:`DatasetFileError` with ``hint`` (the command that creates the file) when the
    file is missing, unreadable, or not a file of this schema.
    """
    path = Path(path)
    suffix = f"; {hint}" if hint else ""
    if not path.is_file():
        raise DatasetFileError(f"dataset file {path} does not exist{suffix}")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            names = set(f.keys())
            n = f["image"].shape[0] if "image" in f else 0
    except OSError as err:
        raise DatasetFileError(
            f"dataset file {path} is corrupt or not HDF5 ({err}){suffix}"
        ) from err
    if attrs.get("schema_version") != SCHEMA_VERSION or "image" not in names:
        raise DatasetFileError(
            f"dataset file {path} is not an mtl-attack schema v{SCHEMA_VERSION} file{suffix}"
        )
    attrs.setdefault("extras", [])
    missing = [t for t in [*attrs["tasks"], *attrs["extras"]] if t not in names]
    if missing:
        raise DatasetFileError(f"dataset file {path} lacks datasets {missing}{suffix}")
    attrs["num_images"] = n
    return attrs


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.dtype.kind in "OSU" else value
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
