"""Bad input fails early, in one line, and loses nothing (issue 10, items 4-5): attack config
mistakes before any training, divergence caught (not only NaN), an untrained model never
cached as trained, too few images for a batch, the one-line errors of run.py, read-only
caches, result file permissions."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mtl_attack.defense import LossHealth, TrainingDivergedError
from mtl_attack.runner import run
from mtl_attack.runner.build import attack_targets
from mtl_attack.utils.io import file_lock, write_json

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
TINY = [
    "dataset.num_train=32",
    "dataset.num_test=8",
    "dataset.resolution=32",
    "train.epochs=1",
    "train.batch_size=16",
    "progress=false",
]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["attack=single", "attack.task=nonexistent"], "attack.task='nonexistent' is not a task"),
        (["attack.task=nonexistent"], "attack.task='nonexistent' is not a task .* ignores"),
        (["model=external"], "model.checkpoint, model.factory._target_ must be set"),
        (["model=treemtl"], "model.checkpoint must be set"),
        (["+attack.stepz=3"], "attack.stepz is not a setting of attack=dgba"),
        (["attack.eps=[-4]"], "attack.eps must be >= 0"),
        (["attack/step=fgsm", "attack.steps=5"], "fgsm is one step of size eps"),
    ],
)
def test_bad_attack_config_fails_before_any_training(tiny_cfg, tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        run(tiny_cfg(*override))
    assert not (tmp_path / "outputs" / "checkpoints").exists()  # nothing trained or cached
    assert not (tmp_path / "run" / "wandb").exists()  # no W&B run left behind


def test_attack_task_of_a_multitask_objective_is_named_as_ignored(caplog):
    tasks = {"segment_semantic": None, "normal": None}
    acfg = OmegaConf.create({"name": "dgba", "task": "normal"})
    with caplog.at_level(logging.WARNING, logger="mtl_attack"):
        assert attack_targets(acfg, tasks) == [None]
    assert "attack.task=normal is ignored: attack=dgba attacks every task" in caplog.text
    caplog.clear()
    assert attack_targets(OmegaConf.create({"name": "dgba", "task": None}), tasks) == [None]
    assert not caplog.text


def run_py(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "run.py"), *TINY, f"paths.output_dir={tmp}/out"]
    cmd += [f"paths.data_dir={tmp}/data", *args]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+attack.stepz=3", "error: attack.stepz is not a setting of attack=dgba"),
        ("sharing=layout sharing.index=99", "error: sharing.index=99 is out of range"),
        ("model=external", "error: model.checkpoint, model.factory._target_ must be set"),
    ],
)
def test_user_errors_are_one_line_on_screen_and_last_in_run_log(tmp_path, override, message):
    proc = run_py(tmp_path, *override.split())
    assert proc.returncode == 1
    screen = (proc.stdout + proc.stderr).strip().splitlines()
    assert message in screen[-1]
    assert not any("Traceback" in line or "Error in call" in line for line in screen)
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    assert message in (run_dir / "run.log").read_text().strip().splitlines()[-1]
    assert not (tmp_path / "out" / "checkpoints").exists()
    assert not (run_dir / "wandb").exists()


def test_exploding_loss_stops_training_and_caches_nothing(tiny_cfg, tmp_path):
    """lr=1e6 gives finite losses around 1e9 (no NaN): caught as divergence."""
    cfg = tiny_cfg("train.optimizer.lr=1e6", "attack=none", "logger=none")
    with pytest.raises(TrainingDivergedError, match=r"training diverged: .* more than 100x"):
        run(cfg)
    checkpoints = tmp_path / "outputs" / "checkpoints"
    assert not list(checkpoints.rglob("model.pt")) and not list(checkpoints.rglob("*.pt"))


def test_a_run_that_does_not_learn_is_refused():
    """Hand values: first step 4.0; epoch means 3.0 then 3.5 (two epochs): not learning."""
    health = LossHealth(factor=100)
    for loss in (4.0, 2.0):
        health.step(loss)
    health.end_epoch(0, 2, 3.0, "cpu")
    health.step(3.5)
    with pytest.raises(TrainingDivergedError, match=r"last epoch \(3\.5\) .* first epoch's \(3\)"):
        health.end_epoch(1, 2, 3.5, "cpu")
    healthy = LossHealth(factor=100)
    healthy.step(4.0)
    healthy.end_epoch(0, 2, 3.0, "cpu")
    healthy.step(2.0)
    healthy.end_epoch(1, 2, 2.5, "cpu")  # below the first epoch: fine
    spike = LossHealth(factor=10)
    spike.step(1.0)
    spike.step(10.5)  # > 10 x the first step
    with pytest.raises(TrainingDivergedError, match="reached 10.5 in epoch 1"):
        spike.end_epoch(0, 5, 5.0, "cpu")


def test_zero_epochs_evaluates_the_untrained_model_and_caches_nothing(tiny_cfg, tmp_path):
    results = run(tiny_cfg("train.epochs=0", "attack.eps=[2]", "attack.steps=1", "logger=none"))
    assert results["model"]["untrained"] is True and results["model"]["checkpoint"] is None
    assert results["model"]["key"].endswith("-untrained")
    assert results["attacks"][0]["identity"]["model"].endswith("-untrained")
    assert not list((tmp_path / "outputs").rglob("model.pt"))
    assert not list((tmp_path / "outputs").rglob("evaluations/*.json"))


def test_fewer_images_than_a_batch_is_one_clear_line(tiny_cfg):
    with pytest.raises(ValueError, match=r"has 8 images, fewer than train.batch_size=16") as err:
        run(tiny_cfg("dataset.num_train=8", "logger=none"))
    assert "\n" not in str(err.value)


def test_results_files_get_the_usual_mode(tmp_path):
    path = write_json(tmp_path / "results.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600


def test_lock_in_a_read_only_place_runs_unlocked():
    """sysfs refuses new files even to root (as a read-only cache folder does to a user): the
    block runs unlocked instead of failing to open the lock file."""
    path = Path("/sys/mtl_attack_cache.lock")
    entered = False
    with file_lock(path):
        entered = True
    assert entered and not path.exists()
