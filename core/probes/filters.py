"""Filters: each conv layer's kernels and the first dense layer's pixel weights, and what excites each filter.

Owns which layers have filters worth drawing (every conv layer; a dense or output layer only
when it reads the raw 28×28 pixels, so its weights are images), the weights as (filters, h, w)
arrays, and the top validation patches per conv filter with their receptive fields. The top
patches take a pass over 10,000 images, so `cached_top_patches` keeps them in a file the
caller names (the run's folder), keyed by the checkpoint they came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from core.model.vocabulary import INPUT_SHAPE, POOL_KINDS, describe_layer
from core.errors import counted
from core.probes.loading import ProbeError, as_inputs

PIXELS = INPUT_SHAPE[1] * INPUT_SHAPE[2]


@dataclass(frozen=True)
class FilterLayer:
    """A spec layer whose weights can be drawn as images."""

    index: int  # spec layer index; the model's block is model[index + 1]
    kind: str  # "conv", or "dense"/"output" on raw pixels
    description: str
    filters: int
    input_channels: int


@dataclass(frozen=True)
class FilterGrid:
    """One layer's filters as images: `weights[f]` is filter f (for input channel `input_channel`)."""

    layer: FilterLayer
    input_channel: int
    weights: np.ndarray  # (filters, kernel_h, kernel_w) float32, or (units, 28, 28) for a dense layer on pixels


@dataclass(frozen=True)
class TopPatches:
    """The validation images that excite each conv filter most, at most one position per image."""

    layer_index: int
    image_indices: np.ndarray  # (filters, count) int64, indices into the validation split, strongest first
    activations: np.ndarray  # (filters, count) float32, the block's output at the strongest position
    boxes: np.ndarray  # (filters, count, 4) int64: top, left, bottom, right (exclusive) of the receptive field, in pixels


def weight_module(model: nn.Sequential, index: int) -> nn.Module | None:
    """The Conv2d or Linear of spec layer `index`, or None when that layer has no weights."""
    for module in model[index + 1]:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            return module
    return None


def filter_layers(model: nn.Sequential, spec: dict) -> list[FilterLayer]:
    """Every conv layer, and the first weight layer when it is dense and reads the raw pixels."""
    found = []
    for index, layer in enumerate(spec["layers"]):
        module = weight_module(model, index)
        if isinstance(module, nn.Conv2d):
            found.append(FilterLayer(index, "conv", describe_layer(layer), module.out_channels, module.in_channels))
        elif isinstance(module, nn.Linear):
            if not found and module.in_features == PIXELS and not any(
                previous["kind"] in ("conv", *POOL_KINDS) for previous in spec["layers"][:index]
            ):
                found.append(FilterLayer(index, layer["kind"], describe_layer(layer), module.out_features, 1))
            break  # after the first dense layer, weights no longer look at pixels
    return found


def filter_grid(model: nn.Sequential, layer: FilterLayer, input_channel: int = 0) -> FilterGrid:
    """The layer's weights as images; for a conv layer with several input maps, those for `input_channel`."""
    if not 0 <= input_channel < layer.input_channels:
        raise ProbeError("probe.no_input_map", layer=layer.index + 1, maps=counted("probe.input_maps", layer.input_channels), map=input_channel + 1)
    weight = weight_module(model, layer.index).weight.detach().cpu()
    if layer.kind == "conv":
        images = weight[:, input_channel]  # (filters, kernel_h, kernel_w)
    else:
        images = weight.reshape(-1, INPUT_SHAPE[1], INPUT_SHAPE[2])  # (units, 28, 28)
    return FilterGrid(layer, input_channel, images.numpy().astype(np.float32, copy=True))


def receptive_field(spec: dict, index: int) -> tuple[int, int, int]:
    """(size, jump, offset) of spec layer `index`'s output units in input pixels.

    A unit at output position p sees input pixels offset + p·jump … offset + p·jump + size − 1
    (the usual receptive-field arithmetic: each k-wide, s-strided, p-padded layer grows the
    size by (k − 1)·jump, multiplies the jump by s and shifts the offset by −p·jump).
    """
    size, jump, offset = 1, 1, 0
    for layer in spec["layers"][: index + 1]:
        if layer["kind"] == "conv":
            kernel, stride, padding = layer["kernel_size"], layer["stride"], layer["padding"]
        elif layer["kind"] in POOL_KINDS:
            kernel = layer["size"]
            stride, padding = layer["stride"] or kernel, 0
        else:
            continue
        size, offset, jump = size + (kernel - 1) * jump, offset - padding * jump, jump * stride
    return size, jump, offset


def _boxes(rows: torch.Tensor, columns: torch.Tensor, field: tuple[int, int, int]) -> torch.Tensor:
    """(…, 4) receptive-field boxes for output positions, clipped to the image."""
    size, jump, offset = field
    top, left = rows * jump + offset, columns * jump + offset
    height, width = INPUT_SHAPE[1], INPUT_SHAPE[2]
    return torch.stack([top.clamp(0, height), left.clamp(0, width), (top + size).clamp(0, height), (left + size).clamp(0, width)], dim=-1)


@torch.no_grad()
def top_patches(
    model: nn.Sequential,
    spec: dict,
    layer_index: int,
    images: torch.Tensor,
    count: int = 9,
    batch_size: int = 1000,
    progress: Callable[[float], None] | None = None,
) -> TopPatches:
    """The `count` images (uint8 (N, 28, 28)) whose strongest response per filter of conv layer `layer_index` is highest."""
    if not isinstance(weight_module(model, layer_index), nn.Conv2d):
        raise ProbeError("probe.patches_need_conv", layer=layer_index + 1)
    model.eval()
    best_values = best_images = best_positions = None
    for start in range(0, len(images), batch_size):
        outputs = as_inputs(images[start : start + batch_size])
        for block in model[: layer_index + 2]:
            outputs = block(outputs)  # after the loop: (B, filters, H, W), the conv block's output
        width = outputs.shape[3]
        strongest, positions = outputs.flatten(2).max(dim=2)  # (B, filters) each
        indices = torch.arange(start, start + len(outputs)).unsqueeze(1).expand_as(strongest)
        if best_values is not None:
            strongest, indices, positions = (torch.cat([best, new]) for best, new in zip((best_values, best_images, best_positions), (strongest, indices, positions)))
        order = strongest.topk(min(count, len(strongest)), dim=0).indices  # (count, filters)
        best_values, best_images, best_positions = (tensor.gather(0, order) for tensor in (strongest, indices, positions))
        if progress:
            progress(min(start + batch_size, len(images)) / len(images))
    boxes = _boxes(best_positions // width, best_positions % width, receptive_field(spec, layer_index))
    return TopPatches(layer_index, best_images.T.numpy(), best_values.T.numpy().astype(np.float32), boxes.transpose(0, 1).numpy())


def cached_top_patches(cache_file: Path, checkpoint_path: Path, model: nn.Sequential, spec: dict, layer_index: int, images: torch.Tensor, **options) -> TopPatches:
    """`top_patches`, read from `cache_file` when it was computed from this very checkpoint file (same size and time)."""
    stat = Path(checkpoint_path).stat()
    key = json.dumps({"checkpoint": Path(checkpoint_path).name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "layer": layer_index, "images": len(images)})
    cache_file = Path(cache_file)
    if cache_file.is_file():
        try:
            with np.load(cache_file) as stored:
                if str(stored["key"]) == key:
                    return TopPatches(layer_index, stored["image_indices"], stored["activations"], stored["boxes"])
        except (OSError, KeyError, ValueError):
            pass  # a damaged or older cache file is recomputed below
    patches = top_patches(model, spec, layer_index, images, **options)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache_file.with_name(cache_file.name + ".tmp.npz")
    np.savez(temporary, key=np.array(key), image_indices=patches.image_indices, activations=patches.activations, boxes=patches.boxes)
    temporary.replace(cache_file)
    return patches
