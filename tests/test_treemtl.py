"""model=treemtl: checkpoint files with the original Deeplab_ASPP_Layout's parameter names,
built here from the facts of shared/reference/models.md, against a functional forward pass
written from the same facts (no code of the original is used)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import CONF
from hydra import compose as compose_hydra
from hydra import initialize_config_dir
from treemtl_checkpoints import (
    CAFFE_MEAN,
    FIVE,
    NYU,
    ORDER_7511,
    ORDERS,
    channels,
    original_names,
    paper_input,
    random_state,
    reference_forward,
    unique_state,
    write,
)

from mtl_attack.models import load_treemtl
from mtl_attack.runner import build_model, run
from mtl_attack.tasks import build_tasks


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
    assert cfg.eval.resolution == "prediction" and cfg.dataset.normal_target == "paper"
    assert cfg.model.layout_index == 20
    assert cfg.model.checkpoint == "/w/20/segment_semantic_normal_depth_zbuffer.model"
    assert compose("+experiment=paper_taskonomy").eval.resolution == "prediction"
    assert compose().eval.resolution == "input" and compose().model.name == "tree"
    assert compose("model=treemtl", "model.checkpoint=x").model.layout_index is None
