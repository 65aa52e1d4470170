"""Cityscapes converters (raw release, MTAN .npy) on miniature sources in the released
formats: value round trips, re-runs, bad input (loading and runs: test_cityscapes_runs.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from cityscapes_formats import CAMERAS, KNOWN_RAW, write_mtan, write_raw
from PIL import Image

from mtl_attack.data.cityscapes import Cityscapes
from mtl_attack.data.convert.cli import main_cityscapes
from mtl_attack.data.schema import DatasetFileError, read_attrs
from mtl_attack.data.transforms import Resize, ScaleCropFlip

ROOT = Path(__file__).resolve().parents[1]
FRAMES = {"train": {"aachen": 2, "bochum": 1}, "val": {"frankfurt": 2}}
#: labels.py: label id -> train id for the 19 evaluated classes (others -> 255)
TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
            24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip
#: labels.py: category id - 1 (flat 0 .. vehicle 6) of the same 19 classes
CATEGORY = {7: 0, 8: 0, 11: 1, 12: 1, 13: 1, 17: 2, 19: 2, 20: 2, 21: 3, 22: 3, 23: 4,
            24: 5, 25: 5, 26: 6, 27: 6, 28: 6, 31: 6, 32: 6, 33: 6}  # fmt: skip


def expected_classes(label_ids: np.ndarray, table: dict[int, int]) -> np.ndarray:
    return np.vectorize(lambda i: table.get(int(i), 255))(label_ids).astype(np.uint8)


def raw_args(root, out, *extra):
    return ["--source", "raw", "--root", str(root), "--out", str(out), "--size", "32x64",
            "--quiet", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def raw_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    return root, write_raw(root, FRAMES)  # 64x128 frames


@pytest.fixture(scope="module")
def raw_converted(raw_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "cityscapes"
    assert main_cityscapes(raw_args(raw_source[0], out)) is True
    return out


def test_raw_round_trip_train_ids_ignore_and_metric_depth(raw_source, raw_converted):
    _, frames = raw_source
    assert read_attrs(raw_converted / "train.h5")["num_images"] == 3  # aachen 2 + bochum 1
    attrs = read_attrs(raw_converted / "test.h5")
    assert attrs["num_images"] == 2 and attrs["source_split"] == "val"
    assert attrs["num_classes"] == 19 and attrs["class_names"][13] == "car"
    assert attrs["depth_target"] == "metres" and attrs["tasks"] == [
        "segment_semantic",
        "depth_zbuffer",
    ]
    arrays = frames[("val", "frankfurt_000001_000019")]
    with h5py.File(raw_converted / "test.h5", "r") as f:
        assert f["image"].shape == (2, 32, 64, 3)
        seg, depth = f["segment_semantic"][1], f["depth_zbuffer"][1]
        image = f["image"][1]
    labels = arrays["gtFine"][::2, ::2]  # 64x128 -> 32x64 nearest
    np.testing.assert_array_equal(seg, expected_classes(labels, TRAIN_ID))
    assert (seg[np.isin(labels, [0, 9, 29])] == 255).all()  # unlabeled, parking, caravan
    baseline, fx = CAMERAS["frankfurt"]
    assert KNOWN_RAW == 2561 and depth[0, 0] == pytest.approx(baseline * fx / 10.0)  # 47.25 m
    raw = arrays["disparity"][::2, ::2].astype(float)
    valid = raw > 1
    np.testing.assert_allclose(depth[valid], baseline * fx * 256 / (raw[valid] - 1), rtol=1e-6)
    assert (depth[~valid] == 0).all() and (depth[16:, :16] == 0).all()  # p = 0 and p = 1
    expected = np.asarray(Image.fromarray(arrays["leftImg8bit"]).resize((64, 32), Image.BILINEAR))
    np.testing.assert_array_equal(image, expected)


def test_raw_categories_disparity_target_and_max_depth(raw_source, tmp_path):
    root, frames = raw_source
    out = tmp_path / "c7"
    assert main_cityscapes(raw_args(root, out, "--classes", "7", "--target", "disparity"))
    arrays = frames[("train", "bochum_000000_000019")]
    with h5py.File(out / "train.h5", "r") as f:
        assert list(f.attrs["class_names"]) == [
            "flat", "construction", "object", "nature", "sky", "human", "vehicle"
        ]  # fmt: skip
        seg, disparity = f["segment_semantic"][2], f["depth_zbuffer"][2]
    np.testing.assert_array_equal(seg, expected_classes(arrays["gtFine"][::2, ::2], CATEGORY))
    assert disparity[0, 0] == pytest.approx(10.0 * 64 / 128)  # pixels of the stored width
    far = tmp_path / "far"
    main_cityscapes(raw_args(root, far, "--max-depth", "50"))
    with h5py.File(far / "train.h5", "r") as f:
        depth = f["depth_zbuffer"][...]
    assert depth.max() <= 50 and (depth > 0).any()
    assert read_attrs(far / "train.h5")["max_depth"] == 50


def test_mtan_round_trip_and_libmtl_label_folder(tmp_path):
    root = tmp_path / "mtan"
    arrays = write_mtan(root, {"train": 3, "val": 2})
    out = tmp_path / "out19"
    args = ["--source", "mtan", "--root", str(root), "--quiet"]
    assert main_cityscapes([*args, "--out", str(out)])
    a = arrays[("val", 1)]
    with h5py.File(out / "test.h5", "r") as f:
        assert f["image"].shape == (2, 32, 64, 3) and f.attrs["num_classes"] == 19
        np.testing.assert_array_equal(f["image"][1], np.rint(a["image"] * 255).astype(np.uint8))
        label = a["label_19"]
        np.testing.assert_array_equal(
            f["segment_semantic"][1], np.where(label < 0, 255, label).astype(np.uint8)
        )
        np.testing.assert_array_equal(f["depth_zbuffer"][1], a["depth"][..., 0])  # as released
        assert f.attrs["depth_target"].startswith("mtan inverse depth")
    for split in ("train", "val"):  # LibMTL reads the 7-class labels from label/
        (root / split / "label_7").rename(root / split / "label")
    out7 = tmp_path / "out7"
    main_cityscapes([*args, "--classes", "7", "--out", str(out7)])
    with h5py.File(out7 / "train.h5", "r") as f:
        label = arrays[("train", 2)]["label_7"]
        np.testing.assert_array_equal(
            f["segment_semantic"][2], np.where(label < 0, 255, label).astype(np.uint8)
        )
    assert len(Cityscapes(str(out7), crop=(32, 64)).split("train")) == 3


def test_rerun_skips_unless_force(raw_source, raw_converted):
    before = (raw_converted / "train.h5").stat().st_mtime_ns
    assert main_cityscapes(raw_args(raw_source[0], raw_converted)) is False
    assert (raw_converted / "train.h5").stat().st_mtime_ns == before
    other = raw_args(raw_source[0], raw_converted, "--classes", "7")
    with pytest.raises(FileExistsError, match="--force"):
        main_cityscapes(other)
    assert read_attrs(raw_converted / "train.h5")["num_classes"] == 19
    assert main_cityscapes([*other, "--force"]) is True
    assert main_cityscapes([*raw_args(raw_source[0], raw_converted), "--force"]) is True


def nothing_in(folder: Path) -> bool:
    """No output file, no staging folder left behind."""
    return not folder.exists() or not list(folder.iterdir())


def copy_source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    write_raw(root, {"train": {"aachen": 1}, "val": {"frankfurt": 2}})
    return root


def test_missing_files_name_the_file_and_the_package(tmp_path):
    root = copy_source(tmp_path)
    disparity = root / "disparity/val/frankfurt/frankfurt_000001_000019_disparity.png"
    disparity.unlink()
    with pytest.raises(
        DatasetFileError,
        match=r"missing file .*frankfurt_000001_000019_disparity\.png: "
        r"disparity_trainvaltest\.zip from cityscapes-dataset\.com",
    ):
        main_cityscapes(raw_args(root, tmp_path / "o"))
    (root / "camera/train/aachen/aachen_000000_000019_camera.json").unlink()
    with pytest.raises(DatasetFileError, match=r"aachen_000000_000019_camera\.json: camera_train"):
        main_cityscapes(raw_args(root, tmp_path / "o"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        DatasetFileError, match=r"missing folder .*leftImg8bit/train: leftImg8bit_"
    ):
        main_cityscapes(raw_args(tmp_path / "empty", tmp_path / "o"))
    with pytest.raises(
        DatasetFileError, match=r"nowhere: the Cityscapes root: extract {leftImg8bit,gtFine"
    ):
        main_cityscapes(raw_args(tmp_path / "nowhere", tmp_path / "o"))
    assert nothing_in(tmp_path / "o")


def test_wrong_dtype_or_shape_names_file_expected_and_found(tmp_path):
    root = copy_source(tmp_path)
    stem = root / "disparity/val/frankfurt/frankfurt_000001_000019"
    Image.fromarray(np.zeros((64, 128), np.uint8)).save(f"{stem}_disparity.png")  # 8-bit
    with pytest.raises(
        DatasetFileError,
        match=r"frankfurt_000001_000019_disparity\.png: expected 16-bit disparity PNG in mode "
        r"\['I;16', 'I;16B', 'I'\], got L",
    ):
        main_cityscapes(raw_args(root, tmp_path / "o"))
    Image.fromarray(np.ones((64, 128), np.uint16)).save(f"{stem}_disparity.png")
    labels = root / "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelIds.png"
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(labels)  # wrong size
    with pytest.raises(
        DatasetFileError,
        match=r"labelIds\.png: expected labelIds map the size of the image of shape \(64x128\)"
        r".*got shape \(32, 64\)",
    ):
        main_cityscapes(raw_args(root, tmp_path / "o"))
    Image.fromarray(np.full((64, 128), 255, np.uint8)).save(labels)  # a trainIds file
    with pytest.raises(
        DatasetFileError, match=r"labelIds\.png: expected label ids 0\.\.33, found"
    ):
        main_cityscapes(raw_args(root, tmp_path / "o"))
    mtan = tmp_path / "mtan"
    write_mtan(mtan, {"train": 1, "val": 1})
    np.save(mtan / "val/depth/0.npy", np.zeros((32, 64, 1), np.int64))
    with pytest.raises(
        DatasetFileError,
        match=r"val/depth/0\.npy: expected inverse depth \(H, W, 1\) of shape \(32x64\) and "
        r"dtype kind 'f', got shape \(32, 64\) dtype int64",
    ):
        main_cityscapes(["--source", "mtan", "--root", str(mtan), "--out", str(tmp_path / "m"),
                         "--quiet"])  # fmt: skip
    assert nothing_in(tmp_path / "o") and nothing_in(tmp_path / "m")


def test_interrupted_conversion_leaves_nothing_partial(tmp_path):
    root = copy_source(tmp_path)
    out = tmp_path / "out"
    assert main_cityscapes(raw_args(root, out))
    stamp = read_attrs(out / "train.h5")["source_fingerprint"]
    image = root / "leftImg8bit/val/frankfurt/frankfurt_000001_000019_leftImg8bit.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nbroken")  # the last frame: train.h5 was already staged
    with pytest.raises(DatasetFileError, match=r"000019_leftImg8bit\.png: cannot decode"):
        main_cityscapes([*raw_args(root, out), "--force"])
    assert sorted(p.name for p in out.iterdir()) == ["test.h5", "train.h5"]
    assert read_attrs(out / "train.h5")["source_fingerprint"] == stamp
    fresh = tmp_path / "fresh"
    with pytest.raises(DatasetFileError):
        main_cityscapes(raw_args(root, fresh))
    assert nothing_in(fresh)


def test_option_errors_and_the_script_prints_one_line(tmp_path):
    with pytest.raises(ValueError, match="--max-depth needs --target depth"):
        main_cityscapes(raw_args(tmp_path, tmp_path / "o", "--target", "disparity",
                                 "--max-depth", "80"))  # fmt: skip
    with pytest.raises(ValueError, match="--size applies to --source raw"):
        main_cityscapes(["--source", "mtan", "--root", str(tmp_path), "--size", "128x256",
                         "--out", str(tmp_path / "o")])  # fmt: skip
    with pytest.raises(ValueError, match="--size must be HEIGHTxWIDTH"):
        main_cityscapes(raw_args(tmp_path, tmp_path / "o", "--size", "256"))
    cmd = [sys.executable, str(ROOT / "scripts" / "prepare_cityscapes.py"), "--source", "raw",
           "--root", str(tmp_path), "--out", str(tmp_path / "o")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: missing folder ") and "leftImg8bit" in proc.stderr


def test_missing_converted_file_names_the_command(tmp_path):
    with pytest.raises(DatasetFileError, match=r"train\.h5 does not exist.*prepare_cityscapes"):
        Cityscapes(str(tmp_path / "nowhere")).prepare()
    with pytest.raises(ValueError, match=r"dataset\.crop must be"):
        Cityscapes(str(tmp_path), crop=(8, 64))


@pytest.mark.slow  # writes 1024x2048 PNGs (~4 s)
def test_real_size_frames_to_the_libmtl_size(tmp_path):
    write_raw(tmp_path, {"train": {"aachen": 1}, "val": {"frankfurt": 1}}, 1024, 2048)
    out = tmp_path / "out"
    args = ["--source", "raw", "--root", str(tmp_path), "--size", "128x256", "--quiet"]
    main_cityscapes([*args, "--out", str(out)])
    main_cityscapes([*args, "--out", str(tmp_path / "disp"), "--target", "disparity"])
    with h5py.File(out / "test.h5", "r") as f:
        assert f["image"].shape == (1, 128, 256, 3)
        assert f["depth_zbuffer"][0, 0, 0] == pytest.approx(0.21 * 2250.0 / 10.0)
    with h5py.File(tmp_path / "disp" / "test.h5", "r") as f:
        assert f["depth_zbuffer"][0, 0, 0] == pytest.approx(10.0 * 256 / 2048)


def test_rectangular_crop_pads_around_the_centred_image_with_invalid_markers():
    image = np.full((20, 40, 3), 7, np.uint8)
    targets = {
        "segment_semantic": np.ones((20, 40), np.uint8),
        "depth_zbuffer": np.full((20, 40), 3.0, np.float32),
    }
    out_image, out = ScaleCropFlip((32, 64), scale=(1.0, 1.0), flip=False)(image, targets)
    assert out_image.shape == (32, 64, 3) and out["depth_zbuffer"].shape == (32, 64)
    inside = np.zeros((32, 64), bool)
    inside[6:26, 12:52] = True  # (32 - 20) // 2 = 6 rows and (64 - 40) // 2 = 12 columns before
    np.testing.assert_array_equal(out_image[inside], image.reshape(-1, 3))
    assert (out_image[~inside] == 0).all()
    seg, depth = out["segment_semantic"], out["depth_zbuffer"]
    assert (seg[inside] == 1).all() and (seg[~inside] == 255).all()
    assert (depth[inside] == 3).all() and (depth[~inside] == 0).all()
    resized_image, resized = Resize((10, 20))(image, targets)
    assert resized_image.shape == (10, 20, 3) and resized["segment_semantic"].shape == (10, 20)
