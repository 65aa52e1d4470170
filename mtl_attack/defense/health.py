"""Training health beyond NaN: a loss that explodes, or training that does not learn.

A learning rate far too high often gives finite but enormous losses (1e9 after a few steps)
rather than NaN; such a model must never be cached as if it were trained. Checked at every
epoch end, on values averaged over torchrun ranks so that every rank takes the same decision:

- **diverged**: the largest step loss of the epoch exceeds ``factor`` x the first step's loss;
- **not learning**: after the last epoch of a run of two or more epochs, the epoch's mean loss
  is above the first epoch's mean.

The references (first step, first epoch) are stored in the training checkpoint, so a resumed
run checks against the same values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from mtl_attack.utils.distributed import all_reduce_sum, world


class TrainingDivergedError(RuntimeError):
    """The training loss exploded or did not decrease; the model is not cached."""


HINT = "lower train.optimizer.lr or lengthen the warm-up (train.scheduler.warmup_steps)"


@dataclass
class LossHealth:
    """Tracks the total training loss (sum over tasks) against its first values.

    Args:
        factor: a step loss above ``factor`` x the first step's loss is divergence; 0 = off.
    """

    factor: float = 100.0
    initial: float | None = None  # total loss of the first optimizer step
    first_epoch: float | None = None  # mean total loss of the first epoch
    epoch_max: float = 0.0

    def step(self, total: float) -> None:
        if self.initial is None:
            self.initial = float(total)
        self.epoch_max = max(self.epoch_max, float(total))

    def end_epoch(self, epoch: int, epochs: int, mean: float, device) -> None:
        """Raise :class:`TrainingDivergedError` when the finished epoch is unhealthy."""
        initial, peak, mean = _rank_average([self.initial or 0.0, self.epoch_max, mean], device)
        self.epoch_max = 0.0
        if self.factor and initial > 0 and peak > self.factor * initial:
            raise TrainingDivergedError(
                f"training diverged: the training loss reached {peak:.4g} in epoch {epoch + 1}, "
                f"more than {self.factor:g}x its first value {initial:.4g} "
                f"(train.divergence_factor); {HINT}"
            )
        if epoch == 0:
            self.first_epoch = mean
        elif epoch == epochs - 1 and self.first_epoch is not None and mean > self.first_epoch:
            raise TrainingDivergedError(
                f"training did not learn: the mean training loss of the last epoch ({mean:.4g}) "
                f"is above the first epoch's ({self.first_epoch:.4g}); {HINT}"
            )

    def state(self) -> dict[str, float | None]:
        return asdict(self)

    def load(self, state: dict) -> None:
        for key, value in state.items():
            if key in self.__dataclass_fields__ and key != "factor":
                setattr(self, key, value)


def _rank_average(values: list[float], device) -> list[float]:
    """Mean over torchrun ranks (the values themselves in one process)."""
    size = world()[1]
    if size == 1:
        return values
    summed = all_reduce_sum({"v": torch.tensor(values, dtype=torch.float64)}, device)["v"]
    return [float(v) / size for v in summed]
