"""W&B dashboard (scripts/wandb_dashboard.py, mtl_attack.dashboard): the workspace and report
specs are built offline from a real 2-job joblib sweep logged by the real W&B logger in offline
mode, and every key a panel references must be one those runs wrote (tests/wandb_records.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from hydra.utils import instantiate
from test_sweeps import ENV, ROOT, TINY, paths, run_py
from wandb_records import closed_records, logged_under, run_files

from mtl_attack.dashboard import SECTIONS, build, missing_keys, referenced_keys
from mtl_attack.dashboard.panels import Line, Media, Parallel, catalog, load_project_runs, sections
from mtl_attack.dashboard.spec import to_json, workspace
from mtl_attack.evaluation.keys import (
    HEATMAP_IMAGE,
    strongest_key,
    strongest_record,
    train_loss_key,
    transfer_key,
    vs_eps_key,
)
from mtl_attack.loggers import DashboardRequest
from mtl_attack.runner import run
from mtl_attack.runner.finish import finish_logger

PROJECT = "mtl-attack"  # conf/logger/wandb.yaml
DGBA = {"objective": "dgba", "target_task": None, "step": "pgd"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two jobs sharing one model (one trains it, one reuses it): SINGLE on every task (transfer
    matrices) and DGBA, eps 2 and 4, layout 2, each a W&B offline run in group ``sweep``."""
    tmp = tmp_path_factory.mktemp("dashboard")
    folder = tmp / "sweep"
    run_py(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={folder}",
        "sharing=layout",
        "sharing.index=2",
        "attack=single,dgba",
        "attack.eps=[2,4]",
        "attack.steps=2",
        *TINY,
        *paths(tmp),
    )
    return folder


@pytest.fixture(scope="module")
def logged(sweep) -> tuple[set[str], set[str]]:
    """Every history/summary key and every config key the sweep's W&B run files hold."""
    return logged_under(sweep)


@pytest.fixture(scope="module")
def spec(sweep) -> dict:
    """The workspace and the sweep's report, as W&B would receive them."""
    return build("my-team", PROJECT, results=[sweep], sweep=sweep).to_json()


def panel_grids(report: dict) -> list[dict]:
    return [b for b in report["spec"]["blocks"] if b["type"] == "panel-grid"]


def test_every_panel_reads_a_key_the_runs_logged(spec, logged):
    keys, config = logged
    assert missing_keys(spec, keys, config) == []
    refs = referenced_keys(spec)
    for ref in [
        ("history", vs_eps_key(DGBA, "avg_degradation")),
        ("history", train_loss_key("normal")),
        ("summary", strongest_key(4)),
        ("config", "sharing.index"),
        ("media", transfer_key("pgd", 4, HEATMAP_IMAGE)),
    ]:
        assert ref in refs
    # the five sections, in the workspace and as the report's headings, each with panels
    view = spec["workspace"]["spec"]["section"]["panelBankConfig"]["sections"]
    assert [s["name"] for s in view] == list(SECTIONS)
    assert all(s["panels"] for s in view)
    headings = [
        b["children"][0]["text"]
        for b in spec["report"]["spec"]["blocks"]
        if b["type"] == "heading"
    ]
    assert headings == ["Config overrides", "Tables (scripts/compare.py)", *SECTIONS]


def test_workspace_groups_by_the_sweep_group_and_the_report_filters_it(sweep, spec):
    groups = {
        next(r.run.run_group for r in closed_records(path) if r.HasField("run"))
        for path in run_files(sweep)
    }
    assert groups == {sweep.name}  # what the runs logged
    runset = spec["workspace"]["spec"]["section"]["runSets"][0]
    assert runset["grouping"] == [{"section": "run", "name": "group"}]
    grids = panel_grids(spec["report"])
    assert len(grids) == len(SECTIONS)
    for grid in grids:
        (runset,) = grid["metadata"]["runSets"]
        (rule,) = runset["filters"]["filters"]
        assert rule["key"] == {"section": "run", "name": "group"} and rule["value"] == sweep.name
        assert rule["op"] == "="


def test_report_carries_the_overrides_and_compare_tables(sweep, spec):
    blocks = spec["report"]["spec"]["blocks"]
    texts = [b["content"] for b in blocks if b["type"] == "markdown-block"]
    overrides, tables = texts
    assert "python run.py -m sharing=layout sharing.index=2 attack=single,dgba" in overrides
    assert "| 0 | `attack=single` |" in overrides and "| 1 | `attack=dgba` |" in overrides
    for path in sorted(sweep.glob("*/results.json")):
        for e in json.loads(path.read_text())["attacks"]:
            assert f"| {e['avg_degradation']:.4f} | {e['min_degradation']:.4f} |" in tables
    assert ".png" in tables and "![" not in tables  # figures point at the live panels


def test_strongest_summary_is_the_largest_degradation_per_eps(sweep):
    for path in sorted(sweep.glob("*/results.json")):
        entries = json.loads(path.read_text())["attacks"]
        (run_file,) = run_files(path.parent)
        summary = {
            item.key: json.loads(item.value_json)
            for rec in closed_records(run_file)
            if rec.WhichOneof("record_type") == "summary"
            for item in rec.summary.update
        }
        for eps in (2, 4):
            best = max(e["avg_degradation"] for e in entries if e["eps"] == eps)
            assert summary[strongest_key(eps)] == pytest.approx(best, rel=1e-12)
    nan = float("nan")
    record = strongest_record([{"eps": 2, "avg_degradation": v} for v in (0.1, nan, 0.3)])
    assert record == {strongest_key(2): 0.3}
    assert strongest_record([{"eps": 8, "avg_degradation": nan}]) == {}


@pytest.mark.parametrize(
    "bad, expected",
    [
        (
            Line("typo", "eps", ("vs_eps/dgba/pgd/avg_degradaton",)),
            ("history", "vs_eps/dgba/pgd/avg_degradaton"),
        ),
        (Parallel("renamed", (("config", "sharing.idx", "layout"),)), ("config", "sharing.idx")),
        (
            Media("no such matrix", (transfer_key("pgd", 8, HEATMAP_IMAGE),)),
            ("media", transfer_key("pgd", 8, HEATMAP_IMAGE)),
        ),
    ],
)
def test_a_panel_on_an_unknown_key_fails_the_check(sweep, logged, bad, expected):
    board = sections(catalog(load_project_runs([sweep], PROJECT)))
    board[0].panels.append(bad)
    spec = to_json(workspace(board, "my-team", PROJECT))
    assert missing_keys(spec, *logged) == [expected]


def script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "scripts" / "wandb_dashboard.py"), *args]
    return subprocess.run(
        cmd, cwd=ROOT, env=env or ENV, capture_output=True, text=True, timeout=300
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dry_run_prints_the_spec_without_network(sweep, spec):
    offline = {**ENV, "WANDB_BASE_URL": f"http://127.0.0.1:{closed_port()}"}
    args = ["--entity", "my-team", "--project", PROJECT, "--results", str(sweep)]
    proc = script(*args, "--group", sweep.name, "--dry-run", env=offline)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = json.loads(proc.stdout)
    view = printed["workspace"]
    assert view["entity"] == "my-team" and view["project"] == PROJECT
    assert printed["report"]["displayName"] == f"mtl-attack sweep {sweep.name}"
    assert referenced_keys(printed) == referenced_keys(spec)  # --group G == --sweep DIR


@pytest.mark.parametrize("server", ["unreachable", "not logged in"])
def test_without_server_or_login_the_script_fails_in_one_line(sweep, tmp_path, server):
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    port = closed_port() if server == "unreachable" else listening.getsockname()[1]
    env = {k: v for k, v in ENV.items() if k != "WANDB_API_KEY"}
    env |= {"WANDB_BASE_URL": f"http://127.0.0.1:{port}", "HOME": str(tmp_path)}
    env["WANDB_CONFIG_DIR"] = str(tmp_path / "wandb-config")
    proc = script("--entity", "my-team", "--project", PROJECT, "--sweep", str(sweep), env=env)
    listening.close()
    assert proc.returncode == 1 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert ("cannot reach" if server == "unreachable" else "not logged in") in line
    assert "--dry-run" in line


def test_script_names_the_project_when_no_run_logged_to_it(sweep):
    proc = script("--entity", "e", "--project", "elsewhere", "--sweep", str(sweep), "--dry-run")
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert "project 'elsewhere'" in line and "--results" in line


def test_logger_dashboard_offline_says_how_to_build_it(tiny_cfg, caplog):
    logger = instantiate(tiny_cfg("logger.dashboard=true").logger)
    assert logger.dashboard is True and logger.mode == "offline"
    logger.start({"seed": 0}, name="dashboard")
    with caplog.at_level("INFO", logger="mtl_attack"):
        finish_logger(logger)
    (record,) = [r for r in caplog.records if r.name == "mtl_attack"]
    assert "skipped (offline run)" in record.getMessage()
    assert f"scripts/wandb_dashboard.py --entity ENTITY --project {PROJECT}" in record.getMessage()


def test_the_logger_only_records_the_request_and_a_failed_run_makes_none(tiny_cfg, caplog):
    cfg = tiny_cfg("logger.dashboard=true")
    failed, done = instantiate(cfg.logger), instantiate(cfg.logger)
    for logger, exit_code in [(failed, 1), (done, 0)]:
        logger.start({"seed": 0}, name=f"exit{exit_code}")
        with caplog.at_level("INFO", logger="mtl_attack"):
            logger.finish(exit_code)  # the logger itself publishes nothing and says nothing
    assert not [r for r in caplog.records if r.name == "mtl_attack"]
    assert failed.dashboard_request is None
    assert done.dashboard_request == DashboardRequest(
        None, PROJECT, "offline", cfg.paths.output_dir
    )


def test_run_hands_the_dashboard_request_on(tiny_cfg, caplog):
    with caplog.at_level("INFO", logger="mtl_attack"):
        run(tiny_cfg("logger.dashboard=true", "attack=none", "train.epochs=0"))
    assert any("W&B dashboard skipped (offline run)" in r.getMessage() for r in caplog.records)
