"""Miniature NYUv2 / Taskonomy sources written in exactly the distributed formats.

Same dataset names, axis orders, dtypes, encodings and invalid markers as the real files
(datasets.md); only the image counts are small. Sizes are the real ones: the labeled .mat and
the AdaShare tree are 640x480, the MTAN tree 288x384, raw Taskonomy 512x512.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from PIL import Image

from mtl_attack.data.convert.normals import (
    encode_adashare_normals,
    encode_taskonomy_normals,
    nyu_intrinsics,
)

#: the plane every NYU test scene shows: unit normal facing the camera, distance D metres
PLANE_NORMAL = np.array([0.3, -0.2, -1.0]) / np.linalg.norm([0.3, -0.2, -1.0])
PLANE_D = 2.5


def plane_depth(h: int, w: int) -> np.ndarray:
    """Depth (metres) of the plane n.P = -D seen through the (rescaled) NYU camera."""
    fx, fy, cx, cy = nyu_intrinsics(h, w)
    v, u = np.mgrid[0:h, 0:w]
    ray = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones((h, w))], -1)
    return (-PLANE_D / (ray @ PLANE_NORMAL)).astype(np.float32)


def nyu_scene(n: int, h: int = 480, w: int = 640, seed: int = 0):
    """images (N, H, W, 3) uint8, depths (N, H, W) float32, labels (N, H, W) uint16 in 0..894,
    rawDepths with a missing (0) block."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    depths = np.stack([plane_depth(h, w) * (1 + 0.1 * i) for i in range(n)])
    labels = rng.integers(0, 895, (n, h, w)).astype(np.uint16)
    raw = depths.copy()
    raw[:, : h // 4, : w // 4] = 0.0
    return images, depths, labels, raw


def write_labeled_mat(path: Path, images, depths, labels, raw) -> Path:
    """MATLAB v7.3 layout: HDF5 with a 512-byte userblock and axes reversed."""
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("images", data=images.transpose(0, 3, 2, 1))  # (N, 3, W, H)
        f.create_dataset("depths", data=depths.transpose(0, 2, 1))  # (N, W, H)
        f.create_dataset("rawDepths", data=raw.transpose(0, 2, 1))
        f.create_dataset("labels", data=labels.transpose(0, 2, 1))
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .")
    return path


def write_meta(folder: Path, train: list[int], test: list[int], seed: int = 0):
    """splits.mat (1-based, column vectors), classMapping40.mat, class13Mapping.mat (v5)."""
    rng = np.random.default_rng(seed)
    map_class = rng.integers(1, 41, (1, 894)).astype(np.uint8)
    labels13 = rng.integers(1, 14, (1, 40)).astype(np.uint8)
    splits = {
        "trainNdxs": np.array(train, np.uint16)[:, None],
        "testNdxs": np.array(test, np.uint16)[:, None],
    }
    scipy.io.savemat(folder / "splits.mat", splits)
    scipy.io.savemat(folder / "classMapping40.mat", {"mapClass": map_class})
    scipy.io.savemat(
        folder / "class13Mapping.mat",
        {"classMapping13": {"labels13": labels13, "classNames": np.array(["a"] * 13, object)}},
    )
    return map_class[0], labels13[0]


def write_adashare(root: Path, n: int, train: list[int], test: list[int], seed: int = 0):
    """img/seg/normal_mask PNGs + depth .npy (0-based XXXX names) + nyu_v2_3task.json."""
    rng = np.random.default_rng(seed)
    images, depths, _, _ = nyu_scene(n, seed=seed)
    seg = rng.integers(0, 40, depths.shape).astype(np.uint8)
    seg[:, :5] = 255
    normal = np.broadcast_to(PLANE_NORMAL, (*depths.shape[1:], 3)).astype(np.float32).copy()
    normal[:40] = 0.0  # the invalid frame
    for sub in ("img", "seg", "normal_mask", "depth"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(images[i]).save(root / "img" / f"{i:04d}.png")
        Image.fromarray(seg[i]).save(root / "seg" / f"{i:04d}.png")
        Image.fromarray(encode_adashare_normals(normal)).save(
            root / "normal_mask" / f"{i:04d}.png"
        )
        np.save(root / "depth" / f"{i:04d}.npy", depths[i])

    def row(i: int) -> list[str]:
        kinds = (("img", "png"), ("seg", "png"), ("normal_mask", "png"), ("depth", "npy"))
        return [f"{d}/{i:04d}.{e}" for d, e in kinds]

    index = {"train": [row(i) for i in train], "test": [row(i) for i in test]}
    (root / "nyu_v2_3task.json").write_text(json.dumps(index))
    return images, seg, depths


def write_mtan(root: Path, counts: dict[str, int], seed: int = 0):
    """{train,val}/{image,label,depth,normal}/{i}.npy at 288x384 (image float in [0, 1])."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, count in counts.items():
        for sub in ("image", "label", "depth", "normal"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = rng.integers(0, 256, (288, 384, 3)) / 255.0
            label = rng.integers(-1, 13, (288, 384)).astype(np.float64)
            depth = rng.uniform(0.5, 8.0, (288, 384, 1)).astype(np.float32)
            depth[:10] = 0.0
            normal = np.zeros((288, 384, 3), np.float32)
            normal[10:] = PLANE_NORMAL
            for sub, arr in zip(
                ("image", "label", "depth", "normal"), (image, label, depth, normal)
            ):
                np.save(root / split / sub / f"{i}.npy", arr)
            out[(split, i)] = (image, label, depth, normal)
    return out


def write_taskonomy_view(bdir: Path, stem: str, rng: np.random.Generator, size: int = 512):
    """One raw Taskonomy view: 8-bit rgb/seg/normal, 16-bit depth/keypoints/edges."""
    seg = rng.integers(0, 18, (size, size)).astype(np.uint8)
    depth = rng.integers(0, 64500, (size, size)).astype(np.uint16)
    depth[:, :16] = 65535  # missing
    normal = np.zeros((size, size, 3))
    normal[...] = [0.6, 0.0, -0.8]  # x right, z toward the camera
    arrays = {
        "rgb": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "segment_semantic": seg,
        "normal": encode_taskonomy_normals(normal),
        "depth_zbuffer": depth,
        "keypoints2d": rng.integers(0, 2000, (size, size)).astype(np.uint16),
        "edge_texture": rng.integers(0, 65535, (size, size)).astype(np.uint16),
    }
    domain = {"segment_semantic": "segmentsemantic"}
    for task, arr in arrays.items():
        (bdir / task).mkdir(parents=True, exist_ok=True)
        path = bdir / task / f"{stem}_domain_{domain.get(task, task)}.png"
        Image.fromarray(arr).save(path)  # uint16 arrays save as 16-bit I;16 PNGs
    return arrays


def write_taskonomy(root: Path, buildings: list[str], views: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {
        (b, f"point_{p}_view_0"): write_taskonomy_view(root / b, f"point_{p}_view_0", rng)
        for b in buildings
        for p in range(views)
    }
