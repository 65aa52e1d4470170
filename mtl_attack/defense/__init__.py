"""Defense: the training loop, clean or adversarial."""

from mtl_attack.defense.training import NonFiniteLossError, multitask_loss, train_epoch

__all__ = ["NonFiniteLossError", "multitask_loss", "train_epoch"]
