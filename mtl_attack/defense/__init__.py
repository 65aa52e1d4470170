"""Defense: the training loop, clean or adversarial, resumable from checkpoints."""

from mtl_attack.defense.adversarial import AdversarialTraining
from mtl_attack.defense.checkpoint import ForeignCheckpointError, TrainCheckpoint
from mtl_attack.defense.health import LossHealth, TrainingDivergedError
from mtl_attack.defense.loop import Progress, fit
from mtl_attack.defense.sampler import EpochShuffle
from mtl_attack.defense.training import (
    CleanTraining,
    NonFiniteLossError,
    multitask_loss,
    train_epoch,
    train_step,
)

__all__ = [
    "AdversarialTraining",
    "CleanTraining",
    "EpochShuffle",
    "ForeignCheckpointError",
    "LossHealth",
    "NonFiniteLossError",
    "Progress",
    "TrainCheckpoint",
    "TrainingDivergedError",
    "fit",
    "multitask_loss",
    "train_epoch",
    "train_step",
]
