"""The README's "Attack your own model" example, extracted from the README and run: the Python
API and the Hydra command give the same numbers, so the example stays true."""

from __future__ import annotations

import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest
from conftest import CONF
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from mtl_attack.runner import run

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> tuple[str, list[str]]:
    """(the Python file of the section, the overrides of its ``python run.py`` command)."""
    text = README.read_text()
    section = text[text.index("## Attack your own model") :]
    section = section[: section.index("\n## ", 10)]
    (python,) = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "TinyMTL" in b]
    bash = next(b for b in re.findall(r"```bash\n(.*?)```", section, re.S) if "run.py" in b)
    command = bash[bash.index("python run.py") :].replace("\\\n", " ").splitlines()[0]
    return python, shlex.split(command)[2:]


def test_readme_python_example_and_hydra_command_agree(tmp_path, monkeypatch, capsys):
    python, overrides = readme_example()
    assert python.startswith("# my_mtl_model.py") and "model=external" in overrides
    (tmp_path / "my_mtl_model.py").write_text(python)
    monkeypatch.chdir(tmp_path)  # the example's relative paths (data/, tiny_mtl.pt) land here
    monkeypatch.syspath_prepend(str(tmp_path))  # what running next to run.py gives
    monkeypatch.delitem(sys.modules, "my_mtl_model", raising=False)
    api = runpy.run_path("my_mtl_model.py", run_name="__main__")["results"]
    assert "dgba None 8" in capsys.readouterr().out
    assert [e["objective"] for e in api["attacks"]] == ["dgba"] * 3 + ["single"] * 3
    assert len(api["transfer"]) == 1 and api["attacks"][2]["avg_degradation"] > 0.1
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        # test-only additions: no W&B run, no progress bars, a run folder outside Hydra, and
        # the CPU the Python example runs on (bit-equality across devices is not expected)
        extra = ["logger=none", "progress=false", "device=cpu"]
        cfg = compose("config", overrides=[*overrides, *extra])
    with open_dict(cfg):
        cfg.hydra = None
        cfg.paths.run_dir = str(tmp_path / "run")
    results = run(cfg)
    assert results["clean"] == api["clean"]
    for ours, theirs in zip(results["attacks"], api["attacks"][:3]):
        for key in ("eps", "tasks", "avg_degradation", "min_degradation", "avg_loss_increase"):
            assert ours[key] == theirs[key], key
    quoted = re.search(r"dgba at eps 2/4/8 \(([\d.]+), ([\d.]+), ([\d.]+)\)", README.read_text())
    measured = [e["avg_degradation"] for e in results["attacks"]]
    assert measured == pytest.approx([float(q) for q in quoted.groups()], abs=2e-3)
