"""Cityscapes from the official release: leftImg8bit, gtFine labelIds, disparity, camera.

Layout (cityscapesScripts README): ``{root}/{type}/{split}/{city}/{city}_{seq}_{frame}_{type}
{ext}`` with the four packages extracted into one ``root``. ``train/`` becomes ``train.h5``,
``val/`` (the public evaluation split; test labels are withheld) becomes ``test.h5``.
Every frame is stored at ``size`` (default 256x512): the image bilinear, labels and disparity
nearest (depth is computed after the resize, from the camera's full-resolution fx).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mtl_attack.data.convert.cityscapes_meta import (
    CLASS_NAMES,
    MAX_LABEL_ID,
    depth_from_disparity,
    disparity_pixels,
    label_lut,
    read_camera,
)
from mtl_attack.data.convert.common import (
    SplitPlan,
    check_array,
    fingerprint,
    read_png,
    require_dir,
)
from mtl_attack.data.schema import DatasetFileError
from mtl_attack.data.transforms import resize_image, resize_nearest

_SITE = "cityscapes-dataset.com/downloads (login required), extracted into --root"
ORIGIN = {
    kind: f"{kind}_trainvaltest.zip from {_SITE}"
    for kind in ("leftImg8bit", "gtFine", "disparity", "camera")
}
SUFFIX = {
    "leftImg8bit": "_leftImg8bit.png",
    "gtFine": "_gtFine_labelIds.png",
    "disparity": "_disparity.png",
    "camera": "_camera.json",
}
#: output split -> Cityscapes folder
SPLITS = {"train": "train", "test": "val"}
TARGETS = ("depth", "disparity")
_SIXTEEN_BIT = ("I;16", "I;16B", "I")


def frames(root: Path, folder: str) -> list[tuple[str, str]]:
    """(city, ``{city}_{seq}_{frame}``) of every left image of a split, sorted."""
    split_dir = require_dir(root / "leftImg8bit" / folder, ORIGIN["leftImg8bit"])
    found = [
        (city.name, image.name[: -len(SUFFIX["leftImg8bit"])])
        for city in sorted(p for p in split_dir.iterdir() if p.is_dir())
        for image in sorted(city.glob("*" + SUFFIX["leftImg8bit"]))
    ]
    if not found:
        raise DatasetFileError(
            f"{split_dir}: no {{city}}/*{SUFFIX['leftImg8bit']} images; expected "
            f"{ORIGIN['leftImg8bit']}"
        )
    return found


def frame_path(root: Path, kind: str, folder: str, city: str, stem: str) -> Path:
    return root / kind / folder / city / f"{stem}{SUFFIX[kind]}"


def parse_size(size: str) -> tuple[int, int]:
    """``HxW`` (e.g. ``128x256``) -> (height, width)."""
    parts = size.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 16 for p in parts):
        raise ValueError(
            f"--size must be HEIGHTxWIDTH with sides >= 16 (e.g. 256x512), got {size}"
        )
    return int(parts[0]), int(parts[1])


def decode_frame(root: Path, folder: str, city: str, stem: str, options: dict) -> tuple:
    """One frame -> (image (h, w, 3) uint8, schema targets) at ``options['size']``."""
    path = {k: frame_path(root, k, folder, city, stem) for k in SUFFIX}
    image = read_png(path["leftImg8bit"], ("RGB",), "8-bit RGB image", ORIGIN["leftImg8bit"])
    h, w = check_array(path["leftImg8bit"], image, (None, None, 3), "u", "RGB image").shape[:2]
    labels = read_png(path["gtFine"], ("L",), "8-bit labelIds", ORIGIN["gtFine"])
    check_array(path["gtFine"], labels, (h, w), "u", "labelIds map the size of the image")
    if labels.max() > MAX_LABEL_ID:
        raise DatasetFileError(
            f"{path['gtFine']}: expected label ids 0..{MAX_LABEL_ID}, found {labels.max()} "
            "(is it a trainIds or color PNG?)"
        )
    raw = read_png(path["disparity"], _SIXTEEN_BIT, "16-bit disparity", ORIGIN["disparity"])
    check_array(path["disparity"], raw, (h, w), "u", "disparity map the size of the image")
    baseline, fx = read_camera(path["camera"], ORIGIN["camera"])
    out_h, out_w = options["size"]
    raw = resize_nearest(raw, out_h, out_w)
    if options["target"] == "depth":
        depth = depth_from_disparity(raw, baseline, fx, options["max_depth"])
    else:  # disparity in pixels of the stored width
        depth = (disparity_pixels(raw)[0] * (out_w / w)).astype(np.float32)
    targets = {
        "segment_semantic": options["lut"][resize_nearest(labels, out_h, out_w)],
        "depth_zbuffer": depth,
    }
    return resize_image(image, out_h, out_w), targets


def all_frames(root: Path) -> tuple[dict[str, list[tuple[str, str]]], list[Path]]:
    """Frames of every output split and all their files; raises naming the first missing
    file of any frame (before anything is decoded)."""
    entries, files = {}, []
    for split, folder in SPLITS.items():
        entries[split] = frames(root, folder)
        for city, stem in entries[split]:
            paths = [frame_path(root, kind, folder, city, stem) for kind in SUFFIX]
            for kind, path in zip(SUFFIX, paths):
                if not path.is_file():
                    raise DatasetFileError(f"missing file {path}: {ORIGIN[kind]}")
            files += paths
    return entries, files


def raw_plans(
    root: str | Path,
    classes: int = 19,
    target: str = "depth",
    size: tuple[int, int] = (256, 512),
    max_depth: float | None = None,
) -> tuple[list[SplitPlan], dict, str]:
    """Plans ``train`` (from train/) and ``test`` (from val/), the attrs and the fingerprint.

    Raises naming the first missing label, disparity or camera file of any frame.
    """
    root = require_dir(
        root,
        "the Cityscapes root: extract {leftImg8bit,gtFine,disparity,camera}_trainvaltest.zip "
        "from cityscapes-dataset.com/downloads into it",
    )
    if target not in TARGETS:
        raise ValueError(f"--target must be one of {list(TARGETS)}, got {target!r}")
    if max_depth is not None and (target != "depth" or max_depth <= 0):
        raise ValueError("--max-depth needs --target depth and a positive number of metres")
    options = {"size": size, "target": target, "max_depth": max_depth, "lut": label_lut(classes)}
    entries, files = all_frames(root)

    def items(folder: str, rows) -> Iterator:
        for city, stem in rows:
            yield decode_frame(root, folder, city, stem, options)

    plans = [
        SplitPlan(
            split,
            len(rows),
            *size,
            lambda f=SPLITS[split], r=rows: items(f, r),
            {"source_split": SPLITS[split], "cities": sorted({c for c, _ in rows})},
        )
        for split, rows in entries.items()
    ]
    attrs = {
        "num_classes": classes,
        "class_names": CLASS_NAMES[classes],
        "source_format": "cityscapes/raw",
        "depth_target": "metres" if target == "depth" else "disparity (pixels at stored width)",
        "max_depth": -1.0 if max_depth is None else float(max_depth),
    }
    stamp = {"source": "raw", "classes": classes, "target": target, "size": list(size)}
    return plans, attrs, fingerprint(files, {**stamp, "max_depth": max_depth})
