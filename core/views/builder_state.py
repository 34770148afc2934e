"""The Build page's working copy of a network: layer editing, checking, saving and sharing.

Owns the editable form of a spec (each layer carries a `uid` so the page can give its
widgets stable keys while layers move), the pure edits (insert, move, remove, update),
reading a spec from a file or a link (`?net=`: compact JSON → zlib → URL-safe base64), and
the numbers the page's explanations quote. Shapes and parameter counts always come from
`core.spec.validate`; this module knows nothing of Streamlit.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from core.errors import LayerLabError
from core.model import network as networks
from core.model import vocabulary
from core.views.i18n import translate
from core.training import presets

# Browsers and chat programs keep links of a few thousand characters intact; a network of
# vocabulary.MAX_LAYERS layers compresses to well under this (about 1,100 characters).
MAX_LINK_CHARACTERS = 4000
# Limits on what a file or a link may unpack to, so a crafted one cannot exhaust memory.
MAX_FILE_BYTES = 1_000_000
MAX_SPEC_BYTES = 64_000
# Kinds whose neurons weigh their inputs: the ones a non-linearity must separate.
WEIGHTED_KINDS = ("dense", "conv", "output")
# Layers that, without a non-linear activation, leave a linear map linear.
LINEAR_KINDS = ("avgpool", "dropout", "batchnorm", "flatten")


class LoadError(LayerLabError, ValueError):
    """A file or link that does not hold a network; `reason` names the problem for translation.

    Reasons: "too_large", "not_text", "not_json", "not_link", "not_network"; the page shows the
    reason's title ("build.load_error.<reason>") before the message, which says what exactly is
    wrong. A library's own words (zlib's, the JSON parser's) stay in `detail`, for logs.
    """

    def __init__(self, reason: str, code: str, *, detail: str = "", **params: Any):
        super().__init__(code, detail=detail, **params)
        self.reason = reason


# ----------------------------------------------------------------------------- the working copy


def new_uid() -> str:
    return uuid.uuid4().hex[:10]


def editable(spec: dict | list) -> dict:
    """A working copy of `spec`: every field filled and a fresh `uid` on each layer."""
    checked = check_editable(spec)
    checked["layers"] = [{**layer, "uid": new_uid()} for layer in checked["layers"]]
    checked["uid"] = new_uid()  # Names the copy, so widgets of an earlier copy never leak into it.
    return checked


def to_spec(working: dict) -> dict:
    """The plain spec (no uids) that validation, training and saving use; a plain spec passes through."""
    spec = {
        "layers": [{name: value for name, value in layer.items() if name != "uid"} for layer in working["layers"]],
        "normalize": bool(working.get("normalize", True)),
    }
    if working.get("name"):
        spec["name"] = str(working["name"])
    return spec


def index_of(layers: list[dict], uid: str) -> int:
    for index, layer in enumerate(layers):
        if layer["uid"] == uid:
            return index
    raise KeyError(uid)


# Layers whose output is a vector: after one of them the network no longer holds an image.
VECTOR_KINDS = ("dense", "flatten", "output")


def first_vector_index(layers: list[dict]) -> int:
    """Index of the first layer that turns the image into a vector (len(layers) when none does)."""
    return next((index for index, layer in enumerate(layers) if layer.get("kind") in VECTOR_KINDS), len(layers))


def insertion_position(layers: list[dict], kind: str) -> int:
    """Where a new `kind` layer fits: image layers among the image layers, an output at the end, others before the output.

    A conv or pooling layer needs an image as input, so it goes just before the first layer
    that makes a vector (flatten, dense or output); an output layer goes last; anything else
    goes just before a final output layer, where a new hidden layer belongs.
    """
    if kind in vocabulary.IMAGE_KINDS:
        return first_vector_index(layers)
    ends_with_output = bool(layers) and layers[-1].get("kind") == "output"
    return len(layers) - 1 if ends_with_output and kind != "output" else len(layers)


def fitting_kind(layers: list[dict]) -> str:
    """The kind "Add layer" offers: what fits just before the output.

    "output" while the network has none (an empty network, or one still being built), "dense"
    where the layer before the output already gives a vector (an MLP), and "conv" where the
    output's input is still an image large enough for a default conv layer's kernel (a dense
    layer takes any input, so it is the offer when the image has become too small).
    """
    if not layers or layers[-1].get("kind") != "output":
        return "output"
    if first_vector_index(layers) < len(layers) - 1:
        return "dense"
    if check({"layers": layers}).valid and not check({"layers": insert_layer(layers, "conv")}).valid:
        return "dense"
    return "conv"


def insert_layer(layers: list[dict], kind: str, position: int | None = None) -> list[dict]:
    """A new list with a default `kind` layer added, where it fits (see `insertion_position`) unless `position` says."""
    if len(layers) >= vocabulary.MAX_LAYERS:
        raise ValueError(f"A network can have at most {vocabulary.MAX_LAYERS} layers.")
    layer = {**vocabulary.default_layer(kind), "uid": new_uid()}
    if position is None:
        position = insertion_position(layers, kind)
    return [*layers[:position], layer, *layers[position:]]


def move_layer(layers: list[dict], uid: str, offset: int) -> list[dict]:
    """A new list with the layer `uid` moved `offset` places (−1 up, +1 down), clamped at the ends."""
    index = index_of(layers, uid)
    target = min(max(index + offset, 0), len(layers) - 1)
    moved = list(layers)
    moved.insert(target, moved.pop(index))
    return moved


def remove_layer(layers: list[dict], uid: str) -> list[dict]:
    index = index_of(layers, uid)
    return [*layers[:index], *layers[index + 1 :]]


def update_field(layer: dict, name: str, value: Any) -> dict:
    """A copy of `layer` with one field changed; only fields of its kind are allowed."""
    if name not in vocabulary.LAYER_FIELDS[layer["kind"]]:
        raise KeyError(f"{layer['kind']} layers have no field {name!r}.")
    return {**layer, name: value}


# ----------------------------------------------------------------------------- reading specs


def check_editable(spec: Any) -> dict:
    """Check that the editor can show `spec` and fill every layer's missing fields with defaults.

    Accepts a spec, a bare list of layers, or a preset or saved-run file that holds one
    under "network". The checks are the vocabulary's own (`normalize_spec` in its editing
    form): an empty network, values above a field's maximum and layers in an impossible order
    are let through, since the editor shows them and validation explains what is wrong.
    Anything else (wrong types, unknown kinds or fields, values below a field's minimum, more
    than vocabulary.MAX_LAYERS layers) is refused with `LoadError`.
    """
    if isinstance(spec, dict) and "network" in spec and "layers" not in spec:
        spec = spec["network"]
    try:
        result = vocabulary.normalize_spec(spec, editing=True)
    except vocabulary.SpecError as error:
        raise LoadError("not_network", "load.not_network", problem=error.message) from None
    name = result.pop("name", "")
    if name:
        result["name"] = name[:100]
    return result


def spec_to_json(spec: dict) -> str:
    """The spec as the JSON file the Save button offers (the same format as presets' "network")."""
    return json.dumps(to_spec(spec), indent=2, ensure_ascii=False) + "\n"


def spec_from_json(data: bytes | str) -> dict:
    """Read a network from an uploaded JSON file (a spec, a preset or a saved run)."""
    if not isinstance(data, (bytes, str)):
        raise LoadError("not_text", "load.not_text", detail=f"got {type(data).__name__}")
    if len(data) > MAX_FILE_BYTES:
        raise LoadError("too_large", "load.too_large", size=len(data), limit=MAX_FILE_BYTES)
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise LoadError("not_text", "load.not_utf8", detail=str(error)) from None
    return check_editable(_parse_json(data, "not_json"))


def _parse_json(text: str, reason: str) -> Any:
    """The JSON value in `text`, or LoadError(reason) saying where and why it cannot be read."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise LoadError(reason, "load.json_at", detail=error.msg, line=error.lineno, column=error.colno) from None
    except RecursionError:  # Python's parser gives up on lists or objects nested about a thousand deep.
        raise LoadError(reason, "load.too_deep") from None
    except ValueError as error:  # An integer of more digits than Python converts (4,300).
        raise LoadError(reason, "load.huge_number", detail=str(error)) from None


def same_network(first: dict, second: dict | list) -> bool:
    """True when two specs are the same network once normalised (every field filled; names and uids ignored)."""
    try:
        left, right = (to_spec(check_editable(spec)) for spec in (to_spec(first), second))
    except (LoadError, KeyError, TypeError):
        return False
    left.pop("name", None)
    right.pop("name", None)
    return left == right


def unedited_preset(spec: dict | None, preset_name: str | None) -> str | None:
    """`preset_name` while `spec` is still exactly that preset's network, else None (it was edited)."""
    if not spec or not preset_name or preset_name not in presets.all_presets():
        return None
    return preset_name if same_network(spec, presets.get(preset_name).network) else None


# ----------------------------------------------------------------------------- links


def encode_link(spec: dict) -> str:
    """The `?net=` value for a spec: compact JSON, zlib-compressed, URL-safe base64 without padding."""
    text = json.dumps(to_spec(spec), separators=(",", ":"), ensure_ascii=False)
    packed = base64.urlsafe_b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")
    return packed.rstrip("=")


def decode_link(value: str) -> dict:
    """The spec a `?net=` value holds; `LoadError` with reason "not_link" when it is damaged."""
    value = value.strip() if isinstance(value, str) else ""
    if not value or len(value) > MAX_LINK_CHARACTERS:
        raise LoadError("not_link", "load.link_length", count=len(value), limit=MAX_LINK_CHARACTERS)
    try:
        packed = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        inflater = zlib.decompressobj()
        text = inflater.decompress(packed, MAX_SPEC_BYTES)
        complete = inflater.eof and not inflater.unconsumed_tail
        text = text.decode("utf-8")
    except (binascii.Error, ValueError, zlib.error) as error:
        raise LoadError("not_link", "load.link_damaged", detail=str(error)) from None
    if not complete:
        raise LoadError("not_link", "load.link_incomplete")
    return check_editable(_parse_json(text, "not_link"))


def share_url(base_url: str | None, spec: dict, language: str) -> str:
    """A link that opens the app with this network and language, like TensorFlow Playground's URLs."""
    query = urlencode({"net": encode_link(spec), "lang": language})
    return f"{(base_url or '').split('?')[0]}?{query}"


# ----------------------------------------------------------------------------- checking


@dataclass
class Checked:
    """What the page shows: rows for every layer when valid, else the valid rows before the error."""

    summary: networks.Summary
    error: vocabulary.SpecError | None

    @property
    def valid(self) -> bool:
        return self.error is None


def check(spec: dict) -> Checked:
    """Validate `spec`; on error keep the shape rows of the layers before the offending one."""
    spec = to_spec(spec)
    try:
        return Checked(networks.validate(spec), None)
    except vocabulary.SpecError as error:
        return Checked(networks.Summary(spec=spec, rows=_rows_before(spec, error)), error)


def _rows_before(spec: dict, error: vocabulary.SpecError) -> list[networks.LayerRow]:
    layers = spec["layers"]
    if error.layer_index is None or not layers:
        return []
    has_output = any(isinstance(layer, dict) and layer.get("kind") == "output" for layer in layers)
    prefix = layers if not has_output else layers[: error.layer_index]
    if not prefix:
        return []
    # A prefix without its output layer is not a whole network: lend it one, then drop its row.
    lent = not any(layer.get("kind") == "output" for layer in prefix)
    try:
        rows = networks.validate({**spec, "layers": [*prefix, {"kind": "output"}] if lent else prefix}).rows
    except vocabulary.SpecError:
        return []
    return rows[:-1] if lent else rows


def layer_label(layer: dict, language: str = "en") -> str:
    """The details after a layer's kind in `language`, e.g. '20 × 5×5, sigmoid' for a conv layer ('' when none).

    Numbers stay as they are; the words (activation names, stride, padding, softmax) come from
    the catalogs, so a Korean card reads '20 × 5×5, 시그모이드'.
    """
    kind = layer["kind"]
    # The short name (the Korean selectbox spells "시그모이드(sigmoid)" out; a card title and a table cell need less).
    activation = translate(language, f"build.activation_short.{layer['activation']}") if "activation" in layer else ""
    parts: list[str] = []
    if kind == "dense":
        parts = [str(layer["units"]), activation]
    elif kind == "conv":
        kernel = layer["kernel_size"]
        parts = [f"{layer['filters']} × {kernel}×{kernel}"]
        if layer["stride"] != 1:
            parts.append(translate(language, "build.label.stride", stride=layer["stride"]))
        if layer["padding"]:
            parts.append(translate(language, "build.label.padding", padding=layer["padding"]))
        parts.append(activation)
    elif kind in vocabulary.POOL_KINDS:
        size = layer["size"]
        stride = layer["stride"] if layer["stride"] is not None else size
        parts = [f"{size}×{size}"] + ([translate(language, "build.label.stride", stride=stride)] if stride != size else [])
    elif kind == "dropout":
        parts = [f"p={layer['p']:g}"]
    elif kind == "activation":
        parts = [activation]
    elif kind == "output":
        parts = [translate(language, "build.label.softmax", classes=vocabulary.NUM_CLASSES)]
    return ", ".join(part for part in parts if part)


def format_shape(shape: tuple[int, ...]) -> str:
    return " × ".join(str(size) for size in shape)


def output_size(size: int, kernel_size: int, padding: int = 0, stride: int = 1) -> int:
    """One side of a convolution's or pooling's output: ⌊(n + 2p − f)/s⌋ + 1."""
    return (size + 2 * padding - kernel_size) // stride + 1


def layer_numbers(layer: dict, input_shape: tuple[int, ...], row: networks.LayerRow) -> dict[str, Any]:
    """The numbers a layer's explanation quotes, all taken from the spec and the validated row."""
    numbers: dict[str, Any] = {
        "input": format_shape(input_shape),
        "output": format_shape(row.output_shape),
        "parameters": f"{row.parameters:,}",
        "inputs": f"{math.prod(input_shape):,}",
        "channels": input_shape[0],
        "activation": layer.get("activation", ""),
    }
    if layer["kind"] == "conv":
        kernel, channels = layer["kernel_size"], input_shape[0]
        numbers.update(
            filters=layer["filters"], kernel=kernel, stride=layer["stride"], padding=layer["padding"], size=input_shape[1],
            out=row.output_shape[1], weights_per_map=f"{kernel * kernel * channels:,}",
        )
    elif layer["kind"] in vocabulary.POOL_KINDS:
        stride = layer["stride"] if layer["stride"] is not None else layer["size"]
        numbers.update(window=layer["size"], stride=stride, size=input_shape[1], out=row.output_shape[1])
    elif layer["kind"] in ("dense", "output"):
        numbers.update(units=row.output_shape[0])
    elif layer["kind"] == "dropout":
        numbers.update(p=f"{layer['p']:g}", percent=f"{layer['p'] * 100:g}")
    return numbers


@dataclass(frozen=True)
class SharedWeightsExample:
    """Nielsen ch. 6's comparison: a conv layer of 20 maps with 5×5 kernels vs a 30-neuron dense layer."""

    maps: int
    kernel_size: int
    conv_parameters: int
    units: int
    inputs: int
    dense_parameters: int
    image_size: int
    hidden_size: int

    @property
    def ratio(self) -> int:
        return round(self.dense_parameters / self.conv_parameters)


@lru_cache(maxsize=None)
def shared_weights_example(maps: int = 20, kernel_size: int = 5, units: int = 30) -> SharedWeightsExample:
    """Both parameter counts come from validating two one-layer networks, not from arithmetic."""
    conv = networks.validate([{"kind": "conv", "filters": maps, "kernel_size": kernel_size}, {"kind": "output"}]).rows[0]
    dense = networks.validate([{"kind": "dense", "units": units}, {"kind": "output"}]).rows[0]
    return SharedWeightsExample(
        maps=maps, kernel_size=kernel_size, conv_parameters=conv.parameters, units=units,
        inputs=math.prod(vocabulary.INPUT_SHAPE), dense_parameters=dense.parameters,
        image_size=vocabulary.INPUT_SHAPE[1], hidden_size=conv.output_shape[1],
    )


@lru_cache(maxsize=1)
def explanation_numbers() -> dict[str, Any]:
    """The figures the Build page's "ideas" texts quote, computed rather than typed in."""
    example = shared_weights_example()
    image, kernel = example.image_size, example.kernel_size
    return {
        "image": image,
        "kernel": kernel,
        "hidden": example.hidden_size,
        "maps": example.maps,
        "units": example.units,
        "inputs": f"{example.inputs:,}",
        "conv_parameters": f"{example.conv_parameters:,}",
        "dense_parameters": f"{example.dense_parameters:,}",
        "ratio": example.ratio,
        "pooled": output_size(example.hidden_size, 2, 0, 2),
        "padded": output_size(image, kernel, 2, 1),
        "strided": output_size(image, kernel, 0, 2),
    }


def linear_neighbours(layers: list[dict]) -> list[tuple[int, int]]:
    """Pairs (i, j) of weighted layers with nothing non-linear between them (0-based).

    Such a pair computes one linear map, W₂(W₁x + b₁) + b₂ = (W₂W₁)x + (W₂b₁ + b₂), so the
    extra layer adds parameters but no power. Max and L2 pooling are non-linear; average
    pooling, dropout, batch norm (at test time) and flatten are not.
    """
    pairs = []
    for index, layer in enumerate(layers):
        if layer.get("kind") not in ("dense", "conv") or layer.get("activation") != "linear":
            continue
        for later in range(index + 1, len(layers)):
            kind = layers[later].get("kind")
            if kind in WEIGHTED_KINDS:
                pairs.append((index, later))
                break
            if kind not in LINEAR_KINDS and not (kind == "activation" and layers[later].get("activation") == "linear"):
                break
    return pairs
