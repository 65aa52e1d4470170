"""scripts/leaderboard.py and mtl_attack.report.leaderboard: a leaderboard built from real tiny
``attack=standard`` runs (three trained models, one of them adversarially trained, logged to real
offline W&B runs): one row per model with its identity, versions and benchmarks never mixed,
duplicates reported, JSON round trip and ``--compare``, the plot, and the W&B report spec whose
every panel reads a key the runs logged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import torch
from test_external_model import HalfResNet
from wandb_records import logged_under

from mtl_attack.dashboard import missing_keys, referenced_keys
from mtl_attack.dashboard.leaderboard import leaderboard_report
from mtl_attack.dashboard.spec import to_json
from mtl_attack.models.files import file_sha256
from mtl_attack.report.leaderboard import (
    LeaderboardError,
    board_from_json,
    board_to_json,
    collect,
    current_version,
)
from mtl_attack.report.leaderboard_views import compare, markdown, write_leaderboard
from mtl_attack.report.plots import HEADLINE
from mtl_attack.runner import run

ROOT = Path(__file__).resolve().parents[1]
VERSION = current_version(ROOT / "conf" / "attack" / "standard.yaml")
#: the protocol at its test budget (tiny steps and queries: not the protocol's numbers)
SMOKE = "smoke"
STANDARD = ["attack=standard", "attack.eps=[2,4]", f"attack.budget={SMOKE}"]
TASKS = ("segment_semantic", "normal", "depth_zbuffer")  # conf/dataset/synthetic.yaml
MODELS = {
    "shared": ["sharing=all_shared"],
    "branch": ["sharing=branch"],
    "robust": ["defense=adv_train", "defense.steps=1"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Three models under the standard protocol, each a real run with an offline W&B run in
    group ``board``; returns the folder holding their run folders."""
    from conftest import compose_config

    tmp = tmp_path_factory.mktemp("leaderboard")
    for name, extra in MODELS.items():
        cfg = compose_config(tmp, [*STANDARD, "logger.group=board", *extra])
        cfg.paths.run_dir = str(tmp / "runs" / name)
        run(cfg)
    return tmp / "runs"


def results(runs: Path, name: str) -> dict:
    return json.loads((runs / name / "results.json").read_text())


def table(text: str) -> list[list[str]]:
    """The rows of the page's first Markdown table (header first), cells stripped."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return [rows[0]] + [r for r in rows[2:] if r[0].isdigit()]


def test_one_row_per_model_with_its_numbers_and_identity(runs):
    board = collect([runs], VERSION, SMOKE)
    rows = table(markdown(board))
    header, body = rows[0], rows[1:]
    assert len(body) == 3
    by_name = {r[1]: dict(zip(header, r)) for r in body}
    assert set(by_name) == {
        "TinyResNet/all_shared",
        "TinyResNet/branch(branch_at=3)",
        "TinyResNet/all_shared/adv_train",
    }
    for name, folder in [
        ("TinyResNet/all_shared", "shared"),
        ("TinyResNet/all_shared/adv_train", "robust"),
    ]:
        row, data = by_name[name], results(runs, folder)
        assert row["segment_semantic miou"] == f"{data['clean']['segment_semantic']['miou']:.4f}"
        for verdict in data["verdicts"]:
            eps = f"{float(verdict['eps']):g}"
            assert row[f"worst-task eps {eps}"] == f"{verdict['min_degradation']:.4f}"
            assert row[f"avg eps {eps}"] == f"{verdict['avg_degradation']:.4f}"
        key = data["model"]["key"]
        assert f"key `{key[:8]}`" in row["identity"]
    assert by_name["TinyResNet/all_shared"]["identity"].startswith("clean training, 1 epochs")
    assert by_name["TinyResNet/all_shared/adv_train"]["identity"].startswith("adv_train dgba/pgd")
    # ranked: worst-task degradation at the largest eps, ascending
    worst = [float(r[header.index("worst-task eps 4")]) for r in body]
    assert worst == sorted(worst)
    assert [int(r[0]) for r in body] == [1, 2, 3]


def copy_run(runs: Path, name: str, dest: Path, edit=None) -> Path:
    """A copy of a real run's results.json under ``dest`` (``edit`` changes its data)."""
    data = results(runs, name)
    if edit is not None:
        edit(data)
    path = dest / name / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return path


def test_another_protocol_version_is_refused_not_mixed(runs, tmp_path):
    def older(data):
        for verdict in data["verdicts"]:
            verdict["version"] = VERSION - 1

    old = copy_run(runs, "shared", tmp_path, older)
    with pytest.raises(LeaderboardError, match=f"version {VERSION - 1}.*--version {VERSION - 1}"):
        collect([runs, old], VERSION, SMOKE)
    assert len(collect([old], VERSION - 1, SMOKE).models) == 1  # its own version's board


def test_the_test_budget_is_refused_on_the_real_leaderboard(runs):
    with pytest.raises(LeaderboardError, match="attack.budget=smoke.*budget full"):
        collect([runs], VERSION)  # the default: the protocol's own budget


def test_another_benchmark_is_refused(runs, tmp_path):
    def bigger(data):
        data["config"]["dataset"]["num_test"] += 1

    other = copy_run(runs, "branch", tmp_path, bigger)
    with pytest.raises(LeaderboardError, match="2 different benchmarks"):
        collect([runs, other], VERSION, SMOKE)


def test_duplicates_are_one_row_and_reported(runs, tmp_path):
    again = copy_run(runs, "shared", tmp_path)
    board = collect([runs, again], VERSION, SMOKE)
    assert len(board.models) == 3
    shared = next(m for m in board.models if m.name == "TinyResNet/all_shared")
    assert len(shared.sources) == 2
    assert [d.split(":")[0] for d in shared.duplicates] == ["eps 2", "eps 4"]
    page = markdown(board)
    assert "## Duplicates (2)" in page
    assert f"{again} (same numbers)" in page


def test_runs_without_a_verdict_are_skipped_and_listed(runs, tmp_path):
    plain = copy_run(runs, "branch", tmp_path, lambda d: d.pop("verdicts"))
    board = collect([runs, plain], VERSION, SMOKE)
    assert board.skipped == [str(plain)]
    assert f"- `{plain}`" in markdown(board)
    with pytest.raises(LeaderboardError, match="attack=standard verdict"):
        collect([plain], VERSION, SMOKE)


def test_json_round_trip_and_compare(runs, tmp_path):
    written = write_leaderboard([runs], tmp_path / "a", VERSION, budget=SMOKE)
    saved = tmp_path / "a" / "leaderboard.json"
    assert board_to_json(board_from_json(saved)) == board_to_json(written["board"])
    again = write_leaderboard([runs], tmp_path / "b", VERSION, saved, SMOKE)
    assert again["changes"][-1] == "- nothing moved (3 models)"

    data = json.loads(saved.read_text())
    moved = next(m for m in data["models"] if m["name"] == "TinyResNet/branch(branch_at=3)")
    moved["verdicts"][-1]["min_degradation"] += 0.25  # the old board: a higher number
    gone = data["models"].pop(next(i for i, m in enumerate(data["models"]) if "adv" in m["name"]))
    (tmp_path / "old.json").write_text(json.dumps(data))
    changes = compare(board_from_json(tmp_path / "old.json"), written["board"])
    text = "\n".join(changes)
    old, new = (
        moved["verdicts"][-1]["min_degradation"],
        moved["verdicts"][-1]["min_degradation"] - 0.25,
    )
    assert f"worst-task eps 4: {old:.4f} -> {new:.4f}" in text
    assert f"- added: **{gone['name']}**" in text

    data["version"] = VERSION + 1
    (tmp_path / "future.json").write_text(json.dumps(data))
    with pytest.raises(LeaderboardError, match=f"version {VERSION + 1}"):
        compare(board_from_json(tmp_path / "future.json"), written["board"])


def test_plot_has_one_labelled_point_per_model(runs, tmp_path):
    written = write_leaderboard([runs], tmp_path, VERSION, budget=SMOKE)
    png = tmp_path / "leaderboard.png"
    assert png in written["files"]
    height, width, _ = matplotlib.image.imread(png).shape
    assert width > 800 and height > 200  # one panel per task
    assert "![clean quality against worst-task degradation](leaderboard.png)" in written["text"]


@pytest.fixture(scope="module")
def logged(runs) -> tuple[set[str], set[str]]:
    return logged_under(runs)


def test_wandb_report_panels_read_keys_the_runs_logged(runs, logged):
    board = collect([runs], VERSION, SMOKE)
    spec = to_json(leaderboard_report(board, markdown(board), "my-team", "mtl-attack"))
    assert missing_keys(spec, *logged) == []
    clean = {("summary", f"clean/{t}/{m}") for t, m in HEADLINE.items() if t in TASKS}
    worst = {("summary", f"standard/eps{e}/min_degradation") for e in (2, 4)}
    assert set(referenced_keys(spec)) == clean | worst
    blocks = spec["spec"]["blocks"]
    text = next(b["content"] for b in blocks if b["type"] == "markdown-block")
    assert "| 1 | " in text and "leaderboard.png" not in text
    grid = next(b for b in blocks if b["type"] == "panel-grid")
    assert len(grid["metadata"]["panelBankSectionConfig"]["panels"]) == 3 * 2  # task x eps
    filters = json.dumps(grid["metadata"]["runSets"])
    assert "board" in filters


def script(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "scripts" / "leaderboard.py"), "--budget", SMOKE, *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_script_writes_every_file_and_refuses_in_one_line(runs, tmp_path):
    out = tmp_path / "board"
    proc = script(str(runs), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for name in ("leaderboard.md", "leaderboard.json", "leaderboard.png", "wandb_report.json"):
        assert (out / name).is_file(), name
    assert "3 model(s)" in proc.stdout
    again = script(
        str(runs), "--out", str(tmp_path / "again"), "--compare", str(out / "leaderboard.json")
    )
    assert "nothing moved (3 models)" in again.stdout
    refused = script(str(runs), "--version", str(VERSION + 1))
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "re-run that model" in refused.stderr
    assert script(str(runs), "--publish").stderr.startswith(
        "leaderboard: --publish needs --entity"
    )
    shutil.rmtree(out)
    empty = script(cwd=tmp_path)  # no outputs/leaderboard in this folder
    assert empty.returncode == 1
    assert empty.stderr.startswith("leaderboard: no outputs/leaderboard here: evaluate models")


def test_an_imported_model_is_identified_by_its_weights_sha256(runs, tmp_path):
    from conftest import compose_config
    from test_external_model import OUTPUTS_ARG, external

    weights = tmp_path / "half.pt"
    torch.manual_seed(0)
    torch.save(HalfResNet().state_dict(), weights)
    cfg = compose_config(tmp_path, [*STANDARD, *external(weights, OUTPUTS_ARG)])
    cfg.paths.run_dir = str(tmp_path / "imported")
    run(cfg)
    board = collect([runs, tmp_path / "imported"], VERSION, SMOKE)
    model = next(m for m in board.models if m.identity["kind"] == "external")
    assert model.name == "external:half.pt"
    assert model.identity["weights_sha256"] == file_sha256(weights)
    row = next(r for r in table(markdown(board))[1:] if r[1] == "external:half.pt")
    assert row[2] == f"`sha256 {file_sha256(weights)[:12]}` (half.pt)"


def test_the_overlay_runs_the_protocol_on_every_sharing_preset():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", ["+experiment=leaderboard"], return_hydra_config=True)
    assert cfg.attack.name == "standard" and cfg.attack.budget == "full"
    assert cfg.logger.group == "leaderboard"
    assert cfg.hydra.sweeper.params.sharing == "all_shared,branch,independent"
    assert "/leaderboard/multirun/" in cfg.hydra.sweep.dir
