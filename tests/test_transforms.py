"""The paper's preprocessing: flip rule, ignore padding, nearest labels, test resize."""

from __future__ import annotations

import numpy as np
import torch

from mtl_attack.data.transforms import (
    Resize,
    ScaleCropFlip,
    TaskonomyEncode,
    hflip,
    resize_nearest,
)


def sample(h=6, w=8):
    rng = np.random.default_rng(0)
    image = rng.integers(1, 256, (h, w, 3), dtype=np.uint8)
    normal = rng.normal(size=(h, w, 3)).astype(np.float32)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    targets = {
        "segment_semantic": rng.integers(0, 5, (h, w)).astype(np.uint8),
        "normal": normal,
        "depth_zbuffer": rng.uniform(1, 5, (h, w)).astype(np.float32),
    }
    return image, targets


def test_hflip_mirrors_and_negates_normal_x():
    image, targets = sample()
    fimage, f = hflip(image, targets)
    np.testing.assert_array_equal(fimage, image[:, ::-1])
    np.testing.assert_array_equal(f["segment_semantic"], targets["segment_semantic"][:, ::-1])
    # a surface facing right (x > 0) faces left in the mirror; y and z unchanged
    np.testing.assert_array_equal(f["normal"][:, 0, 0], -targets["normal"][:, -1, 0])
    np.testing.assert_array_equal(f["normal"][:, 0, 1:], targets["normal"][:, -1, 1:])


def test_train_transform_pads_with_invalid_markers_and_flips_half_the_time():
    image, targets = sample()
    transform = ScaleCropFlip(crop=12, scale=(1.0, 1.0))  # no scaling: crop > image -> pad only
    torch.manual_seed(0)
    flipped = 0
    for _ in range(40):
        out_image, out = transform(image, targets)
        assert out_image.shape == (12, 12, 3)
        inside = np.zeros((12, 12), bool)
        inside[3:9, 2:10] = True  # the 6 x 8 image centred in the 12 x 12 canvas
        assert (out["segment_semantic"][~inside] == 255).all()
        assert (out["depth_zbuffer"][~inside] == 0).all() and (out["normal"][~inside] == 0).all()
        assert (out_image[~inside] == 0).all()
        ref_image, ref = image, targets
        if not np.array_equal(out_image[3:9, 2:10], image):
            ref_image, ref = hflip(image, targets)
            flipped += 1
        np.testing.assert_array_equal(out_image[3:9, 2:10], ref_image)
        np.testing.assert_array_equal(out["normal"][3:9, 2:10], ref["normal"])
    assert 10 < flipped < 30


def test_scale_and_test_resize_keep_labels_nearest():
    image, targets = sample(30, 40)
    torch.manual_seed(1)
    for _ in range(5):
        _, out = ScaleCropFlip(crop=16)(image, targets)
        assert set(np.unique(out["segment_semantic"])) <= set(range(5)) | {255}
    resized_image, resized = Resize(21)(image, targets)
    assert resized_image.shape == (21, 21, 3) and resized["normal"].shape == (21, 21, 3)
    np.testing.assert_array_equal(
        resized["segment_semantic"], resize_nearest(targets["segment_semantic"], 21, 21)
    )
    assert set(np.unique(resized["depth_zbuffer"])) <= set(np.unique(targets["depth_zbuffer"]))


def test_taskonomy_encode():
    targets = {
        "depth_zbuffer": np.array([[0.0, 1.0, 127.0]], np.float32),
        "keypoints2d": np.array([[0.0, 0.0025, 0.5]], np.float32),
        "edge_texture": np.array([[0.0, 0.04, 0.9]], np.float32),
    }
    _, out = TaskonomyEncode()(np.zeros((1, 3, 3), np.uint8), targets)
    expected = [0.0, np.log(513) / np.log(65536), np.log(1 + 127 * 512) / np.log(65536)]
    np.testing.assert_allclose(out["depth_zbuffer"][0], expected, rtol=1e-6)
    np.testing.assert_allclose(out["keypoints2d"][0], [-1.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(out["edge_texture"][0], [-1.0, 0.0, 1.0], atol=1e-6)
