"""Checkpoint files of the original TreeMTL ``Deeplab_ASPP_Layout``, built from the facts of
shared/reference/models.md (parameter names, shapes, node order, file formats), and a functional
forward pass written from the same facts. No code of the original is used."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from mtl_attack.tasks import build_tasks

NYU = ["segment_semantic", "normal", "depth_zbuffer"]
CAFFE_MEAN = torch.tensor([104.00698793, 116.66876762, 122.67891434])  # B, G, R
FINE = ((0,), (1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11, 12, 13), (14, 15, 16))
# per fine block 1..16: (in channels, out channels, stride, dilation); projections at 4, 8, 14
STAGE = {f: (64, 64, 1, 1) for f in (1, 2, 3)}
STAGE |= {4: (64, 128, 2, 1)} | {f: (128, 128, 1, 1) for f in (5, 6, 7)}
STAGE |= {8: (128, 256, 1, 2)} | {f: (256, 256, 1, 2) for f in range(9, 14)}
STAGE |= {14: (256, 512, 1, 4)} | {f: (512, 512, 1, 4) for f in (15, 16)}
# TreeMTL's state order of the task sets (models.md section 3), written out by hand
ALL = [(0, 1, 2)]
SPLIT, APART = [(1, 2), (0,)], [(0,), (2,), (1,)]
ORDERS = {
    0: [ALL] * 5,
    2: [APART] * 5,
    20: [ALL, SPLIT, SPLIT, APART, APART],
    49: [ALL] * 4 + [[(1,), (0, 2)]],
}
FIVE = ["segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture"]
ORDER_7511 = [[(0, 1, 2, 3, 4)]] * 4 + [[(0,), (2, 3), (1, 4)]]  # a 5-task layout


def bn(shape: int) -> dict[str, tuple]:
    return {
        "weight": (shape,),
        "bias": (shape,),
        "running_mean": (shape,),
        "running_var": (shape,),
    }


def node_shapes(fine: int) -> dict[str, tuple]:
    """Parameter names (after ``residual_block.``) and shapes of one fine block's node."""
    if fine == 0:
        return {"0.weight": (64, 3, 7, 7)} | {f"1.{k}": s for k, s in bn(64).items()}
    cin, cout, _, _ = STAGE[fine]
    shapes = {"block.conv1.weight": (cout, cin, 3, 3), "block.conv2.weight": (cout, cout, 3, 3)}
    shapes |= {f"block.bn{i}.{k}": s for i in (1, 2) for k, s in bn(cout).items()}
    if fine in (4, 8, 14):
        shapes |= {"ds.0.weight": (cout, cin, 1, 1)} | {
            f"ds.1.{k}": s for k, s in bn(cout).items()
        }
    return shapes


def original_names(order, heads: dict[str, int], hidden: int) -> dict[str, tuple]:
    """Every state-dict entry of Deeplab_ASPP_Layout(layout, cls_num) with its shape."""
    names, i = {}, 0
    for coarse, groups in enumerate(order):
        for fine in FINE[coarse]:
            for _ in groups:
                for rest, shape in node_shapes(fine).items():
                    names[f"backbone.mtl_blocks.{i}.residual_block.{rest}"] = shape
                    if rest.endswith("running_var"):
                        tracked = rest.replace("running_var", "num_batches_tracked")
                        names[f"backbone.mtl_blocks.{i}.residual_block.{tracked}"] = ()
                i += 1
    for task, channels in heads.items():
        for k in (1, 2, 3, 4):
            sizes = {
                1: (hidden, 512, 3, 3),
                2: (hidden, hidden, 1, 1),
                3: (channels, hidden, 1, 1),
            }
            for j, shape in sizes.items():
                names[f"heads.{task}.fc{k}.conv{j}.weight"] = shape
                names[f"heads.{task}.fc{k}.conv{j}.bias"] = shape[:1]
    return names


def random_state(names: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights at realistic scales (He init, BN statistics away from 0/1)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in names.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1234)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        else:
            low, high = {"weight": (0.5, 1.5), "running_var": (0.5, 2.0)}.get(
                key.rsplit(".", 1)[1], (-0.2, 0.2)
            )
            state[key] = torch.rand(shape, generator=gen) * (high - low) + low
    return state


def reference_forward(state, order, tasks: list[str], x: torch.Tensor) -> dict:
    """The original model's forward, restated from models.md section 2 (eval mode)."""

    def norm(p, y):
        return F.batch_norm(
            y, state[p + "running_mean"], state[p + "running_var"], state[p + "weight"],
            state[p + "bias"], False, 0.0, 1e-5,
        )  # fmt: skip

    def node(p, fine, y):
        if fine == 0:
            y = F.relu(norm(p + "1.", F.conv2d(y, state[p + "0.weight"], stride=2, padding=3)))
            return F.max_pool2d(y, 3, 2, 1, ceil_mode=True)
        _, _, stride, d = STAGE[fine]
        out = F.conv2d(y, state[p + "block.conv1.weight"], None, stride, d, d)
        out = F.relu(norm(p + "block.bn1.", out))
        out = norm(p + "block.bn2.", F.conv2d(out, state[p + "block.conv2.weight"], None, 1, d, d))
        if p + "ds.0.weight" in state:
            y = norm(p + "ds.1.", F.conv2d(y, state[p + "ds.0.weight"], stride=stride))
        return F.relu(y + out)

    previous, i = {}, 0
    for coarse, groups in enumerate(order):
        for fine in FINE[coarse]:
            current = {}
            for group in groups:
                parent = (
                    x
                    if fine == 0
                    else next(o for g, o in previous.items() if set(group) <= set(g))
                )
                current[group] = node(f"backbone.mtl_blocks.{i}.residual_block.", fine, parent)
                i += 1
            previous = current
    out = {}
    for t, task in enumerate(tasks):
        feat = next(o for g, o in previous.items() if t in g)
        total = 0
        for k, rate in zip((1, 2, 3, 4), (6, 12, 18, 24)):
            p = f"heads.{task}.fc{k}."
            y = F.relu(
                F.conv2d(feat, state[p + "conv1.weight"], state[p + "conv1.bias"], 1, rate, rate)
            )
            y = F.relu(F.conv2d(y, state[p + "conv2.weight"], state[p + "conv2.bias"]))
            total = total + F.conv2d(y, state[p + "conv3.weight"], state[p + "conv3.bias"])
        out[task] = total
    return out


def paper_input(images: torch.Tensor) -> torch.Tensor:
    """The paper's loader convention: BGR, 0-255, Caffe means subtracted, no std."""
    return images.flip(1) * 255.0 - CAFFE_MEAN.view(1, 3, 1, 1)


def channels(tasks: list[str], classes: int) -> dict[str, int]:
    return {t: build_tasks([t], num_classes=classes)[t].channels for t in tasks}


def write(path: Path, state: dict, layout=None, optimizer=None) -> Path:
    """The dict TreeMTL's ``Trainer.save_model`` writes (``layout`` only in the later format)."""
    ckpt = {"iter": 3999, "state_dict": state}
    if layout is not None:
        ckpt["layout"] = layout
    ckpt |= optimizer or {"optimizer": {"state": {}, "param_groups": []}, "scheduler": {}}
    torch.save(ckpt, path)
    return path


def unique_state(names: dict[str, tuple]) -> dict[str, torch.Tensor]:
    """Tensor k holds the value k everywhere: where it lands says which one it was."""
    return {
        key: torch.full(shape, k, dtype=torch.long if not shape else torch.float)
        if key.endswith("num_batches_tracked")
        else torch.full(shape, float(k))
        for k, (key, shape) in enumerate(names.items())
    }


def fake_layout_class() -> type:
    """A class that pickles as ``main.layout.Layout``, as TreeMTL's own does."""
    return type("Layout", (), {"__module__": "main.layout", "__qualname__": "Layout"})


def pickled_layout(monkeypatch, order, num_tasks: int, extra=None):
    """A TreeMTL fine layout object (17 blocks of task sets sharing the coarse lists, as
    ``coarse_to_fined`` builds it) to be pickled under ``main.layout.Layout``."""
    cls = fake_layout_class()
    package, module = types.ModuleType("main"), types.ModuleType("main.layout")
    module.Layout = cls
    package.layout = module
    monkeypatch.setitem(sys.modules, "main", package)
    monkeypatch.setitem(sys.modules, "main.layout", module)
    coarse = [[set(g) for g in groups] for groups in order]
    layout = cls()
    layout.__dict__.update(
        T=num_tasks, B=17, state=[coarse[c] for c, fine in enumerate(FINE) for _ in fine],
        num_cut=0, lowest_avail_cut=0, conv_iter=[], virtual_loss=[], prob=0,
        metric_list=[0.0] * num_tasks, score=0.0, flops=0.0, **(extra or {}),
    )  # fmt: skip
    return layout


def adam_and_step_lr(state: dict) -> dict:
    """Real Adam (betas 0.5, 0.999, wd 1e-4) and StepLR states after one step, as saved."""
    params = [torch.nn.Parameter(v.clone()) for v in state.values() if v.is_floating_point()]
    optimizer = torch.optim.Adam(params, lr=1e-3, betas=(0.5, 0.999), weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4000, gamma=0.5)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    scheduler.step()
    return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}


class Marker:
    """Would create a file if it were ever unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))
