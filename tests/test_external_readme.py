"""The "Attack your own model" examples, extracted from the documentation and run: the complete
example of docs/own_model.md (the Python API and the Hydra command give the same numbers) and
the README's short Python sketch, so the examples stay true wherever they live."""

from __future__ import annotations

import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest
from conftest import CONF
from docs_pages import ROOT, pages
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from torch.utils.data import DataLoader

from mtl_attack.data.synthetic import SyntheticBenchmark
from mtl_attack.runner import run
from mtl_attack.tasks import tasks_for

PYTHON = re.compile(r"```python\n(.*?)```", re.S)


def example_page() -> Path:
    """The one documentation page that holds the complete TinyMTL example."""
    (page,) = [p for p in pages() if "class TinyMTL" in "".join(PYTHON.findall(p.read_text()))]
    return page


def readme_example() -> tuple[str, list[str]]:
    """(the Python file of the example, the overrides of its ``python run.py`` command)."""
    text = example_page().read_text()
    (python,) = [b for b in PYTHON.findall(text) if "class TinyMTL" in b]
    bash = next(b for b in re.findall(r"```bash\n(.*?)```", text, re.S) if "run.py" in b)
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
    quoted = re.search(
        r"dgba at eps 2/4/8 \(([\d.]+), ([\d.]+), ([\d.]+)\)", example_page().read_text()
    )
    measured = [e["avg_degradation"] for e in results["attacks"]]
    assert measured == pytest.approx([float(q) for q in quoted.groups()], abs=2e-3)


def test_the_readme_python_sketch_runs(tmp_path, monkeypatch, capsys):
    """The README's sketch, with the names it assumes (``net``, ``tasks``, ``test_loader``) given:
    an untrained TinyMTL of the docs example on a tiny synthetic split."""
    (sketch,) = PYTHON.findall((ROOT / "README.md").read_text())
    python, _ = readme_example()
    (tmp_path / "my_mtl_model.py").write_text(python)
    tiny_mtl = runpy.run_path(str(tmp_path / "my_mtl_model.py"))["TinyMTL"]  # not __main__
    data = SyntheticBenchmark(str(tmp_path / "data"), num_train=8, num_test=8, resolution=32)
    data.prepare()
    names = {"net": tiny_mtl(), "tasks": tasks_for(data)}
    names["test_loader"] = DataLoader(data.split("test"), batch_size=8)
    exec(compile(sketch, "README.md", "exec"), names)
    assert [a["eps"] for a in names["results"]["attacks"]] == [2, 4, 8]
    printed = capsys.readouterr().out.strip()
    assert printed == str([round(a["avg_degradation"], 3) for a in names["results"]["attacks"]])
