"""Resumable training: a SIGKILLed run resumes to bit-identical weights and optimizer state;
another config's checkpoint is never resumed."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import torch
from defense_helpers import PYTHON, ROOT, build, child_env, tiny_cfg, tiny_overrides

from mtl_attack.defense import ForeignCheckpointError, fit
from mtl_attack.runner import run

torch.set_num_threads(1)  # bit-identical comparisons need one fixed thread count

KILL_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    sys.path.insert(0, {tests!r})
    from defense_helpers import build, tiny_cfg
    from mtl_attack.defense import fit
    from mtl_attack.defense.training import clean_views

    torch.set_num_threads(1)
    calls = 0

    def views(model, images, targets):  # clean training that dies hard when step 10 starts
        global calls
        calls += 1
        if calls == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)
        return clean_views(model, images, targets)

    tasks, model, loader, _, opt, sched, ckpt = build(tiny_cfg({out!r}, {data!r}))
    fit(model, tasks, loader, opt, torch.device("cpu"), 3, sched, views=views,
        checkpoint=ckpt, checkpoint_every=2, progress=False)
    """
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def _fit(cfg):
    tasks, model, loader, _, opt, sched, ckpt = build(cfg)
    prog = fit(model, tasks, loader, opt, torch.device("cpu"), 3, sched, checkpoint=ckpt,
               checkpoint_every=2, progress=False)  # fmt: skip
    return prog, ckpt


def _assert_same(a, b, path=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _assert_same(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}/{i}")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_sigkill_mid_epoch_then_resume_matches_straight_run(tmp_path, data_dir):
    straight, straight_ckpt = _fit(tiny_cfg(tmp_path / "straight", data_dir))
    assert straight.step == 18 and straight.resumed_from is None

    out = tmp_path / "killed"
    script = KILL_CHILD.format(tests=str(ROOT / "tests"), kill_at=10, out=str(out),
                               data=str(data_dir))  # fmt: skip
    child = subprocess.run([PYTHON, "-c", script], env=child_env(), cwd=ROOT, timeout=120)
    assert child.returncode == -signal.SIGKILL

    resumed, resumed_ckpt = _fit(tiny_cfg(out, data_dir))
    assert resumed.resumed_from == 8  # steps 9 was lost with the process; 8 is mid-epoch 2
    assert resumed.step == 18
    a, b = straight_ckpt.read(), resumed_ckpt.read()
    for part in ("model", "optimizer", "scheduler", "step"):
        _assert_same(a[part], b[part], part)


def _wait_for(path, proc, timeout=120.0):
    end = time.time() + timeout
    while not path.is_file():
        assert proc.poll() is None, "training finished or failed before its first checkpoint"
        assert time.time() < end, f"no checkpoint {path} after {timeout}s"
        time.sleep(0.005)


def test_rerunning_the_command_after_sigkill_resumes(tmp_path, data_dir):
    straight = run(tiny_cfg(tmp_path / "straight", data_dir, "train.epochs=6"))

    out = tmp_path / "killed"
    ckpt_dir = out / "checkpoints" / Path(straight["model"]["checkpoint"]).parent.name
    cli = tiny_overrides(out, data_dir, "train.epochs=6", f"hydra.run.dir={out}/run")
    proc = subprocess.Popen([PYTHON, "run.py", *cli], env=child_env(), cwd=ROOT)
    _wait_for(ckpt_dir / "train_state.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (ckpt_dir / "model.pt").exists(), "the run finished before it was killed"

    resumed = run(tiny_cfg(out, data_dir, "train.epochs=6"))  # the same command again
    assert json.loads((ckpt_dir / "spec.json").read_text())["resumed_from_step"] >= 2
    assert not (ckpt_dir / "train_state.pt").exists()  # removed once model.pt is final
    a = torch.load(straight["model"]["checkpoint"], weights_only=True)["model"]
    b = torch.load(resumed["model"]["checkpoint"], weights_only=True)["model"]
    _assert_same(a, b, "model")
    assert resumed["defense"] == {"name": "none", "adversarial": False}


def test_other_configs_checkpoint_is_not_resumed(tmp_path, data_dir):
    out = tmp_path / "shared"
    cfg_a = tiny_cfg(out, data_dir)
    tasks, model, loader, _, opt, sched, ckpt_a = build(cfg_a)
    fit(model, tasks, loader, opt, torch.device("cpu"), 1, sched, checkpoint=ckpt_a,
        checkpoint_every=2, progress=False)  # fmt: skip
    assert ckpt_a.exists()

    cfg_b = tiny_cfg(out, data_dir, "train.optimizer.lr=0.002")
    _, _, _, _, _, _, ckpt_b = build(cfg_b)
    assert ckpt_b.path.parent != ckpt_a.path.parent  # another cache key, another directory
    assert not ckpt_b.exists()
    prog_b, _ = _fit(cfg_b)
    assert prog_b.resumed_from is None

    ckpt_b.remove()
    shutil.copy(ckpt_a.path, ckpt_b.path)  # a file from config A in config B's directory
    with pytest.raises(ForeignCheckpointError, match="different config"):
        _fit(cfg_b)
