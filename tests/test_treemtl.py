"""model=treemtl: checkpoint files with the original Deeplab_ASPP_Layout's parameter names,
built here from the facts of shared/reference/models.md, against a functional forward pass
written from the same facts (no code of the original is used)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import CONF
from hydra import compose as compose_hydra
from hydra import initialize_config_dir

from mtl_attack.models import load_treemtl
from mtl_attack.runner import build_model, run
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


@pytest.mark.parametrize(
    "index, tasks, order",
    [(i, NYU, o) for i, o in ORDERS.items()] + [(7511, FIVE, ORDER_7511)],
    ids=["index0-all-shared", "index2-independent", "index20", "index49", "5tasks-index7511"],
)
def test_checkpoint_loads_and_forward_equals_the_original_graph(tmp_path, index, tasks, order):
    heads = channels(tasks, 40 if len(tasks) == 3 else 17)
    state = random_state(original_names(order, heads, hidden=8), seed=index)
    path = write(tmp_path / "ckpt.model", state)
    model = load_treemtl(build_tasks(tasks, 40 if len(tasks) == 3 else 17), str(path), index)
    model.eval()
    model.upsample = False  # the paper's 1/8 outputs (eval.resolution=prediction)
    images = torch.rand(1, 3, 33, 33)
    with torch.no_grad():
        ours = model(images)
        same_input = reference_forward(state, order, tasks, model.normalize(images))
        paper = reference_forward(state, order, tasks, paper_input(images))
    for task in tasks:
        assert ours[task].shape == (1, heads[task], 5, 5)  # 33 -> 17 -> 9 (ceil) -> 5
        assert torch.equal(ours[task], same_input[task])  # every tensor in its place
        scale = paper[task].abs().max()
        assert (ours[task] - paper[task]).abs().max() <= 1e-5 * scale  # input rounding only
    assert model.source["layout_index"] == index
    assert model.layout.num_tasks == len(tasks)


def test_import_is_the_projects_resnet34_tree(tiny_cfg, tmp_path):
    """The imported model is ``backbone=resnet34 sharing=layout sharing.index=K``: the same
    modules and keys, so its weights load into the tree the runner builds, with equal outputs."""
    state = random_state(original_names(ORDERS[49], channels(NYU, 6), hidden=8))
    tasks = build_tasks(NYU, 6)
    imported = load_treemtl(tasks, str(write(tmp_path / "ckpt.model", state)), 49).eval()
    cfg = tiny_cfg("backbone=resnet34", "backbone.head.hidden=8", "sharing=layout",
                   "sharing.index=49")  # fmt: skip
    tree = build_model(cfg, tasks).eval()
    tree.load_state_dict(imported.state_dict())  # strict: every key and shape is the tree's
    tree.normalize = imported.normalize  # the paper's input convention (scale and order)
    images = torch.rand(2, 3, 33, 33)
    with torch.no_grad():
        ours, theirs = tree(images), imported(images)
    assert all(torch.equal(ours[t], theirs[t]) for t in NYU)


@pytest.mark.slow
def test_original_channel_sizes_load(tmp_path):
    """The paper's NYUv2 model as trained: 40 classes, ASPP heads of width 1024 (~90 M)."""
    heads = channels(NYU, 40)
    state = random_state(original_names(ORDERS[0], heads, hidden=1024))
    model = load_treemtl(build_tasks(NYU, 40), str(write(tmp_path / "full.model", state)), 0)
    model.eval()
    images = torch.rand(1, 3, 65, 65)
    with torch.no_grad():
        ours = model(images)
        same_input = reference_forward(state, ORDERS[0], NYU, model.normalize(images))
    assert (
        sum(p.numel() for p in model.heads.parameters())
        == 3 * 4 * (512 * 1024 * 9 + 1024 + 1024 * 1024 + 1024) + 4 * (40 + 3 + 1) * 1025
    )
    for task in NYU:
        assert ours[task].shape == (1, heads[task], 65, 65)  # upsampled: eval.resolution=input
        small = F.interpolate(same_input[task], size=(65, 65), mode="bilinear")
        assert torch.equal(ours[task], small)


def unique_state(names: dict[str, tuple]) -> dict[str, torch.Tensor]:
    """Tensor k holds the value k everywhere: where it lands says which one it was."""
    return {
        key: torch.full(shape, k, dtype=torch.long if not shape else torch.float)
        if key.endswith("num_batches_tracked")
        else torch.full(shape, float(k))
        for k, (key, shape) in enumerate(names.items())
    }


def test_every_tensor_lands_where_models_md_says(tmp_path):
    names = original_names(ORDERS[20], channels(NYU, 40), hidden=8)
    assert len(names) == 618 and len({k.split(".")[2] for k in names if "mtl_blocks" in k}) == 42
    state = unique_state(names)
    path = write(tmp_path / "ckpt.model", state)
    model = load_treemtl(build_tasks(NYU, 40), str(path), 20)
    ours = model.state_dict()
    index = {int(v.flatten()[0]): k for k, v in ours.items() if not k.startswith("normalize")}
    landed = {names_key: index[k] for k, names_key in enumerate(names)}  # original -> ours
    assert len(set(landed.values())) == len(names) == len(ours) - 2  # a bijection
    node = "backbone.mtl_blocks.{}.residual_block.{}".format
    expected = {  # models.md section 2's example: node -> (fine block, task set)
        node(0, "0.weight"): "trunk.nodes.b0_t0-1-2.0.conv1.weight",
        node(1, "block.conv1.weight"): "trunk.nodes.b1_t1-2.0.conv1.weight",
        node(2, "block.bn2.running_var"): "trunk.nodes.b1_t0.0.bn2.running_var",
        node(15, "ds.0.weight"): "trunk.nodes.b3_t0.0.downsample.0.weight",
        node(16, "ds.1.bias"): "trunk.nodes.b3_t2.0.downsample.1.bias",
        node(17, "block.conv2.weight"): "trunk.nodes.b3_t1.0.conv2.weight",
        node(18, "block.conv1.weight"): "trunk.nodes.b3_t0.1.conv1.weight",
        node(41, "block.bn1.weight"): "trunk.nodes.b4_t1.2.bn1.weight",
        "heads.normal.fc3.conv2.bias": "heads.normal.branches.2.3.bias",
        "heads.depth_zbuffer.fc4.conv3.weight": "heads.depth_zbuffer.branches.3.6.weight",
    }
    assert {k: landed[k] for k in expected} == expected
    assert model.normalize.channel_order == "bgr" and model.normalize.scale == 255
    assert model.normalize.mean.flatten().tolist() == pytest.approx(CAFFE_MEAN.tolist())


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


def test_both_file_formats_load_and_no_other_global_is_unpickled(tmp_path, monkeypatch):
    order = ORDERS[0]
    state = random_state(original_names(order, channels(NYU, 40), hidden=8))
    training = adam_and_step_lr(state)
    assert training["optimizer"]["state"][0]["exp_avg"].shape == (64, 3, 7, 7)
    older = write(tmp_path / "older.model", state, optimizer=training)
    with monkeypatch.context() as m:
        later = write(tmp_path / "later.model", state, pickled_layout(m, order, 3), training)
    assert "main" not in sys.modules  # nothing can import main.layout now
    with pytest.raises(Exception, match="main.layout.Layout"):
        torch.load(later, weights_only=True)  # what weights_only=True alone does with it
    tasks = build_tasks(NYU, 40)
    images = torch.rand(1, 3, 33, 33)
    outs = []
    for path, index in ((older, 0), (later, None)):
        model = load_treemtl(tasks, str(path), index).eval()
        with torch.no_grad():
            outs.append(model(images))
        assert model.source["layout_index"] == 0 and model.source["iter"] == 3999
    assert all(torch.equal(outs[1][t], outs[0][t]) for t in NYU)
    assert model.source["format"] == "with layout"
    # a layout object carrying anything else, or any other global, is still refused
    marker, small = tmp_path / "EXECUTED", {"backbone.mtl_blocks.0.x": torch.zeros(1)}
    with monkeypatch.context() as m:
        hook = {"hook": Marker(marker)}
        write(tmp_path / "evil.model", small, pickled_layout(m, order, 3, hook))
        write(tmp_path / "evil2.model", small, Marker(marker))
    for name in ("evil.model", "evil2.model"):
        with pytest.raises(ValueError, match="pickles the Python object posix.system") as err:
            load_treemtl(tasks, str(tmp_path / name), 0)
        assert "\n" not in str(err.value)
    assert not marker.exists()


class Marker:
    """Would create a file if it were ever unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


def test_wrong_files_give_one_line_that_says_what_is_wrong(tmp_path, monkeypatch):
    nyu = build_tasks(NYU, 40)
    state49 = random_state(original_names(ORDERS[49], channels(NYU, 40), hidden=8))
    older = write(tmp_path / "older49.model", state49)
    with monkeypatch.context() as m:
        later = write(tmp_path / "later49.model", state49, pickled_layout(m, ORDERS[49], 3))
    two = original_names(ORDERS[0], channels(["segment_semantic", "depth_zbuffer"], 40), 8)
    c13 = original_names(ORDERS[0], channels(NYU, 13), 8)
    torchvision = {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 512)}
    cases = [
        (older, 0, "has 20 trunk nodes that do not fit model.layout_index=0 of 3 tasks "
         r".17 nodes.; layouts that fit: \[47, 49, 50\]"),
        (older, None, r"older format, which does not record its layout; set model.layout_index "
         r"\(layouts with its trunk structure: \[47, 49, 50\]"),
        (later, 47, "stores TreeMTL layout index 49 .* but model.layout_index=47; set "
         "model.layout_index=49"),
        (write(tmp_path / "two.model", random_state(two)), 0, r"has heads for tasks "
         r"\['segment_semantic', 'depth_zbuffer'\] but the dataset's tasks are"),
        (write(tmp_path / "c13.model", random_state(c13)), 0, "the segment_semantic head outputs "
         "13 channels but this dataset's segment_semantic needs 40"),
        (write(tmp_path / "tv.pth", torchvision), 0, "is not a TreeMTL Deeplab_ASPP_Layout "
         r"checkpoint: no 'backbone.mtl_blocks.\*' weights .found "
         r"\['conv1.weight', 'fc.weight'\]"),
    ]  # fmt: skip
    for path, index, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            load_treemtl(nyu, str(path), index)
        assert "\n" not in str(err.value)


def test_hydra_treemtl_run_is_evaluated_not_trained(tiny_cfg, tmp_path):
    order = ORDERS[49]
    state = random_state(original_names(order, channels(NYU, 6), hidden=8))
    path = write(tmp_path / "ckpt.model", state)
    overrides = [
        "logger=none", "model=treemtl", f"model.checkpoint={path}", "sharing=layout",
        "eval.resolution=prediction", "attack.eps=[4]", "attack.steps=1", "dataset.num_test=8",
        "eval.batch_size=8",
    ]  # fmt: skip
    results = run(tiny_cfg(*overrides, "sharing.index=49"))
    imported = results["model"]["imported"]
    assert imported["kind"] == "treemtl" and imported["layout_index"] == 49
    assert imported["fine_tuned"] is False and results["model"]["checkpoint"] == str(path)
    assert results["model"]["layout"] == [[[0, 1, 2]]] * 4 + [[[0, 2], [1]]]
    assert not list((tmp_path / "outputs").rglob("model.pt"))
    assert results["attacks"][0]["avg_loss_increase"] > 0
    with pytest.raises(ValueError, match="do not fit model.layout_index=0"):
        run(tiny_cfg(*overrides, "sharing.index=0", run="wrong"))
    assert not (tmp_path / "wrong").exists()


def compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose_hydra("config", overrides=list(overrides))


def test_paper_overlay_accepts_treemtl_and_switches_to_the_paper_resolution():
    checkpoint = "model.checkpoint=/w/${sharing.index}/segment_semantic_normal_depth_zbuffer.model"
    cfg = compose("+experiment=paper_nyuv2", "model=treemtl", checkpoint, "sharing.index=20")
    assert cfg.eval.resolution == "prediction"
    assert cfg.model.layout_index == 20
    assert cfg.model.checkpoint == "/w/20/segment_semantic_normal_depth_zbuffer.model"
    assert compose("+experiment=paper_taskonomy").eval.resolution == "prediction"
    assert compose().eval.resolution == "input" and compose().model.name == "tree"
    assert compose("model=treemtl", "model.checkpoint=x").model.layout_index is None
