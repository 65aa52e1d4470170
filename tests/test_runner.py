"""End-to-end: run(cfg) on a tiny config with real data files, models and W&B offline runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, InstantiationException, MissingConfigException
from wandb_records import logged_keys, run_files

from mtl_attack.data.schema import DatasetFileError
from mtl_attack.runner import run
from mtl_attack.tasks import build_tasks


def test_run_writes_results_logs_wandb_and_reuses_cache(tiny_cfg, tmp_path):
    cfg = tiny_cfg(
        "dataset.tasks=[segment_semantic,normal,depth_zbuffer,keypoints2d,edge_texture]"
    )
    first = run(cfg)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["clean"] == first["clean"]
    tasks = build_tasks(cfg.dataset.tasks, num_classes=6)
    for name, task in tasks.items():
        assert set(results["clean"][name]) == {*task.higher_is_better, "loss"}
    assert results["model"]["params_total"] > 0 and results["model"]["cache_hit"] is False
    assert results["config"]["dataset"]["resolution"] == 32
    checkpoint = Path(results["model"]["checkpoint"])
    assert checkpoint.is_file()

    (wandb_file,) = run_files(tmp_path / "run")
    keys = logged_keys(wandb_file)
    assert "clean/segment_semantic/miou" in keys and "clean/edge_texture/edge_err" in keys
    assert "train/normal/loss" in keys

    mtime = checkpoint.stat().st_mtime_ns
    second = run(
        tiny_cfg(
            "dataset.tasks=[segment_semantic,normal,depth_zbuffer,keypoints2d,edge_texture]",
            run="run2",
        )
    )
    assert second["model"]["cache_hit"] is True
    assert checkpoint.stat().st_mtime_ns == mtime  # not retrained, not rewritten
    assert second["clean"] == first["clean"]
    assert "train/normal/loss" not in logged_keys(run_files(tmp_path / "run2")[0])


def test_cache_key_follows_weight_relevant_config(tiny_cfg):
    a = run(tiny_cfg("logger=none"))
    b = run(tiny_cfg("logger=none", "train.optimizer.lr=0.01", run="b"))
    c = run(tiny_cfg("logger=none", "loader.num_workers=0", "eval.batch_size=7", run="c"))
    assert a["model"]["checkpoint"] != b["model"]["checkpoint"]
    assert c["model"]["checkpoint"] == a["model"]["checkpoint"] and c["model"]["cache_hit"]


def test_unknown_task_in_config_is_a_clear_error(tiny_cfg):
    with pytest.raises(InstantiationException, match=r"unknown task 'depth'; choose from"):
        run(tiny_cfg("logger=none", "dataset.tasks=[depth]"))


def test_corrupt_dataset_file_says_what_to_do(tiny_cfg, tmp_path):
    run(tiny_cfg("logger=none"))
    (test_file,) = (tmp_path / "data" / "synthetic").rglob("test.h5")
    test_file.write_bytes(b"\x00" * 64)
    with pytest.raises(DatasetFileError, match=r"test\.h5 is corrupt .*delete .* regenerate"):
        run(tiny_cfg("logger=none", run="again"))


def test_unknown_keys_and_options_fail_in_composition(tmp_path):
    from conftest import compose_config

    with pytest.raises(ConfigCompositionException, match="train.epoks"):
        compose_config(tmp_path, ["train.epoks=3"])
    with pytest.raises(MissingConfigException, match="dataset"):
        compose_config(tmp_path, ["dataset=imagenet"])
