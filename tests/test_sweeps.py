"""Sweeps: joblib multirun, resumable sweeps, launcher configs, torchrun evaluation, reports.

These run ``run.py`` in subprocesses exactly as a user would (real Hydra multirun, real W&B
offline runs, real torchrun with the gloo backend).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wandb_records import logged_keys, read_records, run_files

from mtl_attack.report import write_report

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "dataset.num_train=48",
    "dataset.num_test=24",
    "dataset.resolution=32",
    "train.epochs=1",
    "train.batch_size=16",
    "eval.batch_size=8",
    "progress=false",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def paths(tmp: Path) -> list[str]:
    return [f"paths.output_dir={tmp}/out", f"paths.data_dir={tmp}/data"]


def run_py(
    *args: str, launcher: list[str] = (), timeout: int = 300
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, *launcher, str(ROOT / "run.py"), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_joblib_multirun_writes_two_results_and_two_wandb_runs(tmp_path):
    sweep = tmp_path / "sweep"
    run_py(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
        "sharing=layout",
        "sharing.index=0,2",
        "attack=single",
        "attack.eps=[2,4]",
        "attack.steps=2",
        *TINY,
        *paths(tmp_path),
    )
    results = sorted(sweep.glob("*/results.json"))
    assert len(results) == 2
    degrees = set()
    for path in results:
        data = json.loads(path.read_text())
        assert len(data["attacks"]) == 2 * 3  # 2 eps x 3 attacked tasks
        degrees.add(data["model"]["sharing_degree"])
        (wandb_file,) = run_files(path.parent)
        run_record = next(r.run for r in read_records(wandb_file) if r.HasField("run"))
        assert run_record.run_group == sweep.name  # jobs of one sweep share a group
        assert "attack=single" in run_record.tags and "sharing=select_layout" in " ".join(
            run_record.tags
        )
        keys = logged_keys(wandb_file)
        assert "vs_eps/single/depth_zbuffer/pgd/avg_degradation" in keys and "eps" in keys
    assert degrees == {0.0, 1.0}

    # the report: every plot written, and its table carries the numbers of the results files
    report = write_report([sweep], tmp_path / "report")
    names = {p.name for p in report["figures"]}
    assert "sharing_tradeoff.png" in names
    assert sum(n.startswith("degradation_vs_eps") for n in names) == 2
    assert sum(n.startswith("transfer_") for n in names) == 4  # 2 runs x 2 eps
    for fig in report["figures"]:
        assert fig.stat().st_size > 5000 and fig.read_bytes()[:4] == b"\x89PNG"
    text = report["report"].read_text()
    for path in results:
        for entry in json.loads(path.read_text())["attacks"]:
            assert f"| {entry['avg_degradation']:.4f} | {entry['min_degradation']:.4f} |" in text


def _evaluation_files(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in out.rglob("evaluations/*.json")}


def test_killed_sweep_recomputes_only_missing_results(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        f"hydra.sweep.dir={sweep}",
        "attack=total,dgba",
        "attack.eps=[1,2,4,8]",
        "attack.steps=3",
        "logger=none",
        *TINY,
        *paths(tmp_path),
    ]
    cmd = [sys.executable, str(ROOT / "run.py"), *args]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=ENV,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not (sweep / "0" / "results.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep dies after its first job
    proc.wait()
    assert (sweep / "0" / "results.json").exists() and not (sweep / "1" / "results.json").exists()
    before = _evaluation_files(tmp_path / "out")
    assert len(before) >= 1 + 4  # clean + the first job's four eps

    run_py(*args)
    after = _evaluation_files(tmp_path / "out")
    assert len(after) == 1 + 2 * 4  # clean + 2 attacks x 4 eps, each computed once
    assert all(after[p] == mtime for p, mtime in before.items())  # finished ones not redone
    log0 = (sweep / "0" / "run.log").read_text()
    assert len(re.findall("attack .*: reusing the finished result", log0)) == 4
    assert "clean evaluation: reusing the finished result" in log0
    first = json.loads((sweep / "0" / "results.json").read_text())
    assert [e["eps"] for e in first["attacks"]] == [1, 2, 4, 8]


@pytest.mark.parametrize("launcher", ["submitit_slurm", "slurm"])
def test_slurm_launcher_configs_compose(launcher):
    proc = run_py(f"hydra/launcher={launcher}", "--cfg", "hydra")
    assert "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in proc.stdout
    if launcher == "slurm":
        assert "partition: gpu" in proc.stdout and "gpus_per_node: 1" in proc.stdout


def test_torchrun_two_process_evaluation_equals_one_process(tmp_path):
    common = ["attack=total", "attack.eps=[4]", "attack.steps=3", "logger=none", *TINY]
    common.append("device=cpu")  # gloo: ranks beyond the GPUs of a CUDA machine stay legal
    one = tmp_path / "one"
    run_py(*common, *paths(tmp_path), f"hydra.run.dir={one}")
    single = json.loads((one / "results.json").read_text())
    # same trained model, but no finished evaluations: the 2-process run recomputes them
    ckpt = tmp_path / "ckpt2"
    shutil.copytree(
        tmp_path / "out" / "checkpoints", ckpt, ignore=shutil.ignore_patterns("evaluations")
    )
    two = tmp_path / "two"
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run_py(
        *common,
        *paths(tmp_path),
        f"paths.checkpoints={ckpt}",
        f"hydra.run.dir={two}",
        launcher=torchrun,
    )
    double = json.loads((two / "results.json").read_text())
    assert double["model"]["cache_hit"] is True
    for task, metrics in single["clean"].items():
        assert double["clean"][task] == pytest.approx(metrics, rel=1e-9, abs=1e-12)
    (a,), (b,) = single["attacks"], double["attacks"]
    for task, metrics in a["tasks"].items():
        assert b["tasks"][task] == pytest.approx(metrics, rel=1e-9, abs=1e-12)
    assert b["diagnostics"]["samples"] == a["diagnostics"]["samples"] == 24


def test_torchrun_two_process_training(tmp_path):
    proc = run_py(
        "attack=none",
        "logger=none",
        "device=cpu",  # gloo: ranks beyond the GPUs of a CUDA machine stay legal
        *TINY,
        *paths(tmp_path),
        launcher=["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
    )
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()  # both ranks name the same folder
    assert (proc.stdout + proc.stderr).count("epoch 1/1") == 1  # only rank 0 logs INFO
    results = json.loads((run_dir / "results.json").read_text())
    assert results["model"]["cache_hit"] is False
    assert Path(results["model"]["checkpoint"]).is_file()
    assert 0 < results["clean"]["segment_semantic"]["pixel_acc"] <= 1
