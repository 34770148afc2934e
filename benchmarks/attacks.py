"""`--only attacks`: our attacks beside torchattacks 3.5.1 on the same network, and the FGSM curve beside the PyTorch tutorial's.

Speed: FGSM over the 10,000 MNIST test images and PGD-40 (ε 0.3, step 0.01, random start)
over the first 1,000, ours (`core.attacks.methods`) and torchattacks' `FGSM` / `PGD` making
the same adversarial images with the same network, batch size and device, alternating, after
a warm-up; medians of the repeats. Target: ours no slower (ratio ours / theirs ≤ 1).

Accuracy: the `fast` preset trained for real (all four epochs, seed 0), attacked with FGSM at
ε 0.05 … 0.3 over the whole test set through `core.attacks.robustness.attacked_accuracy` (the
path the CLI and the lab page use), with torchattacks' accuracy on the same images beside it,
and the figures the PyTorch FGSM tutorial prints for its LeNet; then PGD-40 at ε 0.3 over the
whole test set, which should leave almost nothing.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
import torchattacks

from core.attacks import methods, robustness
from core.data import datasets as data
from core.probes.loading import as_inputs
from core.training import presets
from core.training.device import describe, pick_device
from core.training.loop import train

THREADS = 1  # the attacks run on one torch thread: both sides alike, and the shared cores stay usable for others
BATCH_SIZE = 500  # `attacked_accuracy`'s default, used by both sides
FGSM_EPSILON = 0.1  # the speed run's ε (the time of one signed step does not depend on it)
PGD_EPSILON, PGD_STEP_SIZE, PGD_STEPS, PGD_IMAGES = 0.3, 0.01, 40, 1000  # Madry et al. 2018's MNIST attack
CURVE_EPSILONS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)

# "Adversarial Example Generation" (Inkawhich, pytorch.org/tutorials/beginner/fgsm_tutorial.html): correct test
# images out of 10,000 under FGSM, as its printed output reads. The page changed its network once: the older one
# attacks a LeNet (conv 10 and 20 maps, dropout, 50 hidden units; 9,810 clean), the current one pytorch/examples'
# MNIST net (conv 32 and 64 maps, dropout, 128 hidden units; 9,912 clean), both pretrained and downloaded.
TUTORIAL_FIGURES = {
    "older": {0.0: 9810, 0.05: 9426, 0.1: 8510, 0.15: 6826, 0.2: 4301, 0.25: 2082, 0.3: 869},
    "current": {0.0: 9912, 0.05: 9605, 0.1: 8743, 0.15: 7111, 0.2: 4877, 0.25: 2717, 0.3: 1418},
}


def _median_seconds(actions: dict[str, Callable[[], object]], repeats: int, synchronize: Callable[[], None]) -> dict[str, list[float]]:
    """Each action timed `repeats` times, the actions alternating so drifts in the machine's load hit both alike."""
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(repeats):
        for name, action in actions.items():
            started = time.perf_counter()
            action()
            synchronize()
            times[name].append(time.perf_counter() - started)
    return times


def _batched(attack: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.cat([attack(images[start : start + BATCH_SIZE], labels[start : start + BATCH_SIZE]) for start in range(0, len(images), BATCH_SIZE)])


def _accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        correct = sum(int((model(images[start : start + BATCH_SIZE]).argmax(dim=1) == labels[start : start + BATCH_SIZE]).sum())
                      for start in range(0, len(images), BATCH_SIZE))  # fmt: skip
    return correct / len(images)


def _speed_row(name: str, ours: Callable[[], torch.Tensor], theirs: Callable[[], torch.Tensor], images: int, repeats: int, synchronize) -> dict:
    ours(), theirs()  # warm-up: first calls allocate
    times = _median_seconds({"ours": ours, "theirs": theirs}, repeats, synchronize)
    row = {"attack": name, "images": images, "batch_size": BATCH_SIZE, "ours_seconds": float(statistics.median(times["ours"])),
           "torchattacks_seconds": float(statistics.median(times["theirs"])), "all_ours": times["ours"], "all_torchattacks": times["theirs"]}  # fmt: skip
    row["ratio"] = row["ours_seconds"] / row["torchattacks_seconds"]
    print(f"attacks: {name} over {images:,} images: ours {row['ours_seconds']:.2f} s, torchattacks {row['torchattacks_seconds']:.2f} s "
          f"= {row['ratio']:.2f}×", flush=True)  # fmt: skip
    return row


def bench_attacks(splits: data.Splits, repeats: int) -> dict:
    device = pick_device()
    preset = presets.get("fast")
    trained = train(preset.network, preset.train_settings(seed=0), splits)
    model = trained.model.to(device).eval()
    print(f"attacks: fast preset trained in {trained.seconds:.0f} s, test accuracy {trained.test_accuracy:.4f}", flush=True)
    images, labels = as_inputs(splits.test_images).to(device), splits.test_labels.long().to(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return _measure(model, splits, images, labels, device, repeats) | {"train_seconds": trained.seconds}
    finally:
        torch.set_num_threads(threads)


def _measure(model: torch.nn.Module, splits: data.Splits, images: torch.Tensor, labels: torch.Tensor, device: torch.device, repeats: int) -> dict:
    """The speed rows, the FGSM curve and PGD-40's accuracy of the trained `model` (see the module's docstring)."""

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    fgsm_theirs = torchattacks.FGSM(model, eps=FGSM_EPSILON)
    pgd_theirs = torchattacks.PGD(model, eps=PGD_EPSILON, alpha=PGD_STEP_SIZE, steps=PGD_STEPS, random_start=True)
    generator = torch.Generator().manual_seed(0)
    few, few_labels = images[:PGD_IMAGES], labels[:PGD_IMAGES]
    speed = [
        _speed_row(
            "FGSM", lambda: _batched(lambda x, y: methods.fgsm(model, x, y, FGSM_EPSILON), images, labels),
            lambda: _batched(fgsm_theirs, images, labels), len(images), max(repeats, 5), synchronize,
        ),
        _speed_row(
            f"PGD-{PGD_STEPS}",
            lambda: _batched(lambda x, y: methods.pgd(model, x, y, PGD_EPSILON, PGD_STEPS, PGD_STEP_SIZE, generator=generator), few, few_labels),
            lambda: _batched(pgd_theirs, few, few_labels), PGD_IMAGES, repeats, synchronize,
        ),
    ]  # fmt: skip

    curve = []
    for epsilon in CURVE_EPSILONS:
        ours = robustness.attacked_accuracy(model, splits.test_images, splits.test_labels, "fgsm", epsilon, batch_size=BATCH_SIZE)
        theirs = _accuracy(model, _batched(torchattacks.FGSM(model, eps=epsilon), images, labels), labels)
        curve.append({"epsilon": epsilon, "ours": ours.adversarial_accuracy, "torchattacks": theirs})
        print(f"attacks: FGSM ε {epsilon:g}: ours {ours.adversarial_accuracy:.4f}, torchattacks {theirs:.4f}", flush=True)
    pgd = robustness.attacked_accuracy(
        model, splits.test_images, splits.test_labels, "pgd", PGD_EPSILON, PGD_STEPS, PGD_STEP_SIZE, BATCH_SIZE, generator=torch.Generator().manual_seed(0)
    )  # fmt: skip
    torch.manual_seed(0)  # torchattacks draws its random start from the global generator
    pgd_reference = _accuracy(model, _batched(pgd_theirs, few, few_labels), few_labels)
    print(f"attacks: PGD-{PGD_STEPS} ε {PGD_EPSILON:g} over {pgd.n:,}: {pgd.adversarial_accuracy:.4f} ({pgd.seconds:.0f} s); "
          f"torchattacks on the first {PGD_IMAGES:,}: {pgd_reference:.4f}", flush=True)  # fmt: skip
    return {
        "device": describe(device),
        "threads": torch.get_num_threads(),
        "torchattacks": torchattacks.__version__,
        "network": "fast",
        "clean_accuracy": pgd.clean_accuracy,
        "speed": speed,
        "fgsm_curve": curve,
        "tutorial": {name: {str(epsilon): count / 10_000 for epsilon, count in figures.items()} for name, figures in TUTORIAL_FIGURES.items()},
        "pgd": {"epsilon": PGD_EPSILON, "steps": PGD_STEPS, "step_size": PGD_STEP_SIZE, "images": pgd.n, "accuracy": pgd.adversarial_accuracy,
                "seconds": pgd.seconds, "torchattacks_images": PGD_IMAGES, "torchattacks_accuracy": pgd_reference},  # fmt: skip
    }
