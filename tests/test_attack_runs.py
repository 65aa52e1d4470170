"""The new attacks through the runner (issue 12): attack=ensemble, attack=frontier and the
objective variants in results.json (with their identity), W&B, the printed table, the report's
frontier figure, and an evaluation that reuses the attack's last forward pass."""

from __future__ import annotations

import json

import pytest
import torch
from wandb_records import logged_keys, run_files

from mtl_attack.attacks import build_attack
from mtl_attack.evaluation import evaluate, evaluate_views
from mtl_attack.report import write_report
from mtl_attack.runner import run
from tests.attack_setup import single_thread, tiny_batch, tiny_model, tiny_tasks
from tests.test_attack_ensemble import PassCounter

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def test_run_ensemble_writes_one_entry_per_criterion(tiny_cfg, tmp_path, capsys):
    cfg = tiny_cfg(
        "attack=ensemble",
        "attack.eps=[4]",
        "attack.steps=3",
        "~attack.members.total",
        "~attack.members.minmax_jsd",
        "logger=wandb",
        f"logger.dir={tmp_path / 'wandb'}",
    )
    results = run(cfg)
    assert results == json.loads((tmp_path / "run" / "results.json").read_text())
    entries = results["attacks"]
    assert [(e["objective"], e["variant"], e["step"]) for e in entries] == [
        ("ensemble", "mean", "apgd"),
        ("ensemble", "min", "apgd"),
        ("ensemble", "per_task", "apgd"),
    ]
    members = {"dgba", "minmax", "linf_mgda", "single_jsd(segment_semantic)"}
    members |= {f"single({t})" for t in results["clean"]}
    for e in entries:
        assert e["identity"]["variant"] == e["variant"] and e["flags"] == []
        assert set(e["identity"]["members"]) == {"dgba", "minmax", "linf_mgda", "single"} | {
            "single_jsd"
        }
        assert e["identity"]["members"]["single_jsd"]["loss"] == "jsd"
        assert e["diagnostics"]["samples"] == e["diagnostics"]["scored"] == 24
    assert set(entries[0]["wins"]) == members and sum(entries[0]["wins"].values()) == 24
    assert all(sum(w.values()) == 24 for w in entries[2]["wins"].values())
    assert len({json.dumps(e["identity"], sort_keys=True) for e in entries}) == 3
    keys = logged_keys(run_files(tmp_path)[0])
    assert "attack/ensemble/min/apgd/eps4/min_degradation" in keys
    assert "attack/ensemble/mean/apgd/eps4/wins/dgba" in keys
    assert "attack/ensemble/per_task/apgd/eps4/wins/normal/minmax" in keys
    printed = capsys.readouterr().out
    assert "ensemble/per_task/apgd" in printed and "from different images" in printed


def test_run_frontier_and_report_draws_it(tiny_cfg, tmp_path):
    common = ["attack.eps=[4]", "attack.steps=2", "logger=none"]
    frontier = run(tiny_cfg("attack=frontier", "attack.resolution=2", *common, run="f"))
    entries = frontier["attacks"]
    assert [e["variant"] for e in entries][:3] == [
        "w1.00_0.00_0.00",
        "w0.00_1.00_0.00",
        "w0.00_0.00_1.00",
    ]
    assert len(entries) == 6 and entries[3]["weights"] == {
        "segment_semantic": 0.5,
        "normal": 0.5,
        "depth_zbuffer": 0.0,
    }
    linf = run(tiny_cfg("attack=aggregate", "attack.aggregator=linf_mgda", *common, run="a"))
    (entry,) = linf["attacks"]
    assert (
        entry["variant"] == "linf_mgda"
        and entry["identity"]["objective_args"]["aggregator"] == "linf_mgda"
    )
    report = write_report([tmp_path / "f", tmp_path / "a"], tmp_path / "report")
    text = report["report"].read_text()
    assert "## Task trade-off frontier" in text and "aggregate[linf_mgda]/pgd" in text
    (figure,) = [f for f in report["figures"] if f.name.startswith("frontier_")]
    assert figure.stat().st_size > 10_000


def test_bad_ensemble_or_frontier_config_is_a_clear_error(tiny_cfg):
    with pytest.raises(ValueError, match="ensemble criteria must come from"):
        run(tiny_cfg("attack=ensemble", "attack.criteria=[worst]", "logger=none"))
    with pytest.raises(ValueError, match="attack=frontier: attack.scale must be"):
        run(tiny_cfg("attack=frontier", "attack.scale=raw", "logger=none"))
    with pytest.raises(ValueError, match="attack.aggregator must be one of"):
        run(tiny_cfg("attack=aggregate", "attack.aggregator=cagrad", "logger=none"))


def loader_of(images, targets):
    return [{"image": images, **targets}]  # one collated batch


def test_evaluation_reuses_the_attacks_last_forward():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch()
    cpu = torch.device("cpu")
    clean = evaluate(model, tasks, loader_of(images, targets), cpu, progress=False)
    passes, k = PassCounter(model), 4
    for step in ("pgd", "apgd"):
        attack = build_attack("dgba", step, tasks, eps=4, steps=k)
        (entry,) = evaluate_views(
            model,
            tasks,
            loader_of(images, targets),
            cpu,
            attack,
            clean,
            {"objective": "dgba", "step": step, "eps": 4, "target_task": None},
            progress=False,
        )
        assert passes.take() == (k + 1, k)  # steps x (forward + backward) + one forward
        adv = attack(model, images, targets)  # the old way: attack, then evaluate the images
        again = evaluate(model, tasks, loader_of(adv, targets), cpu, progress=False)
        passes.take()
        for t in tasks:
            for metric, value in again[t].items():
                assert entry["tasks"][t][metric] == pytest.approx(value, rel=1e-5, abs=1e-6)
