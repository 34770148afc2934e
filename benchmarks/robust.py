"""`python -m benchmarks.run --only robust`: the `robust` preset beside a normal `fast` run, under the same attacks.

Each preset is trained once, as `python -m core train --preset NAME` trains it (seed 0, MNIST
already loaded; the returned network holds the best-validation weights), then measured on
all 10,000 MNIST test images: clean accuracy, FGSM at ε = 0.3, and PGD-40 at ε = 0.3 with a
step of 0.01 and a random start (Madry et al. 2018's MNIST evaluation). Wall time is the
training's, evaluation after each epoch included. Target: the robust preset keeps ≥ 80% under
PGD-40 with ≥ 97% clean accuracy, trained within 15 minutes (see benchmarks/report.py).
"""

from __future__ import annotations

import time

import torch

from core.attacks.robustness import attacked_accuracy
from core.data import datasets as data
from core.training import presets
from core.training.loop import train

EPSILON = 0.3
PGD_STEPS, PGD_STEP_SIZE = 40, 0.01
PRESETS = ("robust", "fast")


def measure(preset_name: str, splits: data.Splits, seed: int = 0) -> dict:
    """Train one preset, then its clean, FGSM and PGD-40 accuracy on the whole test set."""
    preset = presets.get(preset_name)
    result = train(preset.network, preset.train_settings(seed=seed), splits)
    model = result.model.eval()
    images, labels = splits.test_images, splits.test_labels
    started = time.perf_counter()
    fgsm = attacked_accuracy(model, images, labels, "fgsm", EPSILON)
    pgd = attacked_accuracy(
        model, images, labels, "pgd", EPSILON, steps=PGD_STEPS, step_size=PGD_STEP_SIZE, generator=torch.Generator().manual_seed(seed)
    )
    row = {
        "preset": preset_name,
        "status": result.status,
        "epochs": len(result.history),
        "train_seconds": result.seconds,
        "clean_accuracy": pgd.clean_accuracy,
        "fgsm_accuracy": fgsm.adversarial_accuracy,
        "pgd_accuracy": pgd.adversarial_accuracy,
        "test_images": pgd.n,
        "attack_seconds": time.perf_counter() - started,
        "robust_eval_per_epoch": [metrics.robust_accuracy for metrics in result.history],
        "threads": torch.get_num_threads(),
    }
    print(
        f"robust {preset_name}: clean {row['clean_accuracy']:.2%}, FGSM ε{EPSILON} {row['fgsm_accuracy']:.2%}, "
        f"PGD-{PGD_STEPS} ε{EPSILON} {row['pgd_accuracy']:.2%} on {row['test_images']:,} images; "
        f"trained in {row['train_seconds'] / 60:.1f} min on {row['threads']} thread(s)",
        flush=True,
    )
    return row


def bench_robust(splits: data.Splits) -> dict:
    return {
        "epsilon": EPSILON,
        "pgd_steps": PGD_STEPS,
        "pgd_step_size": PGD_STEP_SIZE,
        "rows": [measure(name, splits) for name in PRESETS],
    }
