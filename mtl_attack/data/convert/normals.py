"""Surface normals: computed from depth, and the PNG encodings of the distributed releases.

All functions return normals in the schema's frame: x right, y down, z forward (OpenCV camera),
unit length, facing the camera, the zero vector where invalid.
"""

from __future__ import annotations

import numpy as np

#: NYU toolbox RGB intrinsics at 640x480 (fx, fy, cx, cy), datasets.md §1.1.
NYU_INTRINSICS = (518.85790117450188, 519.46961112127485, 325.58244941119034, 253.73616633400465)


def nyu_intrinsics(height: int, width: int) -> tuple[float, float, float, float]:
    """The NYU intrinsics rescaled to an image of ``height`` x ``width`` (identity at 480x640)."""
    fx, fy, cx, cy = NYU_INTRINSICS
    sx, sy = width / 640.0, height / 480.0
    return fx * sx, fy * sy, cx * sx, cy * sy


def _box_sum(a: np.ndarray, r: int) -> np.ndarray:
    """Sum of ``a`` over the (2r+1)^2 window around each pixel (zero outside), via an integral
    image. Shape: (H, W, ...) -> (H, W, ...)."""
    h, w = a.shape[:2]
    pad = np.zeros((h + 2 * r + 1, w + 2 * r + 1, *a.shape[2:]), np.float64)
    pad[r + 1 : r + 1 + h, r + 1 : r + 1 + w] = a
    s = pad.cumsum(0).cumsum(1)
    k = 2 * r + 1
    return s[k:, k:] - s[:-k, k:] - s[k:, :-k] + s[:-k, :-k]


def normals_from_depth(
    depth: np.ndarray,
    intrinsics: tuple[float, float, float, float],
    valid: np.ndarray | None = None,
    radius: int = 3,
    min_fraction: float = 0.5,
) -> np.ndarray:
    """Least-squares plane normals over a square window, after S. Gupta's rgbdutils
    ``computeNormalsSquareSupport`` (Gupta et al., ECCV 2014): back-project every pixel with the
    pinhole ``intrinsics`` (fx, fy, cx, cy), take the covariance of the valid 3-D points in the
    (2 radius + 1)^2 window, and use its smallest eigenvector, oriented toward the camera
    (n . P < 0). A pixel is invalid when its own depth is invalid or fewer than
    ``min_fraction`` of its window is valid, or when the window leaves the image.

    Shape: depth (H, W) metres, valid (H, W) bool -> normals (H, W, 3) float32.
    """
    h, w = depth.shape
    fx, fy, cx, cy = intrinsics
    ok = depth > 0 if valid is None else valid & (depth > 0)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = np.where(ok, depth, 0.0).astype(np.float64)
    points = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], -1)  # (H, W, 3)
    weight = ok.astype(np.float64)
    count = _box_sum(weight, radius)
    mean = _box_sum(points, radius) / np.maximum(count, 1)[..., None]
    outer = points[..., :, None] * points[..., None, :]  # (H, W, 3, 3)
    second = _box_sum(outer.reshape(h, w, 9), radius).reshape(h, w, 3, 3)
    good = ok & (count >= min_fraction * (2 * radius + 1) ** 2)
    good[:radius], good[h - radius :], good[:, :radius], good[:, w - radius :] = (False,) * 4
    cov = second[good] / count[good][:, None, None] - mean[good][:, :, None] * mean[good][:, None]
    _, vectors = np.linalg.eigh(cov)
    normal = vectors[:, :, 0]  # eigenvalues ascending: the plane's normal
    facing = (normal * points[good]).sum(-1) > 0
    normal[facing] *= -1.0
    out = np.zeros((h, w, 3), np.float32)
    out[good] = normal
    return out


def unit_or_invalid(n: np.ndarray, invalid: np.ndarray, min_norm: float = 0.5) -> np.ndarray:
    """Normalize (H, W, 3) vectors; vectors shorter than ``min_norm`` (e.g. a (127,127,127)
    PNG pixel, which decodes to ~0) or flagged ``invalid`` become the zero vector."""
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    bad = invalid[..., None] | (norm < min_norm)
    return np.where(bad, 0.0, n / np.maximum(norm, 1e-12)).astype(np.float32)


def decode_adashare_normals(rgb: np.ndarray) -> np.ndarray:
    """AdaShare/DGBA-repo NYU ``normal_mask`` PNG (as PIL reads it, RGB) -> schema normals.

    Encoding (datasets.md §3.1, verified against depth): (255, 255, 255) = invalid; else
    n' = v / 127.5 - 1 with R' = x, G' = z, B' = -y.
    """
    d = rgb.astype(np.float32) / 127.5 - 1.0
    n = np.stack([d[..., 0], -d[..., 2], d[..., 1]], -1)
    return unit_or_invalid(n, (rgb == 255).all(-1))


def encode_adashare_normals(normal: np.ndarray) -> np.ndarray:
    """Inverse of :func:`decode_adashare_normals` (zero vector -> (255, 255, 255))."""
    x, y, z = normal[..., 0], normal[..., 1], normal[..., 2]
    rgb = np.stack([x, z, -y], -1)
    out = np.clip(np.rint((rgb + 1.0) * 127.5), 0, 255).astype(np.uint8)
    out[~np.abs(normal).sum(-1).astype(bool)] = 255
    return out


def decode_taskonomy_normals(rgb: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Taskonomy ``normal`` PNG -> schema normals: n = 2 v / 255 - 1 with (R, G, B) = (x right,
    y down, z forward) (datasets.md §4, inferred from Omnidata samples); ``invalid`` is the
    depth mask, as Taskonomy masks normals by depth."""
    n = rgb.astype(np.float32) * (2.0 / 255.0) - 1.0
    return unit_or_invalid(n, invalid)


def encode_taskonomy_normals(normal: np.ndarray) -> np.ndarray:
    """Inverse of :func:`decode_taskonomy_normals` up to rounding."""
    return np.clip(np.rint((normal + 1.0) * 127.5), 0, 255).astype(np.uint8)
