"""Every ``python run.py`` / ``torchrun ... run.py`` command in README.md and in every page under
docs/ composes as written.

The commands are taken from the pages' code blocks (backslash continuations joined, comments
dropped) and inline code spans. Each is composed with Hydra exactly as ``run.py`` would: a
multirun (``-m``) is expanded into its jobs like Hydra's basic sweeper does, including the
sweeper parameters an ``+experiment=`` overlay sets. For every job the sharing layout is built
and the attacks are constructed, so an out-of-range layout index or a bad attack setting fails
here too. Nothing is trained or run.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from docs_pages import pages, split_code
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mtl_attack.runner import build_attacks
from mtl_attack.tasks import build_tasks

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def readme_commands(text: str) -> list[str]:
    """The run.py command lines of one page (README.md or a docs page), in order."""
    commands = []
    blocks, prose = split_code(text)
    prose = "\n".join(prose)
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            if "run.py" in line:
                tokens = shlex.split(line, comments=True)
                if "run.py" in tokens:
                    commands.append(shlex.join(tokens))
    for span in re.findall(r"`([^`]*run\.py[^`]*)`", prose, re.S):
        tokens = shlex.split(span.replace("\n", " "))
        if tokens[0] in ("python", "torchrun") and "run.py" in tokens:  # not a mention
            commands.append(shlex.join(tokens))
    return commands


def job_overrides(command: str) -> tuple[list[list[str]], bool]:
    """(overrides of every job, multirun?) of one command, as run.py would see them."""
    tokens = shlex.split(command)
    args = tokens[tokens.index("run.py") + 1 :]
    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("--cfg", "-c", "--package", "-p"):
            skip = True
        elif not a.startswith("-"):
            overrides.append(a)
    if not multirun:
        return [overrides], False
    return sweep_jobs(overrides), True


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """Jobs of a sweep that use every swept value at least once (the full product of the
    basic sweeper would compose the same values many times over)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    (jobs,) = BasicSweeper.split_arguments(parsed, None)
    columns = [list(dict.fromkeys(job[i] for job in jobs)) for i in range(len(jobs[0]))]
    longest = max([len(c) for c in columns] + [1])
    return [[c[i % len(c)] for c in columns] for i in range(longest)]


def compose_job(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def check_job(cfg) -> None:
    """Build what a bad value would break before training: the layout and the attacks."""
    tasks = build_tasks(list(cfg.dataset.tasks), int(cfg.dataset.get("num_classes", 13)))
    blocks = 5  # every backbone has 5 coarse blocks
    instantiate(cfg.sharing)(num_tasks=len(tasks), num_blocks=blocks, task_names=list(tasks))
    if cfg.attack.name != "none":
        assert build_attacks(cfg, tasks)


PAGES = {str(page.relative_to(ROOT)): readme_commands(page.read_text()) for page in pages()}
COMMANDS = [
    pytest.param(command, id=f"{name}: {command}")
    for name, commands in PAGES.items()
    for command in commands
]


def test_the_readme_and_docs_have_the_commands_users_copy():
    every = [c for commands in PAGES.values() for c in commands]
    assert len(every) >= 60 and len(PAGES["README.md"]) >= 10
    assert "python run.py" in every and any(c.startswith("torchrun") for c in every)
    for page in ("docs/attacks.md", "docs/sharing.md", "docs/training.md", "docs/sweeps.md"):
        assert len(PAGES[page]) >= 3, page  # the pages that moved out of the README


def test_commands_are_read_from_blocks_continuations_and_spans():
    page = (
        "Run `python run.py attack=none` or see `run.py`.\n```bash\n"
        "python run.py -m sharing=layout \\\n    sharing.index=0,1  # a sweep\n"
        "# python run.py commented=out\n```\n"
    )
    assert readme_commands(page) == [
        "python run.py -m sharing=layout sharing.index=0,1",
        "python run.py attack=none",
    ]


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_composes(command):
    jobs, multirun = job_overrides(command)
    first = compose_job(jobs[0])
    params = first.hydra.sweeper.params
    params = OmegaConf.to_container(params) if multirun and params else {}
    extra = [
        f"{k}={v}" for k, v in params.items() if not any(o.startswith(f"{k}=") for o in jobs[0])
    ]
    if extra:  # an experiment overlay's own sweep
        jobs = sweep_jobs(jobs[0] + extra)
    for job in jobs:
        check_job(compose_job(job))


def test_a_wrong_command_fails_this_check():
    """The check is not vacuous: the README's old joblib example (no sharing=layout) fails."""
    bad = "python run.py -m hydra/launcher=joblib hydra.launcher.n_jobs=2 sharing.index=0,1"
    jobs, _ = job_overrides(bad)
    with pytest.raises(Exception, match="sharing.index"):
        compose_job(jobs[0])
    (job,), _ = job_overrides("python run.py sharing=layout sharing.index=99")
    with pytest.raises(ValueError, match="out of range"):
        check_job(compose_job(job))
