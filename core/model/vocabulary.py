"""The layer vocabulary: which layer kinds exist, their fields with bounds, and the structural checks.

A network is data (a JSON list of layers). This module owns the registry of layer kinds and
their fields (each field's type, default and limits are declared once, here, and every check,
form and editor reads them from here), the structural validation of a spec (kinds, fields,
types, bounds, order, at most MAX_LAYERS layers) with errors a learner can act on, also in
the lenient form the Build editor uses for files and links, and the short labels the tables
and summaries show. It imports no torch, so the CLI and the run lists can use it instantly;
shapes, parameter counts and the builder are in `core.model.network`.

A spec looks like this (Nielsen ch. 6, the 98.78% network):

    {"layers": [
        {"kind": "conv", "filters": 20, "kernel_size": 5, "activation": "sigmoid", "init": "nielsen"},
        {"kind": "maxpool", "size": 2},
        {"kind": "dense", "units": 100, "activation": "sigmoid", "init": "nielsen"},
        {"kind": "output", "init": "zeros"}],
     "normalize": false}
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from core.data.bounds import shown
from core.errors import LayerLabError, did_you_mean

# Input shape and class count per dataset; both datasets are 28x28 grey with 10 classes.
INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
# Mean and standard deviation of the training pixels in [0, 1], used when normalize is on.
DATASET_STATISTICS = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}
# A stack longer than this is no longer something a learner builds or reads by hand; the
# limit also keeps a crafted spec of thousands of layers from tying up a validation pass.
MAX_LAYERS = 100
# The Build editor shows a value above its field's maximum (a kernel of 40, so that the learner
# reads why it fails) up to the largest whole number a browser's number box holds exactly,
# JavaScript's Number.MAX_SAFE_INTEGER; a larger one cannot have been typed there.
MAX_EDITABLE_NUMBER = 2**53 - 1
ACTIVATION_NAMES = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "linear")
INITS = ("default", "nielsen", "zeros", "small", "xavier", "he")


class SpecError(LayerLabError, ValueError):
    """A spec that cannot be built; `layer_index` is the 0-based offending layer, or None.

    The message parameter `layer` (1-based, as the page numbers layers) is added from `layer_index`.
    """

    def __init__(self, code: str, layer_index: int | None = None, field_name: str | None = None, **params: Any):
        if layer_index is not None:
            params.setdefault("layer", layer_index + 1)
        super().__init__(code, **params)
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


ACTIVATION_FIELD = Field(str, "relu", choices=ACTIVATION_NAMES)
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

def shape_text(shape: tuple[int, ...]) -> str:
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


def normalize_spec(spec: dict | list, *, editing: bool = False) -> dict:
    """Check the spec's structure and field types and fill defaults; returns a new dict.

    Does not check shapes (that needs a forward pass; see `validate`). With `editing` (the
    Build editor reading a file or a link) what the editor can show, and validation then
    explains next to its layer, is let through: an empty network, layers in an impossible
    order, and values above a field's maximum (up to MAX_EDITABLE_NUMBER).
    """
    if isinstance(spec, list):
        spec = {"layers": spec}
    if not isinstance(spec, dict):
        raise SpecError("spec.not_object")
    layers = spec.get("layers")
    if not isinstance(layers, list):
        raise SpecError("spec.no_layers")
    unknown = set(spec) - {"layers", "normalize", "name"}
    if unknown:
        raise SpecError("spec.unknown_settings", names=_names(unknown))
    if len(layers) > MAX_LAYERS:
        raise SpecError("spec.too_many_layers", count=len(layers), limit=MAX_LAYERS)
    if not layers and not editing:
        raise SpecError("spec.empty")
    normalize = spec.get("normalize", True)
    if not isinstance(normalize, bool):
        raise SpecError("spec.normalize_not_switch", value=shown(normalize))
    if "name" in spec and not isinstance(spec["name"], str):
        raise SpecError("spec.name_not_text", value=shown(spec["name"]))
    normalized_layers = [_normalize_layer(index, layer, editing) for index, layer in enumerate(layers)]
    if not editing:
        _check_order(normalized_layers)
    result = {"layers": normalized_layers, "normalize": normalize}
    if "name" in spec:
        result["name"] = spec["name"]
    return result


def _names(keys: set) -> list[str]:
    """Unknown keys for a message, sorted and at most five of them (then "…"), whatever their type."""
    texts = sorted(key if isinstance(key, str) and len(key) <= 40 else shown(key) for key in keys)
    return texts[:5] + (["…"] if len(texts) > 5 else [])


def _normalize_layer(index: int, layer: Any, editing: bool = False) -> dict:
    if not isinstance(layer, dict):
        raise SpecError("spec.layer_not_object", index, value=shown(layer))
    kind = layer.get("kind")
    if not isinstance(kind, str) or kind not in LAYER_FIELDS:
        raise SpecError(
            "spec.unknown_kind", index, "kind", value=shown(kind), hint=did_you_mean(kind, LAYER_FIELDS), kinds=list(LAYER_FIELDS)
        )
    fields = LAYER_FIELDS[kind]
    result: dict[str, Any] = {"kind": kind}
    for name in layer:
        if name != "kind" and name not in fields:
            shown_name = f"'{name}'" if isinstance(name, str) and len(name) <= 40 else shown(name)
            if not fields:
                raise SpecError("spec.no_fields", index, name, kind=kind, name=shown_name)
            raise SpecError(
                "spec.unknown_field", index, name, kind=kind, name=shown_name, hint=did_you_mean(name, fields), fields=list(fields)
            )
    for name, spec_field in fields.items():
        value = layer.get(name, spec_field.default)
        result[name] = check_value(value, spec_field, index, name, kind, editing)
    return result


def check_value(value: Any, spec_field: Field, index: int, name: str, kind: str, allow_above_maximum: bool = False) -> Any:
    """`value` as field `spec_field` holds it (an int, a float, a choice or None), or SpecError saying why not.

    The message names layer `index` (of `kind`) and the field `name` by its label. With
    `allow_above_maximum` (the Build editor) a number above the field's maximum is let
    through, up to MAX_EDITABLE_NUMBER.
    """
    if value is None and spec_field.optional:
        return None

    def refused(code: str, **params: Any) -> SpecError:
        return SpecError(f"spec.field.{code}", index, name, kind=kind, field=name, value=shown(value), **params)

    if spec_field.type is str:
        if not isinstance(value, str) or value not in (spec_field.choices or ()):
            hint = did_you_mean(value, spec_field.choices or ())
            raise refused("not_choice", hint=hint, choices=list(spec_field.choices or ()))
        return value
    real = isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec_field.type is int:
        if not real or (isinstance(value, float) and not value.is_integer()):
            raise refused("not_whole")
        value = int(value)
    else:
        if not real or not _finite(value):
            raise refused("not_number")
        value = float(value)
    if spec_field.minimum is not None and value < spec_field.minimum:
        raise refused("at_least", limit=f"{spec_field.minimum:g}")
    if allow_above_maximum:
        if value > MAX_EDITABLE_NUMBER:
            raise refused("far_above", limit=f"{spec_field.maximum:g}")
    elif spec_field.maximum is not None:
        if spec_field.below_maximum and value >= spec_field.maximum:
            raise refused("below", limit=f"{spec_field.maximum:g}")
        if value > spec_field.maximum:
            raise refused("at_most", limit=f"{spec_field.maximum:g}")
    return value


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # An integer too large for a float.
        return False


def _check_order(layers: list[dict]) -> None:
    outputs = [index for index, layer in enumerate(layers) if layer["kind"] == "output"]
    if not outputs:
        raise SpecError("spec.no_output", len(layers) - 1, previous_kind=layers[-1]["kind"])
    if len(outputs) > 1 or outputs[0] != len(layers) - 1:
        raise SpecError("spec.output_not_last", outputs[0])


def default_layer(kind: str) -> dict:
    """A new layer of `kind` with every field at its default, for the Build page's "add layer"."""
    if kind not in LAYER_FIELDS:
        raise SpecError("spec.unknown_kind_name", value=shown(kind), kinds=list(LAYER_FIELDS))
    return {"kind": kind, **{name: copy.deepcopy(spec_field.default) for name, spec_field in LAYER_FIELDS[kind].items()}}
