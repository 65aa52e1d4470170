"""Wires the config into data, tasks, model, training, attacks, evaluation and logging.

``run(cfg) -> dict`` is the whole job; ``run.py`` wraps it in ``@hydra.main``. The only package
that imports Hydra: ``build`` (constructors), ``training``, ``attacking``, ``main`` (``run``).
"""

from mtl_attack.cache import CheckpointCache
from mtl_attack.runner.attacking import attack_model
from mtl_attack.runner.build import (
    build_attacks,
    build_defense,
    build_model,
    loaders,
    model_stats,
    weight_spec,
)
from mtl_attack.runner.entry import one_line_errors, register_resolvers
from mtl_attack.runner.main import run
from mtl_attack.runner.training import train_model
from mtl_attack.utils.env import seed_everything

__all__ = [
    "CheckpointCache",
    "attack_model",
    "build_attacks",
    "build_defense",
    "build_model",
    "loaders",
    "model_stats",
    "one_line_errors",
    "run",
    "seed_everything",
    "train_model",
    "weight_spec",
]

register_resolvers()  # ${run_stamp:} in conf/config.yaml
