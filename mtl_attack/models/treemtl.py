"""``model=treemtl``: the paper's own trained models, imported into the project's resnet34 tree.

Checkpoints written by the TreeMTL / MTLAttack-DGBA training code (Zhang et al., AutoML 2022
and arXiv 2305.12066): a ``torch.save``d dict whose ``state_dict`` holds a
``Deeplab_ASPP_Layout`` (DeepLab-ResNet-34 with 17 fine blocks, one trunk node per (fine block,
task set) pair, per-task ASPP heads). The facts behind the key mapping are in
shared/reference/models.md, checked against the public originals. Two file formats exist: the
older dict (``iter``, ``state_dict``, ``optimizer``, ``scheduler``) and the later one that also
pickles a ``main.layout.Layout`` object under ``layout``; that one class is read into
:class:`StoredLayout` (plain data only) and every other pickled object is still refused.

The imported model takes images in [0, 1] RGB like every model here; its first layer converts
them to the paper's input (BGR, 0-255, Caffe means subtracted, no std), so eps stays in pixel
levels and equals the paper's eps in 0-255 units.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mtl_attack.models.backbones.resnet34 import DeepLabResNet34
from mtl_attack.models.convention import CAFFE_BGR_MEAN, InputConvention
from mtl_attack.models.files import preview, read_checkpoint
from mtl_attack.models.heads import ASPPHead
from mtl_attack.models.sharing import Group, Layout
from mtl_attack.models.tree import MultiTaskModel, node_name
from mtl_attack.models.treemtl_layout import (
    ALLOWED_GLOBALS,
    FINE_BLOCKS,
    NODE_KEY,
    StoredLayout,
    node_indices,
    resolve_layout,
)
from mtl_attack.tasks import Task

ASPP_RATES = (6, 12, 18, 24)

_HEAD = re.compile(r"heads\.([^.]+)\.fc1\.conv3\.weight")


def load_treemtl(
    tasks: Mapping[str, Task],
    checkpoint: str,
    layout_index: int | None = None,
    upsample: bool = True,
) -> MultiTaskModel:
    """``model=treemtl``: a TreeMTL ``Deeplab_ASPP_Layout`` checkpoint -> ``MultiTaskModel``.

    Args:
        tasks: the dataset's tasks; they must be the checkpoint's heads (any order), with the
            same channels (e.g. 40 NYUv2 classes).
        checkpoint: the ``.model`` file (either format).
        layout_index: the paper's coarse layout index (TreeMTL enumeration over 5 blocks for the
            checkpoint's task count); None = the layout stored in the file (later format).
        upsample: True = ``eval.resolution=input``; False = ``prediction`` (the paper's).
    """
    obj, digest = read_checkpoint(checkpoint, "model.checkpoint", ALLOWED_GLOBALS)
    state, stored = split_checkpoint(obj, checkpoint)
    heads = head_channels(state, checkpoint)
    check_tasks(heads, tasks, checkpoint)
    index, order = resolve_layout(state, stored, len(heads), layout_index, checkpoint)
    layout = Layout(tuple(tuple(part) for part in order), len(heads))
    hidden = int(state[f"heads.{next(iter(heads))}.fc1.conv1.weight"].shape[0])
    model = MultiTaskModel(
        DeepLabResNet34(),
        layout,
        heads,  # the checkpoint's task order: task i of the layout is its i-th head
        functools.partial(ASPPHead, hidden=hidden, rates=ASPP_RATES, dropout=0.5),
        normalize=InputConvention(CAFFE_BGR_MEAN, (1.0, 1.0, 1.0), 255, "bgr"),
        upsample=upsample,
    )
    model.load_state_dict(convert_state(model, state, order, checkpoint))
    model.source = {
        "kind": "treemtl",
        "checkpoint": str(checkpoint),
        "sha256": digest,
        "layout_index": index,
        "format": "with layout" if stored is not None else "older (no layout)",
        "iter": obj.get("iter") if isinstance(obj, Mapping) else None,
    }
    return model


def split_checkpoint(obj: Any, path: str | Path) -> tuple[dict, StoredLayout | None]:
    """(state dict, stored layout or None) of either file format, or a one-line error."""
    stored = obj.get("layout") if isinstance(obj, Mapping) else None
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(state, Mapping) or not any(NODE_KEY.match(str(k)) for k in state):
        keys = list(state)[:4] if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(
            f"model.checkpoint={path} is not a TreeMTL Deeplab_ASPP_Layout checkpoint: no "
            f"'backbone.mtl_blocks.*' weights (found {keys}); a torchvision/ImageNet file goes "
            "to backbone.pretrained=..., other models to model=external"
        )
    return dict(state), stored if isinstance(stored, StoredLayout) else None


def head_channels(state: Mapping[str, torch.Tensor], path: str | Path) -> dict[str, int]:
    """Task -> output channels of its ASPP head, in the checkpoint's (= the layout's) order."""
    heads = {}
    for key, value in state.items():
        found = _HEAD.fullmatch(key)
        if found:
            heads[found[1]] = int(value.shape[0])
    if not heads:
        raise ValueError(
            f"model.checkpoint={path} has no ASPP heads ('heads.<task>.fc1.conv3.weight'); "
            "is it a Deeplab_ASPP_Layout checkpoint with heads (cls_num given)?"
        )
    return heads


def check_tasks(heads: Mapping[str, int], tasks: Mapping[str, Task], path: str | Path) -> None:
    if set(heads) != set(tasks):
        raise ValueError(
            f"model.checkpoint={path} has heads for tasks {list(heads)} but the dataset's tasks "
            f"are {list(tasks)}; set dataset.tasks=[{','.join(heads)}]"
        )
    for name, channels in heads.items():
        if channels != tasks[name].channels:
            raise ValueError(
                f"model.checkpoint={path}: the {name} head outputs {channels} channels but this "
                f"dataset's {name} needs {tasks[name].channels} (e.g. its number of classes); "
                "use the dataset version the model was trained on"
            )


def key_map(own_keys: Sequence[str], order: Sequence[Sequence[Group]]) -> dict[str, str]:
    """Our ``MultiTaskModel`` key -> the original ``Deeplab_ASPP_Layout`` key, for every key
    both have (ours alone: the input convention's buffers)."""
    indices = node_indices(order)
    prefixes = {}
    for coarse, groups in enumerate(order):
        for j, fine in enumerate(FINE_BLOCKS[coarse]):
            for group in groups:
                ours = f"trunk.nodes.{node_name(coarse, tuple(group))}.{j}."
                prefixes[ours] = (fine, f"backbone.mtl_blocks.{indices[(fine, tuple(group))]}.")
    out = {}
    for key in own_keys:
        head = re.fullmatch(r"heads\.([^.]+)\.branches\.(\d)\.(\d)\.(weight|bias)", key)
        if head:
            task, branch, layer, kind = head.groups()
            out[key] = f"heads.{task}.fc{int(branch) + 1}.conv{int(layer) // 3 + 1}.{kind}"
            continue
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is not None:
            fine, theirs = prefixes[prefix]
            out[key] = theirs + "residual_block." + _block_rest(fine, key[len(prefix) :])
    return out


def _block_rest(fine: int, rest: str) -> str:
    if fine == 0:  # the stem: Sequential(conv, BN, ReLU, maxpool)
        return rest.replace("conv1.", "0.", 1).replace("bn1.", "1.", 1)
    if rest.startswith("downsample."):
        return "ds." + rest.removeprefix("downsample.")
    return "block." + rest


def convert_state(
    model: MultiTaskModel,
    state: Mapping[str, torch.Tensor],
    order: Sequence[Sequence[Group]],
    path: str | Path,
) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under our keys; every tensor of the file must land somewhere."""
    own = model.state_dict()
    names = key_map(list(own), order)
    wanted = set(names.values())
    optional = {k for k in wanted if k.endswith("num_batches_tracked")}
    missing = sorted(wanted - set(state) - optional)
    unexpected = sorted(set(state) - wanted)
    if missing or unexpected:
        raise ValueError(
            f"model.checkpoint={path} does not match the layout's Deeplab_ASPP_Layout: missing "
            f"{len(missing)} keys {preview(missing)}, unexpected {len(unexpected)} keys "
            f"{preview(unexpected)}"
        )
    out = {}
    for ours, target in own.items():
        value = state.get(names.get(ours, ""), target)
        if value.shape != target.shape:
            raise ValueError(
                f"model.checkpoint={path}: {names[ours]} has shape {tuple(value.shape)}, the "
                f"DeepLab-ResNet-34 layout expects {tuple(target.shape)}"
            )
        out[ours] = value
    return out
