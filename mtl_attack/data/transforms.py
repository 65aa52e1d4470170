"""The paper's preprocessing on (image HWC uint8, targets dict of numpy arrays) pairs.

NYUv2 (DGBA repo ``data/nyuv2_dataloader_adashare.py``, datasets.md §3.2) and Taskonomy
(``data/taskonomy_dataloader_adashare.py``, §3.3) share one recipe:

* train: random scale s ~ U[0.5, 1.5) to int(s H) x int(s W) (image bilinear, labels
  nearest), horizontal flip with p = 0.5 that also negates the normal's x component, then pad
  to the crop size with the image centred and take a random crop; padded label pixels carry
  each task's invalid marker (:data:`PAD_VALUES`), padded image pixels are 0;
* test: resize to the crop size (aspect ratio not kept), image bilinear, labels nearest.

Resizes follow OpenCV (the reference's ``cv2.resize``): bilinear without antialiasing
(:func:`resize_linear`), nearest as ``floor(x / (dst_size / src_size))`` (:func:`resize_nearest`).

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
    """Nearest-neighbour resize of (H, W, ...) as OpenCV's INTER_NEAREST: src = floor(dst *
    (1 / (dst_size / src_size))), in double precision exactly as OpenCV computes it (the
    reciprocal of the scale puts some exact integers just below, e.g. 327 of 654 -> 319 of
    640, not 320), clamped to the last pixel."""

    def taps(dst: int, src: int) -> np.ndarray:
        step = 1.0 / (dst / src)
        return np.minimum(np.floor(np.arange(dst) * step).astype(np.int64), src - 1)

    rows, cols = taps(height, array.shape[0]), taps(width, array.shape[1])
    return array[rows[:, None], cols[None, :]]


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased bilinear resize of an RGB uint8 image (H, W, 3) (PIL): for converters that
    shrink sources several times over, where a plain bilinear resize would alias."""
    if image.shape[:2] == (height, width):
        return image
    return np.array(Image.fromarray(image).resize((width, height), Image.BILINEAR))


RESIZE_ONE = 2048  # OpenCV's INTER_RESIZE_COEF_SCALE: 11-bit fixed-point weights


def _linear_taps(dst: int, src: int) -> tuple[np.ndarray, ...]:
    """OpenCV's INTER_LINEAR taps along one axis: source x = (d + 0.5) src/dst - 0.5 in float32,
    clamped to the border, weights in 11-bit fixed point. Returns (i0, i1, w0, w1)."""
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5).astype(np.float32)
    i0 = np.floor(f).astype(np.int64)
    f -= i0.astype(np.float32)
    f[i0 < 0] = 0.0
    i0 = np.maximum(i0, 0)
    f[i0 >= src - 1] = 0.0
    i0 = np.minimum(i0, src - 1)
    w0 = np.rint((np.float32(1.0) - f) * RESIZE_ONE).astype(np.int32)
    w1 = np.rint(f * RESIZE_ONE).astype(np.int32)
    return i0, np.minimum(i0 + 1, src - 1), w0, w1


def resize_linear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a uint8 image (H, W, C) as OpenCV's ``cv2.resize`` (INTER_LINEAR, no
    antialiasing), which the reference code uses for its images (datasets.md §3.2, §3.3).

    Integer arithmetic of OpenCV's vectorized 8-bit path: 11-bit weights, the horizontal sums
    shifted right by 4, each vertical product by 16, then (a + b + 2) >> 2. Checked against
    OpenCV 5.0 on random images: identical for downscaling (e.g. NYUv2's 480x640 -> 321x321),
    within one level on < 0.1 % of pixels for upscaling.
    """
    if image.shape[:2] == (height, width):
        return image
    x0, x1, a0, a1 = _linear_taps(width, image.shape[1])
    y0, y1, b0, b1 = _linear_taps(height, image.shape[0])
    src = image.astype(np.int32)
    col = (slice(None), *([None] * (image.ndim - 2)))  # weights broadcast over channels
    row = (slice(None), None, *([None] * (image.ndim - 2)))
    # the horizontal pass once per source row, then the two rows of each output row
    rows = (np.take(src, x0, axis=1) * a0[col] + np.take(src, x1, axis=1) * a1[col]) >> 4
    top = (np.take(rows, y0, axis=0) * b0[row]) >> 16
    top += (np.take(rows, y1, axis=0) * b1[row]) >> 16
    top += 2
    top >>= 2
    return np.clip(top, 0, 255).astype(np.uint8)


def resize_pair(image: np.ndarray, targets: dict[str, np.ndarray], height: int, width: int):
    """The reference's resize: image bilinear as OpenCV, labels nearest as OpenCV."""
    labels = {k: resize_nearest(v, height, width) for k, v in targets.items()}
    return resize_linear(image, height, width), labels


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
    """Window (top, left, height x width) of ``array`` with ``size = (height, width)``; ``top``
    and ``left`` may be negative, and window positions outside the array get ``fill``."""
    height, width = size
    out = np.full((height, width, *array.shape[2:]), fill, dtype=array.dtype)
    h, w = array.shape[:2]
    r0, r1 = max(top, 0), min(top + height, h)
    c0, c1 = max(left, 0), min(left + width, w)
    if r1 > r0 and c1 > c0:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = array[r0:r1, c0:c1]
    return out


def _window_start(size: int, crop: int) -> int:
    """Where the random crop window starts, relative to the image, as the reference draws it:
    the image is centred in a canvas padded to at least ``crop`` (offset (pad - size) // 2),
    then the window starts uniformly in [0, pad - crop] on that canvas."""
    pad = max(size, crop)
    return int(torch.randint(0, pad - crop + 1, ())) - (pad - size) // 2


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
        h = max(1, int(image.shape[0] * s))  # truncated, as the reference's int(h * scale)
        w = max(1, int(image.shape[1] * s))
        image, targets = resize_pair(image, targets, h, w)
        if self.flip and float(torch.rand(())) < 0.5:
            image, targets = hflip(image, targets, self.negate_normal_x)
        # centred padding to at least the crop size, then a uniform random window
        top, left = _window_start(h, self.crop[0]), _window_start(w, self.crop[1])
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
