"""Every sharing preset x every backbone: a real tree model on a tiny input.

Properties: forward and backward run; every parameter gets a gradient from the total loss; a
task's loss leaves other tasks' exclusive branches and heads without gradient; each tree node
runs exactly once per forward; parameter counts order all_shared < branch < independent, and
independent equals T single-task networks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from mtl_attack.models import MultiTaskModel, all_shared, sharing_stats
from mtl_attack.models.tree import node_name
from mtl_attack.runner import build_model
from mtl_attack.tasks import build_tasks

CONF = Path(__file__).resolve().parents[1] / "conf"
BACKBONES = sorted(p.stem for p in (CONF / "backbone").glob("*.yaml"))  # every backbone
PRESETS = {
    "all_shared": [],
    "branch": ["sharing.branch_at=2"],
    "independent": [],
    "layout": ["sharing.index=20"],  # shared, then {0} | {1, 2} at blocks 1-2, then apart
}
TASKS = ["segment_semantic", "normal", "depth_zbuffer"]
#: ASPP heads at full width (1024) dominate the runtime without adding coverage
SMALL_HEAD = {"resnet34": ["backbone.head.hidden=32"], "mobilenetv2": ["backbone.head.hidden=32"]}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions gain nothing from threads, and on a busy shared CPU they stall."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(tiny_cfg, backbone: str, preset: str, tasks=TASKS) -> MultiTaskModel:
    overrides = [f"backbone={backbone}", f"sharing={preset}", *PRESETS[preset]]
    cfg = tiny_cfg(*overrides, *SMALL_HEAD.get(backbone, []))
    torch.manual_seed(0)
    return build_model(cfg, build_tasks(tasks, num_classes=6))


def total_loss(preds: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(p.square().mean() for p in preds.values())


def exclusive_params(model: MultiTaskModel, task: int) -> dict[str, torch.nn.Parameter]:
    """Parameters of nodes and heads that ``task`` does not use."""
    out = {}
    for b, part in enumerate(model.layout.blocks):
        for g in part:
            if task not in g:
                node = model.trunk.nodes[node_name(b, g)]
                out |= {f"{node_name(b, g)}.{n}": p for n, p in node.named_parameters()}
    for i, name in enumerate(model.task_names):
        if i != task:
            out |= {f"heads.{name}.{n}": p for n, p in model.heads[name].named_parameters()}
    return out


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("backbone", BACKBONES)
def test_tree_model_runs_each_node_once_and_routes_gradients(tiny_cfg, backbone, preset):
    model = make_model(tiny_cfg, backbone, preset).train()
    calls = {name: 0 for name in model.trunk.nodes}
    for name, node in model.trunk.nodes.items():
        node.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    x = torch.rand(2, 3, 33, 33)
    preds = model(x)
    assert calls == {name: 1 for name in model.trunk.nodes}  # shared nodes are not recomputed
    assert list(preds) == TASKS
    assert all(p.shape[-2:] == (33, 33) and torch.isfinite(p).all() for p in preds.values())

    losses = [p.square().mean() for p in preds.values()]
    for t, loss in enumerate(losses):
        model.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        leaked = [
            n
            for n, p in exclusive_params(model, t).items()
            if p.grad is not None and p.grad.abs().sum() > 0
        ]
        assert leaked == [], f"task {TASKS[t]}'s loss reached {leaked[:3]}"
        head = model.heads[TASKS[t]]
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())

    model.zero_grad(set_to_none=True)
    sum(losses).backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert silent == []


@pytest.mark.parametrize("backbone", BACKBONES)
def test_parameter_counts_order_presets_and_independent_is_single_task_nets(tiny_cfg, backbone):
    counts = {p: sharing_stats(make_model(tiny_cfg, backbone, p)) for p in PRESETS}
    total = {p: s["params_total"] for p, s in counts.items()}
    assert total["all_shared"] < total["branch"] < total["independent"]
    assert counts["independent"]["params_shared"] == 0
    assert counts["independent"]["sharing_degree"] == 0.0
    assert counts["all_shared"]["sharing_degree"] == 1.0
    shared = counts["all_shared"]
    assert shared["params_shared"] == sum(
        p.numel() for p in make_model(tiny_cfg, backbone, "all_shared").trunk.parameters()
    )

    cfg = tiny_cfg(f"backbone={backbone}", *SMALL_HEAD.get(backbone, []))
    channels = {n: t.channels for n, t in build_tasks(TASKS, num_classes=6).items()}
    single = sum(
        sum(
            p.numel()
            for p in MultiTaskModel(
                instantiate(cfg.backbone.trunk),
                all_shared(1, 5),
                {name: c},
                instantiate(cfg.backbone.head),
            ).parameters()
        )
        for name, c in channels.items()
    )
    assert total["independent"] == single


def test_full_width_aspp_all_shared_resnet34_builds_and_runs(tiny_cfg):
    cfg = tiny_cfg("backbone=resnet34")
    model = build_model(cfg, build_tasks(TASKS, num_classes=6)).eval()
    assert model.heads["normal"].branches[0][0].out_channels == 1024
    with torch.no_grad():
        preds = model(torch.rand(1, 3, 33, 33))
    assert preds["segment_semantic"].shape == (1, 6, 33, 33)


@pytest.mark.parametrize(
    "backbone, fine, channels, side",
    [
        ("resnet34", [1, 3, 4, 6, 3], [64, 64, 128, 256, 512], 5),  # 33 -> 17 -> 9 -> 5
        ("mobilenetv2", [2, 2, 3, 7, 4], [16, 24, 32, 96, 320], 5),
        ("tiny", [1, 1, 1, 1, 1], [16, 32, 48, 64, 96], 9),
    ],
)
def test_backbones_cut_into_five_coarse_blocks(tiny_cfg, backbone, fine, channels, side):
    trunk = instantiate(tiny_cfg(f"backbone={backbone}").backbone.trunk)
    assert trunk.fine_blocks() == fine and trunk.channels == channels
    with torch.no_grad():
        x = torch.rand(1, 3, 33, 33)
        for block, width in zip(trunk.blocks, channels):
            x = block(x)
            assert x.shape[1] == width
    assert x.shape[-2:] == (side, side)
