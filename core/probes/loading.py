"""What every probe shares: checkpoints by epoch, images turned into model inputs, and `ProbeError`.

Owns reading a run's per-epoch checkpoint names (`epoch_NNN.safetensors`, epoch 0 being the
initial weights when the engine wrote them) and the one conversion from the dataset's uint8
images to the float inputs in [0, 1] that every model takes. Loading itself is
`core.training.checkpoint.load`, which checks each file's SHA-256.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from core.errors import LayerLabError
from core.training import checkpoint

EPOCH_FILE = re.compile(r"epoch_(\d+)\.safetensors$")


class ProbeError(LayerLabError, ValueError):
    """A probe asked for something the run or the network does not have (an image index, a layer)."""


def load(path: Path) -> tuple[nn.Module, dict, object]:
    """(model in eval mode on the CPU, spec, settings) of a checkpoint; `CheckpointError` if it is missing or damaged."""
    return checkpoint.load(path, device="cpu")


def epochs_on_disk(paths: list[Path]) -> dict[int, Path]:
    """Epoch number → checkpoint path, for the `epoch_NNN.safetensors` files among `paths`, in epoch order.

    Pruning keeps only some epochs (see `core.jobs.disk`), so the epochs need not be consecutive.
    """
    found = {}
    for path in paths:
        match = EPOCH_FILE.search(Path(path).name)
        if match:
            found[int(match.group(1))] = Path(path)
    return dict(sorted(found.items()))


def as_inputs(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 28, 28) in [0, 255] → float inputs (N, 1, 28, 28) in [0, 1], as the models take them."""
    return images.unsqueeze(1).float().div_(255.0)


def checked_index(index: int, count: int) -> int:
    """`index` if 0 ≤ index < count; otherwise a `ProbeError` that names the valid range of test images."""
    if not 0 <= index < count:
        raise ProbeError("probe.no_test_image", index=str(index), last=count - 1)  # as typed, not "10,000"
    return index
