"""Shared real components for the attack tests: a tiny multi-task model, a batch, configs."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from mtl_attack.models import MultiTaskModel
from mtl_attack.models.backbones.tiny import TinyResNet
from mtl_attack.models.heads import LightHead
from mtl_attack.models.sharing import all_shared
from mtl_attack.tasks import build_tasks

CONF = Path(__file__).resolve().parents[1] / "conf"
TASK_NAMES = ["segment_semantic", "normal", "depth_zbuffer"]
OBJECTIVE_FILES = sorted(p.stem for p in (CONF / "attack").glob("*.yaml") if p.stem != "none")
STEP_FILES = sorted(p.stem for p in (CONF / "attack" / "step").glob("*.yaml"))


def tiny_tasks():
    return build_tasks(TASK_NAMES, 6)


def tiny_model(tasks, seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    trunk = TinyResNet(widths=[8, 8, 8, 8, 8], depth=1)
    layout = all_shared(num_tasks=len(tasks), num_blocks=trunk.num_blocks)
    channels = {n: t.channels for n, t in tasks.items()}
    return MultiTaskModel(trunk, layout, channels, partial(LightHead, hidden=8))


def tiny_batch(batch: int = 4, size: int = 32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=gen)
    targets = {
        "segment_semantic": torch.randint(0, 6, (batch, size, size), generator=gen),
        "normal": F.normalize(torch.randn(batch, 3, size, size, generator=gen), dim=1),
        "depth_zbuffer": torch.rand(batch, 1, size, size, generator=gen) + 0.5,
    }
    return images, targets


def single_thread():
    """Generator for an autouse fixture: tiny CPU workloads run far faster on one thread than
    on threads that compete with other processes for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
