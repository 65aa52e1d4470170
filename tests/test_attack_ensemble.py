"""The worst-case ensemble, the weight frontier, and attack cost at the floor (issue 12):
per-sample selection is never worse than any member, one member is that member, the views'
predictions are the model's at the returned images, frontier vertices are SINGLE, and an attack
plus its evaluation runs steps x (forward + backward) + at most one forward pass per batch."""

from __future__ import annotations

import pytest
import torch

from mtl_attack.attacks import (
    DEFAULT_MEMBERS,
    Ensemble,
    Frontier,
    SignStep,
    build_attack,
    build_ensemble,
)
from mtl_attack.attacks.objectives import task_changes
from tests.attack_setup import single_thread, tiny_batch, tiny_model, tiny_tasks

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)

MEMBERS = {
    "dgba": ("dgba", {}),
    "minmax": ("minmax", {}),
    "mgda": ("aggregate", {"aggregator": "mgda"}),
    "single": ("single", {}),
}


def changes(tasks, outcome):
    """Per-sample, per-task relative loss change at an outcome. Shape: (B, T)."""
    stack = torch.stack([outcome.losses[t] for t in tasks], 1)
    clean = torch.stack([outcome.clean_losses[t] for t in tasks], 1)
    return task_changes(stack, clean, 1e-8)


def assert_preds_are_the_models(model, tasks, images, targets, outcome, task=None):
    """The outcome's losses and predictions are the model's at the outcome's images."""
    with torch.no_grad():
        preds = model(images)
    for t in [task] if task else tasks:
        torch.testing.assert_close(outcome.preds[t], preds[t], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            outcome.losses[t], tasks[t].loss(preds[t], targets[t]), rtol=1e-5, atol=1e-6
        )


def test_ensemble_is_never_worse_than_any_member_per_sample():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch(batch=6)
    ensemble = build_ensemble(tasks, eps=4, steps=4, members=MEMBERS)
    views = ensemble.run_views(model, images, targets)
    assert set(views) == {"mean", "min", "per_task"} and len(ensemble.members) == 6
    members = {n: m.run(model, images, targets) for n, m in ensemble.members.items()}
    mean, least = changes(tasks, views["mean"]).mean(1), changes(tasks, views["min"]).amin(1)
    per_task = changes(tasks, views["per_task"])
    for name, out in members.items():
        c = changes(tasks, out)
        assert (mean >= c.mean(1) - 1e-6).all() and (least >= c.amin(1) - 1e-6).all(), name
        assert (per_task >= c - 1e-6).all(), name
    # the selected values are attained: some member reaches each sample's value
    attained = torch.stack([changes(tasks, o).mean(1) for o in members.values()]).amax(0)
    torch.testing.assert_close(mean, attained, rtol=1e-5, atol=1e-6)
    for view, tally in ensemble.wins.items():
        assert sum(tally.values()) == 6, view
    assert set(ensemble.wins) == {"mean", "min"} | {f"per_task/{t}" for t in tasks}


def test_ensemble_views_carry_the_models_predictions_at_their_images():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch()
    views = build_ensemble(tasks, eps=4, steps=3, members=MEMBERS).run_views(
        model, images, targets
    )
    for view in ("mean", "min"):
        assert_preds_are_the_models(model, tasks, views[view].images, targets, views[view])
    per_task = views["per_task"]
    assert per_task.images is None and set(per_task.task_images) == set(tasks)
    for t, x in per_task.task_images.items():
        assert_preds_are_the_models(model, tasks, x, targets, per_task, task=t)
        assert (x - images).abs().max() <= 4 / 255 + 1e-6 and x.min() >= 0 and x.max() <= 1


def test_ensemble_of_one_member_is_that_member():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).train(), tiny_batch()
    member = build_attack("minmax", "apgd", tasks, eps=4, steps=4)
    alone = member.run(model, images, targets)
    views = Ensemble({"minmax": build_attack("minmax", "apgd", tasks, eps=4, steps=4)}).run_views(
        model, images, targets
    )
    assert model.training  # the ensemble restores the mode like any attack
    for view in ("mean", "min"):
        assert torch.equal(views[view].images, alone.images)
    for t in tasks:
        assert torch.equal(views["per_task"].task_images[t], alone.images)
        assert torch.equal(views["per_task"].preds[t], alone.preds[t])


def test_ensemble_call_returns_its_criterion_and_is_deterministic():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch()

    def ensemble():
        return build_ensemble(tasks, eps=4, steps=3, members=MEMBERS, random_start=True, seed=2)

    adv = ensemble()(model, images, targets)
    assert torch.equal(adv, ensemble()(model, images, targets))
    assert torch.equal(adv, ensemble().run_views(model, images, targets)["mean"].images)
    assert (adv - images).abs().max() <= 4 / 255 + 1e-6
    with pytest.raises(ValueError, match="criterion"):
        build_ensemble(tasks, eps=4, criterion="per_task")
    assert set(DEFAULT_MEMBERS) == {"dgba", "minmax", "linf_mgda", "total", "single"} | {
        "single_jsd",
        "minmax_jsd",
    }
    labels = list(build_ensemble(tasks, eps=4).members)
    assert labels[-2:] == ["single_jsd(segment_semantic)", "minmax_jsd"]
    assert build_ensemble(tasks, eps=4).members["minmax_jsd"].loss.label == "jsd"


def test_frontier_vertices_are_single_and_centre_is_relative():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch()
    frontier = Frontier(SignStep(), tasks, eps=8, resolution=3, steps=4)
    views = frontier.run_views(model, images, targets)
    assert len(views) == 10 and list(views)[:3] == [
        "w1.00_0.00_0.00",
        "w0.00_1.00_0.00",
        "w0.00_0.00_1.00",
    ]
    for t, name in zip(tasks, list(views)[:3]):
        single = build_attack("single", "pgd", tasks, eps=8, steps=4, target_task=t)
        assert torch.equal(views[name].images, single(model, images, targets))
    relative = build_attack("relative", "pgd", tasks, eps=8, steps=4)
    torch.testing.assert_close(views["w0.33_0.33_0.33"].images, relative(model, images, targets))
    assert frontier.weights()["w0.00_1.00_0.00"] == {
        "segment_semantic": 0.0,
        "normal": 1.0,
        "depth_zbuffer": 0.0,
    }


class PassCounter:
    """Counts the model's forward passes, and those with gradients on (each is followed by
    exactly one backward pass for single-backward objectives)."""

    def __init__(self, model):
        self.forward = self.with_grad = 0
        model.register_forward_hook(self.hook)

    def hook(self, module, inputs, output):
        self.forward += 1
        self.with_grad += int(torch.is_grad_enabled())

    def take(self) -> tuple[int, int]:
        counts = (self.forward, self.with_grad)
        self.forward = self.with_grad = 0
        return counts


def test_attack_cost_at_the_floor():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch()
    passes, k = PassCounter(model), 5
    pgd = build_attack("dgba", "pgd", tasks, eps=4, steps=k)
    pgd(model, images, targets)
    assert passes.take() == (k, k)  # images only: the steps, nothing else (FGSM: 1 + 1)
    out = pgd.run(model, images, targets)
    assert passes.take() == (k + 1, k)  # + the forward at the result: score, losses, preds
    assert_preds_are_the_models(model, tasks, out.images, targets, out)
    passes.take()
    apgd = build_attack("dgba", "apgd", tasks, eps=4, steps=k, random_start=True)
    apgd(model, images, targets)
    assert passes.take() == (k + 2, k)  # the clean pass + the last iterate's score
    out = apgd.run(model, images, targets, clean_losses=out.clean_losses)
    assert passes.take() == (k + 1, k)  # clean losses from the caller: no clean pass
    assert_preds_are_the_models(model, tasks, out.images, targets, out)
    passes.take()
    restarts = build_attack("total", "apgd", tasks, eps=4, steps=k, restarts=2).run(
        model, images, targets
    )
    assert passes.take() == (2 * (k + 1), 2 * k)  # the 2nd run reuses the 1st's clean losses
    assert_preds_are_the_models(model, tasks, restarts.images, targets, restarts)


def test_ensemble_members_share_the_clean_pass():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch()
    members = {"dgba": ("dgba", {}), "total": ("total", {})}
    passes, k = PassCounter(model), 3
    ensemble = build_ensemble(tasks, eps=4, steps=k, members=members, random_start=True)
    ensemble.run_views(model, images, targets)
    assert passes.take() == (1 + 2 * (k + 1), 2 * k)  # one clean pass for both members
    build_ensemble(tasks, eps=4, steps=k, members=members).run_views(model, images, targets)
    assert passes.take() == (2 * (k + 1), 2 * k)  # clean losses from the first step 0
