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


def test_preprocessing_version_is_part_of_the_cache_key(tmp_path):
    """Converted datasets name their transforms' version in the weight key (results computed
    with older preprocessing code are never reused); the synthetic benchmark has none, so
    the default run's cache keys stay as they were."""
    from mtl_attack.data.nyuv2 import NYUv2
    from mtl_attack.data.synthetic import SyntheticBenchmark
    from mtl_attack.runner.build import build_model, weight_spec
    from mtl_attack.tasks import tasks_for

    write_adashare(tmp_path / "src", 3, train=[0, 1], test=[2])
    out = tmp_path / "nyuv2"
    main_nyuv2(["--source", "adashare", "--root", str(tmp_path / "src"), "--out", str(out),
                "--quiet"])  # fmt: skip
    assert NYUv2.preprocessing and SyntheticBenchmark.preprocessing is None
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["dataset=nyuv2", f"dataset.root={out}"])
    with open_dict(cfg):
        cfg.hydra = None  # resolved outside a Hydra run
        cfg.paths.run_dir = str(tmp_path / "run")
    data = NYUv2(str(out))
    data.prepare()
    spec = weight_spec(cfg, build_model(cfg, tasks_for(data)), data)
    assert spec["preprocessing"] == NYUv2.preprocessing
