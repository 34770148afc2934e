"""Optimisers, learning-rate schedules and the L1/L2 penalty, made from the run's settings.

Owns the mapping from `TrainSettings` names to `torch.optim` objects and network3.py's
weight penalty. It knows nothing of the loop that steps them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.model import network as networks
from core.training.settings import TrainSettings


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    parameters = model.parameters()
    rate = settings.learning_rate
    name = settings.optimizer
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=rate)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(parameters, lr=rate, momentum=settings.momentum, nesterov=name == "nesterov")
    if name == "adagrad":
        return torch.optim.Adagrad(parameters, lr=rate)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=rate, momentum=settings.momentum)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=rate, betas=(settings.beta1, settings.beta2))
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=rate, betas=(settings.beta1, settings.beta2), weight_decay=settings.weight_decay)
    if name == "adadelta":
        return torch.optim.Adadelta(parameters, lr=rate)
    raise ValueError(f"Unknown optimizer {name!r}.")


def make_scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings, total_steps: int) -> Any:
    """Per-epoch schedules step at each epoch's end; one-cycle steps every batch."""
    name = settings.schedule
    if name == "constant":
        return None
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=settings.step_epochs, gamma=settings.gamma)
    if name == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=settings.gamma)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.learning_rate, total_steps=max(total_steps, 2))
    if name == "halve_on_plateau":
        # Nielsen ch. 3 suggests halving η when validation accuracy stops improving. PyTorch halves
        # only once more than `patience` epochs went without improvement, hence the - 1; threshold 0
        # makes "improvement" mean strictly better, as for early stopping.
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=0.5, patience=settings.plateau_patience - 1, threshold=0.0
        )
    raise ValueError(f"Unknown schedule {name!r}.")


def penalty(model: nn.Module, settings: TrainSettings, batches_per_epoch: int) -> torch.Tensor | float:
    """network3.py's regulariser: 0.5·λ·Σw² / batches (+ λ₁·Σ|w| / batches), on weights only.

    Dividing by the number of mini-batches spreads the penalty over an epoch, so λ means the
    same thing whatever the batch size (Nielsen ch. 6).
    """
    if settings.l2 == 0 and settings.l1 == 0:
        return 0.0
    weights = networks.weight_parameters(model)
    total = 0.0
    if settings.l2:
        total = total + 0.5 * settings.l2 * sum((weight * weight).sum() for weight in weights) / batches_per_epoch
    if settings.l1:
        total = total + settings.l1 * sum(weight.abs().sum() for weight in weights) / batches_per_epoch
    return total
