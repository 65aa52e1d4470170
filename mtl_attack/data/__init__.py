"""Datasets in one HDF5 schema: the synthetic benchmark, NYUv2, Tiny-Taskonomy."""

from mtl_attack.data.base import DatasetSource
from mtl_attack.data.h5dataset import H5TaskDataset
from mtl_attack.data.schema import ALL_TASKS, IGNORE_INDEX, DatasetFileError

__all__ = ["ALL_TASKS", "IGNORE_INDEX", "DatasetFileError", "DatasetSource", "H5TaskDataset"]
