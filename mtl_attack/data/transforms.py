"""The paper's preprocessing on (image HWC uint8, targets dict of numpy arrays) pairs.

NYUv2 (DGBA repo ``data/nyuv2_dataloader_adashare.py``, datasets.md §3.2) and Taskonomy
(``data/taskonomy_dataloader_adashare.py``, §3.3) share one recipe:

* train: random scale s ~ U[0.5, 1.5) (image bilinear, labels nearest), horizontal flip with
  p = 0.5 that also negates the normal's x component, then pad to the crop size and take a
  random crop; padded label pixels carry each task's invalid marker (:data:`PAD_VALUES`);
* test: resize to the crop size (aspect ratio not kept), image bilinear, labels nearest.

Randomness comes from torch's generator, which PyTorch seeds per DataLoader worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from mtl_attack.data.schema import IGNORE_INDEX

#: The value a padded pixel gets, per task: each task's invalid marker. Keypoints and edges
#: (values in [-1, 1] after :class:`TaskonomyEncode`) use 255, as the reference code does.
L1_PAD = 255.0
PAD_VALUES = {
    "segment_semantic": IGNORE_INDEX,
    "depth_zbuffer": 0.0,
    "normal": 0.0,
    "keypoints2d": L1_PAD,
    "edge_texture": L1_PAD,
}

Pair = tuple[np.ndarray, dict[str, np.ndarray]]


def resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of (H, W, ...) like OpenCV's INTER_NEAREST: src = floor(dst *
    src_size / dst_size)."""
    rows = (np.arange(height) * (array.shape[0] / height)).astype(np.int64)
    cols = (np.arange(width) * (array.shape[1] / width)).astype(np.int64)
    return array[rows[:, None], cols[None, :]]


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an RGB uint8 image (H, W, 3)."""
    if image.shape[:2] == (height, width):
        return image
    return np.array(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def resize_pair(image: np.ndarray, targets: dict[str, np.ndarray], height: int, width: int):
    labels = {k: resize_nearest(v, height, width) for k, v in targets.items()}
    return resize_image(image, height, width), labels


def hflip(image: np.ndarray, targets: dict[str, np.ndarray], negate_normal_x: bool = True) -> Pair:
    """Mirror left-right; the normal's x component changes sign (camera x points right) unless
    ``negate_normal_x`` is off (the paper's code flips its raw normal targets unchanged)."""
    out = {k: v[:, ::-1] for k, v in targets.items()}
    if "normal" in out and negate_normal_x:
        out["normal"] = out["normal"] * np.array([-1.0, 1.0, 1.0], np.float32)
    return image[:, ::-1], out


def crop_size(crop: int | Sequence[int]) -> tuple[int, int]:
    """``crop`` as (height, width): one side for a square (NYUv2, Taskonomy) or [h, w]."""
    if isinstance(crop, int | np.integer):
        return int(crop), int(crop)
    height, width = (int(c) for c in crop)
    return height, width


def _pad_crop(array: np.ndarray, fill: float, top: int, left: int, size) -> np.ndarray:
    """Window (top, left, height x width) of ``array`` with ``size = (height, width)``;
    outside the array -> ``fill``. The image is padded after (bottom/right), as in the
    reference (pad to the crop size, then crop)."""
    height, width = size
    out = np.full((height, width, *array.shape[2:]), fill, dtype=array.dtype)
    h, w = array.shape[:2]
    src = array[max(top, 0) : min(top + height, h), max(left, 0) : min(left + width, w)]
    out[: src.shape[0], : src.shape[1]] = src
    return out


class ScaleCropFlip:
    """Training augmentation: random scale, horizontal flip, pad + random crop to ``crop``
    (one side for a square, or [height, width]). ``negate_normal_x``: see :func:`hflip`."""

    def __init__(
        self,
        crop: int | Sequence[int],
        scale: tuple[float, float] = (0.5, 1.5),
        flip: bool = True,
        negate_normal_x: bool = True,
    ):
        self.crop = crop_size(crop)
        self.scale = (float(scale[0]), float(scale[1]))
        self.flip = flip
        self.negate_normal_x = negate_normal_x

    def __call__(self, image: np.ndarray, targets: dict[str, np.ndarray]) -> Pair:
        lo, hi = self.scale
        s = lo + (hi - lo) * float(torch.rand(()))
        h = max(1, int(image.shape[0] * s + 0.5))
        w = max(1, int(image.shape[1] * s + 0.5))
        image, targets = resize_pair(image, targets, h, w)
        if self.flip and float(torch.rand(())) < 0.5:
            image, targets = hflip(image, targets, self.negate_normal_x)
        # pad to at least the crop size (bottom/right), then a uniform random window
        ch, cw = self.crop
        top = int(torch.randint(0, max(h, ch) - ch + 1, ()))
        left = int(torch.randint(0, max(w, cw) - cw + 1, ()))
        image = _pad_crop(image, 0, top, left, self.crop)
        out = {k: _pad_crop(v, PAD_VALUES[k], top, left, self.crop) for k, v in targets.items()}
        return image, out


class Resize:
    """Test-time resize to ``size`` (one side for a square, or [height, width]; bilinear image,
    nearest labels). A no-op when the stored images already have that size."""

    def __init__(self, size: int | Sequence[int]):
        self.size = crop_size(size)

    def __call__(self, image: np.ndarray, targets: dict[str, np.ndarray]) -> Pair:
        return resize_pair(image, targets, *self.size)


class TaskonomyEncode:
    """Schema values -> the training targets of the reference code (datasets.md §3.3).

    depth metres -> log(1 + 512 d) / log(2^16) in [0, 1] (0 stays invalid); keypoints (heat map
    in [0, 1]) -> clip to [0, 0.005] / 0.005 * 2 - 1; edges -> clip to [0, 0.08] / 0.08 * 2 - 1.
    """

    key_scale = 0.005
    edge_scale = 0.08

    def __call__(self, image: np.ndarray, targets: dict[str, np.ndarray]) -> Pair:
        out = dict(targets)
        if "depth_zbuffer" in out:
            depth = out["depth_zbuffer"].astype(np.float32)
            log_depth = np.log1p(depth * 512.0) / math.log(2.0**16)
            out["depth_zbuffer"] = np.where(depth > 0, log_depth, 0.0).astype(np.float32)
        for task, top in (("keypoints2d", self.key_scale), ("edge_texture", self.edge_scale)):
            if task in out:
                value = np.clip(out[task].astype(np.float32), 0.0, top) / top
                out[task] = value * 2.0 - 1.0
        return image, out


class PaperNormals:
    """The paper's NYUv2 normal targets from the raw AdaShare PNG values (datasets.md §3.2, §5).

    The reference code never decodes the PNG: it reads it with OpenCV (B, G, R order) and trains
    and scores against ``normalize(raw values)`` wherever some channel is below 255. ``normal``
    must hold the raw PNG values (R, G, B, uint8, the ``normal_raw`` dataset); it becomes that
    unit direction, float32, with the zero vector (invalid) where all channels are 255. For a
    decoded unit normal (x right, y down, z forward) the direction is that of (1 - y, 1 + z,
    1 + x), so (127, 127, 127), a zero normal in the decoded convention, is a valid target here.
    """

    def __call__(self, image: np.ndarray, targets: dict[str, np.ndarray]) -> Pair:
        if "normal" not in targets:
            return image, targets
        raw = targets["normal"]
        bgr = raw[..., ::-1].astype(np.float32)
        norm = np.sqrt((bgr * bgr).sum(-1, keepdims=True))
        unit = bgr / np.maximum(norm, 1e-12)  # F.normalize's eps
        invalid = (raw == 255).all(-1, keepdims=True)
        return image, {**targets, "normal": np.where(invalid, 0.0, unit).astype(np.float32)}


class Compose:
    def __init__(self, *steps):
        self.steps = steps

    def __call__(self, image: np.ndarray, targets: dict[str, np.ndarray]) -> Pair:
        for step in self.steps:
            image, targets = step(image, targets)
        return image, targets
