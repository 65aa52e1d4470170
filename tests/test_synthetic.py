"""The synthetic benchmark: deterministic, geometrically consistent, in the shared schema."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from mtl_attack.data.render import Camera, render_scene
from mtl_attack.data.schema import ALL_TASKS, IGNORE_INDEX, DatasetFileError, read_attrs
from mtl_attack.data.synthetic import SyntheticBenchmark, generate_split


def _arrays(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][...] for k in f}


def test_generation_is_deterministic_and_order_independent(tmp_path):
    a = generate_split(tmp_path / "a.h5", "train", 6, 32, 6, seed=3, progress=False)
    b = generate_split(tmp_path / "b.h5", "train", 6, 32, 6, seed=3, progress=False)
    c = generate_split(tmp_path / "c.h5", "train", 6, 32, 6, seed=4, progress=False)
    arrays_a, arrays_b = _arrays(a), _arrays(b)
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key])
    assert not np.array_equal(arrays_a["image"], _arrays(c)["image"])
    # image i depends only on (seed, split, i): a lone render reproduces image 4 of the file
    camera = Camera.for_size(32, 32)
    lone = render_scene(np.random.default_rng([3, 0, 4]), camera, 6)
    np.testing.assert_array_equal(lone["image"], arrays_a["image"][4])


def test_file_follows_schema(tmp_path):
    path = generate_split(tmp_path / "t.h5", "test", 8, 32, 7, seed=0, progress=False)
    attrs = read_attrs(path)
    assert attrs["tasks"] == list(ALL_TASKS)
    assert attrs["num_classes"] == 7 and len(attrs["class_names"]) == 7
    arrays = _arrays(path)
    assert arrays["image"].shape == (8, 32, 32, 3) and arrays["image"].dtype == np.uint8
    seg = arrays["segment_semantic"]
    assert set(np.unique(seg)) <= set(range(7)) | {IGNORE_INDEX}
    depth, normal = arrays["depth_zbuffer"], arrays["normal"]
    invalid = depth == 0
    assert (np.abs(normal[invalid]).sum(-1) == 0).all()  # no depth -> no normal
    np.testing.assert_allclose(np.linalg.norm(normal[~invalid], axis=-1), 1.0, atol=1e-5)
    assert 0 <= arrays["keypoints2d"].min() and arrays["keypoints2d"].max() <= 1
    assert 0 <= arrays["edge_texture"].min() and arrays["edge_texture"].max() <= 1


def _normals_from_depth(depth: np.ndarray, camera: Camera) -> np.ndarray:
    """Back-project the depth map and take the cross product of the neighbour differences."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w] + 0.5
    points = np.stack(
        [(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], -1
    )
    points = points * depth[..., None]
    du = points[1:-1, 2:] - points[1:-1, :-2]
    dv = points[2:, 1:-1] - points[:-2, 1:-1]
    n = np.cross(du, dv)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return np.where((n * points[1:-1, 1:-1]).sum(-1, keepdims=True) > 0, -n, n)  # face camera


@pytest.mark.parametrize("index", range(4))
def test_normals_agree_with_depth_on_planar_regions(index):
    camera = Camera.for_size(48, 48)
    s = render_scene(np.random.default_rng([0, 0, index]), camera, 6)
    seg, depth, normal = s["segment_semantic"], s["depth_zbuffer"].astype(np.float64), s["normal"]
    est = _normals_from_depth(depth, camera)
    # interior pixels of the room's planes: 3x3 neighbourhood on the same surface, valid depth,
    # and the same stored normal (so no edge between two walls of the same class)
    inner = np.ones_like(seg[1:-1, 1:-1], dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            nb = (slice(1 + dy, seg.shape[0] - 1 + dy), slice(1 + dx, seg.shape[1] - 1 + dx))
            inner &= (seg[nb] == seg[1:-1, 1:-1]) & (depth[nb] > 0)
            inner &= np.abs(normal[nb] - normal[1:-1, 1:-1]).sum(-1) < 1e-6
    inner &= seg[1:-1, 1:-1] <= 2  # floor, wall, ceiling
    assert inner.sum() > 200
    cos = (est[inner] * normal[1:-1, 1:-1][inner]).sum(-1)
    angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    assert np.percentile(angle, 99) < 1.0, angle.max()


def test_source_caches_and_reports_corrupt_file(tmp_path):
    source = SyntheticBenchmark(str(tmp_path), num_train=4, num_test=2, resolution=16)
    source.prepare(progress=False)
    train = source.path("train")
    mtime = train.stat().st_mtime_ns
    source.prepare(progress=False)
    assert train.stat().st_mtime_ns == mtime  # cached, not regenerated
    assert len(source.split("train")) == 4 and len(source.split("test")) == 2
    item = source.split("test")[0]
    assert (
        item["image"].shape == (3, 16, 16) and 0 <= item["image"].min() <= item["image"].max() <= 1
    )
    assert item["segment_semantic"].dtype.is_floating_point is False
    train.write_bytes(b"not an hdf5 file")
    with pytest.raises(DatasetFileError, match=r"corrupt.*delete .* to regenerate"):
        source.prepare(progress=False)


def test_missing_file_names_path_and_fix(tmp_path):
    with pytest.raises(DatasetFileError, match=r"missing\.h5 does not exist; run X"):
        read_attrs(tmp_path / "missing.h5", hint="run X")


def test_unknown_task_name_lists_choices(tmp_path):
    with pytest.raises(ValueError, match=r"unknown task 'depth'; choose from .*depth_zbuffer"):
        SyntheticBenchmark(str(tmp_path), tasks=["segment_semantic", "depth"])
