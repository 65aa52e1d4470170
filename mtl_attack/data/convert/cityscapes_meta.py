"""Cityscapes label table, disparity decoding and camera files (facts: docs/cityscapes.md).

Label ids, train ids and category ids are those of cityscapesScripts
``cityscapesscripts/helpers/labels.py`` (mcordts/cityscapesScripts, HEAD 0bcc4a7, 2025-09-06):
the ``*_gtFine_labelIds.png`` files hold the label id (0..33) of every pixel; 19 classes have a
train id, every other label (void, and the ``ignoreInEval`` labels such as parking or caravan) is
ignored. The 7 categories are the category ids 1..7 of the 19 evaluated classes (void is 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mtl_attack.data.convert.common import require_file
from mtl_attack.data.schema import IGNORE_INDEX, DatasetFileError

#: (name, label id, train id, category id) for label ids 0..33, in labels.py order.
LABELS = (
    ("unlabeled", 0, 255, 0),
    ("ego vehicle", 1, 255, 0),
    ("rectification border", 2, 255, 0),
    ("out of roi", 3, 255, 0),
    ("static", 4, 255, 0),
    ("dynamic", 5, 255, 0),
    ("ground", 6, 255, 0),
    ("road", 7, 0, 1),
    ("sidewalk", 8, 1, 1),
    ("parking", 9, 255, 1),
    ("rail track", 10, 255, 1),
    ("building", 11, 2, 2),
    ("wall", 12, 3, 2),
    ("fence", 13, 4, 2),
    ("guard rail", 14, 255, 2),
    ("bridge", 15, 255, 2),
    ("tunnel", 16, 255, 2),
    ("pole", 17, 5, 3),
    ("polegroup", 18, 255, 3),
    ("traffic light", 19, 6, 3),
    ("traffic sign", 20, 7, 3),
    ("vegetation", 21, 8, 4),
    ("terrain", 22, 9, 4),
    ("sky", 23, 10, 5),
    ("person", 24, 11, 6),
    ("rider", 25, 12, 6),
    ("car", 26, 13, 7),
    ("truck", 27, 14, 7),
    ("bus", 28, 15, 7),
    ("caravan", 29, 255, 7),
    ("trailer", 30, 255, 7),
    ("train", 31, 16, 7),
    ("motorcycle", 32, 17, 7),
    ("bicycle", 33, 18, 7),
)
MAX_LABEL_ID = 33
CLASS_NAMES = {
    19: [name for name, _, train, _ in LABELS if train != IGNORE_INDEX],
    7: ["flat", "construction", "object", "nature", "sky", "human", "vehicle"],
}


def label_lut(classes: int) -> np.ndarray:
    """Lookup table label id -> class (255 = ignore) for 19 train ids or 7 categories."""
    if classes not in CLASS_NAMES:
        raise ValueError(f"--classes must be 19 (train ids) or 7 (categories), got {classes}")
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for _, label_id, train_id, category in LABELS:
        if train_id != IGNORE_INDEX:  # only the 19 evaluated classes, in both encodings
            lut[label_id] = train_id if classes == 19 else category - 1
    return lut


def disparity_pixels(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """16-bit disparity PNG values -> (disparity in pixels, valid mask).

    cityscapesScripts README: d = (p - 1) / 256 for p > 0; p = 0 is an invalid measurement.
    p = 1 (d = 0, infinitely far) is also invalid here: the schema has no value for infinity.
    """
    valid = raw > 1
    return np.where(valid, (raw.astype(np.float64) - 1.0) / 256.0, 0.0), valid


def depth_from_disparity(
    raw: np.ndarray, baseline: float, fx: float, max_depth: float | None = None
) -> np.ndarray:
    """z-buffer depth in metres, baseline * fx / d (0 = invalid), from raw 16-bit values at the
    camera's own resolution (``fx`` in those pixels). Shape: (H, W) -> (H, W) float32."""
    disparity, valid = disparity_pixels(raw)
    depth = np.zeros(raw.shape, np.float32)
    depth[valid] = baseline * fx / disparity[valid]
    if max_depth is not None:
        depth[depth > max_depth] = 0.0
    return depth


def read_camera(path: Path, origin: str) -> tuple[float, float]:
    """``extrinsic.baseline`` (metres) and ``intrinsic.fx`` (pixels) of a ``*_camera.json``."""
    require_file(path, origin)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetFileError(f"{path}: not valid JSON ({err}); {origin}") from err
    try:
        baseline = float(data["extrinsic"]["baseline"])
        fx = float(data["intrinsic"]["fx"])
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetFileError(
            f"{path}: expected numbers extrinsic.baseline (metres) and intrinsic.fx (pixels) "
            f"as in Cityscapes camera files; missing or not a number ({err!r})"
        ) from err
    if not (baseline > 0 and fx > 0):
        raise DatasetFileError(
            f"{path}: expected a positive baseline and fx, found baseline={baseline}, fx={fx}"
        )
    return baseline, fx
