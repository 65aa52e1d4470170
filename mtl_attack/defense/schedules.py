"""Learning-rate schedules, built as ``schedule(optimizer, total_steps)``."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def cosine(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0) -> LambdaLR:
    """Linear warm-up, then cosine decay to zero over ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return LambdaLR(optimizer, factor)


def step_decay(optimizer: Optimizer, total_steps: int, every: int = 4000, gamma: float = 0.5):
    """Multiply the learning rate by ``gamma`` every ``every`` steps (the paper's schedule)."""
    return LambdaLR(optimizer, lambda step: gamma ** (step // every))


def constant(optimizer: Optimizer, total_steps: int) -> LambdaLR:
    return LambdaLR(optimizer, lambda step: 1.0)
