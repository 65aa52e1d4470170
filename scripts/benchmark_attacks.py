"""Cost of one attack step per (objective x step rule), and attacked images per second.

Models: ``tiny`` (the default config's TinyResNet, all shared, 3 tasks, 64x64, attacked in
batches of 100 like the default ``eval.batch_size``) and ``deeplab`` (``backbone=resnet34``:
DeepLab-ResNet-34 with per-task ASPP heads, all shared, at NYUv2's 288x384).
``dgba-slow`` is DGBA the reference code's way: one backward pass per task; ``signsum-loop`` is
SignSum with T backward passes instead of one batched (``is_grads_batched``) backward.
``aggregate:<aggregator>`` is ``attack=aggregate`` with that aggregator; ``minmax:metric`` is
``minmax`` with ``weights_from=metric``. Column ``x signsum`` compares with SignSum's step (the
aggregators take the same T gradients). ``--losses`` crosses every combination with attack
losses (docs/dense_losses.md); column ``x ce`` compares a loss's step with ``ce``'s.

A step's cost is ``(t(steps=hi) - t(steps=lo)) / (hi - lo)`` (the median over ``--repeats``),
which cancels the clean and final forward passes every attack makes once. ``t`` is the process
CPU time on one thread (``time.process_time``): on cores shared with other jobs, wall-clock
time mostly measures the neighbours. ``img/s`` is for a full ``hi``-step attack on one core.

    python scripts/benchmark_attacks.py                      # tiny model, all combinations
    python scripts/benchmark_attacks.py --models deeplab --steps 1 2 --repeats 1 --batch 1
    python scripts/benchmark_attacks.py --rules pgd apgd --objectives total relative cyclic \
        minmax minmax:metric signsum aggregate:mgda aggregate:linf_mgda aggregate:pcgrad \
        aggregate:dbmtl aggregate:imtl --repeats 5
    python scripts/benchmark_attacks.py --objectives single dgba --rules pgd \
        --losses ce segpgd cospgd mask_ce mask_ce_bal jsd      # cost of each attack loss
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
from torch import nn

from mtl_attack.attacks import DynamicGradientBalancing, SignSum, build_attack
from mtl_attack.attacks.objectives import Losses
from mtl_attack.models import MultiTaskModel
from mtl_attack.models.backbones.resnet34 import DeepLabResNet34
from mtl_attack.models.backbones.tiny import TinyResNet
from mtl_attack.models.heads import ASPPHead, LightHead
from mtl_attack.models.sharing import all_shared
from mtl_attack.tasks import build_tasks

TASKS = ["segment_semantic", "normal", "depth_zbuffer"]


class SlowDGBA(DynamicGradientBalancing):
    """DGBA direction with one backward pass per task (the reference implementation)."""

    def direction(self, losses: Losses, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(x)
        for i, t in enumerate(self.task_names):
            last = i + 1 == len(self.task_names)
            (g,) = torch.autograd.grad(losses[t].sum(), x, retain_graph=not last)
            total += g / losses[t].detach().clamp_min(self.min_loss).view(-1, 1, 1, 1)
        return total


def make_model(name: str, tasks) -> tuple[nn.Module, tuple[int, int]]:
    """The default config's model (tiny, all shared, 64x64) or DeepLab-ResNet-34 with per-task
    ASPP heads (conf/backbone/resnet34.yaml, all shared) at NYUv2's 288x384."""
    channels = {n: t.channels for n, t in tasks.items()}
    if name == "deeplab":
        trunk = DeepLabResNet34()
        head = partial(ASPPHead, hidden=1024, rates=(6, 12, 18, 24), dropout=0.5)
        size = (288, 384)
    else:
        trunk = TinyResNet(widths=[16, 32, 48, 64, 96], depth=1)  # conf/backbone/tiny.yaml
        head = partial(LightHead, hidden=32)
        size = (64, 64)
    layout = all_shared(num_tasks=len(tasks), num_blocks=trunk.num_blocks)
    return MultiTaskModel(trunk, layout, channels, head).eval(), size


def make_batch(batch: int, size: tuple[int, int], seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    images = torch.rand(batch, 3, h, w, generator=gen)
    targets = {
        "segment_semantic": torch.randint(0, 6, (batch, h, w), generator=gen),
        "normal": nn.functional.normalize(torch.randn(batch, 3, h, w, generator=gen), dim=1),
        "depth_zbuffer": torch.rand(batch, 1, h, w, generator=gen) + 0.5,
    }
    return images, targets


def timed(attack, model, images, targets) -> float:
    start = time.process_time()
    attack(model, images, targets)
    return time.process_time() - start


TARGET = {"task": "depth_zbuffer"}  # single's attacked task (--target)


def make_attack(objective: str, rule: str, loss: str, tasks, steps: int):
    base = {"dgba-slow": "total", "signsum-loop": "total"}.get(objective, objective)
    base, _, variant = base.partition(":")
    options = {"aggregate": {"aggregator": variant}, "minmax": {"weights_from": variant}}
    attack = build_attack(
        base,
        rule,
        tasks,
        eps=4,
        steps=steps,
        target_task=TARGET["task"],
        loss=loss,
        **(options.get(base, {}) if variant else {}),
    )
    if objective == "dgba-slow":
        attack.objective = SlowDGBA(tasks)
    if objective == "signsum-loop":
        attack.objective = SignSum(tasks, batched=False)
    return attack


def step_costs(combos, tasks, model, images, targets, lo, hi, repeats):
    """Per combination: (median seconds per step, median seconds of a full ``hi``-step attack).
    Combinations are interleaved within each repeat so that slow phases hit all of them."""
    for objective, rule, loss in combos:  # warm-up
        timed(make_attack(objective, rule, loss, tasks, 1), model, images, targets)
    per_step = {c: [] for c in combos}
    full = {c: [] for c in combos}
    for _ in range(repeats):
        for c in combos:
            t_lo = timed(make_attack(*c, tasks, lo), model, images, targets)
            t_hi = timed(make_attack(*c, tasks, hi), model, images, targets)
            per_step[c].append((t_hi - t_lo) / (hi - lo))
            full[c].append(t_hi)
    return {c: (statistics.median(per_step[c]), statistics.median(full[c])) for c in combos}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny"], choices=["tiny", "deeplab"])
    parser.add_argument(
        "--objectives",
        nargs="+",
        default=["single", "total", "dgba", "dgba-slow", "signsum", "signsum-loop"],
    )
    parser.add_argument("--rules", nargs="+", default=["pgd", "mim", "apgd"])
    parser.add_argument("--batch", type=int, default=100, help="the default eval.batch_size")
    parser.add_argument("--steps", type=int, nargs=2, default=[2, 10], metavar=("LO", "HI"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--losses", nargs="+", default=["ce"], help="attack losses (x ce)")
    parser.add_argument("--target", default="depth_zbuffer", help="the task single attacks")
    args = parser.parse_args()
    TARGET["task"] = args.target
    torch.set_num_threads(args.threads)
    tasks = build_tasks(TASKS, 6)
    lo, hi = args.steps
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, "
        f"step cost from {lo} vs {hi} steps, median of {args.repeats}"
    )
    print(
        f"{'model':<8} {'size':<8} {'objective':<19} {'rule':<5} {'ms/step':>9} "
        f"{'x total':>8} {'x signsum':>9} {'x pgd':>6} {'x ce':>6} {'img/s':>8}  loss"
    )
    for name in args.models:
        torch.manual_seed(0)
        model, size = make_model(name, tasks)
        images, targets = make_batch(args.batch, size)
        combos = [(o, r, x) for r in args.rules for o in args.objectives for x in args.losses]
        costs = step_costs(combos, tasks, model, images, targets, lo, hi, args.repeats)
        for (objective, rule, loss), (step, full) in costs.items():
            vs_total = step / costs.get(("total", rule, loss), (step,))[0]
            vs_signsum = step / costs.get(("signsum", rule, loss), (step,))[0]
            vs_pgd = step / costs.get((objective, "pgd", loss), (step,))[0]
            vs_ce = step / costs.get((objective, rule, "ce"), (step,))[0]
            print(
                f"{name:<8} {size[0]}x{size[1]:<5} {objective:<19} {rule:<5} "
                f"{1000 * step:>9.1f} {vs_total:>8.2f} {vs_signsum:>9.2f} {vs_pgd:>6.2f} "
                f"{vs_ce:>6.2f} {args.batch / full:>8.1f}  {loss}"
            )


if __name__ == "__main__":
    main()
