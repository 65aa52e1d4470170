"""Real components for the standard protocol's tests: models whose gradients are blocked,
reversed, non-finite or random, a loader over tiny batches, the protocol at small budgets."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from mtl_attack.attacks import build_standard
from mtl_attack.runner.standard import PROTOCOL_KEYS, fixed_protocol
from tests.attack_setup import tiny_batch, tiny_model


class RoundWithoutGradient(torch.autograd.Function):
    """Rounds the input to 8 bits; the backward pass returns a zero gradient."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x * 255) / 255

    @staticmethod
    def backward(ctx, grad):
        return torch.zeros_like(grad)


class ReverseGradient(torch.autograd.Function):
    """The identity whose backward pass negates the gradient (it points downhill)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return -grad


class NaNGradient(torch.autograd.Function):
    """The identity whose backward pass returns NaN."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


class InputLayer(nn.Module):
    """``model(function(x))``: a model behind a preprocessing step of the input."""

    def __init__(self, model: nn.Module, function):
        super().__init__()
        self.model, self.function = model, function

    def forward(self, x):
        return self.model(self.function.apply(x))


class NoisyInput(nn.Module):
    """A randomized defense: Gaussian noise on the input at every forward pass (eval too)."""

    def __init__(self, model: nn.Module, sigma: float = 0.05):
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x):
        return self.model((x + self.sigma * torch.randn_like(x)).clamp(0, 1))


def tiny_loader(batches: int = 2, batch: int = 4, size: int = 32) -> DataLoader:
    """A loader of ``batches`` x ``batch`` random images with targets (dict items)."""
    items = []
    for seed in range(batches):
        images, targets = tiny_batch(batch, size, seed)
        for i in range(batch):
            items.append({"image": images[i]} | {t: v[i] for t, v in targets.items()})
    return DataLoader(items, batch_size=batch)


def small_protocol(**changes) -> dict:
    """conf/attack/standard.yaml at its ``smoke`` budget, with ``changes``."""
    spec = fixed_protocol()
    return {k: spec[k] for k in PROTOCOL_KEYS} | spec["smoke"] | changes


def small_standard(tasks, eps: float = 4, **changes):
    return build_standard(tasks, eps, small_protocol(**changes))


def fitted_tiny_model(tasks, loader: DataLoader, steps: int = 30) -> nn.Module:
    """The tiny model fitted to ``loader``'s images (so its clean metrics are good and an
    attack has something to degrade); in eval mode."""
    model = tiny_model(tasks)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        for batch in loader:
            preds = model(batch["image"])
            loss = sum(task.loss(preds[t], batch[t]).mean() for t, task in tasks.items())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()
