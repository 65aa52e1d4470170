"""``model=external``: attack any multi-task ``nn.Module``, whatever its input and output format.

The wrapper puts a user's module under the project's tensor contract: it takes images float in
[0, 1], RGB (so an attack's eps stays in pixel levels), applies the module's own input
convention as its first layer, and returns ``{task: prediction}``. Predictions smaller than the
labels follow ``eval.resolution`` (upsampled here, or left to the tasks' nearest-neighbour
convention; see :mod:`mtl_attack.tasks.base`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtl_attack.models.convention import InputConvention
from mtl_attack.models.files import preview, read_checkpoint, unwrap_state_dict
from mtl_attack.tasks import Task

log = logging.getLogger("mtl_attack")

Outputs = Mapping[str | int, str]  # model output key or position -> task name


class ExternalModel(nn.Module):
    """``model(images) -> {task: prediction}`` around a user's module.

    Args:
        net: the user's module; called on the converted images.
        task_channels: task name -> channels each prediction must have.
        convention: the module's input convention (scale, channel order, mean, std).
        outputs: model output key (a returned dict) or position (a returned tuple/list) ->
            task name; ``None`` when the module returns a dict keyed by the task names.
        upsample: upsample predictions to the input size (``eval.resolution=input``).

    Shape: (B, 3, H, W) in [0, 1] -> ``{task: (B, C_task, h, w)}``, (h, w) = (H, W) with
    ``upsample``, else the module's own output size.
    """

    def __init__(
        self,
        net: nn.Module,
        task_channels: Mapping[str, int],
        convention: InputConvention | None = None,
        outputs: Outputs | None = None,
        upsample: bool = True,
    ):
        super().__init__()
        self.task_names = list(task_channels)
        self.task_channels = dict(task_channels)
        self.outputs = check_outputs(outputs, self.task_names)
        self.normalize = convention or InputConvention()
        self.net = net
        self.upsample = upsample
        self.source: dict[str, Any] = {"kind": "external"}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raw = self.net(self.normalize(images))
        preds = pick_outputs(raw, self.outputs, self.task_names)
        if self.upsample:
            size = images.shape[-2:]
            preds = {
                t: p
                if p.shape[-2:] == size
                else F.interpolate(p, size=size, mode="bilinear", align_corners=False)
                for t, p in preds.items()
            }
        return preds

    def check(self, size: int = 64) -> None:
        """One forward pass on a blank (1, 3, size, size) image, in eval mode: every task gets
        a (1, C_task, h, w) prediction, or a one-line error says what the module returned."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                device = next((p.device for p in self.parameters()), torch.device("cpu"))
                preds = self(torch.zeros(1, 3, size, size, device=device))
        finally:
            self.train(was_training)
        for task, pred in preds.items():
            want = self.task_channels[task]
            if pred.ndim != 4 or pred.shape[1] != want:
                raise ValueError(
                    f"model output for task {task!r} has shape {tuple(pred.shape)}, but the task "
                    f"needs (B, {want}, h, w) ({want} channels for this dataset); check "
                    "model.outputs and the model's head, or the dataset's classes"
                )


def check_outputs(outputs: Outputs | None, task_names: Sequence[str]) -> dict | None:
    """``outputs`` must name every task of the dataset exactly once and nothing else."""
    if outputs is None:
        return None
    mapping = {k: str(v) for k, v in dict(outputs).items()}
    named = list(mapping.values())
    unknown = [t for t in named if t not in task_names]
    missing = [t for t in task_names if t not in named]
    twice = sorted({t for t in named if named.count(t) > 1})
    if unknown or missing or twice:
        raise ValueError(
            f"model.outputs={mapping} must map one model output to each task of the dataset "
            f"{list(task_names)}: unknown tasks {unknown}, missing tasks {missing}, tasks named "
            f"twice {twice}; set model.outputs={{<output key or position>: <task>, ...}}"
        )
    return mapping


def pick_outputs(raw: Any, outputs: dict | None, task_names: Sequence[str]) -> dict:
    """The module's return value -> ``{task: tensor}`` in task order."""
    if outputs is None:
        if not isinstance(raw, Mapping):
            raise TypeError(
                f"the model returned a {type(raw).__name__}, not a dict keyed by task names; set "
                "model.outputs to map its outputs (dict keys or tuple positions) to tasks, e.g. "
                f"model.outputs={{0: {task_names[0]}}}"
            )
        outputs = {t: t for t in task_names}
    if isinstance(raw, torch.Tensor):
        raw = (raw,)
    by_task = {}
    for key, task in outputs.items():
        if isinstance(raw, Mapping):
            if key not in raw:
                raise KeyError(
                    f"model.outputs names output {key!r} for task {task!r}, but the model "
                    f"returned keys {list(raw)}"
                )
            by_task[task] = raw[key]
        else:
            position = int(key)
            if not 0 <= position < len(raw):
                raise IndexError(
                    f"model.outputs names position {key!r} for task {task!r}, but the model "
                    f"returned {len(raw)} outputs"
                )
            by_task[task] = raw[position]
    return {t: by_task[t] for t in task_names}


def load_weights(net: nn.Module, state: dict, path: str | Path, strict: bool = True) -> dict:
    """Copy a state dict into ``net``; returns (and logs) ``{loaded, missing, unexpected}``.

    ``strict`` (``model.strict``) refuses missing or unexpected keys with a one-line error; a
    shape mismatch is always an error.
    """
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in state if k in own and state[k].shape != own[k].shape]
    if shapes:
        k = shapes[0]
        raise ValueError(
            f"model.checkpoint={path}: {len(shapes)} tensors have the wrong shape, e.g. {k} is "
            f"{tuple(state[k].shape)} in the file but {tuple(own[k].shape)} in the model built "
            "by model.factory; build the model with the settings it was trained with"
        )
    if strict and (missing or unexpected):
        raise ValueError(
            f"model.checkpoint={path} does not fit the model built by model.factory: missing "
            f"{len(missing)} keys {preview(missing)}, unexpected {len(unexpected)} keys "
            f"{preview(unexpected)}; fix the factory or set model.strict=false to load the "
            "matching keys only"
        )
    net.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    report = {"loaded": len(own) - len(missing), "missing": missing, "unexpected": unexpected}
    log.info(
        "model.checkpoint=%s: loaded %d tensors; missing %d %s; unexpected %d %s",
        path,
        report["loaded"],
        len(missing),
        preview(missing),
        len(unexpected),
        preview(unexpected),
    )
    return report


def wrap_model(
    net: nn.Module,
    tasks: Mapping[str, Task],
    input: Mapping[str, Any] | None = None,
    outputs: Outputs | None = None,
    upsample: bool = True,
    probe_size: int | None = 64,
) -> ExternalModel:
    """The Python API: a user's module -> a model every attack and evaluation accepts.

    Args:
        net: any module mapping images (in its own convention) to per-task outputs.
        tasks: the tasks to evaluate (e.g. ``build_tasks(...)``); their channels are checked.
        input: ``InputConvention`` arguments: ``scale`` (1 | 255), ``channel_order`` (rgb |
            bgr), ``mean``, ``std`` (in that scale and order); default: [0, 1] RGB as is.
        outputs: output key/position -> task name (see :class:`ExternalModel`).
        upsample: True = ``eval.resolution=input``; False = ``prediction``.
        probe_size: side of the blank image of the output check; None skips the check.

    Example::

        model = wrap_model(net, tasks, input={"scale": 255, "channel_order": "bgr",
                           "mean": [104.0, 116.7, 122.7]}, outputs={"seg": "segment_semantic"})
    """
    model = ExternalModel(
        net,
        {name: task.channels for name, task in tasks.items()},
        InputConvention(**dict(input or {})),
        outputs,
        upsample,
    )
    if probe_size:
        model.check(probe_size)
    return model


def import_external(
    tasks: Mapping[str, Task],
    factory: nn.Module | Callable[[], nn.Module],
    checkpoint: str,
    strict: bool = True,
    input: Mapping[str, Any] | None = None,
    outputs: Outputs | None = None,
    probe_size: int | None = 64,
    upsample: bool = True,
) -> ExternalModel:
    """``model=external``: build the module with ``model.factory``, load ``model.checkpoint``
    (``weights_only``; a raw or wrapped state dict, ``module.`` stripped), wrap it.

    ``factory`` is what Hydra instantiated from ``model.factory``: the module itself (a
    ``_target_`` with kwargs) or a callable returning it (``_partial_: true``).
    """
    net = factory if isinstance(factory, nn.Module) else factory()
    if not isinstance(net, nn.Module):
        raise TypeError(
            f"model.factory returned a {type(net).__name__}, not a torch.nn.Module; point "
            "model.factory._target_ at a class or function that builds the model"
        )
    obj, digest = read_checkpoint(checkpoint, "model.checkpoint")
    state = unwrap_state_dict(obj, checkpoint, "model.checkpoint")
    report = load_weights(net, state, checkpoint, strict)
    model = wrap_model(net, tasks, input, outputs, upsample, probe_size)
    model.source = {
        "kind": "external",
        "checkpoint": str(checkpoint),
        "sha256": digest,
        "missing_keys": len(report["missing"]),
        "unexpected_keys": len(report["unexpected"]),
    }
    return model
