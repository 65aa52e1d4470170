"""Raw Tiny-Taskonomy converter, dataset source and its metric set."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from real_formats import write_taskonomy

from mtl_attack.data.convert.cli import main_taskonomy
from mtl_attack.data.convert.taskonomy_raw import PRIOR_FACTOR
from mtl_attack.data.schema import DatasetFileError, read_attrs
from mtl_attack.data.taskonomy import Taskonomy
from mtl_attack.tasks import tasks_for

SPLITS = {"train": ["hanson", "merom"], "val": ["darden"], "test": ["mcdade"]}


def convert_args(root, out, *extra):
    lists = [f"--{k}={','.join(v)}" for k, v in SPLITS.items()]
    return ["--root", str(root), *lists, "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("taskonomy")
    views = write_taskonomy(root, [b for v in SPLITS.values() for b in v], views=2)
    prior = root / "semseg_prior_factor.npy"
    np.save(prior, np.arange(1.0, 18.0))
    out = root / "out"
    assert main_taskonomy(convert_args(root, out, "--prior-factor", str(prior)))
    return root, out, views


def test_values_round_trip(converted):
    _, out, views = converted
    raw = views[("mcdade", "point_1_view_0")]
    with h5py.File(out / "test.h5", "r") as f:
        assert f["image"].shape == (2, 256, 256, 3) and list(f.attrs["buildings"]) == ["mcdade"]
        np.testing.assert_array_equal(f["image"][1], raw["rgb"][::2, ::2])  # 512 -> 256 nearest
        seg = raw["segment_semantic"][::2, ::2]
        np.testing.assert_array_equal(f["segment_semantic"][1], np.maximum(seg, 1) - 1)
        depth = raw["depth_zbuffer"][::2, ::2]
        got = f["depth_zbuffer"][1]
        np.testing.assert_array_equal(got[depth < 64500], depth[depth < 64500] / 512.0)  # metres
        assert (got[:, :8] == 0).all()  # 65535 -> invalid
        np.testing.assert_allclose(f["keypoints2d"][1], raw["keypoints2d"][::2, ::2] / 65536)
        normal = f["normal"][1]
        assert (normal[:, :8] == 0).all()  # masked by the depth mask, as Taskonomy does
        np.testing.assert_allclose(normal[:, 8:], np.broadcast_to([0.6, 0, -0.8], (256, 248, 3)),
                                   atol=0.01)  # fmt: skip
    attrs = read_attrs(out / "train.h5")
    assert attrs["num_images"] == 4 and attrs["num_classes"] == 17
    np.testing.assert_array_equal(attrs["class_weights"], np.arange(1.0, 18.0))
    assert read_attrs(out / "val.h5")["num_images"] == 2


def test_dataset_targets_and_class_weights_reach_the_loss(converted):
    _, out, views = converted
    data = Taskonomy(str(out))
    data.prepare()
    tasks = tasks_for(data)
    assert tasks["segment_semantic"].class_weights.tolist() == list(np.arange(1.0, 18.0))
    assert list(tasks["normal"].higher_is_better) == ["cosine_similarity"]
    assert list(tasks["depth_zbuffer"].higher_is_better) == ["abs_err"]
    item = data.split("test")[1]
    assert item["image"].shape == (3, 224, 224)
    depth = item["depth_zbuffer"][0]
    raw = torch.from_numpy(views[("mcdade", "point_1_view_0")]["depth_zbuffer"].astype(float))
    expect = torch.log1p(raw[0, 2 * (223 * 256 // 224)]) / math.log(2**16)  # nearest 256->224
    assert depth[0, 223].item() == pytest.approx(expect.item(), rel=1e-5)
    assert 0 <= depth.min() and depth.max() <= 1
    key = item["keypoints2d"]
    assert key.min() >= -1 and key.max() <= 1  # clip [0, 0.005] -> [-1, 1]
    for _ in range(3):  # train: padding of keypoints/edges is 255 and ignored by the L1 loss
        t = data.split("train", train=True)[0]
        pad = t["image"].sum(0) == 0
        if pad.any():
            assert (t["keypoints2d"][0][pad] == 255).all() and (
                t["edge_texture"][0][pad] == 255
            ).all()
    assert tasks["keypoints2d"].valid(torch.tensor([255.0, 0.5])).tolist() == [False, True]


def test_rerun_skips_and_tiny_split_names_missing_building(converted, tmp_path):
    root, out, _ = converted
    prior = str(root / "semseg_prior_factor.npy")
    assert main_taskonomy(convert_args(root, out, "--prior-factor", prior)) is False
    with pytest.raises(
        DatasetFileError, match=r"missing folder .*klickitat: building .klickitat. of split train"
    ):
        main_taskonomy(["--root", str(root), "--split", "tiny", "--out", str(tmp_path / "t")])
    assert not (tmp_path / "t").exists() or not list((tmp_path / "t").iterdir())


def test_missing_task_file_names_it(tmp_path):
    write_taskonomy(tmp_path, ["hanson", "merom", "darden", "mcdade"], views=1)
    target = tmp_path / "mcdade" / "segment_semantic" / "point_0_view_0_domain_segmentsemantic.png"
    target.unlink()
    with pytest.raises(DatasetFileError, match="missing file .*domain_segmentsemantic.png"):
        main_taskonomy(convert_args(tmp_path, tmp_path / "o"))
    (tmp_path / "mcdade" / "segment_semantic" / target.name).write_bytes(b"")
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(DatasetFileError, match=r"x\.npy: expected 17 class weights"):
        main_taskonomy(convert_args(tmp_path, tmp_path / "o", "--prior-factor",
                                    str(tmp_path / "x.npy")))  # fmt: skip


def test_builtin_prior_factor_is_the_papers():
    assert len(PRIOR_FACTOR) == 17 and PRIOR_FACTOR[0] == pytest.approx(0.5424)
