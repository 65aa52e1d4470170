"""Two identical ``python run.py`` started at the same moment (issue 10, item 3): two complete
run folders (no shared run.log, results.json or W&B folder), one training, one computation of
each evaluation (the second job waits on the locks and reuses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from wandb_records import run_files

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def test_two_identical_runs_at_once_keep_apart_and_compute_once(tmp_path):
    args = [
        "dataset.num_train=32",
        "dataset.num_test=16",
        "dataset.resolution=32",
        "train.epochs=1",
        "train.batch_size=16",
        "eval.batch_size=8",
        "attack.eps=[2,4]",
        "attack.steps=2",
        "progress=false",
        f"paths.output_dir={tmp_path}/out",
        f"paths.data_dir={tmp_path}/data",
    ]
    cmd = [sys.executable, str(ROOT / "run.py"), *args]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]

    runs = sorted((tmp_path / "out" / "runs").iterdir())
    assert len(runs) == 2
    logs = [(r / "run.log").read_text() for r in runs]
    for run_dir in runs:
        assert json.loads((run_dir / "results.json").read_text())["attacks"]
        assert len(run_files(run_dir)) == 1  # its own W&B run
    assert sum("epoch 1/1" in log for log in logs) == 1  # trained once
    assert sum("reusing cached model" in log for log in logs) == 1
    # clean + 2 eps: each computed by one job and reused by the other
    assert sum(log.count("reusing the finished result") for log in logs) == 3
    evaluations = list((tmp_path / "out" / "checkpoints").rglob("evaluations/*.json"))
    assert len(evaluations) == 3
    first, second = (json.loads((r / "results.json").read_text()) for r in runs)
    assert first["clean"] == second["clean"]
    assert [e["tasks"] for e in first["attacks"]] == [e["tasks"] for e in second["attacks"]]
