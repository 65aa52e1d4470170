"""Procedural indoor scenes, ray-cast with numpy (vectorized over the pixels of an image).

A pinhole camera (OpenCV frame: x right, y down, z forward) stands in a box-shaped room with a
floor, a ceiling and four walls, slightly yawed and pitched. Objects of several classes rest on
the floor: boxes, spheres and vertical cylinders; an optional "clutter" box is labelled ignore.
Every pixel gets its surface's class, z-buffer depth and analytic normal, so the normals agree
with the depth geometry exactly. RGB is reflectance (per-class albedo and texture pattern) times
Lambertian shading from the normals, with depth fall-off and sensor noise, so every task can be
inferred from RGB and the tasks are related.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtl_attack.data.schema import IGNORE_INDEX

STRUCTURE_CLASSES = ("floor", "wall", "ceiling")
OBJECT_SHAPES = ("box", "sphere", "cylinder")
_SHAPE_NAMES = {"box": "cabinet", "sphere": "ball", "cylinder": "pillar"}


def class_names(num_classes: int) -> list[str]:
    """Three structural classes, then object classes cycling through box, sphere, cylinder."""
    if num_classes < 4:
        raise ValueError(
            f"dataset.num_classes must be >= 4 (3 room surfaces + objects), got {num_classes}"
        )
    names = list(STRUCTURE_CLASSES)
    for k in range(num_classes - 3):
        shape = OBJECT_SHAPES[k % 3]
        names.append(f"{_SHAPE_NAMES[shape]}{'' if k < 3 else k // 3 + 1}")
    return names


def _palette(num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed per-class albedo (C, 3) and texture frequency (C,), well separated in hue."""
    hues = (np.arange(num_classes) * 0.61803) % 1.0
    sat = np.where(np.arange(num_classes) < 3, 0.25, 0.65)
    val = np.where(np.arange(num_classes) < 3, 0.85, 0.9)
    rgb = _hsv_to_rgb(hues, sat, val)
    freq = 2.0 + 3.0 * ((np.arange(num_classes) * 0.37) % 1.0)
    return rgb, freq


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h[:, None] * 6.0) % 6.0
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


@dataclass
class Camera:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def for_size(cls, height: int, width: int) -> Camera:
        f = 0.9 * width
        return cls(width, height, f, f, width / 2.0, height / 2.0)

    def rays(self) -> np.ndarray:
        """Camera-frame ray per pixel centre with z = 1, shape (H*W, 3)."""
        v, u = np.mgrid[0 : self.height, 0 : self.width].astype(np.float64)
        x = (u + 0.5 - self.cx) / self.fx
        y = (v + 0.5 - self.cy) / self.fy
        return np.stack([x, y, np.ones_like(x)], -1).reshape(-1, 3)


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    """world_from_camera rotation: pitch about x, then yaw about y."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return ry @ rx


def _hit_planes(d: np.ndarray, room: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First hit of rays from the origin with the room's six planes (the room is convex)."""
    n = d.shape[0]
    t = np.full(n, np.inf)
    normal = np.zeros((n, 3))
    cls = np.zeros(n, dtype=np.int64)
    planes = [  # (axis, coordinate, outward side sign, inward normal, class)
        (1, room["floor"], 1, (0, -1, 0), 0),
        (1, -room["ceiling"], -1, (0, 1, 0), 2),
        (0, -room["left"], -1, (1, 0, 0), 1),
        (0, room["right"], 1, (-1, 0, 0), 1),
        (2, room["back"], 1, (0, 0, -1), 1),
        (2, -room["front"], -1, (0, 0, 1), 1),
    ]
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, coord, side, nrm, c in planes:
            ti = np.where(d[:, axis] * side > 0, coord / d[:, axis], np.inf)
            closer = ti < t
            t = np.where(closer, ti, t)
            normal[closer] = nrm
            cls[closer] = c
    return t, normal, cls


def _hit_box(d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
        t1, t2 = lo * inv, hi * inv
    tnear, tfar = np.minimum(t1, t2), np.maximum(t1, t2)
    t_enter = tnear.max(1)
    hit = (t_enter <= tfar.min(1)) & (t_enter > 0)
    axis = tnear.argmax(1)
    normal = np.zeros_like(d)
    normal[np.arange(len(d)), axis] = -np.sign(d[np.arange(len(d)), axis])
    return np.where(hit, t_enter, np.inf), normal


def _hit_sphere(d: np.ndarray, c: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray]:
    a = (d * d).sum(1)
    b = -2.0 * d @ c
    disc = b * b - 4.0 * a * (c @ c - r * r)
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / (2.0 * a)
    t = np.where((disc > 0) & (t > 0), t, np.inf)
    normal = (np.where(np.isfinite(t), t, 0)[:, None] * d - c) / r
    return t, normal


def _hit_cylinder(d, cx, cz, r, y_top, y_bottom) -> tuple[np.ndarray, np.ndarray]:
    """Vertical cylinder (axis along y, y down), side and top cap."""
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = -2.0 * (d[:, 0] * cx + d[:, 2] * cz)
    disc = b * b - 4.0 * a * (cx * cx + cz * cz - r * r)
    with np.errstate(invalid="ignore", divide="ignore"):
        ts = (-b - np.sqrt(disc)) / (2.0 * a)
        ys = ts * d[:, 1]
        t_side = np.where((disc > 0) & (ts > 0) & (ys >= y_top) & (ys <= y_bottom), ts, np.inf)
        tc = np.where(d[:, 1] < 0, y_top / d[:, 1], np.inf)
    px, pz = tc * d[:, 0] - cx, tc * d[:, 2] - cz
    t_cap = np.where((tc > 0) & (px * px + pz * pz <= r * r), tc, np.inf)
    side = t_side <= t_cap
    t = np.where(side, t_side, t_cap)
    p = np.where(np.isfinite(t), t, 0)[:, None] * d
    normal = np.stack([(p[:, 0] - cx) / r, np.zeros(len(d)), (p[:, 2] - cz) / r], 1)
    normal[~side] = (0.0, -1.0, 0.0)
    return t, normal


def _sample_scene(rng: np.random.Generator, num_classes: int) -> dict:
    room = {
        "floor": rng.uniform(1.2, 1.6),
        "ceiling": rng.uniform(1.1, 1.6),
        "left": rng.uniform(1.6, 3.0),
        "right": rng.uniform(1.6, 3.0),
        "back": rng.uniform(4.0, 7.0),
        "front": 1.0,
    }
    objects = []
    for _ in range(int(rng.integers(2, 6))):
        cls = int(rng.integers(3, num_classes))
        objects.append(_sample_object(rng, room, cls, OBJECT_SHAPES[(cls - 3) % 3]))
    if rng.random() < 0.5:
        objects.append(_sample_object(rng, room, IGNORE_INDEX, "box", scale=0.5))
    return {
        "room": room,
        "objects": objects,
        "yaw": rng.uniform(-0.35, 0.35),
        "pitch": rng.uniform(-0.2, 0.15),
        "light": np.array([rng.uniform(-0.6, 0.6), -1.0, rng.uniform(-0.8, 0.2)]),
        "albedo_jitter": rng.uniform(0.9, 1.1, size=3),
    }


def _sample_object(rng, room, cls, shape, scale=1.0) -> dict:
    x = rng.uniform(-room["left"] + 0.6, room["right"] - 0.6)
    z = rng.uniform(1.8, room["back"] - 0.6)
    floor = room["floor"]
    if shape == "box":
        half = rng.uniform(0.15, 0.45, size=3) * scale
        height = rng.uniform(0.3, 1.3) * scale
        lo = np.array([x - half[0], floor - height, z - half[2]])
        hi = np.array([x + half[0], floor, z + half[2]])
        return {"cls": cls, "shape": shape, "lo": lo, "hi": hi}
    if shape == "sphere":
        r = rng.uniform(0.2, 0.5)
        return {"cls": cls, "shape": shape, "c": np.array([x, floor - r, z]), "r": r}
    r, height = rng.uniform(0.12, 0.35), rng.uniform(0.4, 1.5)
    return {
        "cls": cls,
        "shape": shape,
        "cx": x,
        "cz": z,
        "r": r,
        "top": floor - height,
        "bottom": floor,
    }


def render_scene(rng: np.random.Generator, camera: Camera, num_classes: int) -> dict:
    """Render one random scene. Returns numpy arrays for the image and every task."""
    scene = _sample_scene(rng, num_classes)
    rot = _rotation(scene["yaw"], scene["pitch"])
    d_cam = camera.rays()
    d = d_cam @ rot.T  # world-frame rays, (P, 3)
    t, normal, cls = _hit_planes(d, scene["room"])
    for obj in scene["objects"]:
        if obj["shape"] == "box":
            ti, ni = _hit_box(d, obj["lo"], obj["hi"])
        elif obj["shape"] == "sphere":
            ti, ni = _hit_sphere(d, obj["c"], obj["r"])
        else:
            ti, ni = _hit_cylinder(d, obj["cx"], obj["cz"], obj["r"], obj["top"], obj["bottom"])
        closer = ti < t
        t = np.where(closer, ti, t)
        normal[closer] = ni[closer]
        cls[closer] = obj["cls"]
    world = t[:, None] * d
    h, w = camera.height, camera.width
    depth = t.copy()  # d_cam has z = 1, so the ray parameter is the z-buffer depth
    normal_cam = normal @ rot  # rot is orthonormal: camera = rot.T @ world
    image, reflect = _shade(scene, world, normal, cls, depth, num_classes, rng)
    seg = cls.reshape(h, w).astype(np.uint8)
    depth = depth.reshape(h, w)
    normal_cam = normal_cam.reshape(h, w, 3)
    edges = _edges(reflect.reshape(h, w), depth)
    keypoints = _keypoints(scene, rot, camera, depth)
    _drop_depth(rng, depth, normal_cam)
    return {
        "image": image.reshape(h, w, 3),
        "segment_semantic": seg,
        "depth_zbuffer": depth.astype(np.float32),
        "normal": normal_cam.astype(np.float32),
        "keypoints2d": keypoints.astype(np.float32),
        "edge_texture": edges.astype(np.float32),
    }


def _shade(scene, world, normal, cls, depth, num_classes, rng):
    albedo, freq = _palette(num_classes)
    ignore = cls == IGNORE_INDEX
    safe = np.where(ignore, 0, cls)
    base = albedo[safe] * scene["albedo_jitter"]
    base[ignore] = rng.uniform(0.2, 0.9, size=3)
    f = freq[safe]
    x, y, z = world[:, 0], world[:, 1], world[:, 2]
    checker = ((np.floor(f * x / 3) + np.floor(f * z / 3) + np.floor(f * y / 3)) % 2) * 2 - 1
    stripes = np.sign(np.sin(f * 2.0 * (x + y + z)))
    pattern = np.where(safe % 2 == 0, checker, stripes)
    reflect = base * (1.0 + 0.18 * pattern)[:, None]
    light = scene["light"] / np.linalg.norm(scene["light"])
    lambert = np.clip(normal @ light, 0.0, None)
    shade = (0.35 + 0.65 * lambert) / (1.0 + 0.06 * depth)
    rgb = reflect * shade[:, None] + rng.normal(0.0, 0.015, size=reflect.shape)
    image = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return image, reflect.mean(1)


def _edges(reflect: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Texture edges (reflectance gradient) plus occlusion boundaries (relative depth jump)."""
    gy, gx = np.gradient(reflect)
    texture = np.hypot(gx, gy) * 4.0
    dy, dx = np.gradient(np.log(depth))
    occlusion = (np.hypot(dx, dy) > 0.08).astype(np.float64)
    edges = np.maximum(texture, occlusion)
    padded = np.pad(edges, 1, mode="edge")
    blurred = sum(
        padded[1 + i : 1 + i + edges.shape[0], 1 + j : 1 + j + edges.shape[1]] * wgt
        for i, j, wgt in _BLUR
    )
    return np.clip(blurred, 0.0, 1.0)


_BLUR = [(i, j, (2 - abs(i)) * (2 - abs(j)) / 16.0) for i in (-1, 0, 1) for j in (-1, 0, 1)]


def _corners(scene: dict) -> np.ndarray:
    room = scene["room"]
    pts = [
        (sx, sy, room["back"])
        for sx in (-room["left"], room["right"])
        for sy in (room["floor"], -room["ceiling"])
    ]
    for obj in scene["objects"]:
        if obj["shape"] == "box":
            lo, hi = obj["lo"], obj["hi"]
            pts += [
                (a, b, c) for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])
            ]
    return np.array(pts, dtype=np.float64)


def _keypoints(scene: dict, rot: np.ndarray, camera: Camera, depth: np.ndarray) -> np.ndarray:
    """Gaussian heat map of the visible projected 3D corners of the room and of boxes."""
    p = _corners(scene) @ rot  # camera frame, (K, 3)
    z = p[:, 2]
    front = z > 0.1
    u = camera.fx * p[front, 0] / z[front] + camera.cx
    v = camera.fy * p[front, 1] / z[front] + camera.cy
    z = z[front]
    h, w = depth.shape
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v, z = u[inside], v[inside], z[inside]
    visible = z <= depth[v.astype(int), u.astype(int)] * 1.03 + 0.02
    u, v = u[visible], v[visible]
    sigma = max(1.0, w / 64.0)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    if len(u) == 0:
        return np.zeros((h, w))
    d2 = (xx[..., None] - u) ** 2 + (yy[..., None] - v) ** 2
    return np.exp(-d2 / (2 * sigma**2)).max(-1)


def _drop_depth(rng: np.random.Generator, depth: np.ndarray, normal: np.ndarray) -> None:
    """Sensor-like holes: elliptic regions with no depth (and so no normal), in place."""
    h, w = depth.shape
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(0, 3))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.03, 0.09) * h, rng.uniform(0.03, 0.09) * w
        hole = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        depth[hole] = 0.0
        normal[hole] = 0.0
