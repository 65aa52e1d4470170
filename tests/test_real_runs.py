"""One training step and one attack run on converted NYUv2 and Tiny-Taskonomy (runner.run)."""

from __future__ import annotations

import math

import pytest
from conftest import CONF
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from real_formats import write_adashare, write_taskonomy

from mtl_attack.data.convert.cli import main_nyuv2, main_taskonomy
from mtl_attack.runner import run


def run_on(tmp, dataset: str, root, *extra: str) -> dict:
    overrides = [
        f"dataset={dataset}",
        f"dataset.root={root}",
        "logger=none",
        "attack=total",
        "attack/step=fgsm",
        "attack.eps=[4]",
        "train.epochs=1",
        "train.batch_size=2",
        "eval.batch_size=2",
        "progress=false",
        f"paths.output_dir={tmp / 'outputs'}",
        f"paths.data_dir={tmp / 'data'}",
        f"paths.run_dir={tmp / 'run'}",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with open_dict(cfg):
        cfg.hydra = None
    return run(cfg)


@pytest.mark.parametrize(
    "crop",
    [64, pytest.param(321, marks=pytest.mark.slow)],  # 321: the paper's size
)
def test_train_and_attack_on_nyuv2(tmp_path, crop):
    write_adashare(tmp_path / "src", 6, train=[0, 1, 2, 3], test=[4, 5])
    out = tmp_path / "nyuv2"
    main_nyuv2(["--source", "adashare", "--root", str(tmp_path / "src"), "--out", str(out),
                "--quiet"])  # fmt: skip
    results = run_on(tmp_path, "nyuv2", out, f"dataset.crop={crop}")
    clean = results["clean"]
    assert set(clean) == {"segment_semantic", "normal", "depth_zbuffer"}
    assert set(clean["normal"]) >= {"angle_mean", "within_11_25"}
    assert all(math.isfinite(v) for m in clean.values() for v in m.values())
    (entry,) = results["attacks"]
    assert entry["eps"] == 4 and math.isfinite(entry["avg_degradation"])


@pytest.mark.parametrize("metrics", ["reference", pytest.param("libmtl", marks=pytest.mark.slow)])
def test_train_and_attack_on_taskonomy(tmp_path, metrics):
    write_taskonomy(tmp_path / "src", ["hanson", "merom", "darden", "mcdade"], views=2)
    out = tmp_path / "taskonomy"
    main_taskonomy(["--root", str(tmp_path / "src"), "--train=hanson,merom", "--val=darden",
                    "--test=mcdade", "--out", str(out), "--quiet"])  # fmt: skip
    results = run_on(tmp_path, "taskonomy", out, f"dataset.metrics={metrics}", "dataset.crop=64")
    clean = results["clean"]
    assert {t: set(m) - {"loss"} for t, m in clean.items()} == {
        "segment_semantic": {"err"},
        "normal": {"cosine_similarity"},
        "depth_zbuffer": {"abs_err"},
        "keypoints2d": {"key_err"},
        "edge_texture": {"edge_err"},
    }
    assert all(math.isfinite(v) for m in clean.values() for v in m.values())
    assert math.isfinite(results["attacks"][0]["avg_degradation"])
