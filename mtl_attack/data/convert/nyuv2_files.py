"""NYUv2 from the two preprocessed releases: AdaShare (DGBA repo) and MTAN/LibMTL (.npy)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mtl_attack.data.convert.common import (
    SplitPlan,
    check_array,
    fingerprint,
    read_png,
    require_dir,
    require_file,
)
from mtl_attack.data.convert.normals import decode_adashare_normals, unit_or_invalid
from mtl_attack.data.convert.nyu_meta import NYU13_NAMES, NYU40_NAMES, load_class_map13
from mtl_attack.data.schema import IGNORE_INDEX, DatasetFileError

ADASHARE_ORIGIN = (
    "the AdaShare NYUv2 release (nyu_v2 archive linked from github.com/sunxm2357/AdaShare's "
    "README: nyu_v2_3task.json, img/, seg/, normal_mask/, depth/)"
)
MTAN_ORIGIN = (
    "the MTAN/LibMTL preprocessed NYUv2 (nyuv2.zip linked from github.com/lorenmt/mtan and "
    "LibMTL examples/nyu: {train,val}/{image,label,depth,normal}/{i}.npy)"
)


def _load_npy(path: Path, origin: str) -> np.ndarray:
    require_file(path, origin)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DatasetFileError(f"{path}: not a readable .npy array ({err}); {origin}") from err


def adashare_plans(
    root: str | Path, classes: int = 40, class13_map: str | Path | None = None
) -> tuple[list[SplitPlan], dict, str]:
    """AdaShare layout -> plans for ``train``/``test`` (the json's order).

    Files (datasets.md §3.1): ``img`` RGB PNG, ``seg`` L PNG (nyu40 - 1, 255 = unlabeled),
    ``normal_mask`` RGB PNG (decoded by :func:`decode_adashare_normals`; its raw values are
    kept too, as the extra dataset ``normal_raw``), ``depth`` float32 .npy in metres.
    """
    root = require_dir(root, ADASHARE_ORIGIN)
    index_file = require_file(root / "nyu_v2_3task.json", ADASHARE_ORIGIN)
    try:
        index = json.loads(index_file.read_text())
    except json.JSONDecodeError as err:
        raise DatasetFileError(f"{index_file}: not valid JSON ({err})") from err
    lut, names = np.arange(256).astype(np.uint8), NYU40_NAMES
    if classes == 13:
        if class13_map is None:
            raise ValueError("--classes 13 needs --class13-map class13Mapping.mat")
        lut, names = load_class_map13(Path(class13_map)), NYU13_NAMES
    elif classes != 40:
        raise ValueError(f"--classes must be 40 or 13, got {classes}")
    entries = {}
    for split in ("train", "test"):
        rows = index.get(split) if isinstance(index, dict) else None
        if not rows or any(not isinstance(r, list) or len(r) != 4 for r in rows):
            raise DatasetFileError(
                f"{index_file}: expected key {split!r} with a list of "
                "[img, seg, normal, depth] path lists"
            )
        entries[split] = [[root / p for p in row] for row in rows]
    first = read_png(entries["train"][0][0], ("RGB",), "image", ADASHARE_ORIGIN)
    h, w = first.shape[:2]

    def items(rows) -> Iterator:
        for img_p, seg_p, normal_p, depth_p in rows:
            image = read_png(img_p, ("RGB",), "image", ADASHARE_ORIGIN)
            check_array(img_p, image, (h, w, 3), "u", "RGB image")
            seg = check_array(
                seg_p, read_png(seg_p, ("L",), "seg", ADASHARE_ORIGIN), (h, w), "u", "label map"
            )
            bad = (seg >= 40) & (seg != IGNORE_INDEX)
            if bad.any():
                raise DatasetFileError(
                    f"{seg_p}: labels must be 0..39 or 255, found {seg[bad][0]}"
                )
            rgb = read_png(normal_p, ("RGB",), "normal", ADASHARE_ORIGIN)
            check_array(normal_p, rgb, (h, w, 3), "u", "normal PNG")
            depth = check_array(
                depth_p, _load_npy(depth_p, ADASHARE_ORIGIN), (h, w), "f", "depth in metres"
            )
            targets = {
                "segment_semantic": lut[seg],
                "normal": decode_adashare_normals(rgb),
                "normal_raw": rgb,  # the paper's normal targets (dataset.normal_target=paper)
                "depth_zbuffer": np.where(np.isfinite(depth), depth, 0).astype(np.float32),
            }
            yield image, targets

    plans = [SplitPlan(s, len(r), h, w, lambda r=r: items(r)) for s, r in entries.items()]
    attrs = {
        "num_classes": classes,
        "class_names": list(names),
        "source_format": "nyuv2/adashare",
        "normals_method": "adashare-png",
        "extras": ["normal_raw"],
    }
    files = [index_file, *(p for rows in entries.values() for row in rows for p in row)]
    return (
        plans,
        attrs,
        fingerprint(files, {"source": "adashare", "classes": classes, "extras": ["normal_raw"]}),
    )


def _mtan_count(folder: Path) -> int:
    require_dir(folder, MTAN_ORIGIN)
    count = len(list(folder.glob("*.npy")))
    if count == 0:
        raise DatasetFileError(f"{folder}: no .npy files; expected {MTAN_ORIGIN}")
    return count


def _mtan_image(path: Path, h: int, w: int) -> np.ndarray:
    """MTAN images are (H, W, 3), float in [0, 1] (third-party claim) or 0..255, or uint8."""
    image = check_array(path, _load_npy(path, MTAN_ORIGIN), (h, w, 3), "uf", "RGB image")
    if image.dtype.kind == "f":
        image = image * 255.0 if float(image.max()) <= 1.0 else image
        image = np.clip(np.rint(image), 0, 255)
    return image.astype(np.uint8)


def mtan_plans(root: str | Path) -> tuple[list[SplitPlan], dict, str]:
    """MTAN layout -> plans ``train`` (from train/) and ``test`` (from val/), 13 classes.

    ``label`` -1..12 (-1 -> 255), ``depth`` (H, W, 1) metres with 0 invalid, ``normal``
    (H, W, 3) unit vectors with 0 invalid, stored as distributed: channel 0 is horizontal
    (MTAN negates it on flip); the signs of the other axes are undocumented (datasets.md §2.1).
    """
    root = require_dir(root, MTAN_ORIGIN)
    counts = {s: _mtan_count(root / d / "image") for s, d in (("train", "train"), ("test", "val"))}
    h, w = _load_npy(root / "train" / "image" / "0.npy", MTAN_ORIGIN).shape[:2]

    def items(folder: Path, count: int) -> Iterator:
        for i in range(count):
            path = {k: folder / k / f"{i}.npy" for k in ("image", "label", "depth", "normal")}
            label = check_array(
                path["label"],
                _load_npy(path["label"], MTAN_ORIGIN),
                (h, w),
                "fi",
                "label map (-1..12)",
            )
            if label.min() < -1 or label.max() > 12:
                raise DatasetFileError(f"{path['label']}: labels must lie in -1..12")
            depth = _load_npy(path["depth"], MTAN_ORIGIN)
            depth = check_array(
                path["depth"],
                depth.reshape(depth.shape[:2]) if depth.ndim == 3 else depth,
                (h, w),
                "f",
                "depth (H, W, 1) in metres",
            )
            normal = check_array(
                path["normal"],
                _load_npy(path["normal"], MTAN_ORIGIN),
                (h, w, 3),
                "f",
                "normal (H, W, 3)",
            )
            seg = np.where(label < 0, IGNORE_INDEX, label).astype(np.uint8)
            targets = {
                "segment_semantic": seg,
                "normal": unit_or_invalid(normal, ~np.abs(normal).sum(-1).astype(bool)),
                "depth_zbuffer": np.clip(depth, 0, None).astype(np.float32),
            }
            yield _mtan_image(path["image"], h, w), targets

    plans = [
        SplitPlan(s, c, h, w, lambda d=d, c=c: items(root / d, c))
        for (s, c), d in zip(counts.items(), ("train", "val"))
    ]
    attrs = {
        "num_classes": 13,
        "class_names": list(NYU13_NAMES),
        "source_format": "nyuv2/mtan",
        "normals_method": "mtan-npy (as distributed; channel 0 = x)",
    }
    files = sorted(root.glob("*/*/*.npy"))
    return plans, attrs, fingerprint(files, {"source": "mtan"})
