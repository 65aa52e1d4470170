"""model=external and the Python API: a user's own module, its input convention, its outputs."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torch import nn
from torch.utils.data import DataLoader

from mtl_attack.attacks import build_attack
from mtl_attack.evaluation import evaluate_robustness
from mtl_attack.models import import_external, wrap_model
from mtl_attack.runner import run
from mtl_attack.tasks import build_tasks, tasks_for

OUTPUTS = {"seg": "segment_semantic", "surface": "normal", "z": "depth_zbuffer"}
OUTPUTS_ARG = "model.outputs={seg:segment_semantic,surface:normal,z:depth_zbuffer}"
FACTORY = f"model.factory._target_={__name__}.HalfResNet"


class HalfResNet(nn.Module):
    """A user's model (not a project class): its own output names, at half the input size."""

    def __init__(self, classes: int = 6, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
        )
        self.seg = nn.Conv2d(width, classes, 1)
        self.surface = nn.Conv2d(width, 3, 1)
        self.z = nn.Conv2d(width, 1, 1)

    def forward(self, x):
        f = self.body(x)
        return {"seg": self.seg(f), "surface": self.surface(f), "z": self.z(f)}


class TensorNet(nn.Module):
    """Returns one bare tensor."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)

    def forward(self, x):
        return self.conv(x)


def external(path: Path, *extra: str) -> list[str]:
    return ["logger=none", "model=external", FACTORY, f"model.checkpoint={path}", *extra]


def trained_weights(cfg, path: Path, steps: int = 40) -> tuple[dict, object]:
    """Train a HalfResNet a few steps on the composed dataset; save a plain state dict."""
    data = instantiate(cfg.dataset)
    data.prepare(progress=False)
    tasks = tasks_for(data)
    torch.manual_seed(0)
    net = HalfResNet()
    model = wrap_model(net, tasks, outputs=OUTPUTS, upsample=False).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    loader = DataLoader(data.split("train"), batch_size=16)
    for _, batch in zip(range(steps), itertools.cycle(loader)):
        preds = model(batch["image"])
        loss = sum(task.loss(preds[t], batch[t]).mean() for t, task in tasks.items())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(net.state_dict(), path)
    return tasks, data


def comparable(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k not in ("seconds", "cpu_seconds", "identity")}


def test_hydra_external_run_equals_the_python_api(tiny_cfg, tmp_path, caplog):
    path = tmp_path / "half.pt"
    extra = ["eval.resolution=prediction", "attack.eps=[2,4]", "attack.steps=3", OUTPUTS_ARG]
    extra.append("device=cpu")  # the API side below runs on the CPU: compare like with like
    cfg = tiny_cfg(*external(path, *extra))
    tasks, data = trained_weights(cfg, path)
    with caplog.at_level(logging.INFO, logger="mtl_attack"):
        results = run(cfg)
    assert "as they are; not trained" in caplog.text
    imported = results["model"]["imported"]
    assert imported["kind"] == "external" and imported["fine_tuned"] is False
    assert results["model"]["checkpoint"] == str(path)
    assert not list((tmp_path / "outputs" / "checkpoints").glob("*/model.pt"))  # not trained
    # the same module through the Python API, without Hydra
    net = HalfResNet()
    net.load_state_dict(torch.load(path, weights_only=True))
    model = wrap_model(net, tasks, outputs=OUTPUTS, upsample=False)
    assert {tuple(p.shape[-2:]) for p in model(torch.rand(1, 3, 32, 32)).values()} == {(16, 16)}
    attacks = [build_attack("dgba", "pgd", tasks, eps=e, steps=3) for e in (2, 4)]
    loader = DataLoader(data.split("test"), batch_size=cfg.eval.batch_size)
    api = evaluate_robustness(model, tasks, loader, attacks)
    assert api["clean"] == results["clean"]
    assert [comparable(e) for e in api["attacks"]] == [comparable(e) for e in results["attacks"]]
    assert api["attacks"][1]["avg_degradation"] > api["attacks"][0]["avg_degradation"] > 0
    assert api["transfer"] == results["transfer"] == []


class RGBNet(nn.Module):
    """Expects [0, 1] RGB; a 1x1 first convolution (no padding) so a change of input
    convention can be folded into it exactly."""

    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(3, 8, 1)
        self.rest = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.depth = nn.Conv2d(8, 1, 1)

    def forward(self, x):
        return {"depth_zbuffer": self.depth(self.rest(self.first(x)))}


def caffe_twin(rgb: RGBNet, mean: torch.Tensor) -> RGBNet:
    """The same function for inputs x' = BGR(255 x) - mean: W' = flip(W) / 255, and the bias
    absorbs the mean: b' = b + sum_c W'[:, c] mean[c]."""
    twin = RGBNet()
    twin.load_state_dict(rgb.state_dict())
    with torch.no_grad():
        weight = rgb.first.weight.flip(1) / 255.0
        twin.first.weight.copy_(weight)
        twin.first.bias.copy_(rgb.first.bias + (weight[:, :, 0, 0] * mean).sum(1))
    return twin


def test_bgr_255_mean_subtracted_model_gets_the_same_adversarial_images():
    torch.manual_seed(0)
    tasks = build_tasks(["depth_zbuffer"], num_classes=6)
    mean = torch.tensor([104.00698793, 116.66876762, 122.67891434])
    rgb = RGBNet()
    caffe = {"scale": 255, "channel_order": "bgr", "mean": mean.tolist(), "std": [1, 1, 1]}
    plain = wrap_model(rgb, tasks)
    wrapped = wrap_model(caffe_twin(rgb, mean), tasks, input=caffe)
    images = torch.rand(2, 3, 16, 16)
    target = {"depth_zbuffer": torch.rand(2, 1, 16, 16) + 0.5}
    with torch.no_grad():
        assert torch.allclose(wrapped(images)["depth_zbuffer"], plain(images)["depth_zbuffer"])
    for step in ("pgd", "fgsm"):
        attack = build_attack("total", step, tasks, eps=8, steps=5)
        adv_plain = attack(plain, images, target)
        adv_caffe = attack(wrapped, images, target)
        assert torch.allclose(adv_caffe, adv_plain, atol=1e-6)  # in [0, 1] pixel space
        linf_levels = (adv_caffe - images).abs().amax() * 255
        assert linf_levels == pytest.approx(8, abs=1e-3)  # eps 8 = 8 pixel levels, not 8 * 255
        assert adv_caffe.min() >= 0 and adv_caffe.max() <= 1


def test_checkpoint_wrappers_prefixes_and_partial_loads(tmp_path, caplog):
    tasks = build_tasks(["segment_semantic", "normal", "depth_zbuffer"], num_classes=6)
    net = HalfResNet()
    wrapped = {"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "ddp.pt")
    model = import_external(tasks, HalfResNet, str(tmp_path / "ddp.pt"), outputs=OUTPUTS)
    assert torch.equal(model.net.seg.weight, net.seg.weight)
    partial = {k: v for k, v in net.state_dict().items() if not k.startswith("z.")}
    partial["extra.weight"] = torch.zeros(1)
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(ValueError) as err:
        import_external(tasks, HalfResNet, str(tmp_path / "partial.pt"), outputs=OUTPUTS)
    msg = str(err.value)
    assert "missing 2 keys ['z.weight', 'z.bias']" in msg and "unexpected 1 keys" in msg
    assert "model.strict=false" in msg and "\n" not in msg
    with caplog.at_level(logging.INFO, logger="mtl_attack"):
        loose = import_external(
            tasks, HalfResNet, str(tmp_path / "partial.pt"), strict=False, outputs=OUTPUTS
        )
    assert torch.equal(loose.net.seg.weight, net.seg.weight)
    assert loose.source["missing_keys"] == 2 and loose.source["unexpected_keys"] == 1
    assert "missing 2 ['z.weight', 'z.bias']; unexpected 1 ['extra.weight']" in caplog.text


class Marker:
    """A pickled object that would create a file if it were ever unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


def bad_inputs(tmp_path: Path) -> list[tuple[list[str], type, str]]:
    evil = tmp_path / "evil.pt"
    torch.save({"seg.weight": torch.zeros(1), "hook": Marker(tmp_path / "EXECUTED")}, evil)
    good = tmp_path / "good.pt"
    torch.save(HalfResNet().state_dict(), good)
    torch.save(HalfResNet(classes=13).state_dict(), tmp_path / "c13.pt")
    torch.save(TensorNet().state_dict(), tmp_path / "tensor.pt")
    tensor_net = f"model.factory._target_={__name__}.TensorNet"
    return [
        (external(tmp_path / "nowhere.pt", OUTPUTS_ARG), FileNotFoundError, "no such file"),
        (external(evil, OUTPUTS_ARG), ValueError, "pickles the Python object posix.system"),
        (
            external(good, "model.outputs={seg:segment_semantic,surface:normal,z:depth}"),
            ValueError,
            r"unknown tasks \['depth'\], missing tasks \['depth_zbuffer'\]",
        ),
        (
            external(good, "model.outputs={seg:segment_semantic,surface:normal}"),
            ValueError,
            r"missing tasks \['depth_zbuffer'\]",
        ),
        (
            [*external(tmp_path / "tensor.pt"), tensor_net, "dataset.tasks=[depth_zbuffer]"],
            TypeError,
            "returned a Tensor, not a dict keyed by task names; set model.outputs",
        ),
        (
            external(tmp_path / "c13.pt", OUTPUTS_ARG, "+model.factory.classes=13"),
            ValueError,
            r"segment_semantic' has shape \(1, 13, 64, 64\), but the task needs \(B, 6, h, w\)",
        ),
    ]


@pytest.mark.parametrize("case", range(6))
def test_bad_input_is_one_actionable_line_and_writes_nothing(tiny_cfg, tmp_path, case):
    overrides, error, message = bad_inputs(tmp_path)[case]
    with pytest.raises(error, match=message) as err:
        run(tiny_cfg(*overrides))
    assert "\n" not in str(err.value) and "model." in str(err.value)
    assert not (tmp_path / "EXECUTED").exists()  # the pickled command never ran
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "run").exists()


def test_changed_file_is_never_served_stale_results(tiny_cfg, tmp_path):
    path = tmp_path / "net.pt"
    torch.manual_seed(1)
    torch.save(HalfResNet().state_dict(), path)
    first = run(tiny_cfg(*external(path, OUTPUTS_ARG, "attack=none"), run="a"))
    torch.manual_seed(2)
    torch.save(HalfResNet().state_dict(), path)  # same path, other weights
    second = run(tiny_cfg(*external(path, OUTPUTS_ARG, "attack=none"), run="b"))
    assert first["model"]["imported"]["sha256"] != second["model"]["imported"]["sha256"]
    assert first["clean"] != second["clean"]
    folders = sorted((tmp_path / "outputs" / "checkpoints").iterdir())
    assert len(folders) == 2
    copy = tmp_path / "elsewhere.pt"
    copy.write_bytes(path.read_bytes())  # same content, another path: the same cache entry
    third = run(tiny_cfg(*external(copy, OUTPUTS_ARG, "attack=none"), run="c"))
    assert third["clean"] == second["clean"]
    assert sorted((tmp_path / "outputs" / "checkpoints").iterdir()) == folders


def test_adv_train_fine_tunes_from_the_imported_weights(tiny_cfg, tmp_path):
    path = tmp_path / "net.pt"
    net = HalfResNet()
    torch.save(net.state_dict(), path)
    cfg = tiny_cfg(
        *external(path, OUTPUTS_ARG, "attack=none", "defense=adv_train", "defense.steps=1"),
        "train.optimizer.lr=0.0",  # a zero step: the fine-tuned weights are the imported ones
    )
    results = run(cfg)
    assert results["model"]["imported"]["fine_tuned"] is True
    assert results["defense"]["adversarial"] is True
    (saved,) = (tmp_path / "outputs" / "checkpoints").glob("*/model.pt")
    weights = torch.load(saved, weights_only=True)["model"]
    assert all(torch.equal(weights[f"net.{k}"], v) for k, v in net.state_dict().items())
    spec = json.loads((saved.parent / "spec.json").read_text())["spec"]
    assert spec["model"]["sha256"] == results["model"]["imported"]["sha256"]
    assert spec["train"]["optimizer"]["lr"] == 0.0
