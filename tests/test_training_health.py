"""Training health: a NaN loss stops training and keeps the last good checkpoint; validation
metrics reach W&B every epoch; the lr schedule is configurable."""

from __future__ import annotations

import pytest
import torch
from defense_helpers import build, tiny_cfg
from wandb_records import closed_records, run_files

from mtl_attack.defense import NonFiniteLossError, fit
from mtl_attack.defense.training import clean_views
from mtl_attack.runner import build_model, run

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, data_dir):
    cfg = tiny_cfg(tmp_path, data_dir)
    tasks, model, loader, _, opt, sched, ckpt = build(cfg)
    calls = 0

    def poisoned(model, images, targets):  # from step 6 on the batch is NaN: so is the loss
        nonlocal calls
        calls += 1
        return clean_views(model, images * float("nan") if calls >= 6 else images, targets)

    with pytest.raises(NonFiniteLossError, match="non-finite training loss") as err:
        fit(model, tasks, loader, opt, torch.device("cpu"), 3, sched, views=poisoned,
            checkpoint=ckpt, checkpoint_every=2, progress=False)  # fmt: skip
    assert "at step 6" in str(err.value)
    assert f"last good checkpoint is {ckpt.path} (step 4)" in str(err.value)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # no step was taken

    state = ckpt.read()
    assert state["step"] == 4
    fresh = build_model(cfg, tasks)
    fresh.load_state_dict(state["model"])
    assert all(torch.isfinite(p).all() for p in fresh.parameters())


def _history(run_file) -> list[dict[str, float]]:
    rows = []
    for rec in closed_records(run_file):  # waits for W&B's writer to finish the file
        if rec.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): item.value_json
                         for item in rec.history.item})  # fmt: skip
    return rows


def test_validation_metrics_logged_to_wandb_every_epoch(tmp_path, data_dir):
    cfg = tiny_cfg(
        tmp_path,
        data_dir,
        "logger=wandb",
        "logger.mode=offline",
        f"logger.dir={tmp_path}/wb",
        "train.epochs=2",
        "train.val_every=1",
        "train.scheduler._target_=mtl_attack.defense.schedules.step_decay",
        "~train.scheduler.warmup_steps",
        "+train.scheduler.every=4",
    )
    run(cfg)
    (run_file,) = run_files(tmp_path / "wb")
    rows = [r for r in _history(run_file) if "val/segment_semantic/miou" in r]
    assert [float(r["epoch"]) for r in rows] == [1.0, 2.0]
    for row in rows:
        assert {"val/depth_zbuffer/abs_err", "val/normal/angle_mean", "train/normal/loss"} <= set(
            row
        )


def test_step_decay_schedule_halves_lr(tmp_path, data_dir):
    cfg = tiny_cfg(
        tmp_path,
        data_dir,
        "train.scheduler._target_=mtl_attack.defense.schedules.step_decay",
        "~train.scheduler.warmup_steps",
        "+train.scheduler.every=4",
    )
    tasks, model, loader, _, opt, sched, _ = build(cfg)
    fit(model, tasks, loader, opt, torch.device("cpu"), 1, sched, progress=False)  # 6 steps
    assert opt.param_groups[0]["lr"] == pytest.approx(float(cfg.train.optimizer.lr) * 0.5)
