"""How robust a trained network is: accuracy under attack, over many images, for one or several networks.

Owns running the attacks of `core.attacks.methods` over a test set in batches on the model's
device — one attack by name (`attack`), robust accuracy (`attacked_accuracy`), accuracy against ε
for several networks (`robustness_curve`) and transfer from one network to another (`transfer`).
It knows nothing of runs, checkpoints or pages: callers pass models and images, and get back
small dataclasses with accuracies as fractions in [0, 1].
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from core.attacks import methods as attack_methods
from core.errors import LayerLabError

METHODS = ("fgsm", "pgd", "pgd_l2", "deepfool")

Progress = Callable[[int, int], None]


class AttackError(LayerLabError, ValueError):
    """An attack asked for with a method or a size LayerLab does not have."""


@dataclass
class AttackReport:
    """Accuracy of one network on the same images before and after one attack."""

    method: str
    epsilon: float
    n: int  # how many images were attacked
    clean_accuracy: float  # fraction of the original images classified correctly
    adversarial_accuracy: float  # fraction of the attacked images still classified correctly
    seconds: float  # wall-clock time of the whole measurement


@dataclass
class CurvePoint:
    """One point of a robustness curve: a network's accuracy under one attack of size ε."""

    name: str
    method: str
    epsilon: float
    accuracy: float


@dataclass
class TransferReport:
    """Images attacked on a source network, then shown to a target network (Szegedy et al. 2014, §4.2)."""

    method: str
    epsilon: float
    n: int
    source_clean_accuracy: float
    source_adversarial_accuracy: float
    target_clean_accuracy: float
    target_adversarial_accuracy: float


def _checked(method: str, epsilon: float, steps: int) -> None:
    """An `AttackError` naming what to change, unless `method` is known, ε ≥ 0 is finite and `steps` ≥ 0 is whole."""
    if method not in METHODS:
        raise AttackError("attack.unknown_method", method=str(method), choices=list(METHODS))
    _checked_epsilon(epsilon)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise AttackError("attack.bad_steps", value=str(steps))


def _checked_epsilon(epsilon: float) -> None:
    try:
        value = float(epsilon)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise AttackError("attack.bad_epsilon", value=str(epsilon))


def attack(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    method: str,
    epsilon: float,
    steps: int = 40,
    step_size: float | None = None,
    target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One batch of float images (N, 1, 28, 28) in [0, 1], attacked with `method` (one of `METHODS`).

    "pgd" and "pgd_l2" are `methods.pgd` under the L∞ and the L2 norm, with a random start
    drawn from `generator`; "fgsm" ignores `steps`. "deepfool" looks for the smallest change
    itself, so it ignores `epsilon` and `target`, and takes `steps` as its iteration limit.
    Images and labels must be on the model's device; the result is on it too.
    """
    _checked(method, epsilon, steps)
    if method == "fgsm":
        return attack_methods.fgsm(model, images, labels, epsilon, target=target)
    if method == "deepfool":
        return attack_methods.deepfool(model, images, steps=steps)
    norm = "l2" if method == "pgd_l2" else "linf"
    return attack_methods.pgd(
        model, images, labels, epsilon, steps=steps, step_size=step_size, norm=norm, target=target, generator=generator
    )


# ----------------------------------------------------------------------------- measuring over a test set


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _as_inputs(images: torch.Tensor) -> torch.Tensor:
    """The dataset's uint8 images (N, 28, 28) become float (N, 1, 28, 28) in [0, 1]; float images pass as they are."""
    if images.dtype == torch.uint8:
        images = images.float().div(255.0)
    return images.unsqueeze(1) if images.dim() == 3 else images


def _batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if batch_size < 1:
        raise AttackError("attack.bad_batch_size", value=str(batch_size))
    for start in range(0, len(images), batch_size):
        yield _as_inputs(images[start : start + batch_size]), labels[start : start + batch_size].long()


def _batch_count(count: int, batch_size: int) -> int:
    return max(1, -(-count // batch_size)) if count else 0


def _correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> int:
    """How many of `images` the model (in eval mode, as the attacks see it) classifies as `labels`."""
    with attack_methods.evaluating(model), torch.no_grad():
        return int((model(images).argmax(dim=1) == labels).sum())


def _fraction(correct: int, count: int) -> float:
    return correct / count if count else 0.0


def _attacked_batches(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    method: str | None,
    epsilon: float,
    steps: int,
    step_size: float | None,
    batch_size: int,
    on_progress: Progress | None,
    generator: torch.Generator | None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
    """(batch, its attacked version, labels) on the model's device, one batch at a time; no attack when `method` is None.

    `on_progress(done_images, total_images)` follows each batch, once the caller has used it.
    """
    device = _device(model)
    done = 0
    for batch, batch_labels in _batches(images, labels, batch_size):
        batch, batch_labels = batch.to(device), batch_labels.to(device)
        attacked = None
        if method is not None:
            attacked = attack(model, batch, batch_labels, method, epsilon, steps=steps, step_size=step_size, generator=generator)
        yield batch, attacked, batch_labels
        done += len(batch)
        if on_progress is not None:
            on_progress(done, len(images))


def attacked_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    method: str,
    epsilon: float,
    steps: int = 40,
    step_size: float | None = None,
    batch_size: int = 500,
    on_progress: Progress | None = None,
    generator: torch.Generator | None = None,
) -> AttackReport:
    """Clean and adversarial accuracy of `model` on `images` (float (N, 1, 28, 28) in [0, 1], or the dataset's uint8 (N, 28, 28)).

    Every image is attacked, the ones the network already gets wrong included, and the
    adversarial accuracy counts the attacked images still classified as their label — the
    "robust accuracy" of Madry et al. 2018 and of torchattacks. Batches of `batch_size` move
    to the model's device one at a time; `on_progress(done_images, total_images)` follows each.
    """
    _checked(method, epsilon, steps)
    started = time.perf_counter()
    clean = adversarial = 0
    batches = _attacked_batches(model, images, labels, method, epsilon, steps, step_size, batch_size, on_progress, generator)
    for batch, attacked, batch_labels in batches:
        clean += _correct(model, batch, batch_labels)
        adversarial += _correct(model, attacked, batch_labels)
    count = len(images)
    return AttackReport(
        method, float(epsilon), count, _fraction(clean, count), _fraction(adversarial, count), time.perf_counter() - started
    )


def robustness_curve(
    models: dict[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    epsilons: list[float] | tuple[float, ...],
    methods: tuple[str, ...] | list[str] = ("fgsm", "pgd"),
    steps: int = 40,
    batch_size: int = 500,
    on_progress: Progress | None = None,
    generator: torch.Generator | None = None,
) -> list[CurvePoint]:
    """Accuracy against ε for each named network and each method: one `CurvePoint` per (name, method, ε).

    ε = 0 is the clean accuracy, measured once per network and given to every method's curve,
    so the curves start together. `on_progress(done_units, total_units)` counts batches over
    every network, method and ε. PGD uses its default step size, 2.5 ε / steps.
    """
    for method in methods:
        _checked(method, 0.0, steps)
    for epsilon in epsilons:
        _checked_epsilon(epsilon)
    attacked_epsilons = [epsilon for epsilon in epsilons if epsilon != 0]
    with_clean = len(attacked_epsilons) < len(epsilons)
    per_model = len(methods) * len(attacked_epsilons) + (1 if with_clean else 0)
    total = len(models) * per_model * _batch_count(len(images), batch_size)
    done = 0

    def tick(_done_images: int, _total_images: int) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    def accuracy(model: nn.Module, method: str | None, epsilon: float) -> float:
        """The clean accuracy (method None) or the attacked one; each batch is classified once."""
        batches = _attacked_batches(model, images, labels, method, epsilon, steps, None, batch_size, tick, generator)
        correct = sum(_correct(model, batch if attacked is None else attacked, batch_labels) for batch, attacked, batch_labels in batches)
        return _fraction(correct, len(images))

    points = []
    for name, model in models.items():
        clean = accuracy(model, None, 0.0) if with_clean else None
        for method in methods:
            for epsilon in epsilons:
                value = clean if epsilon == 0 else accuracy(model, method, epsilon)
                points.append(CurvePoint(name, method, float(epsilon), value))
    return points


def transfer(
    source: nn.Module,
    target: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    method: str,
    epsilon: float,
    steps: int = 40,
    step_size: float | None = None,
    batch_size: int = 500,
    on_progress: Progress | None = None,
    generator: torch.Generator | None = None,
) -> TransferReport:
    """Attack `source`, then classify the same adversarial images with `target` (a black-box attack on it).

    Szegedy et al. 2014 found that adversarial images made for one network often fool another
    trained differently; the target's adversarial accuracy says how much of that holds here.
    `on_progress(done_images, total_images)` follows each batch.
    """
    _checked(method, epsilon, steps)
    target_device = _device(target)
    counts = {"source_clean": 0, "source_adversarial": 0, "target_clean": 0, "target_adversarial": 0}
    batches = _attacked_batches(source, images, labels, method, epsilon, steps, step_size, batch_size, on_progress, generator)
    for batch, attacked, batch_labels in batches:
        counts["source_clean"] += _correct(source, batch, batch_labels)
        counts["source_adversarial"] += _correct(source, attacked, batch_labels)
        target_labels = batch_labels.to(target_device)
        counts["target_clean"] += _correct(target, batch.to(target_device), target_labels)
        counts["target_adversarial"] += _correct(target, attacked.to(target_device), target_labels)
    count = len(images)
    fractions = {key: _fraction(value, count) for key, value in counts.items()}
    return TransferReport(
        method,
        float(epsilon),
        count,
        fractions["source_clean"],
        fractions["source_adversarial"],
        fractions["target_clean"],
        fractions["target_adversarial"],
    )
