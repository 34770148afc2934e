"""`--only inspect`: how fast the Inspect page's probes answer for the fast net, each beside a bare forward pass.

Mistakes + confusion over the 10,000 test images (target ≤ 0.5 s) against one bare
`model(images)` over the same images, and all activations of one image (target ≤ 50 ms)
against one bare forward pass of that image. Medians of the repeats, on the CPU.
"""

from __future__ import annotations

import statistics
import time

import torch

from core.data import datasets as data
from core.model import network as networks
from core.probes import activations, mistakes
from core.probes.loading import as_inputs
from core.training.presets import get as get_preset


def _median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return float(statistics.median(times))


def bench_inspect(splits: data.Splits, repeats: int) -> dict:
    preset = get_preset("fast")
    model = networks.build(preset.network, seed=0).eval()  # the timing does not depend on the weights' values
    spec = networks.validate(preset.network).spec
    images, labels = splits.test_images, splits.test_labels
    repeats = max(repeats, 5)

    def mistakes_and_confusion():
        scores = mistakes.predict(model, images, labels)
        return mistakes.misclassified(scores), mistakes.confusion(scores)

    def bare_forward():
        with torch.no_grad():
            return model(as_inputs(images))

    image = images[0]
    one = as_inputs(image.unsqueeze(0))
    mistakes_and_confusion()  # warm-up: first calls allocate
    activations.activations(model, spec, image)
    result = {
        "mistakes_confusion_seconds": _median_seconds(mistakes_and_confusion, repeats),
        "forward_seconds": _median_seconds(bare_forward, repeats),
        "activations_seconds": _median_seconds(lambda: activations.activations(model, spec, image), repeats * 4),
        "one_forward_seconds": _median_seconds(lambda: torch.no_grad()(model)(one), repeats * 4),
        "threads": torch.get_num_threads(),
    }
    print(
        f"inspect: mistakes+confusion {result['mistakes_confusion_seconds']:.3f} s (bare forward {result['forward_seconds']:.3f} s); "
        f"activations {result['activations_seconds'] * 1000:.1f} ms (one forward {result['one_forward_seconds'] * 1000:.1f} ms)",
        flush=True,
    )
    return result
