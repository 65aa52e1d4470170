"""``dataset=cityscapes`` through Hydra: loading, metric conventions, one training step and one
attack run on converted miniature sources, and the ``+experiment=paper_cityscapes`` overlay."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from cityscapes_formats import write_mtan, write_raw
from conftest import CONF
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

from mtl_attack.data.cityscapes import Cityscapes
from mtl_attack.data.convert.cli import main_cityscapes
from mtl_attack.runner import run
from mtl_attack.runner.build import build_model
from mtl_attack.tasks import tasks_for

FRAMES = {"train": {"aachen": 2, "bochum": 2}, "val": {"frankfurt": 2}}


def compose_cityscapes(tmp, root, *extra: str, hydra_cfg: bool = False):
    overrides = [
        "dataset=cityscapes",
        f"dataset.root={root}",
        "dataset.crop=[32,64]",
        "logger=none",
        "progress=false",
        f"paths.output_dir={tmp / 'outputs'}",
        f"paths.data_dir={tmp / 'data'}",
        f"paths.run_dir={tmp / 'run'}",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=hydra_cfg)
    if not hydra_cfg:
        with open_dict(cfg):
            cfg.hydra = None
    return cfg


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    write_raw(root / "src", FRAMES)  # 64x128 frames
    out = root / "cityscapes"
    main_cityscapes(["--source", "raw", "--root", str(root / "src"), "--out", str(out),
                     "--size", "32x64", "--quiet"])  # fmt: skip
    return out


def test_dataset_loads_through_hydra_with_both_metric_conventions(converted, tmp_path):
    data = instantiate(compose_cityscapes(tmp_path, converted).dataset)
    assert isinstance(data, Cityscapes)
    data.prepare()
    train, test = data.split("train", train=True), data.split("test")
    assert (len(train), len(test)) == (4, 2)  # Cityscapes train / val frames
    item = test[1]
    assert item["image"].shape == (3, 32, 64) and item["depth_zbuffer"].shape == (1, 32, 64)
    with h5py.File(converted / "test.h5", "r") as f:  # test at the stored size: unchanged
        np.testing.assert_array_equal(item["segment_semantic"].numpy(), f["segment_semantic"][1])
        np.testing.assert_array_equal(item["depth_zbuffer"][0].numpy(), f["depth_zbuffer"][1])
    for _ in range(3):  # a random scale below 1 pads: ignore / invalid depth
        t = train[0]
        assert t["image"].shape == (3, 32, 64)
        pad = t["image"].sum(0) == 0
        assert (t["segment_semantic"][pad] == 255).all()
        assert (t["depth_zbuffer"][0][pad] == 0).all()
    tasks = tasks_for(data)
    assert tasks["segment_semantic"].channels == 19
    assert list(tasks["segment_semantic"].higher_is_better) == ["miou", "pixel_acc"]
    depth_metrics = ["abs_err", "rel_err", "delta_1", "delta_2", "delta_3"]  # DGBA's set
    assert list(tasks["depth_zbuffer"].higher_is_better) == depth_metrics
    data.metrics = "libmtl"  # LibMTL's examples/cityscapes: abs_err and rel_err only
    assert list(tasks_for(data)["depth_zbuffer"].higher_is_better) == ["abs_err", "rel_err"]


def train_and_attack(tmp, root, *extra: str) -> dict:
    cfg = compose_cityscapes(
        tmp, root, "attack=total", "attack/step=fgsm", "attack.eps=[4]", "train.epochs=1",
        "train.batch_size=2", "eval.batch_size=2", *extra,
    )  # fmt: skip
    return run(cfg)


def test_train_and_attack_on_raw_conversion(converted, tmp_path):
    results = train_and_attack(tmp_path, converted)
    clean = results["clean"]
    assert {t: set(m) - {"loss"} for t, m in clean.items()} == {
        "segment_semantic": {"miou", "pixel_acc"},
        "depth_zbuffer": {"abs_err", "rel_err", "delta_1", "delta_2", "delta_3"},
    }
    assert all(math.isfinite(v) for m in clean.values() for v in m.values())
    (entry,) = results["attacks"]
    assert entry["eps"] == 4 and math.isfinite(entry["avg_degradation"])


def test_train_and_attack_on_mtan_files_with_libmtl_metrics(tmp_path):
    write_mtan(tmp_path / "src", {"train": 4, "val": 2})
    out = tmp_path / "cityscapes"
    main_cityscapes(["--source", "mtan", "--classes", "7", "--root", str(tmp_path / "src"),
                     "--out", str(out), "--quiet"])  # fmt: skip
    results = train_and_attack(
        tmp_path, out, "dataset.metrics=libmtl", "dataset.scale=[1,1]", "dataset.flip=false",
        "sharing=independent",
    )  # fmt: skip
    clean = results["clean"]
    assert set(clean["depth_zbuffer"]) - {"loss"} == {"abs_err", "rel_err"}
    assert all(math.isfinite(v) for m in clean.values() for v in m.values())
    assert math.isfinite(results["attacks"][0]["avg_degradation"])


def test_paper_cityscapes_overlay_composes(tmp_path):
    cfg = compose_cityscapes(tmp_path, "/data/cs", "+experiment=paper_cityscapes", hydra_cfg=True)
    assert cfg.dataset._target_ == "mtl_attack.data.cityscapes.Cityscapes"
    assert cfg.backbone.trunk._target_ == "mtl_attack.models.backbones.resnet34.DeepLabResNet34"
    assert cfg.sharing.index == 0 and cfg.train.scheduler.every == 4000
    assert cfg.hydra.sweeper.params["sharing.index"] == "0,5,4,3,2,1"
    assert list(cfg.attack.eps)[-1] == 16 and cfg.attack.steps == 10


@pytest.mark.parametrize("backbone", ["tiny", "mobilenetv2", "resnet34"])
def test_every_backbone_predicts_at_the_rectangular_label_size(converted, tmp_path, backbone):
    cfg = compose_cityscapes(tmp_path, converted, f"backbone={backbone}", "sharing=branch")
    data = instantiate(cfg.dataset)
    data.prepare()
    model = build_model(cfg, tasks_for(data)).eval()
    with torch.no_grad():
        out = model(data.split("test")[0]["image"][None])
    assert out["segment_semantic"].shape == (1, 19, 32, 64)
    assert out["depth_zbuffer"].shape == (1, 1, 32, 64)
