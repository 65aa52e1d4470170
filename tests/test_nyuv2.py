"""NYUv2 converters (labeled-mat, adashare, mtan) on miniature real-format sources."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from real_formats import (
    PLANE_NORMAL,
    nyu_scene,
    write_adashare,
    write_labeled_mat,
    write_meta,
    write_mtan,
)

from mtl_attack.data.convert.cli import main_nyuv2
from mtl_attack.data.nyuv2 import NYUv2
from mtl_attack.data.schema import DatasetFileError, read_attrs
from mtl_attack.data.transforms import PaperNormals

TRAIN, TEST = [3, 4, 5, 6], [1, 2]  # 1-based, as in splits.mat


@pytest.fixture(scope="module")
def mat_source(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nyu_mat")
    images, depths, labels, raw = nyu_scene(6)
    write_labeled_mat(tmp / "nyu_depth_v2_labeled.mat", images, depths, labels, raw)
    map_class, labels13 = write_meta(tmp, TRAIN, TEST)
    return tmp, (images, depths, labels, raw), map_class, labels13


def mat_args(src, out, *extra):
    return ["--source", "labeled-mat", "--mat", str(src / "nyu_depth_v2_labeled.mat"),
            "--splits", str(src / "splits.mat"), "--class-map", str(src / "classMapping40.mat"),
            "--out", str(out), "--quiet", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def mat_converted(mat_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "nyuv2"
    assert main_nyuv2(mat_args(mat_source[0], out)) is True
    return out


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1, 1)))


def test_labeled_mat_round_trip(mat_source, mat_converted):
    _, (images, depths, labels, raw), map_class, _ = mat_source
    attrs = read_attrs(mat_converted / "test.h5")
    assert attrs["num_classes"] == 40 and attrs["source_format"] == "nyuv2/labeled-mat"
    assert read_attrs(mat_converted / "train.h5")["num_images"] == len(TRAIN)
    with h5py.File(mat_converted / "test.h5", "r") as f:
        assert list(f.attrs["source_indices"]) == [i - 1 for i in TEST]
        for j, src in enumerate(i - 1 for i in TEST):
            np.testing.assert_array_equal(f["image"][j], images[src])  # HWC, not transposed
            np.testing.assert_array_equal(f["depth_zbuffer"][j], depths[src])  # metres
            seg = f["segment_semantic"][j]
            expected = np.where(labels[src] == 0, 255, map_class[labels[src].astype(int) - 1] - 1)
            np.testing.assert_array_equal(seg, expected)  # nyu40 - 1, unlabeled -> 255
            normal = f["normal"][j]
            valid = np.abs(normal).sum(-1) > 0
            assert not valid[raw[src] == 0].any()  # no sensor depth -> invalid normal
            assert valid.mean() > 0.8
            # the plane's normal, facing the camera, in x right / y down / z forward
            assert np.median(angle_deg(normal[valid], PLANE_NORMAL)) < 0.5


def test_labeled_mat_13_classes(mat_source, tmp_path):
    src, (_, _, labels, _), map_class, labels13 = mat_source
    out = tmp_path / "nyu13"
    main_nyuv2(mat_args(src, out, "--classes", "13", "--class13-map",
                        str(src / "class13Mapping.mat")))  # fmt: skip
    with h5py.File(out / "train.h5", "r") as f:
        assert f.attrs["num_classes"] == 13
        seg, lab = f["segment_semantic"][0], labels[TRAIN[0] - 1]
    expected = np.where(
        lab == 0, 255, labels13[map_class[lab.astype(int) - 1].astype(int) - 1] - 1
    )
    np.testing.assert_array_equal(seg, expected)


def test_dataset_class_applies_paper_preprocessing(mat_converted):
    data = NYUv2(str(mat_converted))
    data.prepare()
    train, test = data.split("train", train=True), data.split("test")
    assert (len(train), len(test)) == (len(TRAIN), len(TEST))
    item = test[0]
    assert item["image"].shape == (3, 321, 321) and item["image"].max() <= 1
    assert item["segment_semantic"].shape == (321, 321)
    assert item["normal"].shape == (3, 321, 321) and item["depth_zbuffer"].shape == (1, 321, 321)
    for _ in range(3):  # random scale can shrink below 321: padding is ignore/invalid
        t = train[0]
        assert t["image"].shape == (3, 321, 321)
        pad = t["image"].sum(0) == 0
        if pad.any():
            assert (t["segment_semantic"][pad] == 255).all()
            assert (t["depth_zbuffer"][0][pad] == 0).all()


def test_rerun_skips_unless_force(mat_source, mat_converted):
    before = (mat_converted / "train.h5").stat().st_mtime_ns
    assert main_nyuv2(mat_args(mat_source[0], mat_converted)) is False
    assert (mat_converted / "train.h5").stat().st_mtime_ns == before
    other = mat_args(mat_source[0], mat_converted, "--normal-radius", "2")  # other options
    with pytest.raises(FileExistsError, match="--force"):
        main_nyuv2(other)
    assert main_nyuv2([*other, "--force"]) is True


def test_labeled_mat_bad_inputs(mat_source, tmp_path):
    src = mat_source[0]
    missing = mat_args(src, tmp_path / "o")
    missing[3] = str(tmp_path / "nyu_depth_v2_labeled.mat")
    with pytest.raises(
        DatasetFileError, match=r"missing file .*nyu_depth_v2_labeled\.mat.*horatio"
    ):
        main_nyuv2(missing)
    no_splits = mat_args(src, tmp_path / "o")
    no_splits[5] = str(tmp_path / "splits.mat")
    with pytest.raises(DatasetFileError, match=r"splits\.mat.*ankurhanda/nyuv2-meta-data"):
        main_nyuv2(no_splits)
    images, depths, labels, raw = nyu_scene(2, 48, 64)
    bad = tmp_path / "bad.mat"
    with h5py.File(bad, "w") as f:  # forgot MATLAB's axis order: (N, H, W, 3)
        f["images"], f["depths"], f["labels"] = images, depths, labels
    args = mat_args(src, tmp_path / "o")
    args[3] = str(bad)
    with pytest.raises(
        DatasetFileError, match=r"bad\.mat: expected 'images' of shape \(N, 3, W, H\)"
    ):
        main_nyuv2(args)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_adashare_round_trip_and_interruption(tmp_path):
    root = tmp_path / "nyu_v2"
    images, seg, depths = write_adashare(root, 5, train=[0, 2, 3], test=[1, 4])
    out = tmp_path / "out"
    args = ["--source", "adashare", "--root", str(root), "--out", str(out), "--quiet"]
    assert main_nyuv2(args)
    with h5py.File(out / "test.h5", "r") as f:
        assert len(f["image"]) == 2
        np.testing.assert_array_equal(f["image"][1], images[4])
        np.testing.assert_array_equal(f["segment_semantic"][1], seg[4])  # 0..39, 255 kept
        np.testing.assert_array_equal(f["depth_zbuffer"][1], depths[4])
        normal = f["normal"][1]
    assert (normal[:40] == 0).all()  # (255, 255, 255) -> invalid
    assert angle_deg(normal[40:], PLANE_NORMAL).max() < 1.0  # R=x, G=z, B=-y decoded
    # a corrupt PNG halfway through a forced re-run: the old files stay, nothing partial
    stamp = read_attrs(out / "train.h5")["source_fingerprint"]
    (root / "img" / "0004.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DatasetFileError, match=r"0004\.png: cannot decode image PNG"):
        main_nyuv2([*args, "--force"])
    assert sorted(p.name for p in out.iterdir()) == ["test.h5", "train.h5"]
    assert read_attrs(out / "train.h5")["source_fingerprint"] == stamp
    fresh = tmp_path / "fresh"
    with pytest.raises(DatasetFileError):
        main_nyuv2(["--source", "adashare", "--root", str(root), "--out", str(fresh), "--quiet"])
    assert not list(fresh.iterdir())  # interrupted first conversion: no output at all


def test_adashare_wrong_dtype_names_file(tmp_path):
    root = tmp_path / "nyu_v2"
    write_adashare(root, 2, train=[0], test=[1])
    np.save(root / "depth" / "0001.npy", np.zeros((480, 640), np.int32))
    with pytest.raises(DatasetFileError, match=r"0001\.npy: expected depth in metres .* got"):
        main_nyuv2(["--source", "adashare", "--root", str(root), "--out", str(tmp_path / "o"),
                    "--quiet"])  # fmt: skip


def test_mtan_round_trip(tmp_path):
    root = tmp_path / "nyuv2"
    arrays = write_mtan(root, {"train": 3, "val": 2})
    out = tmp_path / "out"
    main_nyuv2(["--source", "mtan", "--classes", "13", "--root", str(root), "--out", str(out),
                "--quiet"])  # fmt: skip
    image, label, depth, normal = arrays[("val", 1)]
    with h5py.File(out / "test.h5", "r") as f:
        assert f["image"].shape == (2, 288, 384, 3) and f.attrs["num_classes"] == 13
        np.testing.assert_array_equal(f["image"][1], np.rint(image * 255).astype(np.uint8))
        np.testing.assert_array_equal(
            f["segment_semantic"][1], np.where(label < 0, 255, label).astype(np.uint8)
        )
        np.testing.assert_array_equal(f["depth_zbuffer"][1], depth[..., 0])
        np.testing.assert_allclose(f["normal"][1], normal, atol=1e-6)
    data = NYUv2(str(out), crop=64)
    data.prepare()
    assert len(data.split("train", train=True)) == 3


def test_missing_converted_file_names_the_command(tmp_path):
    with pytest.raises(DatasetFileError, match=r"train\.h5 does not exist.*prepare_nyuv2\.py"):
        NYUv2(str(tmp_path / "nowhere")).prepare()


def test_adashare_paper_normal_targets(tmp_path, mat_converted):
    """dataset.normal_target=paper: normalize(raw PNG values in B, G, R order), invalid only
    where all channels are 255, flipped without negating anything (datasets.md §3.2, §5)."""
    root, out = tmp_path / "nyu_v2", tmp_path / "out"
    write_adashare(root, 3, train=[0, 1], test=[2])
    png_path = root / "normal_mask" / "0002.png"
    png = np.array(Image.open(png_path))
    png[100, 100] = (127, 127, 127)  # a zero normal when decoded: invalid there, valid here
    png[100, 101] = (10, 200, 60)
    png[100, 102] = (0, 0, 255)
    Image.fromarray(png).save(png_path)
    train_png = root / "normal_mask" / "0000.png"
    asymmetric = np.array(Image.open(train_png))
    asymmetric[200:210, 10:30] = (10, 200, 60)  # so that a mirrored target differs
    Image.fromarray(asymmetric).save(train_png)
    main_nyuv2(["--source", "adashare", "--root", str(root), "--out", str(out), "--quiet"])
    assert read_attrs(out / "test.h5")["extras"] == ["normal_raw"]
    with h5py.File(out / "test.h5", "r") as f:
        np.testing.assert_array_equal(f["normal_raw"][0], png)  # stored as the PNG holds it

    size = dict(crop=[480, 640], scale=[1.0, 1.0])  # nearest resize to the same size: identity
    paper = NYUv2(str(out), normal_target="paper", **size)
    paper.prepare()
    target = paper.split("test")[0]["normal"].numpy()
    np.testing.assert_allclose(target[:, 100, 100], np.full(3, 3**-0.5), rtol=1e-6)
    bgr = np.array([60.0, 200.0, 10.0])
    np.testing.assert_allclose(target[:, 100, 101], bgr / np.linalg.norm(bgr), rtol=1e-6)
    np.testing.assert_allclose(target[:, 100, 102], [1.0, 0.0, 0.0], atol=1e-7)
    assert (target[:, :40] == 0).all()  # (255, 255, 255): invalid, the zero vector
    x, y, z = PLANE_NORMAL  # a decoded unit normal's paper target points along (1-y, 1+z, 1+x)
    expected = np.array([1 - y, 1 + z, 1 + x]) / np.linalg.norm([1 - y, 1 + z, 1 + x])
    cos = np.einsum("chw,c->hw", target[:, 40:90], expected)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1.0

    unit = NYUv2(str(out), **size)  # the default keeps the decoded unit normals
    unit.prepare()
    decoded = unit.split("test")[0]["normal"].numpy()
    assert (decoded[:, 100, 100] == 0).all() and abs(
        np.linalg.norm(decoded[:, 100, 101]) - 1
    ) < 1e-5

    train = paper.split("train", train=True)
    with h5py.File(out / "train.h5", "r") as f:
        raw = f["normal_raw"][0]
    plain = PaperNormals()(raw, {"normal": raw})[1]["normal"].transpose(2, 0, 1)
    torch.manual_seed(0)
    seen = set()
    for _ in range(12):  # scale 1, crop = image: only the random flip changes the target
        got = train[0]["normal"].numpy()
        flipped = np.array_equal(got, plain[:, :, ::-1])
        assert flipped or np.array_equal(got, plain)  # mirrored, no component negated
        seen.add(flipped)
    assert seen == {True, False}

    with pytest.raises(DatasetFileError, match="normal_target=paper needs the raw AdaShare"):
        NYUv2(str(mat_converted), normal_target="paper").prepare()
    NYUv2(str(mat_converted), tasks=["depth_zbuffer"], normal_target="paper").prepare()
    with pytest.raises(ValueError, match="dataset.normal_target must be 'unit' or 'paper'"):
        NYUv2(str(out), normal_target="raw")
