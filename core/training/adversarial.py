"""Adversarial training: the perturb hook the engine calls before the loss, and the robust accuracy it measures per epoch.

Owns turning the `adversarial_*` settings into a function (model, images, labels, epochs done)
→ attacked images — FGSM with a random start (Wong, Rice & Kolter 2020, "Fast is better than
free") or PGD (Madry et al. 2018) — with ε ramped up over the warm-up epochs, and the PGD
robust accuracy on the first `robust_eval_images` test images that ends each epoch. The
attacks themselves are `core.attacks.methods`'; the loop decides when to call these.

Mode during the attack: the attacks craft in eval mode (`methods.evaluating`) and give the
train mode back, so the adversarial batch is then trained on in train mode. In eval mode
batch norm normalises with its running statistics and does not update them, so the attack's
extra forward passes (one for FGSM, `adversarial_steps` for PGD, on images that are not yet
the ones trained on) leave those statistics to the training batches; and dropout is off, so
the attack climbs the gradient of the network itself rather than of one random thinned copy
of it. The attacks ask for `torch.autograd.grad`, so the parameters' `.grad` is untouched.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from core.attacks import methods
from core.attacks.robustness import attacked_accuracy
from core.training.device import DeviceData
from core.training.settings import TrainSettings

# (model, images (B, 1, 28, 28) in [0, 1], labels (B,), epochs done as a fraction) → images of the same shape, in [0, 1].
Perturb = Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor]

# Wong et al. 2020, §4: FGSM from a uniform random start with a step of 1.25 ε avoids the
# "catastrophic overfitting" that a step of ε from the clean image shows.
FGSM_STEP_FACTOR = 1.25


def epsilon_at(settings: TrainSettings, epochs_done: float) -> float:
    """ε in force after `epochs_done` epochs: rising linearly from 0 over the warm-up, then `adversarial_epsilon`."""
    warmup = settings.adversarial_warmup_epochs
    if warmup <= 0 or epochs_done >= warmup:
        return settings.adversarial_epsilon
    return settings.adversarial_epsilon * max(epochs_done, 0.0) / warmup


def step_size(settings: TrainSettings, epsilon: float) -> float:
    """The attack's step: the setting when it is not 0, else 1.25 ε for FGSM and 2.5 ε / steps for PGD."""
    if settings.adversarial_step_size > 0:
        return settings.adversarial_step_size
    if settings.adversarial == "fgsm":
        return FGSM_STEP_FACTOR * epsilon
    return methods.default_step_size(epsilon, settings.adversarial_steps)


def make_perturb(settings: TrainSettings, generator: torch.Generator | None = None) -> Perturb | None:
    """The hook that attacks each training batch, or None when `settings.adversarial` is "none".

    `generator` draws the random starts (the loop passes the CPU generator it shuffles with,
    whose state a resume restores, so a resumed run attacks as an uninterrupted one would).
    FGSM with a random start is one PGD step from a uniform point of the ε-ball, projected back.
    """
    if settings.adversarial == "none":
        return None
    steps = 1 if settings.adversarial == "fgsm" else settings.adversarial_steps

    def perturb(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs_done: float) -> torch.Tensor:
        epsilon = epsilon_at(settings, epochs_done)
        if epsilon <= 0:
            return images
        return methods.pgd(
            model, images, labels, epsilon, steps=steps, step_size=step_size(settings, epsilon), random_start=True, generator=generator
        )

    return perturb


def robust_accuracy(model: nn.Module, test_data: DeviceData, settings: TrainSettings) -> float | None:
    """PGD accuracy (ε = `adversarial_epsilon`, `robust_eval_steps` steps of 2.5 ε / steps, random start) on the first
    `robust_eval_images` test images; None when that is 0.

    The random start is seeded with the run's seed afresh each time, so one epoch's figure
    differs from the next only because the network did.
    """
    count = min(settings.robust_eval_images, len(test_data))
    if count == 0:
        return None
    images = test_data.images[:count]  # (N, 1, 28, 28) uint8, on the device
    generator = torch.Generator().manual_seed(settings.seed)
    report = attacked_accuracy(
        model,
        images,
        test_data.labels[:count],
        "pgd",
        settings.adversarial_epsilon,
        steps=settings.robust_eval_steps,
        batch_size=settings.eval_batch_size,
        generator=generator,
    )
    return report.adversarial_accuracy
