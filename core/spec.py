"""Network specs: a network is data (a JSON list of layers), and this module turns it into a model.

Owns the layer vocabulary (a small registry of layer kinds and their fields), validation of
a spec with errors a learner can act on, the per-layer shape and parameter table, and the
builder that returns `nn.Sequential` with input normalisation inside. It knows nothing of
training, storage or the UI.

A spec looks like this (Nielsen ch. 6, the 98.78% network):

    {"layers": [
        {"kind": "conv", "filters": 20, "kernel_size": 5, "activation": "sigmoid", "init": "nielsen"},
        {"kind": "maxpool", "size": 2},
        {"kind": "dense", "units": 100, "activation": "sigmoid", "init": "nielsen"},
        {"kind": "output", "init": "zeros"}],
     "normalize": false}

The built model is `Sequential(Normalize, block_0, ..., block_n)`: block i is spec layer i
(a `flatten` is folded into the first vector layer that needs it), so later pages can hook
`model[i + 1]` to show what layer i computes.
"""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

# Input shape and class count per dataset; both datasets are 28x28 grey with 10 classes.
INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
# Mean and standard deviation of the training pixels in [0, 1], used when normalize is on.
DATASET_STATISTICS = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}
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
INITS = ("default", "nielsen", "zeros", "xavier", "he")


class SpecError(ValueError):
    """A spec that cannot be built; `layer_index` is the 0-based offending layer, or None."""

    def __init__(self, message: str, layer_index: int | None = None, field_name: str | None = None):
        super().__init__(message)
        self.layer_index = layer_index
        self.field_name = field_name


@dataclass(frozen=True)
class Field:
    """One editable field of a layer kind: its type, default, bounds and allowed values."""

    type: type
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    below_maximum: bool = False  # True when the maximum itself is not allowed (dropout p < 1).
    optional: bool = False  # True when None is allowed (pool stride None = same as size).


ACTIVATION_FIELD = Field(str, "relu", choices=tuple(ACTIVATIONS))
INIT_FIELD = Field(str, "default", choices=INITS)
POOL_FIELDS = {"size": Field(int, 2, 1, 28), "stride": Field(int, None, 1, 28, optional=True)}

# The registry: layer kind -> its fields. Builders are below, in `_build_block`.
LAYER_FIELDS: dict[str, dict[str, Field]] = {
    "dense": {"units": Field(int, 100, 1, 100_000), "activation": ACTIVATION_FIELD, "init": INIT_FIELD},
    "conv": {
        "filters": Field(int, 20, 1, 4096),
        "kernel_size": Field(int, 5, 1, 28),
        "stride": Field(int, 1, 1, 28),
        "padding": Field(int, 0, 0, 14),
        "activation": ACTIVATION_FIELD,
        "init": INIT_FIELD,
    },
    "maxpool": POOL_FIELDS,
    "avgpool": POOL_FIELDS,
    "l2pool": POOL_FIELDS,
    "dropout": {"p": Field(float, 0.5, 0.0, 1.0, below_maximum=True)},
    "batchnorm": {},
    "activation": {"activation": ACTIVATION_FIELD},
    "flatten": {},
    "output": {"init": INIT_FIELD},
}
IMAGE_KINDS = ("conv", "maxpool", "avgpool", "l2pool")
POOL_KINDS = ("maxpool", "avgpool", "l2pool")


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
        lines.append(f"{'':>3}  {'input':<34} {_shape_text(self.input_shape):<16} {0:>11,}")
        for row in self.rows:
            lines.append(f"{row.index + 1:>3}  {row.description:<34} {_shape_text(row.output_shape):<16} {row.parameters:>11,}")
        lines.append(f"{'':>3}  {'total':<34} {'':<16} {self.total_parameters:>11,}")
        return "\n".join(lines)


def _shape_text(shape: tuple[int, ...]) -> str:
    return " × ".join(str(size) for size in shape)


def describe_layer(layer: dict) -> str:
    """A short human label such as 'conv 20 × 5×5, sigmoid' or 'dense 100, relu'."""
    kind = layer["kind"]
    if kind == "dense":
        return f"dense {layer['units']}, {layer['activation']}"
    if kind == "conv":
        k = layer["kernel_size"]
        extra = "".join(
            [f", stride {layer['stride']}" if layer["stride"] != 1 else "", f", pad {layer['padding']}" if layer["padding"] else ""]
        )
        return f"conv {layer['filters']} × {k}×{k}{extra}, {layer['activation']}"
    if kind in POOL_KINDS:
        size = layer["size"]
        stride = layer["stride"] if layer["stride"] is not None else size
        return f"{kind} {size}×{size}" + (f", stride {stride}" if stride != size else "")
    if kind == "dropout":
        return f"dropout p={layer['p']:g}"
    if kind == "activation":
        return layer["activation"]
    if kind == "output":
        return f"output softmax {NUM_CLASSES}"
    return kind


def summarize_network(spec: dict | list) -> str:
    """One line naming the stack, for the runs table: 'conv 20 × 5×5 → maxpool 2×2 → dense 100 → output softmax 10'."""
    layers = normalize_spec(spec)["layers"]
    return " → ".join(describe_layer(layer).split(",")[0] for layer in layers)


# ----------------------------------------------------------------------------- validation


def normalize_spec(spec: dict | list) -> dict:
    """Check the spec's structure and field types and fill defaults; returns a new dict.

    Does not check shapes (that needs a forward pass; see `validate`).
    """
    if isinstance(spec, list):
        spec = {"layers": spec}
    if not isinstance(spec, dict):
        raise SpecError(f"A network spec must be a JSON object with a 'layers' list, not {type(spec).__name__}.")
    unknown = set(spec) - {"layers", "normalize", "name"}
    if unknown:
        raise SpecError(f"Unknown network setting(s): {', '.join(sorted(unknown))}. Allowed: layers, normalize, name.")
    layers = spec.get("layers")
    if not isinstance(layers, list):
        raise SpecError("The network needs a 'layers' list, e.g. [{\"kind\": \"dense\", \"units\": 100}, {\"kind\": \"output\"}].")
    if not layers:
        raise SpecError("The network is empty. Add at least an output layer.")
    normalize = spec.get("normalize", True)
    if not isinstance(normalize, bool):
        raise SpecError(f"'normalize' must be true or false, not {normalize!r}.")
    normalized_layers = [_normalize_layer(index, layer) for index, layer in enumerate(layers)]
    _check_order(normalized_layers)
    result = {"layers": normalized_layers, "normalize": normalize}
    if "name" in spec:
        result["name"] = str(spec["name"])
    return result


def _normalize_layer(index: int, layer: Any) -> dict:
    where = f"Layer {index + 1}"
    if not isinstance(layer, dict):
        raise SpecError(f"{where} must be an object like {{\"kind\": \"dense\", \"units\": 100}}, not {layer!r}.", index)
    kind = layer.get("kind")
    if not isinstance(kind, str) or kind not in LAYER_FIELDS:
        hint = difflib.get_close_matches(str(kind), LAYER_FIELDS, n=1)
        suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
        raise SpecError(
            f"{where} has an unknown kind {kind!r}.{suggestion} Known kinds: {', '.join(LAYER_FIELDS)}.", index, "kind"
        )
    fields = LAYER_FIELDS[kind]
    result: dict[str, Any] = {"kind": kind}
    for name in layer:
        if name != "kind" and name not in fields:
            hint = difflib.get_close_matches(name, fields, n=1)
            suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
            allowed = ", ".join(fields) or "none"
            raise SpecError(f"{where} ({kind}) has no field '{name}'.{suggestion} Its fields: {allowed}.", index, name)
    for name, spec_field in fields.items():
        result[name] = _check_value(where, kind, index, name, layer.get(name, spec_field.default), spec_field)
    return result


def _check_value(where: str, kind: str, index: int, name: str, value: Any, spec_field: Field) -> Any:
    label = f"{where} ({kind}): '{name}'"
    if value is None and spec_field.optional:
        return None
    if spec_field.type is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            raise SpecError(f"{label} must be a whole number, not {value!r}.", index, name)
        value = int(value)
    elif spec_field.type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SpecError(f"{label} must be a number, not {value!r}.", index, name)
        value = float(value)
    elif spec_field.type is str:
        if value not in (spec_field.choices or ()):
            hint = difflib.get_close_matches(str(value), spec_field.choices or (), n=1)
            suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
            raise SpecError(f"{label} is {value!r}.{suggestion} Choose one of: {', '.join(spec_field.choices or ())}.", index, name)
        return value
    if spec_field.minimum is not None and value < spec_field.minimum:
        raise SpecError(f"{label} is {value}, but it must be at least {spec_field.minimum:g}.", index, name)
    if spec_field.maximum is not None:
        if spec_field.below_maximum and value >= spec_field.maximum:
            raise SpecError(f"{label} is {value}, but it must be below {spec_field.maximum:g}.", index, name)
        if value > spec_field.maximum:
            raise SpecError(f"{label} is {value}, but it can be at most {spec_field.maximum:g}.", index, name)
    return value


def _check_order(layers: list[dict]) -> None:
    outputs = [index for index, layer in enumerate(layers) if layer["kind"] == "output"]
    if not outputs:
        raise SpecError(
            f"The network has no output layer. Add {{\"kind\": \"output\"}} at the end, after layer {len(layers)} "
            f"({layers[-1]['kind']}): it turns the last layer into 10 class probabilities (softmax).",
            len(layers) - 1,
        )
    if len(outputs) > 1 or outputs[0] != len(layers) - 1:
        first = outputs[0]
        raise SpecError(
            f"Layer {first + 1} is an output layer, but the output layer must be the last layer and appear once. "
            "Move it to the end or delete the extra one.",
            first,
        )


def validate(spec: dict | list, dataset: str = "mnist") -> Summary:
    """Check a spec completely and return its shape and parameter table.

    Shapes and parameter counts come from a real forward pass through the built blocks;
    the arithmetic below only produces a readable error before PyTorch would raise.
    """
    if dataset not in DATASET_STATISTICS:
        raise SpecError(f"Unknown dataset {dataset!r}. Choose one of: {', '.join(DATASET_STATISTICS)}.")
    normalized = normalize_spec(spec)
    layers = normalized["layers"]
    summary = Summary(spec=normalized)
    shape: tuple[int, ...] = INPUT_SHAPE
    # The dry run happens on the "meta" device: real shapes and parameter counts, but no memory,
    # so a spec far over MAX_PARAMETERS gets the sentence below instead of an allocation error.
    activations = torch.zeros((2, *INPUT_SHAPE), device="meta")
    previous = "the input image"
    for index, layer in enumerate(layers):
        _check_shape(index, layer, shape, previous)
        with torch.device("meta"):
            block = _build_block(index, layers, shape)
        block.eval()
        try:
            with torch.no_grad():
                activations = block(activations)
        except RuntimeError as error:  # Defensive: the checks above should have caught it.
            raise SpecError(f"Layer {index + 1} ({layer['kind']}) cannot run on its input {_shape_text(shape)}: {error}", index)
        shape = tuple(activations.shape[1:])
        parameters = sum(parameter.numel() for parameter in block.parameters())
        summary.rows.append(LayerRow(index, layer["kind"], describe_layer(layer), shape, parameters))
        previous = f"layer {index + 1} ({layer['kind']})"
    if summary.total_parameters > MAX_PARAMETERS:
        raise SpecError(
            f"The network has {summary.total_parameters:,} parameters, more than the limit of {MAX_PARAMETERS:,}. "
            "Use fewer units or filters, or add pooling before the dense layers.",
        )
    return summary


def _check_shape(index: int, layer: dict, shape: tuple[int, ...], previous: str) -> None:
    kind = layer["kind"]
    where = f"Layer {index + 1} ({describe_layer(layer)})"
    if kind in IMAGE_KINDS and len(shape) != 3:
        raise SpecError(
            f"{where} needs an image (channels × height × width), but {previous} outputs a flat vector of {shape[0]}. "
            "Put convolution and pooling layers before dense and flatten layers.",
            index,
        )
    if kind == "conv":
        size = shape[1] + 2 * layer["padding"]
        if layer["kernel_size"] > size:
            raise SpecError(
                f"{where} needs at least a {layer['kernel_size']}×{layer['kernel_size']} input but gets "
                f"{shape[1]}×{shape[2]} from {previous}"
                + (f" (padded to {size}×{size})" if layer["padding"] else "")
                + ". Use a smaller kernel, add padding, or drop a pooling layer.",
                index,
                "kernel_size",
            )
        if layer["padding"] >= layer["kernel_size"]:
            raise SpecError(
                f"{where}: padding {layer['padding']} is not smaller than the kernel {layer['kernel_size']}, so the edges "
                "would only see zeros. Use padding ≤ (kernel size − 1) / 2.",
                index,
                "padding",
            )
    if kind in POOL_KINDS and layer["size"] > shape[1]:
        raise SpecError(
            f"{where} pools {layer['size']}×{layer['size']} windows but gets only {shape[1]}×{shape[2]} from {previous}. "
            "Use a smaller pool size or remove a pooling layer before it.",
            index,
            "size",
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


def build(spec: dict | list, dataset: str = "mnist", seed: int | None = None) -> nn.Sequential:
    """Spec in, `nn.Sequential` out: `Normalize` then one block per spec layer.

    The model maps images (N, 1, 28, 28) in [0, 1] to logits (N, 10); the output layer's
    softmax lives in the loss (log-likelihood = cross-entropy on logits).
    """
    summary = validate(spec, dataset)
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


def default_layer(kind: str) -> dict:
    """A new layer of `kind` with every field at its default, for the Build page's "add layer"."""
    if kind not in LAYER_FIELDS:
        raise SpecError(f"Unknown layer kind {kind!r}. Known kinds: {', '.join(LAYER_FIELDS)}.")
    return {"kind": kind, **{name: copy.deepcopy(spec_field.default) for name, spec_field in LAYER_FIELDS[kind].items()}}
