"""The attack loss and the ensemble's members, built from ``cfg.attack``."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mtl_attack.attacks import AttackLoss, Ensemble, IterativeAttack, SingleTask, single_targets
from mtl_attack.runner.errors import ConfigError
from mtl_attack.tasks import Task


def eps_budgets(acfg: DictConfig) -> list:
    """``attack.eps`` as a non-empty list of budgets in pixel levels."""
    eps_list = list(acfg.eps) if OmegaConf.is_list(acfg.eps) else [acfg.eps]
    if not eps_list:
        raise ConfigError("attack.eps is empty; give budgets in pixel levels, e.g. [2,4,8]")
    return eps_list


def make_objective(partial, tasks: dict[str, Task], target: str | None, where: str):
    try:
        return partial(tasks, task=target) if target else partial(tasks)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def build_loss(spec, tasks: dict[str, Task], where: str = "attack.loss") -> AttackLoss:
    """``attack.loss`` (a name or ``{task: name}``) as one :class:`AttackLoss`, shared by every
    attack of the run so that a fallback to a task's own loss is logged once."""
    spec = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec
    try:
        return AttackLoss("ce" if spec is None else spec, tasks)
    except ValueError as err:
        raise ConfigError(str(err).replace("attack.loss", where, 1)) from None


def with_loss(label: dict, loss: AttackLoss) -> dict:
    """The label with the attack loss (``loss``) unless it is the default ``ce``: default
    results keep their labels, keys and cache entries."""
    return label | ({"loss": loss.label} if loss.label is not None else {})


def ensemble_of(acfg: DictConfig, step_rule, tasks, eps, loop) -> Ensemble:
    """The members of ``attack.members``: each an objective node, optionally with its own
    ``loss`` (a SINGLE member then attacks only the tasks that loss is defined for)."""
    members = {}
    for name, node in (acfg.members or {}).items():
        node = OmegaConf.to_container(node, resolve=True)
        loss = loop["loss"]
        if "loss" in node:
            loss = build_loss(node.pop("loss"), tasks, f"attack.members.{name}.loss")
        partial = instantiate(node)
        single = getattr(partial, "func", None) is SingleTask
        for target in single_targets(tasks, loss) if single else [None]:
            obj = make_objective(partial, tasks, target, f"attack.members.{name}")
            label = f"{name}({target})" if target else name
            settings = loop | {"loss": loss}
            members[label] = IterativeAttack(step_rule, obj, tasks, eps=eps, **settings)
    try:
        return Ensemble(members, list(acfg.criteria), "mean" if "mean" in acfg.criteria else "min")
    except ValueError as err:
        raise ConfigError(f"attack=ensemble: {err}") from None
