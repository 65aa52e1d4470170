"""NYUv2 from the official ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, read with h5py).

h5py sees MATLAB's H x W x ... x N arrays with reversed axes (datasets.md §1.1): ``images`` is
(N, 3, W, H) uint8, ``depths``/``labels`` are (N, W, H); image i in H x W x 3 is
``images[i].transpose(2, 1, 0)`` and a map is ``depths[i].T``. The size is read from the file
(640 x 480 in the release); the NYU intrinsics are rescaled if it differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from mtl_attack.data.convert.common import (
    SplitPlan,
    check_array,
    fingerprint,
    read_png,
    require_dir,
    require_file,
)
from mtl_attack.data.convert.normals import (
    decode_adashare_normals,
    normals_from_depth,
    nyu_intrinsics,
)
from mtl_attack.data.convert.nyu_meta import (
    NYU13_NAMES,
    NYU40_NAMES,
    load_class_map13,
    load_class_map40,
    load_splits,
)
from mtl_attack.data.schema import DatasetFileError

MAT_ORIGIN = (
    "the official labeled NYUv2 file, "
    "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat (2.8 GB)"
)
NORMALS_ORIGIN = "--normals expects the AdaShare NYUv2 release's normal_mask/ folder (XXXX.png)"
TASKS = ("segment_semantic", "normal", "depth_zbuffer")


def _open_mat(path: Path) -> h5py.File:
    require_file(path, MAT_ORIGIN)
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DatasetFileError(
            f"{path}: not a MATLAB v7.3 (HDF5) file ({err}); expected {MAT_ORIGIN}"
        ) from err


def _check_mat(path: Path, f: h5py.File) -> tuple[int, int, int]:
    """Check the datasets the converter reads; return (N, H, W)."""
    for key in ("images", "depths", "labels"):
        if key not in f:
            raise DatasetFileError(f"{path}: no dataset {key!r}; expected {MAT_ORIGIN}")
    images = f["images"]
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
        raise DatasetFileError(
            f"{path}: expected 'images' of shape (N, 3, W, H) uint8 (MATLAB HxWx3xN), "
            f"got {images.shape} {images.dtype}"
        )
    n, _, w, h = images.shape
    for key, kinds in (("depths", "f"), ("labels", "u"), ("rawDepths", "f")):
        if key in f and (f[key].shape != (n, w, h) or f[key].dtype.kind not in kinds):
            kind = "float" if kinds == "f" else "uint"
            raise DatasetFileError(
                f"{path}: expected {key!r} of shape {(n, w, h)} {kind} (MATLAB HxWxN), "
                f"got {f[key].shape} {f[key].dtype}"
            )
    return n, h, w


def labeled_mat_plans(
    mat: str | Path,
    splits: str | Path,
    class_map: str | Path,
    classes: int = 40,
    class13_map: str | Path | None = None,
    normals_dir: str | Path | None = None,
    radius: int = 3,
) -> tuple[list[SplitPlan], dict, str]:
    """Plans for ``train``/``test`` (splits.mat order), schema attrs, input fingerprint.

    Labels: 894-class id -> nyu40 - 1 (0..39), 0 -> 255; with ``classes=13`` further through
    ``class13_map``. Depth: the in-painted ``depths`` (metres). Normals: from ``normals_dir``
    (AdaShare PNGs, 0-based XXXX.png) or computed from ``depths`` with the NYU intrinsics,
    valid where ``rawDepths`` > 0 (see :func:`normals_from_depth`).
    """
    mat, splits, class_map = Path(mat), Path(splits), Path(class_map)
    with _open_mat(mat) as f:
        n, h, w = _check_mat(mat, f)
        has_raw = "rawDepths" in f
    index = load_splits(splits, n)
    lut = load_class_map40(class_map)
    names = NYU40_NAMES
    inputs = [mat, splits, class_map]
    if classes == 13:
        if class13_map is None:
            raise ValueError("--classes 13 needs --class13-map class13Mapping.mat")
        lut = load_class_map13(Path(class13_map))[lut]
        names, inputs = NYU13_NAMES, [*inputs, Path(class13_map)]
    elif classes != 40:
        raise ValueError(f"--classes must be 40 or 13, got {classes}")
    if normals_dir is not None:
        normals_dir = require_dir(normals_dir, NORMALS_ORIGIN)
    fx, fy, cx, cy = nyu_intrinsics(h, w)

    def items(idx: np.ndarray) -> Iterator:
        with _open_mat(mat) as f:
            for i in idx:
                depth = f["depths"][i].T.astype(np.float32)  # (H, W) metres
                label = f["labels"][i].T  # (H, W) 0..894
                if label.max() >= lut.size:
                    raise DatasetFileError(f"{mat}: image {i} has label {label.max()} > 894")
                if normals_dir is not None:
                    png = normals_dir / f"{i:04d}.png"
                    rgb = read_png(png, ("RGB",), "normal", NORMALS_ORIGIN)
                    check_array(png, rgb, (h, w, 3), "u", "normals")
                    normal = decode_adashare_normals(rgb)
                else:
                    valid = f["rawDepths"][i].T > 0 if has_raw else None
                    normal = normals_from_depth(depth, (fx, fy, cx, cy), valid, radius)
                image = f["images"][i].transpose(2, 1, 0)  # (H, W, 3)
                seg = lut[label]
                yield image, {"segment_semantic": seg, "normal": normal, "depth_zbuffer": depth}

    plans = [
        SplitPlan(s, len(idx), h, w, lambda idx=idx: items(idx), {"source_indices": idx})
        for s, idx in index.items()
    ]
    normals = "adashare-png" if normals_dir else f"plane-fit r={radius} (rawDepths>0)"
    attrs = {
        "num_classes": classes,
        "class_names": list(names),
        "source_format": "nyuv2/labeled-mat",
        "normals_method": normals,
        "fx": fx,
        "fy": fy,
        "cx": cx,
        "cy": cy,
    }
    options = {
        "source": "labeled-mat",
        "classes": classes,
        "normals": normals,
        "normals_dir": str(normals_dir),
    }
    return plans, attrs, fingerprint(inputs, options)
