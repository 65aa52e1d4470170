"""Robust evaluation: relative degradation, aggregates, transfer matrix, results.json entries
and W&B records of real runs on tiny configs."""

from __future__ import annotations

import json
import math

import pytest
from wandb_records import logged_keys, run_files

from mtl_attack.evaluation import relative_degradation, summarize, transfer_matrix
from mtl_attack.runner import run
from mtl_attack.tasks import build_tasks
from tests.attack_setup import single_thread

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)
ENTRY_KEYS = {
    "objective",
    "step",
    "eps",
    "target_task",
    "tasks",
    "avg_degradation",
    "min_degradation",
    "avg_loss_increase",
    "seconds",
    "flags",
    "diagnostics",
    "identity",
}


def test_relative_degradation_is_positive_when_worse():
    assert relative_degradation(0.2, 0.3, higher_is_better=False) == pytest.approx(0.5)
    assert relative_degradation(80.0, 60.0, higher_is_better=True) == pytest.approx(0.25)
    assert relative_degradation(0.2, 0.1, higher_is_better=False) == pytest.approx(-0.5)
    assert math.isnan(relative_degradation(0.0, 0.1, higher_is_better=True))


def test_summarize_means_over_metrics_then_tasks():
    tasks = build_tasks(["segment_semantic", "depth_zbuffer"], 6)
    clean = {
        "segment_semantic": {"miou": 0.5, "pixel_acc": 0.8, "loss": 1.0},
        "depth_zbuffer": {
            "abs_err": 0.1,
            "rel_err": 0.1,
            "delta_1": 90.0,
            "delta_2": 95.0,
            "delta_3": 100.0,
            "loss": 0.1,
        },
    }
    adv = {
        "segment_semantic": {"miou": 0.25, "pixel_acc": 0.6, "loss": 2.0},
        "depth_zbuffer": {
            "abs_err": 0.2,
            "rel_err": 0.1,
            "delta_1": 90.0,
            "delta_2": 95.0,
            "delta_3": 100.0,
            "loss": 0.4,
        },
    }
    out = summarize(tasks, clean, adv)
    assert out["tasks"]["segment_semantic"]["degradation"] == pytest.approx((0.5 + 0.25) / 2)
    assert out["tasks"]["depth_zbuffer"]["degradation"] == pytest.approx(1.0 / 5)
    assert out["tasks"]["depth_zbuffer"]["abs_err"] == 0.2
    assert out["avg_degradation"] == pytest.approx((0.375 + 0.2) / 2)
    assert out["min_degradation"] == pytest.approx(0.2)
    assert out["avg_loss_increase"] == pytest.approx((1.0 + 3.0) / 2)
    entries = [{"objective": "single", "target_task": t} | out for t in ("a", "b")]
    assert transfer_matrix(entries) == {
        t: {"segment_semantic": 0.375, "depth_zbuffer": pytest.approx(0.2)} for t in ("a", "b")
    }


def test_run_single_all_writes_entries_and_transfer_matrix(tiny_cfg, tmp_path):
    cfg = tiny_cfg(
        "attack=single",
        "attack.task=all",
        "attack.eps=[4]",
        "attack.steps=3",
        "logger=wandb",
        f"logger.dir={tmp_path / 'wandb'}",
    )
    results = run(cfg)
    assert results == json.loads((tmp_path / "run" / "results.json").read_text())
    entries = results["attacks"]
    assert [e["target_task"] for e in entries] == ["segment_semantic", "normal", "depth_zbuffer"]
    for e in entries:
        assert set(e) == ENTRY_KEYS and e["objective"] == "single" and e["step"] == "pgd"
        assert "outside_budget" not in e["flags"]
        for name, values in e["tasks"].items():
            assert set(values) == {*results["clean"][name], "degradation", "loss_increase"}
        assert e["tasks"][e["target_task"]]["loss_increase"] > 0
    ((matrix,),) = [[m for m in results["transfer"] if m["eps"] == 4]]
    assert list(matrix["matrix"]) == list(results["clean"])
    assert matrix["matrix"]["normal"]["normal"] == entries[1]["tasks"]["normal"]["degradation"]
    keys = logged_keys(run_files(tmp_path)[0])
    assert "attack/single/normal/pgd/eps4/avg_degradation" in keys
    assert "attack/transfer/pgd/eps4/heatmap/_type" in keys  # an image
    assert "attack/transfer/pgd/eps4/table/nrows" in keys and "attack/metrics/nrows" in keys


def test_run_dgba_apgd_over_eps(tiny_cfg):
    cfg = tiny_cfg(
        "attack=dgba", "attack/step=apgd", "attack.eps=[2,8]", "attack.steps=4", "logger=none"
    )
    entries = run(cfg)["attacks"]
    assert [(e["objective"], e["step"], e["eps"]) for e in entries] == [
        ("dgba", "apgd", 2),
        ("dgba", "apgd", 8),
    ]
    assert all(e["target_task"] is None and e["flags"] == [] for e in entries)
    assert 0 < entries[0]["avg_loss_increase"] < entries[1]["avg_loss_increase"]


def test_bad_attack_config_is_a_clear_error(tiny_cfg):
    with pytest.raises(ValueError, match="attack.task='depth'.*segment_semantic"):
        run(tiny_cfg("attack=single", "attack.task=depth", "logger=none"))
    with pytest.raises(ValueError, match="attack.stepz is not a setting of attack=total"):
        run(tiny_cfg("attack=total", "+attack.stepz=3", "logger=none"))
