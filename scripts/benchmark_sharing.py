"""Forward+backward time and parameter counts of the sharing presets, per backbone, on the CPU.

Builds each model from the project's configs (``backbone=... sharing=...``) exactly as
``run.py`` does, times ``model(x)`` + ``loss.backward()`` (best of ``--reps`` after one
warm-up), and adds two reference rows: one backbone pass alone and the T heads alone. The
all-shared model should cost about their sum (each block runs once for all tasks).

    PYTHONPATH=. python scripts/benchmark_sharing.py                      # defaults below
    PYTHONPATH=. python scripts/benchmark_sharing.py --backbones tiny --size 64 --batch 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from mtl_attack.models import sharing_stats
from mtl_attack.runner import build_model
from mtl_attack.tasks import build_tasks

CONF = Path(__file__).resolve().parents[1] / "conf"
PRESETS = {
    "all_shared": ["sharing=all_shared"],
    "branch_at=3": ["sharing=branch", "sharing.branch_at=3"],
    "branch_at=1": ["sharing=branch", "sharing.branch_at=1"],
    "layout 20": ["sharing=layout", "sharing.index=20"],
    "independent": ["sharing=independent"],
}
SIZES = {"resnet34": (1, 129), "mobilenetv2": (2, 129), "tiny": (8, 64)}  # (batch, side)


def timed(step, reps: int) -> float:
    """Best (min) seconds of ``step()`` over ``reps`` runs after one warm-up: on a shared CPU
    the minimum is the least disturbed by other processes."""
    step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return min(times)


def fwd_bwd(module, x):
    def step():
        module.zero_grad(set_to_none=True)
        out = module(x)
        outs = out.values() if isinstance(out, dict) else [out]
        sum(o.square().mean() for o in outs).backward()

    return step


class HeadsOnly(torch.nn.Module):
    """The model's per-task heads on precomputed features (the reference for head cost)."""

    def __init__(self, heads: torch.nn.ModuleDict):
        super().__init__()
        self.heads = heads

    def forward(self, feats):
        return {name: head(feats) for name, head in self.heads.items()}


def bench_backbone(backbone: str, batch: int, side: int, reps: int) -> list[tuple]:
    rows = []
    x = torch.rand(batch, 3, side, side)
    for preset, overrides in PRESETS.items():
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=[f"backbone={backbone}", *overrides])
        tasks = build_tasks(cfg.dataset.tasks, cfg.dataset.num_classes)
        torch.manual_seed(0)
        model = build_model(cfg, tasks).train()
        stats = sharing_stats(model)
        seconds = timed(fwd_bwd(model, x), reps)
        rows.append((backbone, preset, stats, seconds))
        if preset == "all_shared":
            trunk = instantiate(cfg.backbone.trunk).train()
            feats = trunk(model.normalize(x)).detach()
            t_trunk = timed(fwd_bwd(trunk, x), reps)
            t_heads = timed(fwd_bwd(HeadsOnly(model.heads), feats), reps)
        del model
    rows.append((backbone, "one backbone pass", None, t_trunk))
    rows.append((backbone, f"{len(tasks)} heads", None, t_heads))
    rows.append((backbone, "backbone + heads", None, t_trunk + t_heads))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet34", "tiny"])
    parser.add_argument("--size", type=int, help="image side (default per backbone)")
    parser.add_argument("--batch", type=int, help="batch size (default per backbone)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} CPU thread(s), 3 tasks, fwd+bwd best of --reps"
    )
    print(
        f"{'backbone':<12} {'input':<14} {'preset':<18} {'params':>12} {'shared':>12} "
        f"{'degree':>7} {'fwd+bwd s':>10} {'x shared':>9}"
    )
    for backbone in args.backbones:
        batch, side = SIZES.get(backbone, (2, 64))
        batch, side = args.batch or batch, args.size or side
        rows = bench_backbone(backbone, batch, side, args.reps)
        base = rows[0][3]
        for name, preset, stats, seconds in rows:
            params = f"{stats['params_total']:>12,}" if stats else f"{'':>12}"
            shared = f"{stats['params_shared']:>12,}" if stats else f"{'':>12}"
            degree = f"{stats['sharing_degree']:>7.2f}" if stats else f"{'':>7}"
            print(
                f"{name:<12} {f'{batch}x3x{side}x{side}':<14} {preset:<18} {params} {shared} "
                f"{degree} {seconds:>10.3f} {seconds / base:>9.2f}"
            )


if __name__ == "__main__":
    main()
