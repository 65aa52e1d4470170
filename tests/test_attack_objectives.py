"""The literature's multi-task objectives against short textbook references (issue 12):
simplex projection, MGDA, L-inf MGDA (scipy's linprog), PCGrad, IMTL-G, DB-MTL, RELATIVE,
CYCLIC, MINMAX (gamma -> inf is DGBA), the metric proxies, and per-sample state that never
leaks across batches, restarts or calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from mtl_attack.attacks import Aggregate, DynamicGradientBalancing, MinMax, build_attack
from mtl_attack.attacks.proxies import metric_degradation, metric_values
from mtl_attack.attacks.simplex import (
    linf_min_norm,
    min_norm,
    project_simplex,
    simplex_grid,
    simplex_qp,
)
from tests.attack_setup import single_thread, tiny_batch, tiny_model, tiny_tasks

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def textbook_projection(v: np.ndarray) -> np.ndarray:
    """Duchi et al. (2008), Figure 1, one vector at a time."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    rho = max(j for j in range(1, len(v) + 1) if u[j - 1] - (css[j - 1] - 1) / j > 0)
    theta = (css[rho - 1] - 1) / rho
    return np.maximum(v - theta, 0)


def test_simplex_projection_hand_cases():
    cases = {
        (0.5, 0.5): (0.5, 0.5),
        (2.0, 0.0): (1.0, 0.0),
        (0.0, 0.0, 0.0): (1 / 3, 1 / 3, 1 / 3),
        (1.0, 1.0, -5.0): (0.5, 0.5, 0.0),
        (0.4, 0.9, 0.1): (0.25, 0.75, 0.0),  # tau = (1.3 - 1) / 2 on the two largest
        (0.1, 1.2, 0.3): (0.0, 0.95, 0.05),  # tau = 0.25 on the two largest
        (-1.0, -1.0): (0.5, 0.5),
    }
    for v, expected in cases.items():
        got = project_simplex(torch.tensor([v], dtype=torch.float64))[0]
        torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


def test_simplex_projection_matches_sort_reference():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(200, 5, generator=gen, dtype=torch.float64) * 3
    got = project_simplex(v)
    expected = np.stack([textbook_projection(row) for row in v.numpy()])
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
    assert (got >= 0).all() and torch.allclose(got.sum(1), torch.ones(200, dtype=torch.float64))


def test_simplex_grid():
    grid = simplex_grid(3, 4)
    assert len(grid) == 15 and len(set(grid)) == 15
    assert grid[:3] == [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    assert all(abs(sum(w) - 1) < 1e-12 and min(w) >= 0 for w in grid)
    assert len(simplex_grid(3, 3)) == 10 and len(simplex_grid(2, 4)) == 5


def test_mgda_two_tasks_equals_closed_form():
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(64, 2, 30, generator=gen, dtype=torch.float64)
    g[:16, 1] = g[:16, 0] * 3 + 0.1 * g[:16, 1]  # nearly aligned: a vertex is optimal
    g1, g2 = g[:, 0], g[:, 1]
    # w1 = clip(<g2 - g1, g2> / ||g1 - g2||^2, 0, 1) (Sener & Koltun 2018, Algorithm 1)
    w1 = (((g2 - g1) * g2).sum(1) / ((g1 - g2) ** 2).sum(1)).clamp(0, 1)
    weights = min_norm(torch.bmm(g, g.transpose(1, 2)))
    torch.testing.assert_close(weights[:, 0], w1, atol=1e-7, rtol=0)
    torch.testing.assert_close(weights.sum(1), torch.ones(64, dtype=torch.float64))


def test_simplex_qp_beats_every_grid_point():
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(32, 4, 4, generator=gen, dtype=torch.float64)
    hessian, linear = a @ a.transpose(1, 2), torch.randn(32, 4, generator=gen, dtype=torch.float64)
    w = simplex_qp(hessian, linear)
    grid = torch.tensor(simplex_grid(4, 12), dtype=torch.float64)  # (P, 4)

    def value(x):  # (B, P, T) -> (B, P)
        return 0.5 * torch.einsum("bpi,bij,bpj->bp", x, hessian, x) + torch.einsum(
            "bpi,bi->bp", x, linear
        )

    best = value(w.unsqueeze(1))[:, 0]
    assert (best <= value(grid.expand(32, -1, -1)).amin(1) + 1e-10).all()


def linprog_l1(g: np.ndarray) -> float:
    """min_{w in simplex} ||G^T w||_1 as a linear program in (w, s): min sum s,
    -s <= G^T w <= s, sum w = 1, w >= 0."""
    tasks, dims = g.shape
    cost = np.r_[np.zeros(tasks), np.ones(dims)]
    upper = np.block([[g.T, -np.eye(dims)], [-g.T, -np.eye(dims)]])
    equal = np.r_[np.ones(tasks), np.zeros(dims)][None]
    res = linprog(cost, A_ub=upper, b_ub=np.zeros(2 * dims), A_eq=equal, b_eq=[1.0])
    assert res.status == 0
    return res.fun


@pytest.mark.parametrize("tasks,dims", [(2, 12), (3, 40), (4, 25), (5, 120)])
def test_linf_mgda_weights_reach_linprog_optimum(tasks, dims):
    gen = torch.Generator().manual_seed(tasks)
    scale = torch.tensor([10.0] + [1.0] * (tasks - 1), dtype=torch.float64).view(1, -1, 1)
    g = torch.randn(6, tasks, dims, generator=gen, dtype=torch.float64) * scale
    w = linf_min_norm(g)
    ours = torch.bmm(w.unsqueeze(1), g).abs().sum(dim=(1, 2))
    optimum = torch.tensor([linprog_l1(x.numpy()) for x in g], dtype=torch.float64)
    assert (w >= 0).all() and torch.allclose(w.sum(1), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(ours, optimum, rtol=1e-5, atol=0)


def per_task_inputs(seed: int = 0):
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch(seed=seed)
    x = images.clone().requires_grad_(True)
    preds = model(x)
    losses = {t: task.loss(preds[t], targets[t]) for t, task in tasks.items()}
    grads = torch.stack(
        [torch.autograd.grad(losses[t].sum(), x, retain_graph=True)[0] for t in tasks]
    )  # (T, B, C, H, W)
    scaled = grads / torch.stack([losses[t].detach() for t in tasks]).view(3, -1, 1, 1, 1)
    return tasks, x, losses, scaled.flatten(2).transpose(0, 1)  # (B, T, D) = g_t / L_t


def test_pcgrad_equals_textbook_loop():
    tasks, x, losses, g = per_task_inputs()
    pcgrad = Aggregate(tasks, aggregator="pcgrad", seed=5)
    pcgrad.start(losses)
    got = pcgrad.direction(losses, x).flatten(1)
    order = torch.rand(g.shape[0], 3, generator=torch.Generator().manual_seed(5)).argsort(1)
    for b in range(g.shape[0]):  # Yu et al. 2020, Algorithm 1, one sample at a time
        merged = torch.zeros_like(g[b, 0])
        for i in range(3):
            gi = g[b, i].clone()
            for j in order[b].tolist():
                dot = gi @ g[b, j]
                if dot < 0:
                    gi = gi - dot / (g[b, j] @ g[b, j]) * g[b, j]
            merged += gi / 3
        torch.testing.assert_close(got[b], merged, rtol=1e-4, atol=1e-6)


def test_imtl_projects_equally_on_every_unit_gradient():
    tasks, x, losses, g = per_task_inputs()
    imtl = Aggregate(tasks, aggregator="imtl")
    imtl.start(losses)
    d = imtl.direction(losses, x).flatten(1).double()
    units = g.double() / g.double().norm(dim=2, keepdim=True)
    projections = torch.einsum("bd,btd->bt", d, units)
    torch.testing.assert_close(
        projections, projections[:, :1].expand_as(projections), rtol=1e-4, atol=1e-6
    )


def test_dbmtl_first_step_rescales_log_gradients_to_the_largest_norm():
    tasks, x, losses, g = per_task_inputs()
    db = Aggregate(tasks, aggregator="dbmtl")
    db.start(losses)
    got = db.direction(losses, x).flatten(1)
    norms = g.norm(dim=2)  # the EMA starts at 0, so (1 - beta) scales every task alike
    expected = 0.1 * ((norms.amax(1, keepdim=True) / norms).unsqueeze(2) * g).sum(1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)


def test_mgda_direction_gains_on_every_task():
    tasks, x, losses, g = per_task_inputs()
    mgda = Aggregate(tasks, aggregator="mgda")
    mgda.start(losses)
    d = mgda.direction(losses, x).flatten(1)
    # the min-norm point d satisfies <d, g_t> >= ||d||^2 for every task (first-order gain)
    gains = torch.einsum("bd,btd->bt", d, g)
    assert (gains >= (d * d).sum(1, keepdim=True) * (1 - 1e-3)).all()


def test_minmax_with_huge_gamma_equals_dgba():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch()
    for step in ("pgd", "mim"):
        dgba = build_attack("dgba", step, tasks, eps=8, steps=6)(model, images, targets)
        for gamma in (1e9, float("inf")):
            minmax = build_attack("minmax", step, tasks, eps=8, steps=6, beta=0.5, gamma=gamma)
            assert torch.equal(minmax(model, images, targets), dgba)
    minmax = build_attack("minmax", "pgd", tasks, eps=8, steps=6, beta=0.5, gamma=0.0)
    assert not torch.equal(minmax(model, images, targets), dgba)  # the weights do move


def test_minmax_weights_move_to_the_least_degraded_task():
    tasks, x, losses, _ = per_task_inputs()
    minmax = MinMax(tasks, beta=1.0, gamma=0.0)
    clean = {t: v.detach() for t, v in losses.items()}
    minmax.start(clean)
    grown = {t: v * (3.0 if t != "normal" else 1.1) for t, v in losses.items()}
    minmax.direction(grown, x)
    w = minmax.weights
    assert (w[:, 1] > 1 / 3).all() and (w[:, 0] < 1 / 3).all()  # normal moved least
    expected = project_simplex(
        1 / 3
        - (
            torch.stack([v for v in grown.values()], 1).detach()
            / torch.stack(list(clean.values()), 1)
        )
        .log()
        .double()
    )
    torch.testing.assert_close(w, expected)


def test_relative_equals_total_with_weights_one_over_clean_loss():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch(batch=3)
    with torch.no_grad():
        preds = model(images)
        clean = {t: task.loss(preds[t], targets[t]) for t, task in tasks.items()}
    for step in ("pgd", "apgd"):
        relative = build_attack("relative", step, tasks, eps=4, steps=5)(model, images, targets)
        for b in range(3):  # TOTAL's weights are per task, so one sample at a time
            weights = {t: 1.0 / float(clean[t][b]) for t in tasks}
            total = build_attack("total", step, tasks, eps=4, steps=5, task_weights=weights)
            one = {t: v[b : b + 1] for t, v in targets.items()}
            torch.testing.assert_close(
                relative[b : b + 1], total(model, images[b : b + 1], one), rtol=0, atol=1e-6
            )


def test_cyclic_equals_textbook_round_robin():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch()
    eps, steps = 8 / 255, 5
    adv = build_attack("cyclic", "pgd", tasks, eps=8, steps=steps)(model, images, targets)
    x, names = images.clone(), list(tasks)
    for k in range(steps):
        x.requires_grad_(True)
        t = names[k % 3]
        (grad,) = torch.autograd.grad(tasks[t].loss(model(x)[t], targets[t]).sum(), x)
        x = torch.min(
            torch.max(x.detach() + eps / steps * grad.sign(), images - eps), images + eps
        ).clamp(0, 1)
    torch.testing.assert_close(adv, x, rtol=0, atol=1e-7)


def test_metric_proxies_by_hand():
    tasks = tiny_tasks()
    seg = torch.zeros(2, 6, 1, 2)
    seg[0, 1] = 1.0  # sample 0 predicts class 1 on both pixels, sample 1 class 0
    normal = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).view(2, 3, 1, 1).expand(2, 3, 1, 2)
    depth = torch.tensor([[1.0, 2.0], [3.0, 3.0]]).view(2, 1, 1, 2)
    preds = {"segment_semantic": seg, "normal": normal, "depth_zbuffer": depth}
    targets = {
        "segment_semantic": torch.tensor([[[1, 255]], [[1, 2]]]),
        "normal": torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1).expand(2, 3, 1, 2),
        "depth_zbuffer": torch.tensor([[2.0, 0.0], [1.0, 1.0]]).view(2, 1, 1, 2),
    }
    values = metric_values(tasks, preds, targets)
    torch.testing.assert_close(values, torch.tensor([[1.0, 0.0, 1.0], [0.0, 90.0, 2.0]]))
    clean = torch.tensor([[1.0, 10.0, 0.5], [0.0, 45.0, 4.0]])
    torch.testing.assert_close(
        metric_degradation(tasks, preds, targets, clean),
        torch.tensor([[0.0, -1.0, 1.0], [1.0, 1.0, -0.5]]),
    )


STATEFUL = [
    ("minmax", {}),
    ("minmax", {"weights_from": "metric"}),
    ("relative", {}),
    ("cyclic", {}),
    ("aggregate", {"aggregator": "linf_mgda"}),
    ("aggregate", {"aggregator": "dbmtl"}),
    ("aggregate", {"aggregator": "pcgrad"}),
]


@pytest.mark.parametrize("objective,options", STATEFUL, ids=lambda v: str(v))
def test_state_never_leaks_across_batches_calls_or_restarts(objective, options):
    tasks = tiny_tasks()
    model = tiny_model(tasks).eval()
    (a, ya), (b, yb) = tiny_batch(seed=1), tiny_batch(batch=3, seed=2)

    def make(**loop):
        return build_attack(objective, "apgd", tasks, eps=8, steps=4, **loop, **options)

    reused = make()
    reused(model, a, ya)
    assert torch.equal(reused(model, b, yb), make()(model, b, yb))  # another batch
    assert torch.equal(reused(model, b, yb), make()(model, b, yb))  # the same call again
    # restart 2 draws the random start a fresh random-start run draws first; with no state
    # carried over from restart 1 it is that run, and each sample keeps the better of the two
    two = make(restarts=2, seed=3).run(model, b, yb)
    first = make(seed=3).run(model, b, yb)
    second = make(random_start=True, seed=3).run(model, b, yb)
    better = (second.score > first.score).view(-1, 1, 1, 1)
    assert torch.equal(two.images, torch.where(better, second.images, first.images))


def test_dgba_direction_is_unchanged_by_the_new_interface():
    tasks, x, losses, g = per_task_inputs()
    dgba = DynamicGradientBalancing(tasks)
    torch.testing.assert_close(
        dgba.direction(losses, x).flatten(1), g.sum(1), rtol=1e-4, atol=1e-7
    )
