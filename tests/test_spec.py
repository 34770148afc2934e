"""Tests for core.spec: bad specs get a sentence naming the layer, and the shape table agrees with a
real forward pass, with the textbook formulas and with the numbers Nielsen (ch. 6), network3.py and
pytorch/examples print for the same networks."""

from __future__ import annotations

import copy
import math
import time

import pytest
import torch
from torch import nn

from core.data import datasets as data
from core.model import network as networks
from core.model import vocabulary
from core.model.vocabulary import SpecError
from core.training.presets import all_presets

OUTPUT = {"kind": "output"}


def dense(units=100, **extra):
    return {"kind": "dense", "units": units, **extra}


def conv(filters=20, kernel_size=5, **extra):
    return {"kind": "conv", "filters": filters, "kernel_size": kernel_size, **extra}


def pool(size=2, kind="maxpool", **extra):
    return {"kind": kind, "size": size, **extra}


# ----------------------------------------------------------------------------- invalid specs

# (id, spec, offending layer index or None, field_name or None, words the message must contain)
INVALID_SPECS = [
    ("kernel-larger-than-input", [pool(2), conv(kernel_size=15), OUTPUT], 1, "kernel_size", ["Layer 2", "15×15", "14×14"]),
    ("kernel-larger-than-padded-input", [pool(7), conv(kernel_size=7, padding=1), OUTPUT], 1, "kernel_size", ["4×4", "padded to 6×6"]),
    ("conv-after-dense", [dense(10), conv(), OUTPUT], 1, None, ["Layer 2", "image", "layer 1 (dense)", "flat vector of 10"]),
    ("conv-after-flatten", [{"kind": "flatten"}, conv(), OUTPUT], 1, None, ["Layer 2", "image", "flat vector of 784"]),
    ("pool-after-dense", [dense(10), pool(2), OUTPUT], 1, None, ["Layer 2", "max-pool", "flat vector"]),
    ("pool-larger-than-input", [conv(kernel_size=5, stride=4), pool(7), OUTPUT], 1, "size", ["Layer 2", "7×7", "6×6"]),
    ("pools-shrink-to-nothing", [pool(2)] * 5 + [OUTPUT], 4, "size", ["Layer 5", "2×2", "1×1", "layer 4"]),
    ("zero-units", [dense(0), OUTPUT], 0, "units", ["Layer 1", "Neurons", "at least 1"]),
    ("negative-filters", [conv(filters=-4), OUTPUT], 0, "filters", ["Layer 1", "Feature maps", "-4", "at least 1"]),
    ("too-many-filters", [conv(filters=5000), OUTPUT], 0, "filters", ["Layer 1", "Feature maps", "at most 4096"]),
    ("dropout-p-one", [{"kind": "dropout", "p": 1}, OUTPUT], 0, "p", ["Layer 1", "Drop probability p", "below 1"]),
    ("dropout-p-negative", [{"kind": "dropout", "p": -0.1}, OUTPUT], 0, "p", ["Layer 1", "Drop probability p", "-0.1", "at least 0"]),
    ("dropout-p-string", [dense(), {"kind": "dropout", "p": "0.5"}, OUTPUT], 1, "p", ["Layer 2", "Drop probability p", "must be a number"]),
    ("unknown-kind", [{"kind": "dnese", "units": 10}, OUTPUT], 0, "kind", ["Layer 1", "'dnese'", "Did you mean 'dense'"]),
    ("misspelled-field", [dense(), {"kind": "dense", "unit": 30}, OUTPUT], 1, "unit", ["Layer 2", "'unit'", "Did you mean 'units'"]),
    ("units-as-string", [{"kind": "dense", "units": "100"}, OUTPUT], 0, "units", ["Layer 1", "Neurons", "whole number", "'100'"]),
    ("units-fractional", [dense(3.5), OUTPUT], 0, "units", ["Layer 1", "Neurons", "whole number", "3.5"]),
    ("units-boolean", [dense(True), OUTPUT], 0, "units", ["Layer 1", "Neurons", "whole number", "True"]),
    ("kind-null", [{"kind": None}, OUTPUT], 0, "kind", ["Layer 1", "unknown kind None", "Known kinds"]),
    ("kind-missing", [OUTPUT, {"units": 100}], 1, "kind", ["Layer 2", "unknown kind", "Known kinds"]),
    ("empty-network", [], None, None, ["empty", "output layer"]),
    ("missing-output", [dense(30), dense(20)], 1, None, ["no output layer", "\"output\"", "after layer 2 (dense)"]),
    ("output-not-last", [OUTPUT, dense(30)], 0, None, ["Layer 1", "output", "last layer"]),
    ("two-outputs", [dense(30), OUTPUT, OUTPUT], 1, None, ["Layer 2", "output", "appear once"]),
    ("layers-not-a-list", {"layers": {"kind": "output"}}, None, None, ['"layers" list']),
    ("layers-missing", {"normalize": True}, None, None, ['"layers" list']),
    ("spec-a-string", "dense 100 then output", None, None, ["JSON object"]),
    ("spec-a-number", 42, None, None, ["JSON object"]),
    ("unknown-activation", [dense(activation="sigmod"), OUTPUT], 0, "activation", ["Layer 1", "Activation function", "Did you mean 'sigmoid'"]),
    ("unknown-activation-layer", [dense(), {"kind": "activation", "activation": "swish"}, OUTPUT], 1, "activation", ["'swish'", "relu"]),
    ("unknown-init", [conv(init="glorot"), OUTPUT], 0, "init", ["Layer 1", "Initial weights", "'glorot'", "xavier"]),
    ("padding-equal-to-kernel", [conv(kernel_size=3, padding=3), OUTPUT], 0, "padding", ["Layer 1", "padding 3", "kernel 3"]),
    ("padding-over-maximum", [conv(kernel_size=5, padding=15), OUTPUT], 0, "padding", ["Layer 1", "Padding p", "at most 14"]),
    ("conv-stride-zero", [conv(stride=0), OUTPUT], 0, "stride", ["Layer 1", "Stride s", "at least 1"]),
    ("pool-stride-zero", [conv(), pool(2, stride=0), OUTPUT], 1, "stride", ["Layer 2", "Stride s", "at least 1"]),
    ("kernel-size-zero", [conv(kernel_size=0), OUTPUT], 0, "kernel_size", ["Layer 1", "Kernel size f", "at least 1"]),
    ("pool-size-fractional", [pool(2.5, kind="avgpool"), OUTPUT], 0, "size", ["Layer 1", "Window size", "whole number"]),
    ("batchnorm-has-no-fields", [{"kind": "batchnorm", "momentum": 0.1}, OUTPUT], 0, "momentum", ["Layer 1", "'momentum'", "no fields"]),
    ("output-units-given", [dense(), {"kind": "output", "units": 10}], 1, "units", ["Layer 2", "(softmax)", "'units'"]),
    ("error-in-layer-twelve", [dense(10)] * 11 + [dense(0), OUTPUT], 11, "units", ["Layer 12", "Neurons"]),
    ("over-max-parameters", [dense(100_000), OUTPUT], None, None, ["79,500,010 parameters", "50,000,000"]),
    ("far-over-max-parameters", [conv(filters=4096, kernel_size=1), dense(100_000), OUTPUT], None, None, ["parameters", "50,000,000"]),
    ("unknown-top-level-key", {"layers": [OUTPUT], "input_shape": [1, 28, 28]}, None, None, ["input_shape", "layers, normalize and name"]),
    ("normalize-not-bool", {"layers": [OUTPUT], "normalize": "yes"}, None, None, ['"normalize"', "true or false", "'yes'"]),
    ("layer-not-an-object", ["dense", OUTPUT], 0, None, ["Layer 1", "object", "'dense'"]),
    ("layer-a-list", [dense(), [OUTPUT]], 1, None, ["Layer 2", "object"]),
]


def test_invalid_specs_are_many_and_distinct():
    ids = [case[0] for case in INVALID_SPECS]
    assert len(INVALID_SPECS) >= 30
    assert len(set(ids)) == len(ids)
    assert len({repr(case[1]) for case in INVALID_SPECS}) == len(INVALID_SPECS)


@pytest.mark.parametrize(
    "network, layer_index, field_name, words", [case[1:] for case in INVALID_SPECS], ids=[case[0] for case in INVALID_SPECS]
)
def test_invalid_spec_gives_a_sentence_naming_the_layer(network, layer_index, field_name, words):
    untouched = copy.deepcopy(network)
    with pytest.raises(ValueError) as caught:
        networks.validate(network)
    error = caught.value
    message = str(error)
    assert isinstance(error, SpecError)
    assert error.layer_index == layer_index
    if field_name is not None:
        assert error.field_name == field_name
    if layer_index is not None:
        assert f"Layer {layer_index + 1}" in message or f"layer {layer_index + 1}" in message.lower()
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    # A sentence a learner can read: one line, capital or quoted start, full stop; no Python internals.
    assert "\n" not in message
    assert message[0].isupper() or message[0] == "'"
    assert message.rstrip().endswith((".", "?"))
    for leak in ("Traceback", "RuntimeError", "File \"", "torch", "<class"):
        assert leak not in message
    assert network == untouched  # Validation never edits the caller's spec.


@pytest.mark.parametrize("case", [INVALID_SPECS[0], INVALID_SPECS[13], INVALID_SPECS[20]], ids=lambda case: case[0])
def test_build_rejects_what_validate_rejects(case):
    with pytest.raises(SpecError) as caught:
        networks.build(case[1])
    assert caught.value.layer_index == case[2]


def test_unknown_dataset_is_a_spec_error():
    with pytest.raises(SpecError, match="no dataset 'cifar10'"):
        networks.validate([OUTPUT], dataset="cifar10")


def test_network_just_under_max_parameters_is_accepted():
    units = (networks.MAX_PARAMETERS - 10) // (784 + 1 + 10)  # the widest dense layer that, with the output, fits
    summary = networks.validate([dense(units), OUTPUT])
    assert summary.total_parameters == units * 785 + units * 10 + 10
    assert networks.MAX_PARAMETERS - 795 < summary.total_parameters <= networks.MAX_PARAMETERS
    with pytest.raises(SpecError, match="more than the limit"):
        networks.validate([dense(units + 1), OUTPUT])


# ----------------------------------------------------------------------------- shapes and counts

HAND_MADE_SPECS = {
    "padding-and-stride": [conv(8, 3, padding=1, stride=2), conv(16, 3, padding=1), pool(2), {"kind": "flatten"}, dense(32), OUTPUT],
    "batchnorm-images-and-vectors": [
        conv(6, 5, activation="linear"),
        {"kind": "batchnorm"},
        {"kind": "activation", "activation": "relu"},
        pool(2, kind="avgpool", stride=1),
        {"kind": "flatten"},
        {"kind": "batchnorm"},
        dense(20),
        {"kind": "batchnorm"},
        OUTPUT,
    ],
    "l2pool": [conv(20, 5, activation="relu"), pool(2, kind="l2pool"), conv(40, 5), pool(2, kind="l2pool"), dense(100), OUTPUT],
    "avgpool-overlapping": [conv(10, 3), pool(3, kind="avgpool", stride=2), pool(3, kind="maxpool", stride=2), OUTPUT],
    "activation-layers": [
        dense(50, activation="linear"),
        {"kind": "activation", "activation": "tanh"},
        dense(20, activation="elu"),
        {"kind": "activation", "activation": "leaky_relu"},
        OUTPUT,
    ],
    "dropout-on-images": [conv(8, 3, activation="gelu"), {"kind": "dropout", "p": 0.3}, pool(3), {"kind": "dropout", "p": 0.2}, OUTPUT],
    "bare-list-no-normalize": {"layers": [conv(4, 28), OUTPUT], "normalize": False},
}
ALL_SPECS = {**{f"preset-{name}": preset.network for name, preset in all_presets().items()}, **HAND_MADE_SPECS}


def _expected_row(layer: dict, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """The textbook output size and parameter count of one layer, as an independent check."""
    kind = layer["kind"]
    if kind == "conv":
        side = (shape[1] + 2 * layer["padding"] - layer["kernel_size"]) // layer["stride"] + 1
        return (layer["filters"], side, side), layer["filters"] * (shape[0] * layer["kernel_size"] ** 2 + 1)
    if kind in vocabulary.POOL_KINDS:
        stride = layer["stride"] or layer["size"]
        side = (shape[1] - layer["size"]) // stride + 1
        return (shape[0], side, side), 0
    if kind in ("dense", "output"):
        units = layer["units"] if kind == "dense" else 10
        return (units,), units * (math.prod(shape) + 1)
    if kind == "flatten":
        return (math.prod(shape),), 0
    if kind == "batchnorm":
        return shape, 2 * shape[0]
    return shape, 0  # dropout, activation


@pytest.mark.parametrize("network", ALL_SPECS.values(), ids=ALL_SPECS.keys())
def test_shape_table_agrees_with_a_real_forward_pass(network):
    summary = networks.validate(network)
    model = networks.build(network, seed=0).eval()
    assert len(model) == len(summary.rows) + 1  # Normalize, then one block per spec layer.
    seen: dict[int, tuple[int, ...]] = {}
    for index in range(len(summary.rows)):
        model[index + 1].register_forward_hook(lambda module, inputs, output, index=index: seen.__setitem__(index, tuple(output.shape)))
    images = torch.rand(3, *vocabulary.INPUT_SHAPE)
    logits = model(images)
    assert logits.shape == (3, vocabulary.NUM_CLASSES)
    shape = vocabulary.INPUT_SHAPE
    for row, layer in zip(summary.rows, summary.spec["layers"]):
        block = model[row.index + 1]
        assert seen[row.index] == (3, *row.output_shape), f"layer {row.index + 1} ({row.description})"
        assert sum(parameter.numel() for parameter in block.parameters()) == row.parameters
        assert _expected_row(layer, shape) == (row.output_shape, row.parameters), f"layer {row.index + 1} ({row.description})"
        shape = row.output_shape
    assert sum(parameter.numel() for parameter in model.parameters()) == summary.total_parameters


def test_parameter_counts_match_nielsen_chapter_6():
    # Nielsen ch. 6: "20 feature maps ... 20×26 = 520 parameters" for the 5×5 convolution, and a
    # 30-neuron fully connected first layer has "784×30 weights, plus 30 biases, for 23,550".
    conv_pool = networks.validate(all_presets()["nielsen-2-conv-pool"].network)
    assert conv_pool.rows[0].parameters == 520
    assert [row.output_shape for row in conv_pool.rows[:2]] == [(20, 24, 24), (20, 12, 12)]
    assert networks.validate([dense(30), OUTPUT]).rows[0].parameters == 23_550
    two_conv = networks.validate(all_presets()["nielsen-3-two-conv-pool"].network)
    assert two_conv.rows[3].output_shape == (40, 4, 4)  # network3.py: image_shape=(mini_batch_size, 40, 4, 4)... n_in=40*4*4


def test_pytorch_examples_net_has_its_known_size():
    # pytorch/examples mnist/main.py hard-codes nn.Linear(9216, 128); the whole net has 1,199,882 parameters.
    summary = networks.validate(all_presets()["pytorch-examples-mnist"].network)
    assert math.prod(summary.rows[3].output_shape) == 9216
    assert summary.total_parameters == 1_199_882


def test_validate_fills_defaults_and_accepts_a_bare_list():
    summary = networks.validate([{"kind": "dense"}, {"kind": "output"}])
    assert summary.spec == {"layers": [vocabulary.default_layer("dense"), vocabulary.default_layer("output")], "normalize": True}
    table = summary.table().splitlines()
    assert len(table) == len(summary.rows) + 3  # header, input, one per layer, total
    assert table[-1].rstrip().endswith(f"{summary.total_parameters:,}")


# ----------------------------------------------------------------------------- initialisation


def _weighted(model: nn.Sequential, layer_index: int) -> nn.Module:
    return next(module for module in model[layer_index + 1] if isinstance(module, (nn.Linear, nn.Conv2d)))


def _assert_std(tensor: torch.Tensor, expected: float, tolerance: float = 0.05) -> None:
    assert abs(tensor.float().mean().item()) < 4 * expected / math.sqrt(tensor.numel()) + 1e-9
    assert tensor.float().std().item() == pytest.approx(expected, rel=tolerance)


def test_nielsen_init_for_dense_layers_follows_network3():
    # network3.py FullyConnectedLayer: w ~ N(0, sqrt(1/n_out)), b ~ N(0, 1).
    model = networks.build([dense(4000, init="nielsen"), {"kind": "output", "init": "nielsen"}], seed=1)
    hidden, output = _weighted(model, 0), _weighted(model, 1)
    _assert_std(hidden.weight, math.sqrt(1 / 4000))
    _assert_std(hidden.bias, 1.0)
    _assert_std(output.weight, math.sqrt(1 / 10))


@pytest.mark.parametrize(
    "network, layer_index, n_out",
    [
        # network3.py ConvPoolLayer: n_out = filters × kernel area / pool area.
        ([conv(20, 5, init="nielsen"), pool(2), conv(64, 5, init="nielsen"), pool(2), OUTPUT], 2, 64 * 25 / 4),
        ([conv(64, 5, init="nielsen"), conv(64, 5, init="nielsen"), OUTPUT], 1, 64 * 25),
        ([conv(32, 3), conv(64, 3, init="nielsen", activation="linear"), {"kind": "activation"}, pool(3, "l2pool"), OUTPUT], 1, 64 * 9 / 9),
        ([conv(32, 3), conv(64, 3, init="nielsen"), {"kind": "dropout"}, pool(2), OUTPUT], 1, 64 * 9),
    ],
    ids=["conv-then-pool", "conv-then-conv", "conv-activation-pool", "dropout-between"],
)
def test_nielsen_init_for_conv_divides_fan_out_by_the_following_pool(network, layer_index, n_out):
    weight = _weighted(networks.build(network, seed=2), layer_index).weight
    _assert_std(weight, math.sqrt(1 / n_out))


def test_nielsen_conv_biases_are_standard_normal():
    bias = _weighted(networks.build([conv(4096, 1, init="nielsen"), pool(2), OUTPUT], seed=3), 0).bias
    _assert_std(bias, 1.0)


@pytest.mark.parametrize("kind", ["dense", "conv", "output"])
def test_zeros_init_gives_all_zero_weights_and_biases(kind):
    layer = {"dense": dense(50, init="zeros"), "conv": conv(8, 3, init="zeros"), "output": {"kind": "output", "init": "zeros"}}[kind]
    network = [layer] if kind == "output" else [layer, OUTPUT]
    module = _weighted(networks.build(network, seed=4), 0)
    assert torch.count_nonzero(module.weight) == 0 and torch.count_nonzero(module.bias) == 0


HE_XAVIER_CASES = [
    # (network, layer index, fan_in, fan_out)
    ([dense(2000, init="{init}"), OUTPUT], 0, 784, 2000),
    ([conv(20, 5), conv(64, 5, init="{init}"), OUTPUT], 1, 20 * 25, 64 * 25),
]


@pytest.mark.parametrize("case", HE_XAVIER_CASES, ids=["dense", "conv"])
@pytest.mark.parametrize("init", ["he", "xavier", "default"])
def test_he_xavier_and_default_init_follow_their_formulas(case, init):
    network, layer_index, fan_in, fan_out = case
    network = [{key: (init if value == "{init}" else value) for key, value in layer.items()} for layer in network]
    module = _weighted(networks.build(network, seed=5), layer_index)
    if init == "he":  # He et al. 2015: std sqrt(2 / fan_in); biases start at zero.
        _assert_std(module.weight, math.sqrt(2 / fan_in))
        assert torch.count_nonzero(module.bias) == 0
    elif init == "xavier":  # Glorot & Bengio 2010: std sqrt(2 / (fan_in + fan_out)).
        _assert_std(module.weight, math.sqrt(2 / (fan_in + fan_out)))
        assert torch.count_nonzero(module.bias) == 0
    else:  # PyTorch's own: uniform in ±1/sqrt(fan_in), so std bound/sqrt(3).
        bound = 1 / math.sqrt(fan_in)
        assert module.weight.abs().max().item() <= bound
        _assert_std(module.weight, bound / math.sqrt(3))
        assert 0 < module.bias.abs().max().item() <= bound


def test_seed_makes_build_repeatable():
    network = all_presets()["nielsen-3-two-conv-pool"].network
    first, again, other = (networks.build(network, seed=seed).state_dict() for seed in (7, 7, 8))
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not torch.equal(first["1.0.weight"], other["1.0.weight"])


def test_weight_parameters_are_conv_and_dense_weights_only():
    model = networks.build([conv(4, 3), {"kind": "batchnorm"}, dense(10), OUTPUT], seed=0)
    weights = networks.weight_parameters(model)
    expected = [_weighted(model, 0).weight, _weighted(model, 2).weight, _weighted(model, 3).weight]
    assert [id(weight) for weight in weights] == [id(weight) for weight in expected]


# ----------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_normalize_standardises_with_the_training_set_statistics(dataset, mnist):
    splits = mnist if dataset == "mnist" else data.load(dataset)
    pixels = torch.cat([splits.train_images, splits.validation_images]).float().div_(255.0)  # all 60,000 training images
    model = networks.build({"layers": [OUTPUT], "normalize": True}, dataset=dataset)
    standardised = model[0](pixels[:, None])
    assert standardised.mean().item() == pytest.approx(0.0, abs=2e-3)
    assert standardised.std().item() == pytest.approx(1.0, abs=2e-3)
    mean, std = vocabulary.DATASET_STATISTICS[dataset]
    images = torch.rand(4, *vocabulary.INPUT_SHAPE)
    torch.testing.assert_close(model[0](images), (images - mean) / std)


def test_normalize_false_is_the_identity():
    model = networks.build({"layers": [OUTPUT], "normalize": False}, dataset="fashion-mnist")
    images = torch.rand(4, *vocabulary.INPUT_SHAPE)
    assert torch.equal(model[0](images), images)


# ----------------------------------------------------------------------------- L2 pooling


@pytest.mark.parametrize("size, stride", [(2, 2), (3, 1), (3, 2)])
def test_l2pool_is_the_root_of_the_sum_of_squares(size, stride):
    inputs = (torch.rand(4, 3, 12, 12) + 0.05).requires_grad_()
    ours = networks.L2Pool2d(size, stride)(inputs)
    reference = nn.LPPool2d(2, size, stride)(inputs)
    windows = nn.functional.unfold(inputs.detach(), size, stride=stride)  # (N, C·size², windows)
    by_hand = windows.view(4, 3, size * size, -1).pow(2).sum(dim=2).sqrt().view_as(ours)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.detach(), by_hand, atol=1e-5, rtol=1e-5)
    ours_gradient, = torch.autograd.grad(ours.sum(), inputs)
    reference_gradient, = torch.autograd.grad(reference.sum(), inputs)
    torch.testing.assert_close(ours_gradient, reference_gradient, atol=1e-4, rtol=1e-4)


def test_l2pool_gradient_is_zero_not_nan_on_an_all_zero_input():
    inputs = torch.zeros(2, 3, 8, 8, requires_grad=True)
    ours, = torch.autograd.grad(networks.L2Pool2d(2, 2)(inputs).sum(), inputs)
    assert torch.isfinite(ours).all() and torch.count_nonzero(ours) == 0
    # The reason for the epsilon: the naive root of the sum of squares has gradient 0 · ∞ = NaN at zero.
    naive = nn.functional.avg_pool2d(inputs * inputs, 2, 2).mul(4).sqrt()
    reference, = torch.autograd.grad(naive.sum(), inputs)
    assert torch.isnan(reference).all()


def test_l2pool_layer_in_a_built_model_is_l2pool2d():
    model = networks.build(HAND_MADE_SPECS["l2pool"], seed=0)
    assert isinstance(model[2][0], networks.L2Pool2d)


# ----------------------------------------------------------------------------- labels and defaults


def test_describe_layer_labels():
    layers = vocabulary.normalize_spec(
        [
            conv(20, 5, activation="sigmoid"),
            conv(8, 3, stride=2, padding=1),
            pool(3, stride=2),
            pool(2, kind="l2pool"),
            {"kind": "dropout", "p": 0.25},
            {"kind": "batchnorm"},
            {"kind": "activation", "activation": "tanh"},
            dense(100),
            OUTPUT,
        ]
    )["layers"]
    assert [vocabulary.describe_layer(layer) for layer in layers] == [
        "conv 20 × 5×5, sigmoid",
        "conv 8 × 3×3, stride 2, pad 1, relu",
        "maxpool 3×3, stride 2",
        "l2pool 2×2",
        "dropout p=0.25",
        "batchnorm",
        "tanh",
        "dense 100, relu",
        "output softmax 10",
    ]


def test_summarize_network_names_the_stack_in_order():
    network = all_presets()["nielsen-2-conv-pool"].network
    assert vocabulary.summarize_network(network) == "conv 20 × 5×5 → maxpool 2×2 → dense 100 → output softmax 10"
    assert vocabulary.summarize_network(network["layers"]) == vocabulary.summarize_network(network)
    for preset in all_presets().values():
        parts = vocabulary.summarize_network(preset.network).split(" → ")
        assert [part.split()[0] for part in parts] == [layer["kind"] for layer in preset.network["layers"]]
    with pytest.raises(SpecError):
        vocabulary.summarize_network([dense(0), OUTPUT])


@pytest.mark.parametrize("kind", list(vocabulary.LAYER_FIELDS))
def test_default_layer_is_complete_and_validates_in_a_small_network(kind):
    layer = vocabulary.default_layer(kind)
    assert set(layer) == {"kind", *vocabulary.LAYER_FIELDS[kind]}
    assert vocabulary.normalize_spec([layer, OUTPUT] if kind != "output" else [layer])["layers"][0] == layer
    network = [layer] if kind == "output" else [layer, OUTPUT]
    summary = networks.validate(network)
    assert summary.rows[-1].output_shape == (vocabulary.NUM_CLASSES,)
    layer[next(iter(layer))] = "changed"  # A fresh dict each time: editing it leaves the registry alone.
    assert vocabulary.default_layer(kind)["kind"] == kind


def test_default_layer_rejects_an_unknown_kind():
    with pytest.raises(SpecError, match="no layer kind 'transformer'"):
        vocabulary.default_layer("transformer")


# ----------------------------------------------------------------------------- hostile specs


def test_the_layer_limit_is_one_number_for_validation_and_the_editor():
    from core.views import builder_state as builder

    longest = [dense(10)] * (vocabulary.MAX_LAYERS - 1) + [OUTPUT]
    assert len(networks.validate(longest).rows) == vocabulary.MAX_LAYERS
    assert len(builder.check_editable(longest)["layers"]) == vocabulary.MAX_LAYERS
    too_long = [dense(10)] + longest
    with pytest.raises(SpecError, match=f"101 layers, but a network can have at most {vocabulary.MAX_LAYERS}"):
        networks.validate(too_long)
    with pytest.raises(builder.LoadError, match=f"at most {vocabulary.MAX_LAYERS}"):
        builder.check_editable(too_long)
    with pytest.raises(ValueError, match=str(vocabulary.MAX_LAYERS)):
        builder.insert_layer(builder.editable(longest)["layers"], "dense")


def test_a_long_network_answers_within_a_second():
    networks.validate([dense(10), OUTPUT])  # The first pass on the meta device loads PyTorch's shape code.
    for layers in ([OUTPUT] * 20_000, [dense(100_000)] * (vocabulary.MAX_LAYERS - 1) + [OUTPUT]):
        started = time.perf_counter()
        with pytest.raises(SpecError):
            networks.validate(layers)
        assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "name", [None, 5, 1.5, True, float("nan"), 10**5000, [[["x"]]], {"a": 1}], ids=lambda value: type(value).__name__
)
def test_a_name_that_is_not_text_is_a_spec_error(name):
    with pytest.raises(SpecError, match="name must be text") as caught:
        vocabulary.normalize_spec({"layers": [OUTPUT], "name": name})
    assert len(str(caught.value)) < 200


def test_a_name_that_is_text_is_kept():
    assert vocabulary.normalize_spec({"layers": [OUTPUT], "name": "mine"})["name"] == "mine"


@pytest.mark.parametrize(
    "network, words",
    [
        ([{"kind": []}, OUTPUT], "unknown kind []"),
        ([{"kind": {"dense": 1}}, OUTPUT], "unknown kind {'dense': 1}"),
        ([dense(10**5000), OUTPUT], "1.000e5000"),
        ([{"kind": "dropout", "p": 10**5000}, OUTPUT], "must be a number"),
        ([dense(activation=["relu"]), OUTPUT], "Choose one of"),
        ([{"kind": "dense", 5: 1}, OUTPUT], "no field 5"),
        ({"layers": [OUTPUT], 7: 1, "x" * 1000: 2}, "settings LayerLab does not know"),
        ([[[[[[[[OUTPUT]]]]]]]], "must be an object"),
        ([{"kind": "dense" * 10_000}, OUTPUT], "unknown kind"),
    ],
    ids=["kind-a-list", "kind-a-dict", "huge-units", "huge-p", "activation-a-list", "field-named-5", "odd-top-keys", "nested", "long-kind"],
)
def test_hostile_values_give_a_short_spec_error(network, words):
    with pytest.raises(SpecError) as caught:
        networks.validate(network)
    assert words in str(caught.value) and len(str(caught.value)) < 300
