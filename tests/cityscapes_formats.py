"""Miniature Cityscapes sources written in exactly the released formats (docs/cityscapes.md).

Raw: ``{type}/{split}/{city}/{city}_{seq:06d}_{frame:06d}_{type}{ext}`` with 8-bit RGB
``leftImg8bit`` PNGs, 8-bit ``gtFine_labelIds`` PNGs (label ids 0..33, void and ignoreInEval ids
included), 16-bit ``disparity`` PNGs (p = 0 invalid, p = 1 zero disparity, else d = (p-1)/256)
and ``camera`` json (extrinsic/intrinsic blocks). MTAN: ``{train,val}/{image,label_2,label_7,
label_19,depth}/{i}.npy``. Only the image sizes and counts are small (the real release is
1024x2048; the MTAN one 128x256 or 256x512).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

#: per city: (baseline m, fx px) as in real camera files (aachen's is the published example)
CAMERAS = {"aachen": (0.209313, 2262.52), "bochum": (0.2, 2300.0), "frankfurt": (0.21, 2250.0)}
#: a disparity value placed at pixel (0, 0) of every frame: d = (2561 - 1) / 256 = 10 px
KNOWN_RAW = 2561


def camera_json(baseline: float, fx: float) -> dict:
    """The layout of a Cityscapes ``*_camera.json``."""
    return {
        "extrinsic": {
            "baseline": baseline,
            "pitch": 0.038,
            "roll": 0.0,
            "x": 1.7,
            "y": 0.1,
            "yaw": -0.0195,
            "z": 1.22,
        },
        "intrinsic": {"fx": fx, "fy": fx * 1.0012, "u0": 1096.98, "v0": 513.137},
    }


def frame_arrays(rng: np.random.Generator, h: int, w: int) -> dict[str, np.ndarray]:
    """Image (smooth, so PNGs stay small), label ids 0..33, 16-bit disparity with invalid
    (0) and zero-disparity (1) pixels."""
    v, u = np.mgrid[0:h, 0:w]
    base = np.stack([u * 255 // max(w - 1, 1), v * 255 // max(h - 1, 1), (u + v) % 256], -1)
    image = (base + rng.integers(0, 8, (h, w, 3))).clip(0, 255).astype(np.uint8)
    labels = rng.integers(0, 34, (h, w)).astype(np.uint8)
    disparity = rng.integers(2, 30000, (h, w)).astype(np.uint16)
    disparity[h // 2 :, : w // 4] = 0  # invalid measurement
    disparity[: h // 4, w // 2 :] = 1  # zero disparity (infinitely far)
    disparity[0, 0] = KNOWN_RAW
    return {"leftImg8bit": image, "gtFine": labels, "disparity": disparity}


def write_raw(
    root: Path, frames: dict[str, dict[str, int]], h: int = 64, w: int = 128, seed: int = 0
) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """``frames`` = {split: {city: count}} -> {(split, stem): arrays}, files under ``root``."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, cities in frames.items():
        for city, count in cities.items():
            for seq in range(count):
                stem = f"{city}_{seq:06d}_000019"
                arrays = frame_arrays(rng, h, w)
                for kind, suffix in (
                    ("leftImg8bit", "_leftImg8bit.png"),
                    ("gtFine", "_gtFine_labelIds.png"),
                    ("disparity", "_disparity.png"),
                ):
                    folder = root / kind / split / city
                    folder.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(arrays[kind]).save(folder / f"{stem}{suffix}")  # u16: I;16
                folder = root / "camera" / split / city
                folder.mkdir(parents=True, exist_ok=True)
                text = json.dumps(camera_json(*CAMERAS[city]), indent=4)
                (folder / f"{stem}_camera.json").write_text(text)
                written[(split, stem)] = arrays
    return written


def write_mtan(
    root: Path, counts: dict[str, int], h: int = 32, w: int = 64, seed: int = 0
) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    """{train,val}/{image,label_2,label_7,label_19,depth}/{i}.npy: image float in [0, 1],
    labels float with -1 = ignore, depth (H, W, 1) float inverse depth with 0 = invalid."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, count in counts.items():
        for i in range(count):
            arrays = {
                "image": (rng.integers(0, 256, (h, w, 3)) / 255.0).astype(np.float32),
                "label_2": rng.integers(-1, 2, (h, w)).astype(np.float32),
                "label_7": rng.integers(-1, 7, (h, w)).astype(np.float32),
                "label_19": rng.integers(-1, 19, (h, w)).astype(np.float32),
                "depth": rng.uniform(0.001, 0.49, (h, w, 1)).astype(np.float32),
            }
            arrays["depth"][: h // 4] = 0.0
            for name, array in arrays.items():
                (root / split / name).mkdir(parents=True, exist_ok=True)
                np.save(root / split / name / f"{i}.npy", array)
            written[(split, i)] = arrays
    return written
