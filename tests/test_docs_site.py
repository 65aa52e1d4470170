"""The documentation site builds with ``mkdocs build --strict`` (mkdocs.yml): a page missing from
the build, a broken link or a missing anchor fails it. Skipped only when mkdocs or its theme is
not installed (the dev extra installs both)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from docs_pages import ROOT

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="mkdocs / mkdocs-material not installed: pip install -e '.[docs]' (dev includes it)",
)


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    # not -q: quiet mode hides the warnings that --strict turns into a failure
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml")]
    env = os.environ | {"NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [*cmd, "-d", str(site)], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_site_builds_strictly(tmp_path):
    proc = build(ROOT, tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "attacks" / "index.html").is_file()
    assert (
        'id="the-resolution-convention-evalresolution"'
        in (tmp_path / "site" / "own_model" / "index.html").read_text()
    )  # GitHub's anchor rules on the site too


def test_a_broken_anchor_fails_the_build(tmp_path):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "index.md"
    page.write_text(page.read_text() + "\nSee [nowhere](attacks.md#no-such-section).\n")
    proc = build(tmp_path, tmp_path / "site")
    assert proc.returncode != 0
    assert "no-such-section" in proc.stderr
