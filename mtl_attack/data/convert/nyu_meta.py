"""NYUv2 class names and the class-mapping files (datasets.md §1.3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from mtl_attack.data.convert.common import check_array, require_file
from mtl_attack.data.schema import IGNORE_INDEX, DatasetFileError

#: nyu40 names in id order 1..40 (stored 0-based: class k = nyu40 id k + 1).
NYU40_NAMES = (
    "wall floor cabinet bed chair sofa table door window bookshelf picture counter blinds desk "
    "shelves curtain dresser pillow mirror floor_mat clothes ceiling books refridgerator "
    "television paper towel shower_curtain box whiteboard person night_stand toilet sink lamp "
    "bathtub bag otherstructure otherfurniture otherprop"
).split()
#: 13-class names in id order 1..13 (class13Mapping.mat ``classNames``).
NYU13_NAMES = (
    "bed books ceiling chair floor furniture objects picture sofa table tv wall window"
).split()

META_ORIGIN = "download it from https://github.com/ankurhanda/nyuv2-meta-data"


def load_mat(path: Path, what: str) -> dict:
    require_file(path, META_ORIGIN)
    try:
        return scipy.io.loadmat(path, simplify_cells=True)
    except (ValueError, NotImplementedError, OSError) as err:
        raise DatasetFileError(f"{path}: cannot read {what} as a MATLAB v5 file ({err})") from err


def _field(mat: dict, path: Path, *keys: str) -> np.ndarray:
    value = mat
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise DatasetFileError(f"{path}: no variable {'.'.join(keys)!r}")
        value = value[key]
    return np.atleast_1d(np.asarray(value)).reshape(-1)


def load_class_map40(path: Path) -> np.ndarray:
    """``classMapping40.mat`` -> lookup (895,) uint8: 894-class id -> schema class (nyu40 - 1),
    id 0 (unlabeled) -> 255."""
    mat = load_mat(path, "classMapping40.mat")
    mapping = check_array(path, _field(mat, path, "mapClass"), (894,), "ui", "mapClass")
    if mapping.min() < 1 or mapping.max() > 40:
        raise DatasetFileError(f"{path}: mapClass values must lie in 1..40")
    return np.concatenate([[IGNORE_INDEX], mapping.astype(np.int64) - 1]).astype(np.uint8)


def load_class_map13(path: Path) -> np.ndarray:
    """``class13Mapping.mat`` -> lookup (256,) uint8: schema nyu40 class (0..39) -> 13-class
    (0..12), 255 -> 255."""
    mat = load_mat(path, "class13Mapping.mat")
    labels13 = check_array(
        path, _field(mat, path, "classMapping13", "labels13"), (40,), "ui", "labels13"
    )
    if labels13.min() < 1 or labels13.max() > 13:
        raise DatasetFileError(f"{path}: classMapping13.labels13 values must lie in 1..13")
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    lut[:40] = labels13.astype(np.int64) - 1
    return lut


def load_splits(path: Path, num_images: int) -> dict[str, np.ndarray]:
    """``splits.mat`` -> {"train": 0-based indices, "test": ...} (the file is 1-based)."""
    mat = load_mat(path, "splits.mat")
    out = {}
    for split, key in (("train", "trainNdxs"), ("test", "testNdxs")):
        idx = check_array(path, _field(mat, path, key), (None,), "ui", key).astype(np.int64)
        if idx.size == 0 or idx.min() < 1 or idx.max() > num_images:
            raise DatasetFileError(
                f"{path}: {key} must be 1-based indices in 1..{num_images} (the .mat's images)"
            )
        out[split] = idx - 1
    if np.intersect1d(out["train"], out["test"]).size:
        raise DatasetFileError(f"{path}: trainNdxs and testNdxs overlap")
    return out
