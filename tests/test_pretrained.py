"""Loading a torchvision-format ResNet-34 state dict into every branch of a tree model."""

from __future__ import annotations

import pytest
import torch

from mtl_attack.models.backbones.resnet34 import (
    DeepLabResNet34,
    torchvision_key,
    torchvision_state_dict,
)
from mtl_attack.models.tree import node_name
from mtl_attack.runner import build_model
from mtl_attack.tasks import build_tasks

TASKS = ["segment_semantic", "normal", "depth_zbuffer"]
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_resnet34_keys() -> set[str]:
    """torchvision ``resnet34().state_dict()`` keys, spelled out from its architecture."""
    keys = {"conv1.weight", "fc.weight", "fc.bias", *(f"bn1.{s}" for s in BN)}
    for layer, depth in enumerate((3, 4, 6, 3), start=1):
        for j in range(depth):
            pre = f"layer{layer}.{j}"
            keys |= {f"{pre}.conv1.weight", f"{pre}.conv2.weight"}
            keys |= {f"{pre}.{bn}.{s}" for bn in ("bn1", "bn2") for s in BN}
            if j == 0 and layer > 1:
                keys |= {f"{pre}.downsample.0.weight", *(f"{pre}.downsample.1.{s}" for s in BN)}
    return keys


def random_torchvision_file(path, drop: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    source = DeepLabResNet34()
    for module in source.modules():  # non-trivial BN statistics, so a copy is detectable
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.num_batches_tracked.fill_(7)
    state = torchvision_state_dict(source)
    state |= {"fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)}
    state = {k: v for k, v in state.items() if k not in drop}
    torch.save(state, path)
    return state


def test_backbone_keys_are_torchvision_resnet34_keys():
    ours = {torchvision_key(k) for k in DeepLabResNet34().state_dict()}
    assert ours == torchvision_resnet34_keys() - {"fc.weight", "fc.bias"}


def test_pretrained_weights_reach_every_branch_exactly(tiny_cfg, tmp_path):
    path = tmp_path / "resnet34.pth"
    state = random_torchvision_file(path)
    cfg = tiny_cfg(
        "backbone=resnet34",
        f"backbone.pretrained={path}",
        "backbone.head.hidden=16",
        "sharing=branch",
        "sharing.branch_at=2",
    )
    model = build_model(cfg, build_tasks(TASKS, num_classes=6))
    checked = 0
    for b, part in enumerate(model.layout.blocks):
        for g in part:
            for name, tensor in model.trunk.nodes[node_name(b, g)].state_dict().items():
                assert torch.equal(tensor, state[torchvision_key(f"blocks.{b}.{name}")]), name
                checked += 1
    expected_tensors = len(state) - 2  # fc is unused
    assert checked == len(model.trunk.state_dict()) > expected_tensors  # 3 copies of 2..4
    backbone = DeepLabResNet34(pretrained=str(path))
    assert backbone.pretrained_report["unused"] == ["fc.bias", "fc.weight"]
    assert backbone.pretrained_report["missing"] == []
    assert len(backbone.pretrained_report["loaded"]) == expected_tensors


def test_missing_keys_are_reported_and_keep_random_init(tmp_path):
    path = tmp_path / "partial.pth"
    random_torchvision_file(path, drop=("layer4.2.bn2.running_var", "layer4.2.conv2.weight"))
    torch.manual_seed(3)
    backbone = DeepLabResNet34(pretrained=str(path))
    assert backbone.pretrained_report["missing"] == [
        "layer4.2.bn2.running_var",
        "layer4.2.conv2.weight",
    ]
    assert torch.equal(backbone.blocks[4][2].bn2.running_var, torch.ones(512))


def test_bad_pretrained_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"backbone.pretrained=.*nope.pth: no such file"):
        DeepLabResNet34(pretrained=str(tmp_path / "nope.pth"))
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"shares no key with torchvision's resnet34"):
        DeepLabResNet34(pretrained=str(tmp_path / "other.pth"))
    torch.save({"conv1.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "r18ish.pth")
    with pytest.raises(ValueError, match=r"conv1.weight has shape \(64, 3, 3, 3\)"):
        DeepLabResNet34(pretrained=str(tmp_path / "r18ish.pth"))
