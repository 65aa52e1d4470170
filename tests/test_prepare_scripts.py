"""The prepare scripts as a user runs them: one-line errors and exit code 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_prepare_nyuv2_missing_file_is_one_line_error(tmp_path):
    cmd = [sys.executable, str(ROOT / "scripts" / "prepare_nyuv2.py"), "--source", "labeled-mat",
           "--mat", str(tmp_path / "nyu_depth_v2_labeled.mat"), "--splits", "s.mat",
           "--class-map", "c.mat", "--out", str(tmp_path / "out")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: missing file ") and proc.stderr.count("\n") == 1
    assert "nyu_depth_v2_labeled.mat" in proc.stderr and "Traceback" not in proc.stderr
