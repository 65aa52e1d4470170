"""Adversarial training: the update sees attacked inputs inside the budget, for every training
attack; configs fail clearly; the robust model is trained, cached and attacked end to end."""

from __future__ import annotations

import pytest
import torch
from defense_helpers import build, tiny_cfg

from mtl_attack.attacks import OBJECTIVES
from mtl_attack.defense import fit
from mtl_attack.defense.training import train_step
from mtl_attack.evaluation import split_batch
from mtl_attack.runner import build_defense, run

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def _record_inputs(model):
    """Every forward's (training mode, input) via a forward pre-hook on the real model."""
    seen: list[tuple[bool, torch.Tensor]] = []
    model.register_forward_pre_hook(lambda m, args: seen.append((m.training, args[0].detach())))
    return seen


def _one_step(cfg):
    tasks, model, loader, _, opt, sched, _ = build(cfg)
    images, targets = split_batch(next(iter(loader)), tasks, torch.device("cpu"))
    before = [p.detach().clone() for p in model.parameters()]
    seen = _record_inputs(model)
    model.train()
    train_step(model, tasks, images, targets, opt, sched, build_defense(cfg, tasks))
    changed = any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    return images, seen, changed, model


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_update_trains_on_attacked_batch_within_budget(tmp_path, data_dir, objective):
    extra = ["defense.task=normal"] if objective == "single" else []
    cfg = tiny_cfg(tmp_path, data_dir, "defense=adv_train", f"defense.attack={objective}",
                   "defense.steps=2", "defense.eps=4", *extra)  # fmt: skip
    images, seen, changed, model = _one_step(cfg)
    assert changed and model.training
    assert any(not training for training, _ in seen)  # the attack ran in eval mode
    (update_input,) = [x for training, x in seen if training]  # adversarial only
    delta = (update_input - images).abs().amax()
    assert 0 < delta <= 4 / 255 + 1e-6
    assert update_input.min() >= 0 and update_input.max() <= 1


def test_clean_weight_adds_the_clean_batch(tmp_path, data_dir):
    cfg = tiny_cfg(tmp_path, data_dir, "defense=adv_train", "defense.attack=total",
                   "defense.steps=1", "defense.clean_weight=0.5")  # fmt: skip
    images, seen, changed, _ = _one_step(cfg)
    adv, clean = [x for training, x in seen if training]
    assert changed and torch.equal(clean, images) and not torch.equal(adv, images)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("defense.attack=pgd", r"defense.attack must be one of \['single', 'total'"),
        ("defense.attack=single", r"defense.attack=single needs defense.task=<one of"),
        ("defense.step=sgd", r"defense.step must be one of \['fgsm'"),
        ("defense.clean_weight=1.0", r"defense.clean_weight must be in \[0, 1\)"),
    ],
)
def test_bad_defense_config_is_a_clear_error(tmp_path, data_dir, override, message):
    cfg = tiny_cfg(tmp_path, data_dir, "defense=adv_train", override)
    tasks, *_ = build(cfg)
    with pytest.raises(ValueError, match=message):
        build_defense(cfg, tasks)


def test_adversarial_resume_after_crash_is_exact(tmp_path, data_dir):
    """Random starts draw from the torch RNG: the checkpoint must restore it."""
    adv = ["defense=adv_train", "defense.steps=1", "defense.attack=dgba"]

    def train(out, crash_at=None):
        cfg = tiny_cfg(out, data_dir, *adv)
        tasks, model, loader, _, opt, sched, ckpt = build(cfg)
        views, calls = build_defense(cfg, tasks), [0]

        def crashing(m, x, t):
            calls[0] += 1
            if calls[0] == crash_at:
                raise KeyboardInterrupt  # the job dies between checkpoints
            return views(m, x, t)

        fit(model, tasks, loader, opt, torch.device("cpu"), 3, sched, views=crashing,
            checkpoint=ckpt, checkpoint_every=4, progress=False)  # fmt: skip
        return ckpt

    straight = train(tmp_path / "a").read()
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "b", crash_at=11)
    resumed = train(tmp_path / "b").read()
    assert resumed["step"] == straight["step"] == 18
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name


def test_run_trains_robust_model_and_records_defense_and_attack(tmp_path, data_dir):
    common = ["train.epochs=1", "attack=dgba", "attack.eps=[4]", "attack.steps=2"]
    robust = run(tiny_cfg(tmp_path, data_dir, "defense=adv_train", "defense.attack=total",
                          "defense.steps=1", *common))  # fmt: skip
    clean = run(tiny_cfg(tmp_path, data_dir, *common))
    assert robust["model"]["checkpoint"] != clean["model"]["checkpoint"]  # defense in cache key
    assert robust["defense"]["adversarial"] and robust["defense"]["attack"] == "total"
    assert robust["defense"]["eps"] == 8.0
    assert clean["defense"] == {"name": "none", "adversarial": False}
    (entry,) = robust["attacks"]  # evaluated with the configured attack, not the training one
    assert (entry["objective"], entry["eps"]) == ("dgba", 4)
    again = run(tiny_cfg(tmp_path, data_dir, "defense=adv_train", "defense.attack=total",
                         "defense.steps=1", *common))  # fmt: skip
    assert again["model"]["cache_hit"]
