"""Activations: what every layer of a network computes for one image, and the class probabilities.

Owns the layer-by-layer forward pass through the model's blocks (block i + 1 is spec layer
i, see `core.model.network`), so each output is exactly what the next layer receives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.model.vocabulary import describe_layer
from core.probes.loading import as_inputs


@dataclass(frozen=True)
class LayerOutput:
    """One spec layer's output for the image: maps (channels, h, w) or a vector (units,)."""

    index: int
    kind: str
    description: str
    values: np.ndarray

    @property
    def is_maps(self) -> bool:
        return self.values.ndim == 3


@dataclass(frozen=True)
class Activations:
    """Every layer's output for one image (the last one is the logits) and the softmax over them."""

    layers: list[LayerOutput]
    probabilities: np.ndarray  # (10,)

    @property
    def prediction(self) -> int:
        return int(self.probabilities.argmax())


@torch.no_grad()
def activations(model: nn.Sequential, spec: dict, image: torch.Tensor) -> Activations:
    """All layer outputs of `model` (in eval mode) for one uint8 image (28, 28)."""
    model.eval()
    outputs = model[0](as_inputs(image.unsqueeze(0)))  # the normalised image (1, 1, 28, 28)
    layers = []
    for index, layer in enumerate(spec["layers"]):
        outputs = model[index + 1](outputs)
        layers.append(LayerOutput(index, layer["kind"], describe_layer(layer), outputs[0].numpy().copy()))
    probabilities = torch.softmax(outputs[0].double(), dim=0).float().numpy()
    return Activations(layers, probabilities)
