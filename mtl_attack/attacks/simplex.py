"""Batched solvers on the probability simplex of task weights (no loop over samples).

- :func:`project_simplex`: Euclidean projection onto {w >= 0, sum w = 1} (Duchi et al., ICML
  2008, "Efficient projections onto the l1-ball for learning in high dimensions": sort, cumulative
  sum, threshold), used by the min-max weight step.
- :func:`simplex_qp`: exact minimum of ``1/2 w^T H w + b^T w`` over the simplex, by enumerating
  the supports of w (2^T - 1 small KKT systems, all samples at once); MGDA's min-norm problem
  (Sener & Koltun, NeurIPS 2018) is ``H = Gram matrix, b = 0``.
- :func:`linf_min_norm`: ``min_{w in simplex} ||G^T w||_1`` (the L-infinity counterpart of
  MGDA, attacks_literature.md section 2.5), by Newton steps on the smoothed objective
  ``sum_i sqrt(u_i^2 + mu^2)`` with ``mu`` shrinking tenfold per stage.
- :func:`simplex_grid`: the lattice ``{k / n : k in N^T, sum k = n}`` (the frontier's weights).

Shape: weights (B, T); Gram / Hessian matrices (B, T, T); gradients G (B, T, D).
"""

from __future__ import annotations

import itertools

import torch

MAX_QP_TASKS = 10  # support enumeration solves 2^T - 1 systems: fine for T <= 10


def project_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row onto the simplex. Shape: (..., T) -> (..., T)."""
    u, _ = v.sort(dim=-1, descending=True)
    css = u.cumsum(dim=-1) - 1.0
    k = torch.arange(1, v.shape[-1] + 1, device=v.device, dtype=v.dtype)
    positive = u - css / k > 0  # true for k = 1..rho, false after
    rho = positive.to(torch.int64).cumsum(dim=-1).amax(dim=-1, keepdim=True)  # (..., 1)
    tau = css.gather(-1, rho - 1) / rho.to(v.dtype)
    return (v - tau).clamp_min(0.0)


def simplex_grid(num_tasks: int, resolution: int) -> list[tuple[float, ...]]:
    """Every ``w = k / resolution`` with non-negative integers ``k`` summing to ``resolution``;
    ``(resolution + T - 1) choose (T - 1)`` points, vertices first then in lexicographic order."""
    if num_tasks < 1 or resolution < 1:
        raise ValueError(f"simplex grid needs >= 1 task and resolution >= 1, got {resolution}")
    points = [
        tuple(k / resolution for k in ks)
        for ks in itertools.product(range(resolution + 1), repeat=num_tasks)
        if sum(ks) == resolution
    ]
    return sorted(points, key=lambda w: (max(w) < 1.0, [-x for x in w]))


def simplex_qp(hessian: torch.Tensor, linear: torch.Tensor | None = None) -> torch.Tensor:
    """Exact ``argmin_{w in simplex} 1/2 w^T H w + b^T w`` for positive semi-definite H.

    The minimizer is the stationary point of the problem restricted to its support S (the KKT
    system ``[[H_S, 1], [1^T, 0]] [w_S; lambda] = [-b_S; 1]``); every support is tried, those
    with ``w_S >= 0`` are feasible, and the feasible one with the lowest value wins. A tiny
    ridge on H keeps collinear task gradients solvable. Shape: (B, T, T), (B, T) -> (B, T).
    """
    batch, tasks, _ = hessian.shape
    if tasks > MAX_QP_TASKS:
        raise ValueError(f"simplex_qp enumerates supports; {tasks} tasks > {MAX_QP_TASKS}")
    dtype, device = hessian.dtype, hessian.device
    linear = torch.zeros(batch, tasks, dtype=dtype, device=device) if linear is None else linear
    scale = hessian.diagonal(dim1=1, dim2=2).mean(dim=1).abs().clamp_min(1e-30)
    ridged = hessian + (1e-9 * scale).view(-1, 1, 1) * torch.eye(tasks, dtype=dtype, device=device)
    best_w = torch.full((batch, tasks), 1.0 / tasks, dtype=dtype, device=device)
    best_v = torch.full((batch,), float("inf"), dtype=dtype, device=device)
    for size in range(1, tasks + 1):
        for support in itertools.combinations(range(tasks), size):
            idx = torch.tensor(support, device=device)
            kkt = torch.zeros(batch, size + 1, size + 1, dtype=dtype, device=device)
            kkt[:, :size, :size] = ridged[:, idx][:, :, idx]
            kkt[:, :size, size] = 1.0
            kkt[:, size, :size] = 1.0
            rhs = torch.cat([-linear[:, idx], torch.ones(batch, 1, dtype=dtype, device=device)], 1)
            sol, info = torch.linalg.solve_ex(kkt, rhs)
            w = torch.zeros_like(best_w)
            w[:, idx] = sol[:, :size]
            ok = (info == 0) & (sol[:, :size] >= 0).all(dim=1) & sol.isfinite().all(dim=1)
            value = 0.5 * torch.einsum("bi,bij,bj->b", w, hessian, w) + (linear * w).sum(dim=1)
            take = ok & (value < best_v)
            best_v = torch.where(take, value, best_v)
            best_w = torch.where(take.unsqueeze(1), w, best_w)
    return best_w


def min_norm(gram: torch.Tensor) -> torch.Tensor:
    """MGDA's weights ``argmin_{w in simplex} ||sum_t w_t g_t||^2`` from the Gram matrix
    ``M = G G^T``. Shape: (B, T, T) -> (B, T)."""
    return simplex_qp(gram)


def smoothed_l1(u: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """``sum_i sqrt(u_i^2 + mu^2)``, within ``D * mu`` above ``||u||_1``. Shape: (B, D) -> (B,)."""
    return (u * u + mu * mu).sqrt().sum(dim=1)


def linf_min_norm(
    grads: torch.Tensor,
    start: torch.Tensor | None = None,
    stages: int = 6,
    newton_steps: int = 4,
    first_mu: float = 1.0,
) -> torch.Tensor:
    """``argmin_{w in simplex} ||G^T w||_1`` per sample: the weights of the L-infinity
    steepest max-min ascent ``max_{||s||_inf <= 1} min_t <g_t, s> = min_w ||G^T w||_1``.

    Stage j smooths |u| with ``mu = first_mu * 10^-j * mean_i |u_i|`` (taken at the start
    point) and takes ``newton_steps`` Newton steps: the quadratic model is minimized exactly over
    the simplex (:func:`simplex_qp`), then halved until the smoothed value does not rise. From
    the uniform start, the defaults reach the linear program's optimum to ~1e-6 (relative) on
    random matrices; a warm ``start`` (the previous attack step's weights) needs fewer stages.
    Cost per Newton step: about (T^2 + 3T) * D multiply-adds per sample.
    Shape: (B, T, D), (B, T) -> (B, T).
    """
    batch, tasks, _ = grads.shape
    w = grads.new_full((batch, tasks), 1.0 / tasks) if start is None else start.clone()
    u = torch.bmm(w.unsqueeze(1), grads).squeeze(1)  # (B, D)
    mu = first_mu * u.abs().mean(dim=1, keepdim=True).clamp_min(1e-30)  # (B, 1)
    for _ in range(stages):
        for _ in range(newton_steps):
            w, u = _newton_step(grads, w, u, mu)
        mu = mu / 10
    return w


def _newton_step(grads, w, u, mu):
    """One damped Newton step on the smoothed L1 norm over the simplex. Returns (w, G^T w)."""
    r = (u * u + mu * mu).sqrt()  # (B, D)
    gradient = (grads * (u / r).unsqueeze(1)).sum(dim=2)  # (B, T)
    curvature = (mu * mu) / (r * r * r)  # (B, D)
    hessian = torch.bmm(grads * curvature.unsqueeze(1), grads.transpose(1, 2))  # (B, T, T)
    target = simplex_qp(hessian, gradient - torch.bmm(hessian, w.unsqueeze(2)).squeeze(2))
    move = torch.bmm((target - w).unsqueeze(1), grads).squeeze(1)  # (B, D)
    before = r.sum(dim=1)
    alpha = torch.ones_like(before)
    for halvings in range(12):  # halve the step where the smoothed value rose (rare)
        rose = smoothed_l1(u + alpha.unsqueeze(1) * move, mu) > before
        if not bool(rose.any()):
            break
        alpha = torch.where(rose, alpha / 2 if halvings < 11 else 0.0, alpha)
    return w + alpha.unsqueeze(1) * (target - w), u + alpha.unsqueeze(1) * move
