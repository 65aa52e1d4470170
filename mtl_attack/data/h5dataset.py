"""A torch Dataset over one split file of the HDF5 schema."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from mtl_attack.data.schema import read_attrs

Sample = dict[str, torch.Tensor]


def to_tensors(image: np.ndarray, targets: dict[str, np.ndarray]) -> Sample:
    """numpy HWC uint8 image + raw task arrays -> the tensor contract.

    ``image``: float (3, H, W) in [0, 1]; ``segment_semantic``: long (H, W), 255 = ignore;
    ``normal``: float (3, H, W); other tasks: float (1, H, W).
    """
    out = {"image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255}
    for task, value in targets.items():
        t = torch.from_numpy(np.ascontiguousarray(value))
        if task == "segment_semantic":
            out[task] = t.long()
        elif t.ndim == 3:  # (H, W, C) -> (C, H, W)
            out[task] = t.permute(2, 0, 1).float()
        else:
            out[task] = t[None].float()
    return out


def split_batch(batch: Sample, tasks, device: torch.device):
    """A collated batch -> (images on ``device``, ``{task: target}`` for the ``tasks``)."""
    images = batch["image"].to(device, non_blocking=True)
    targets = {t: batch[t].to(device, non_blocking=True) for t in tasks}
    return images, targets


class H5TaskDataset(Dataset):
    """Items are dicts: ``image`` plus one target per task (see :func:`to_tensors`).

    The file is opened lazily in each process (DataLoader workers each get their own handle).
    ``transform`` maps (image HWC uint8, targets dict of numpy arrays) to the same, e.g. the
    paper's augmentation. ``preload`` reads the whole split into memory once.
    """

    def __init__(
        self,
        path: str | Path,
        tasks: Sequence[str],
        transform: Callable | None = None,
        preload: bool = False,
        hint: str = "",
        fields: Mapping[str, str] | None = None,
    ):
        self.path = Path(path)
        self.attrs = read_attrs(self.path, hint=hint)
        missing = [t for t in tasks if t not in self.attrs["tasks"]]
        if missing:
            raise ValueError(
                f"{self.path} has no task {missing[0]!r}; it stores {self.attrs['tasks']}"
            )
        self.tasks = list(tasks)
        # task -> the stored dataset its target is read from (default: the task's own)
        self.fields = {t: (fields or {}).get(t, t) for t in self.tasks}
        stored = [*self.attrs["tasks"], *self.attrs["extras"]]
        absent = [f for f in self.fields.values() if f not in stored]
        if absent:
            raise ValueError(f"{self.path} has no dataset {absent[0]!r}; it stores {stored}")
        self.transform = transform
        self._file: h5py.File | None = None
        self._arrays: dict[str, np.ndarray] | None = None
        if preload:
            with h5py.File(self.path, "r") as f:
                self._arrays = {k: f[k][...] for k in ["image", *self.fields.values()]}

    def __len__(self) -> int:
        return int(self.attrs["num_images"])

    def _source(self):
        if self._arrays is not None:
            return self._arrays
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return self._file

    def __getitem__(self, index: int) -> Sample:
        src = self._source()
        image = src["image"][index]
        targets = {t: src[field][index] for t, field in self.fields.items()}
        if self.transform is not None:
            image, targets = self.transform(image, targets)
        return to_tensors(image, targets)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None  # h5py handles cannot cross process boundaries
        return state
