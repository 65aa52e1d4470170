"""What every dataset source provides to the rest of the pipeline."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset


class DatasetSource:
    """A dataset on disk in the HDF5 schema of :mod:`mtl_attack.data.schema`.

    Subclasses set ``name``, ``tasks`` (the task subset in use) and ``metrics`` (the metric
    convention: ``reference`` = the paper's code, ``libmtl``), and implement :meth:`prepare`
    (create or check the files; sets ``info`` to the train file's attributes) and :meth:`split`.
    ``metric_set`` names the reported metrics (``nyuv2`` | ``taskonomy`` | ``cityscapes``, see
    :func:`mtl_attack.tasks.build_tasks`); ``l1_invalid`` is the target value the keypoint/edge
    losses ignore (the padding marker of the source's transform), ``None`` if there is none.
    ``preprocessing`` names the version of the source's transforms (``None``: none); it is part
    of every cache key, so results computed with older preprocessing code are never reused.
    """

    name: str = "base"
    preprocessing: str | None = None
    tasks: list[str]
    metrics: str = "reference"
    metric_set: str = "nyuv2"
    l1_invalid: float | None = None
    info: dict[str, Any]

    def prepare(self, progress: bool = True) -> None:
        raise NotImplementedError

    def split(self, name: str, train: bool = False) -> Dataset:
        """The ``train`` or ``test`` split; ``train=True`` turns on training augmentation."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return int(self.info["num_classes"])

    @property
    def class_weights(self) -> list[float] | None:
        weights = self.info.get("class_weights")
        return None if weights is None else [float(w) for w in weights]
