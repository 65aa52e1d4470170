"""Cityscapes from the preprocessed ``.npy`` release of MTAN (also used by LibMTL, AdaShare).

``{root}/{train,val}/{image,label_2,label_7,label_19,depth}/{i}.npy`` (i = 0..N-1), 128x256 or
256x512: ``image`` (H, W, 3) RGB float in [0, 1]; ``label_{7,19}`` (H, W) with -1 = ignore;
``depth`` (H, W, 1) *inverse* depth as distributed (mtan issues #15, #25), 0 = invalid. LibMTL's
loader reads the 7-class labels from a folder named ``label``; it is used when ``label_7`` is
absent. Values are stored as distributed (depth is not converted to metres: the scale of the
released inverse depth is undocumented). Facts and sources: docs/cityscapes.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mtl_attack.data.convert.cityscapes_meta import CLASS_NAMES
from mtl_attack.data.convert.common import (
    SplitPlan,
    check_array,
    fingerprint,
    require_dir,
    require_file,
)
from mtl_attack.data.schema import IGNORE_INDEX, DatasetFileError

ORIGIN = (
    "the MTAN preprocessed Cityscapes (the 128x256 or 256x512 archive linked from "
    "github.com/lorenmt/mtan's README, also LibMTL examples/cityscapes: "
    "{train,val}/{image,label_7,label_19,depth}/{i}.npy)"
)
SPLITS = {"train": "train", "test": "val"}


def load_npy(path: Path) -> np.ndarray:
    require_file(path, ORIGIN)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DatasetFileError(f"{path}: not a readable .npy array ({err}); {ORIGIN}") from err


def label_folder(split_dir: Path, classes: int) -> Path:
    """``label_{classes}``, or LibMTL's ``label`` for 7 classes."""
    folder = split_dir / f"label_{classes}"
    if not folder.is_dir() and classes == 7 and (split_dir / "label").is_dir():
        return split_dir / "label"
    return require_dir(folder, ORIGIN + ("; LibMTL names it label/" if classes == 7 else ""))


def decode_image(path: Path, h: int, w: int) -> np.ndarray:
    """(H, W, 3) float in [0, 1] (0..255 floats and uint8 are accepted too) -> uint8."""
    image = check_array(path, load_npy(path), (h, w, 3), "uf", "RGB image (H, W, 3)")
    if image.dtype.kind == "f":
        image = image * 255.0 if float(image.max()) <= 1.0 else image
        image = np.clip(np.rint(image), 0, 255)
    return image.astype(np.uint8)


def decode_label(path: Path, h: int, w: int, classes: int) -> np.ndarray:
    """-1..classes-1 (float or int) -> uint8 with -1 -> 255."""
    label = check_array(path, load_npy(path), (h, w), "fiu", f"label map (-1..{classes - 1})")
    values = np.unique(label)
    bad = values[(values < -1) | (values > classes - 1) | (values != np.round(values))]
    if bad.size:
        raise DatasetFileError(
            f"{path}: expected integer labels -1..{classes - 1}, found {bad[0]} "
            f"(label_{classes} for --classes {classes})"
        )
    return np.where(label < 0, IGNORE_INDEX, label).astype(np.uint8)


def decode_depth(path: Path, h: int, w: int) -> np.ndarray:
    """(H, W, 1) or (H, W) float inverse depth, finite and >= 0 -> (H, W) float32."""
    depth = load_npy(path)
    depth = depth[..., 0] if depth.ndim == 3 and depth.shape[-1] == 1 else depth
    depth = check_array(path, depth, (h, w), "f", "inverse depth (H, W, 1)")
    if not np.isfinite(depth).all() or depth.min() < 0:
        raise DatasetFileError(f"{path}: expected finite inverse depth >= 0 (0 = invalid)")
    return depth.astype(np.float32)


def mtan_plans(root: str | Path, classes: int = 19) -> tuple[list[SplitPlan], dict, str]:
    """Plans ``train`` (from train/) and ``test`` (from val/) of the MTAN ``.npy`` layout."""
    if classes not in CLASS_NAMES:
        raise ValueError(f"--classes must be 19 or 7, got {classes}")
    root = require_dir(root, ORIGIN)
    dirs = {s: require_dir(root / f, ORIGIN) for s, f in SPLITS.items()}
    counts = {}
    for split, split_dir in dirs.items():
        counts[split] = len(list(require_dir(split_dir / "image", ORIGIN).glob("*.npy")))
        if counts[split] == 0:
            raise DatasetFileError(f"{split_dir / 'image'}: no .npy files; expected {ORIGIN}")
        require_dir(split_dir / "depth", ORIGIN)
    labels = {s: label_folder(d, classes) for s, d in dirs.items()}
    first_path = dirs["train"] / "image" / "0.npy"
    first = check_array(first_path, load_npy(first_path), (None, None, 3), "uf", "RGB image")
    h, w = first.shape[:2]

    def items(split: str) -> Iterator:
        for i in range(counts[split]):
            name = f"{i}.npy"
            image = decode_image(dirs[split] / "image" / name, h, w)
            seg = decode_label(labels[split] / name, h, w, classes)
            depth = decode_depth(dirs[split] / "depth" / name, h, w)
            yield image, {"segment_semantic": seg, "depth_zbuffer": depth}

    plans = [
        SplitPlan(s, counts[s], h, w, lambda s=s: items(s), {"source_split": SPLITS[s]})
        for s in SPLITS
    ]
    attrs = {
        "num_classes": classes,
        "class_names": CLASS_NAMES[classes],
        "source_format": "cityscapes/mtan",
        "depth_target": "mtan inverse depth (as distributed)",
        "max_depth": -1.0,
    }
    files = [
        p
        for s in SPLITS
        for folder in (dirs[s] / "image", labels[s], dirs[s] / "depth")
        for p in sorted(folder.glob("*.npy"))
    ]
    return plans, attrs, fingerprint(files, {"source": "mtan", "classes": classes})
