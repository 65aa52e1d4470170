"""Every attack result carries its complete identity, and reports key on all of it: a sweep over
the step rule, over attack.steps or over two models shows every row, look-alike rows say what
tells them apart, and identical results are reported as duplicates (issue 10, items 1-2)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mtl_attack.evaluation.identity import identity_from_run
from mtl_attack.report import write_report
from mtl_attack.runner import run

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["logger=none", "attack.eps=[2]"]
AGGREGATES = ("avg_degradation", "min_degradation", "avg_loss_increase")


def test_fgsm_is_labelled_fgsm_everywhere(tiny_cfg, tmp_path, capsys):
    results = run(tiny_cfg(*QUICK, "attack/step=fgsm"))
    (entry,) = results["attacks"]
    assert entry["step"] == "fgsm"
    assert entry["identity"]["step"] == "fgsm" and entry["identity"]["steps"] == 1
    stored = json.loads((tmp_path / "run" / "results.json").read_text())
    assert stored["attacks"][0]["step"] == "fgsm"
    printed = capsys.readouterr().out
    assert re.search(r"^dgba/fgsm\s+2 ", printed, re.M) and "dgba/pgd" not in printed


def test_identity_names_every_setting_and_what_was_attacked(tiny_cfg):
    results = run(tiny_cfg(*QUICK, "attack.steps=3", "attack.random_start=true", "seed=5"))
    identity = results["attacks"][0]["identity"]
    assert identity["steps"] == 3 and identity["random_start"] is True and identity["seed"] == 5
    assert identity["restarts"] == 1 and identity["step_size"] is None  # None = eps / steps
    assert identity["objective_args"] == {"min_loss": 1e-8}
    assert identity["model"] == results["model"]["key"]
    assert Path(results["model"]["checkpoint"]).parent.name == identity["model"]
    assert identity["defense"] == "none" and identity["dataset"] == "synthetic"
    assert identity["metrics"] == "reference" and identity["eval"] == {
        "batch_size": 24,
        "resolution": "input",
    }


def sweep(tiny_cfg, jobs: list[list[str]]) -> list[dict]:
    """Run each job in-process into ``sweep/<n>/`` like a Hydra multirun would."""
    return [run(tiny_cfg(*QUICK, *job, run=f"sweep/{n}")) for n, job in enumerate(jobs)]


def attack_table(*paths: Path) -> str:
    cmd = [sys.executable, str(ROOT / "scripts" / "attack_table.py"), *map(str, paths)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True)
    return proc.stdout


def report_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"\| \S+ \| \S+.* \| 2 \| ", line)]


def test_sweeps_over_rule_steps_and_models_show_every_row(tiny_cfg, tmp_path):
    jobs = [
        ["attack/step=pgd", "attack.steps=2"],
        ["attack/step=fgsm"],
        ["attack/step=pgd", "attack.steps=3"],
        ["sharing=layout", "sharing.index=2", "attack/step=pgd", "attack.steps=2"],
        ["sharing=layout", "sharing.index=2", "attack/step=fgsm"],
    ]
    results = sweep(tiny_cfg, jobs)
    values = [r["attacks"][0]["avg_degradation"] for r in results]
    assert len(set(values)) == len(values)  # five different experiments

    report = write_report([tmp_path / "sweep"], tmp_path / "report")
    text = report["report"].read_text()
    shared, branched = "TinyResNet/all_shared", "TinyResNet/select_layout(index=2)"
    labels = [
        (shared, "dgba/pgd [steps=2]"),  # the two pgd rows of one model differ in steps only
        (shared, "dgba/fgsm"),
        (shared, "dgba/pgd [steps=3]"),
        (branched, "dgba/pgd"),
        (branched, "dgba/fgsm"),
    ]
    expected = [
        f"| {model} | {attack} | 2 | "
        + " | ".join(f"{r['attacks'][0][k]:.4f}" for k in AGGREGATES)
        + " |"
        for (model, attack), r in zip(labels, results)
    ]
    assert report_rows(text) == expected
    assert "duplicate" not in text

    table = attack_table(tmp_path / "sweep").split("**min_degradation**")[0]
    cells = {
        line.split(" | ")[0][2:]: [c.strip("* |") for c in line.split(" | ")[1:]]
        for line in table.splitlines()
        if line.startswith("| ") and "attack |" not in line
    }
    assert sorted(cells) == sorted(
        [
            f"{branched}: dgba",
            f"{shared}: dgba",  # its fgsm cell: no look-alike there
            f"{shared}: dgba [steps=2]",
            f"{shared}: dgba [steps=3]",
        ]
    )
    header = next(line for line in table.splitlines() if line.startswith("| attack |"))
    assert header == "| attack | fgsm eps=2 | pgd eps=2 |"
    filled = sorted(float(c) for row in cells.values() for c in row if c)
    assert filled == sorted(round(v, 3) for v in values)  # every result, each once


def test_identical_results_are_reported_as_duplicates(tiny_cfg, tmp_path):
    sweep(tiny_cfg, [["attack.steps=2"], ["attack.steps=2"]])
    text = write_report([tmp_path / "sweep"], tmp_path / "report")["report"].read_text()
    assert len(report_rows(text)) == 1
    assert "Found 1 duplicate result(s)" in text
    assert "Found 1 duplicate result(s)" in attack_table(tmp_path / "sweep")


def test_identity_of_files_written_before_identities_existed(tiny_cfg, tmp_path):
    run(tiny_cfg(*QUICK, "attack.steps=4"))
    data = json.loads((tmp_path / "run" / "results.json").read_text())
    stored = data["attacks"][0].pop("identity")
    data["model"].pop("key")
    rebuilt = identity_from_run(data, data["attacks"][0])
    assert rebuilt == stored


@pytest.mark.parametrize("index", [0, 2])
def test_wandb_tag_names_the_layout_index(tiny_cfg, index):
    from mtl_attack.runner.main import axis_tags

    cfg = tiny_cfg("sharing=layout", f"sharing.index={index}")
    assert f"sharing=select_layout_{index}" in axis_tags(cfg)
