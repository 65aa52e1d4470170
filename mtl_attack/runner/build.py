"""Builds the pipeline's objects from the config (Hydra ``instantiate`` lives here)."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from mtl_attack.attacks import Attack, Frontier, IterativeAttack
from mtl_attack.cache import CheckpointCache
from mtl_attack.data import DatasetSource
from mtl_attack.defense import EpochShuffle
from mtl_attack.evaluation.identity import LABEL_KEYS
from mtl_attack.models import MultiTaskModel, describe_model
from mtl_attack.runner.errors import ConfigError
from mtl_attack.runner.members import (
    build_loss,
    ensemble_of,
    eps_budgets,
    make_objective,
    with_loss,
)
from mtl_attack.runner.standard import standard_attacks
from mtl_attack.tasks import Task
from mtl_attack.utils.distributed import ShardedBatchSampler, world

log = logging.getLogger("mtl_attack")


def build_model(cfg: DictConfig, tasks: dict[str, Task]) -> nn.Module:
    """The ``model`` group: ``tree`` (the ``backbone`` x ``sharing`` groups x heads, trained
    here) or a model imported from a weights file (``external``, ``treemtl``)."""
    upsample = eval_resolution(cfg) == "input"
    if model_kind(cfg) == "tree":
        backbone = instantiate(cfg.backbone.trunk)
        layout = instantiate(cfg.sharing)(
            num_tasks=len(tasks), num_blocks=backbone.num_blocks, task_names=list(tasks)
        )
        head = instantiate(cfg.backbone.head)
        channels = {n: t.channels for n, t in tasks.items()}
        return MultiTaskModel(backbone, layout, channels, head, upsample=upsample)
    node = OmegaConf.to_container(cfg.model, resolve=True)
    node.pop("name")
    model = instantiate(node, _convert_="all")(tasks=tasks, upsample=upsample)
    model.source["fine_tuned"] = adversarial(cfg)
    return model


def model_kind(cfg: DictConfig) -> str:
    return str(OmegaConf.select(cfg, "model.name", default="tree"))


def eval_resolution(cfg: DictConfig) -> str:
    """``eval.resolution``: ``input`` (predictions upsampled in the model) or ``prediction``."""
    value = OmegaConf.select(cfg, "eval.resolution", default="input")
    if value not in ("input", "prediction"):
        raise ConfigError(f"eval.resolution must be 'input' or 'prediction', got {value!r}")
    return value


def adversarial(cfg: DictConfig) -> bool:
    return OmegaConf.select(cfg, "defense.name", default="none") != "none"


def model_stats(model: nn.Module) -> dict[str, Any]:
    """Parameter counts, layout and sharing degree (and the imported file); logged once."""
    stats = describe_model(model)
    log.info(
        "model: %d parameters (%s in shared blocks), sharing degree %s, layout %s",
        stats["params_total"],
        stats["params_shared"],
        stats["sharing_degree"],
        stats["layout"],
    )
    return stats


def weight_spec(cfg: DictConfig, model: nn.Module, data: DatasetSource) -> dict[str, Any]:
    """Everything that changes the trained weights: the checkpoint cache key."""
    if model_kind(cfg) != "tree":
        return imported_spec(cfg, model, data)
    pick = ("dataset", "backbone", "train", "defense", "seed")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    spec = {k: resolved.get(k) for k in pick}
    spec["tasks"] = list(data.tasks)
    spec["layout"] = model.layout.as_lists()
    if eval_resolution(cfg) != "input":  # losses at the prediction size train other weights
        spec["resolution"] = eval_resolution(cfg)
    if getattr(data, "preprocessing", None):  # other transforms train other weights
        spec["preprocessing"] = data.preprocessing
    return spec


def imported_spec(cfg: DictConfig, model: nn.Module, data: DatasetSource) -> dict[str, Any]:
    """Cache key of an imported model: the weights file's content hash (not its path), how the
    file is read and, when it is fine-tuned (``defense=adv_train``), what training adds."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    read = {k: v for k, v in resolved["model"].items() if k != "checkpoint"}
    spec = {
        "model": read | {"sha256": model.source["sha256"]},
        "tasks": list(data.tasks),
        "resolution": eval_resolution(cfg),
        "defense": resolved["defense"],
    }
    if getattr(data, "preprocessing", None):  # its evaluations see the transforms' output
        spec["preprocessing"] = data.preprocessing
    if adversarial(cfg):
        spec |= {k: resolved[k] for k in ("dataset", "train", "seed")}
    return spec


def imported_as_is(cfg: DictConfig, model: nn.Module, cache: CheckpointCache) -> bool:
    """An imported model without ``defense=adv_train`` is evaluated, never trained: says so,
    and points ``cache.weights`` at the imported file (its folder keeps the evaluations)."""
    if model_kind(cfg) == "tree" or adversarial(cfg):
        return False
    cache.weights = Path(model.source["checkpoint"])
    log.info(
        "model=%s: evaluating the imported weights %s (sha256 %s) as they are; not trained "
        "(defense=adv_train would fine-tune them)",
        model_kind(cfg),
        cache.weights,
        model.source["sha256"][:12],
    )
    return True


def loaders(cfg: DictConfig, data: DatasetSource) -> tuple[DataLoader, DataLoader]:
    """Train loader whose order depends only on (seed, epoch) (exact resume), and test loader.

    Under torchrun each rank trains on its shard of every epoch's permutation and evaluates
    whole batches ``rank, rank + world, ...`` of the test split (see utils.distributed).
    """
    rank, size = world()
    workers = int(cfg.loader.num_workers)
    train_set = data.split("train", train=True)
    usable = len(train_set) // size  # each rank trains on its shard
    if usable < int(cfg.train.batch_size):
        raise ConfigError(
            f"the training split has {len(train_set)} images"
            + (f" ({usable} per rank of {size})" if size > 1 else "")
            + f", fewer than train.batch_size={cfg.train.batch_size}: not one full batch to "
            "train on; lower train.batch_size or use more training images"
        )
    train = DataLoader(
        train_set,
        batch_size=cfg.train.batch_size,
        sampler=EpochShuffle(len(train_set), int(cfg.seed), rank, size),
        drop_last=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(int(cfg.seed)),
        persistent_workers=workers > 0,
    )
    test_set = data.split("test")
    batches = ShardedBatchSampler(len(test_set), int(cfg.eval.batch_size), rank, size)
    test = DataLoader(test_set, batch_sampler=batches, num_workers=workers)
    return train, test


def build_defense(cfg: DictConfig, tasks: dict[str, Task]):
    """The ``defense`` group: a views function deciding what each update trains on."""
    return instantiate(cfg.defense)(tasks=tasks)


def loop_settings(acfg: DictConfig, own: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ``IterativeAttack`` arguments of ``cfg.attack`` (``own``: keys the attack itself
    reads, e.g. the ensemble's ``members``); an unknown key is a ConfigError."""
    skip = (*LABEL_KEYS, *own)
    loop = {k: v for k, v in OmegaConf.to_container(acfg, resolve=True).items() if k not in skip}
    allowed = [p for p in inspect.signature(IterativeAttack).parameters if p not in SUPPLIED]
    unknown = sorted(set(loop) - set(allowed))
    if unknown:
        raise ConfigError(
            f"attack.{unknown[0]} is not a setting of attack={acfg.name}; its settings are "
            f"eps, task, {', '.join([*allowed, *own])} (and attack.objective.*, attack.step.*)"
        )
    return loop


#: IterativeAttack arguments the runner supplies itself
SUPPLIED = ("step_rule", "objective", "tasks", "eps")
#: keys the attacks made of attacks read themselves (identity settings, not loop arguments)
OWN_KEYS = {"ensemble": ("members", "criteria"), "frontier": ("resolution", "scale")}


def attack_targets(acfg: DictConfig, tasks: dict[str, Task]) -> list[str | None]:
    """The attacked task of each single-task attack (``None`` for multi-task objectives)."""
    if acfg.name != "single":
        if acfg.get("task") is not None:
            if acfg.task != "all" and acfg.task not in tasks:
                raise ConfigError(
                    f"attack.task={acfg.task!r} is not a task of this dataset ({list(tasks)}); "
                    f"besides, attack={acfg.name} attacks every task and ignores attack.task"
                )
            log.warning(
                "attack.task=%s is ignored: attack=%s attacks every task (only attack=single "
                "reads attack.task)",
                acfg.task,
                acfg.name,
            )
        return [None]
    if acfg.task is None:
        raise ConfigError(f"attack=single needs attack.task=<one of {list(tasks)}> or all")
    if acfg.task != "all" and acfg.task not in tasks:
        raise ConfigError(
            f"attack.task={acfg.task!r} is not a task of this dataset; use one of "
            f"{list(tasks)} or all"
        )
    return list(tasks) if acfg.task == "all" else [str(acfg.task)]


def build_attacks(cfg: DictConfig, tasks: dict[str, Task]) -> list[tuple[dict, Attack]]:
    """One attack per (eps, target task) of ``cfg.attack``: ``[(label, attack)]``.

    ``attack.objective`` is a partial called with the tasks (and ``task=`` for single);
    ``attack.step`` is the step rule (its ``name`` is the label: fgsm, pgd, mim, apgd); every
    other key is an ``IterativeAttack`` argument. ``attack=ensemble`` and ``attack=frontier``
    build one :class:`~mtl_attack.attacks.Ensemble` / :class:`~mtl_attack.attacks.Frontier`
    per eps (their results are views, told apart by the label's ``variant``). Everything is
    checked here, before any training: a misspelled key, an unknown task or a bad budget is a
    one-line ConfigError.
    """
    acfg = cfg.attack
    if acfg.name == "standard":  # the fixed protocol: its own module checks and builds it
        return standard_attacks(acfg, tasks)
    if acfg.name in OWN_KEYS:
        return build_composite(acfg, tasks)
    objective = instantiate(acfg.objective)
    step_rule = instantiate(acfg.step)
    loop = loop_settings(acfg)
    loop["loss"] = build_loss(acfg.get("loss"), tasks)
    targets = attack_targets(acfg, tasks)
    attacks = []
    for eps in eps_budgets(acfg):
        for target in targets:
            obj = make_objective(objective, tasks, target, f"attack.objective of {acfg.name}")
            label = {
                "objective": acfg.name,
                "step": step_rule.name,
                "eps": eps,
                "target_task": target,
            }
            if obj.variant is not None:
                label["variant"] = obj.variant
            label = with_loss(label, loop["loss"])
            attacks.append((label, IterativeAttack(step_rule, obj, tasks, eps=eps, **loop)))
    return attacks


def build_composite(acfg: DictConfig, tasks: dict[str, Task]) -> list[tuple[dict, Attack]]:
    """``attack=ensemble`` (members x every single task, one Ensemble per eps) or
    ``attack=frontier`` (one Frontier per eps)."""
    step_rule = instantiate(acfg.step)
    loop = loop_settings(acfg, OWN_KEYS[acfg.name])
    loop["loss"] = build_loss(acfg.get("loss"), tasks)
    attacks = []
    for eps in eps_budgets(acfg):
        label = {"objective": acfg.name, "step": step_rule.name, "eps": eps, "target_task": None}
        label = with_loss(label, loop["loss"])
        if acfg.name == "frontier":
            try:
                attack = Frontier(
                    step_rule, tasks, eps, int(acfg.resolution), str(acfg.scale), **loop
                )
            except ValueError as err:
                raise ConfigError(f"attack=frontier: {err}") from None
        else:
            attack = ensemble_of(acfg, step_rule, tasks, eps, loop)
        attacks.append((label, attack))
    return attacks
