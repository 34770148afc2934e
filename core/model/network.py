"""Networks as models: shapes and parameter counts from a real forward pass, and the builder.

Owns `validate` (a spec's full check, with the per-layer shape and parameter table), the
custom modules (input normalisation, L2 pooling), the initialisation schemes and `build`,
which returns `nn.Sequential` with input normalisation inside. The vocabulary and the
structural checks it relies on are in `core.model.vocabulary`. It knows nothing of training,
storage or the UI.

The built model is `Sequential(Normalize, block_0, ..., block_n)`: block i is spec layer i
(a `flatten` is folded into the first vector layer that needs it), so later pages can hook
`model[i + 1]` to show what layer i computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from core.data.bounds import shown
from core.errors import Message
from core.model.vocabulary import (
    DATASET_STATISTICS,
    IMAGE_KINDS,
    INPUT_SHAPE,
    NUM_CLASSES,
    POOL_KINDS,
    SpecError,
    describe_layer,
    normalize_spec,
    shape_text,
)

# A network above this many parameters would not fit a classroom GPU shared by 30 people.
MAX_PARAMETERS = 50_000_000

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "linear": nn.Identity,
}



@dataclass
class LayerRow:
    """One line of the shape table."""

    index: int
    kind: str
    description: str
    output_shape: tuple[int, ...]
    parameters: int


@dataclass
class Summary:
    """What `validate` returns: the normalised spec, one row per layer and the total."""

    spec: dict
    rows: list[LayerRow] = field(default_factory=list)
    input_shape: tuple[int, ...] = INPUT_SHAPE

    @property
    def total_parameters(self) -> int:
        return sum(row.parameters for row in self.rows)

    def table(self) -> str:
        lines = [f"{'#':>3}  {'layer':<34} {'output shape':<16} {'parameters':>11}"]
        lines.append(f"{'':>3}  {'input':<34} {shape_text(self.input_shape):<16} {0:>11,}")
        for row in self.rows:
            lines.append(f"{row.index + 1:>3}  {row.description:<34} {shape_text(row.output_shape):<16} {row.parameters:>11,}")
        lines.append(f"{'':>3}  {'total':<34} {'':<16} {self.total_parameters:>11,}")
        return "\n".join(lines)



def validate(spec: dict | list, dataset: str = "mnist") -> Summary:
    """Check a spec completely and return its shape and parameter table.

    Shapes and parameter counts come from a real forward pass through the built blocks;
    the arithmetic below only produces a readable error before PyTorch would raise.
    """
    if not isinstance(dataset, str) or dataset not in DATASET_STATISTICS:
        raise SpecError("spec.unknown_dataset", value=shown(dataset), choices=list(DATASET_STATISTICS))
    normalized = normalize_spec(spec)
    layers = normalized["layers"]
    summary = Summary(spec=normalized)
    shape: tuple[int, ...] = INPUT_SHAPE
    # The dry run happens on the "meta" device: real shapes and parameter counts, but no memory,
    # so a spec far over MAX_PARAMETERS gets the sentence below instead of an allocation error.
    activations = torch.zeros((2, *INPUT_SHAPE), device="meta")
    previous = Message("spec.previous.input")
    for index, layer in enumerate(layers):
        _check_shape(index, layer, shape, previous)
        with torch.device("meta"):
            block = _build_block(index, layers, shape)
        block.eval()
        try:
            with torch.no_grad():
                activations = block(activations)
        except RuntimeError as error:  # Defensive: the checks above should have caught it.
            raise SpecError("spec.cannot_run", index, detail=str(error), kind=layer["kind"], shape=shape_text(shape))
        shape = tuple(activations.shape[1:])
        parameters = sum(parameter.numel() for parameter in block.parameters())
        summary.rows.append(LayerRow(index, layer["kind"], describe_layer(layer), shape, parameters))
        previous = Message("spec.previous.layer", {"layer": index + 1, "kind": layer["kind"]})
    if summary.total_parameters > MAX_PARAMETERS:
        raise SpecError("spec.too_many_parameters", count=summary.total_parameters, limit=MAX_PARAMETERS)
    return summary


def _check_shape(index: int, layer: dict, shape: tuple[int, ...], previous: Message) -> None:
    kind = layer["kind"]
    if kind in IMAGE_KINDS and len(shape) != 3:
        raise SpecError("spec.needs_image", index, kind=kind, previous=previous, size=shape[0])
    if kind == "conv":
        size = shape[1] + 2 * layer["padding"]
        if layer["kernel_size"] > size:
            raise SpecError(
                "spec.kernel_too_big_padded" if layer["padding"] else "spec.kernel_too_big", index, "kernel_size",
                kind=kind, kernel=layer["kernel_size"], height=shape[1], width=shape[2], padded=size, previous=previous,
            )
        if layer["padding"] >= layer["kernel_size"]:
            raise SpecError("spec.padding_too_big", index, "padding", kind=kind, padding=layer["padding"], kernel=layer["kernel_size"])
    if kind in POOL_KINDS and layer["size"] > shape[1]:
        raise SpecError(
            "spec.pool_too_big", index, "size", kind=kind, window=layer["size"], height=shape[1], width=shape[2], previous=previous
        )


# ----------------------------------------------------------------------------- building


class Normalize(nn.Module):
    """The model's first layer: images arrive in [0, 1] and are standardised inside the model."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


class L2Pool2d(nn.Module):
    """L2 pooling (Nielsen ch. 6): the square root of the sum of squares in each window.

    A plain square root has an infinite gradient where a window is all zeros (common after
    ReLU), so a tiny epsilon sits inside it; the gradient there is then exactly zero.
    """

    def __init__(self, size: int, stride: int):
        super().__init__()
        self.size, self.stride = size, stride

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        sums = nn.functional.avg_pool2d(inputs * inputs, self.size, self.stride) * (self.size * self.size)
        return torch.sqrt(sums + 1e-12)


def _following_pool_area(layers: list[dict], index: int) -> int:
    """Area of a pooling layer right after layer `index` (network3.py divides conv fan-out by it)."""
    for layer in layers[index + 1 :]:
        if layer["kind"] in POOL_KINDS:
            return layer["size"] ** 2
        if layer["kind"] not in ("activation", "batchnorm"):
            return 1
    return 1


def _initialize(module: nn.Module, init: str, nielsen_fan_out: float) -> None:
    """Set weights and biases the way the chosen scheme says; "default" keeps PyTorch's."""
    weight, bias = module.weight, module.bias
    with torch.no_grad():
        if init == "nielsen":
            # network3.py: weights N(0, 1/n_out) (std sqrt(1/n_out)) and biases N(0, 1).
            weight.normal_(0.0, math.sqrt(1.0 / nielsen_fan_out))
            bias.normal_(0.0, 1.0)
        elif init == "zeros":
            weight.zero_()
            bias.zero_()
        elif init == "small":
            # Deep Learning from Scratch §6.2's first try: N(0, 0.01²), small enough that deep layers' outputs shrink towards 0.
            weight.normal_(0.0, 0.01)
            bias.zero_()
        elif init == "xavier":
            nn.init.xavier_normal_(weight)
            bias.zero_()
        elif init == "he":
            nn.init.kaiming_normal_(weight, nonlinearity="relu")
            bias.zero_()


def _build_block(index: int, layers: list[dict], shape: tuple[int, ...]) -> nn.Sequential:
    """The modules for spec layer `index`, given the shape that reaches it."""
    layer = layers[index]
    kind = layer["kind"]
    modules: list[nn.Module] = []
    needs_vector = kind in ("dense", "output", "flatten")
    if needs_vector and len(shape) == 3:
        modules.append(nn.Flatten())
    features = math.prod(shape)
    if kind == "dense" or kind == "output":
        units = layer["units"] if kind == "dense" else NUM_CLASSES
        linear = nn.Linear(features, units)
        _initialize(linear, layer["init"], nielsen_fan_out=units)
        modules.append(linear)
        if kind == "dense":
            modules.append(ACTIVATIONS[layer["activation"]]())
    elif kind == "conv":
        conv = nn.Conv2d(shape[0], layer["filters"], layer["kernel_size"], layer["stride"], layer["padding"])
        fan_out = layer["filters"] * layer["kernel_size"] ** 2 / _following_pool_area(layers, index)
        _initialize(conv, layer["init"], nielsen_fan_out=fan_out)
        modules += [conv, ACTIVATIONS[layer["activation"]]()]
    elif kind in POOL_KINDS:
        stride = layer["stride"] if layer["stride"] is not None else layer["size"]
        pool = {"maxpool": nn.MaxPool2d, "avgpool": nn.AvgPool2d, "l2pool": L2Pool2d}[kind]
        modules.append(pool(layer["size"], stride))
    elif kind == "dropout":
        # Unit-wise dropout on images too, as network3.py drops single inputs (not whole maps).
        modules.append(nn.Dropout(layer["p"]))
    elif kind == "batchnorm":
        modules.append(nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0]))
    elif kind == "activation":
        modules.append(ACTIVATIONS[layer["activation"]]())
    return nn.Sequential(*modules)


def build(spec: dict | list | Summary, dataset: str = "mnist", seed: int | None = None) -> nn.Sequential:
    """Spec in, `nn.Sequential` out: `Normalize` then one block per spec layer.

    `spec` is checked with `validate` first, unless it is the `Summary` that `validate`
    already returned, which is trusted. The model maps images (N, 1, 28, 28) in [0, 1] to
    logits (N, 10); the output layer's softmax lives in the loss (log-likelihood =
    cross-entropy on logits).
    """
    summary = spec if isinstance(spec, Summary) else validate(spec, dataset)
    if seed is not None:
        torch.manual_seed(seed)
    mean, std = DATASET_STATISTICS[dataset] if summary.spec["normalize"] else (0.0, 1.0)
    blocks: list[nn.Module] = [Normalize(mean, std)]
    shape: tuple[int, ...] = INPUT_SHAPE
    for index, row in enumerate(summary.rows):
        blocks.append(_build_block(index, summary.spec["layers"], shape))
        shape = row.output_shape
    return nn.Sequential(*blocks)


def weight_parameters(model: nn.Module) -> list[torch.Tensor]:
    """The weights that L1/L2 regularisation applies to: dense and conv weights, not biases or batch-norm."""
    return [module.weight for module in model.modules() if isinstance(module, (nn.Linear, nn.Conv2d))]


