"""The Build page's core: layer edits, reading files and links, partial checks and the numbers its texts quote."""

from __future__ import annotations

import base64
import re
import json
import zlib
from urllib.parse import parse_qs, urlsplit

import pytest
import torch
from torch import nn

from core.model import network as networks
from core.model import vocabulary
from core.training import presets
from core.views import builder_state as builder
from core.views import i18n

PRESET_NAMES = list(presets.all_presets())


def working(*kinds: str) -> list[dict]:
    return builder.editable([{"kind": kind} for kind in kinds])["layers"]


def kinds(layers: list[dict]) -> list[str]:
    return [layer["kind"] for layer in layers]


# ----------------------------------------------------------------------------- the working copy


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_working_copy_of_every_preset_validates_like_the_preset(name):
    network = presets.get(name).network
    work = builder.editable(network)
    assert all("uid" not in layer for layer in builder.to_spec(work)["layers"])
    assert builder.check(work).summary.rows == networks.validate(network).rows


def test_every_copy_gets_fresh_unique_uids():
    network = presets.get("lenet-5").network
    first, second = builder.editable(network), builder.editable(network)
    uids = [layer["uid"] for layer in first["layers"] + second["layers"]] + [first["uid"], second["uid"]]
    assert len(set(uids)) == len(uids)


def test_insert_goes_before_the_output_layer_unless_it_is_an_output():
    layers = working("dense", "output")
    assert kinds(builder.insert_layer(layers, "dropout")) == ["dense", "dropout", "output"]
    assert kinds(builder.insert_layer(layers, "output")) == ["dense", "output", "output"]
    assert kinds(builder.insert_layer(layers, "conv", position=0)) == ["conv", "dense", "output"]
    assert kinds(builder.insert_layer([], "dense")) == ["dense"]
    new = builder.insert_layer(layers, "conv", position=0)[0]
    assert {name: value for name, value in new.items() if name != "uid"} == vocabulary.default_layer("conv")
    assert kinds(layers) == ["dense", "output"], "edits return new lists"


def test_insert_refuses_more_than_max_layers():
    layers = working(*["dense"] * vocabulary.MAX_LAYERS)
    with pytest.raises(ValueError, match=str(vocabulary.MAX_LAYERS)):
        builder.insert_layer(layers, "dense")


def test_move_and_remove_follow_the_uid_and_clamp_at_the_ends():
    layers = working("conv", "maxpool", "dense", "output")
    pool = layers[1]["uid"]
    assert kinds(builder.move_layer(layers, pool, -1)) == ["maxpool", "conv", "dense", "output"]
    assert kinds(builder.move_layer(layers, pool, +1)) == ["conv", "dense", "maxpool", "output"]
    assert kinds(builder.move_layer(layers, layers[0]["uid"], -1)) == kinds(layers)
    assert kinds(builder.move_layer(layers, layers[-1]["uid"], +1)) == kinds(layers)
    assert kinds(builder.remove_layer(layers, pool)) == ["conv", "dense", "output"]
    with pytest.raises(KeyError):
        builder.remove_layer(layers, "no-such-uid")


def test_update_field_changes_one_field_of_a_copy():
    layer = working("conv")[0]
    changed = builder.update_field(layer, "kernel_size", 3)
    assert changed["kernel_size"] == 3 and layer["kernel_size"] == 5
    with pytest.raises(KeyError):
        builder.update_field(layer, "units", 10)


# ----------------------------------------------------------------------------- reading specs


def test_check_editable_fills_defaults_and_accepts_preset_and_run_files():
    assert builder.check_editable([{"kind": "conv"}])["layers"][0] == vocabulary.default_layer("conv")
    preset_file = json.loads((presets.PRESET_DIR / "lenet-5.json").read_text())
    assert builder.to_spec(builder.check_editable(preset_file)) == builder.to_spec(builder.check_editable(preset_file["network"]))


def test_values_above_a_maximum_reach_the_editor_only_as_far_as_a_number_box_holds():
    largest = vocabulary.MAX_EDITABLE_NUMBER
    assert builder.check_editable([{"kind": "dense", "units": largest}])["layers"][0]["units"] == largest
    with pytest.raises(builder.LoadError, match="far more than its maximum of 100000"):
        builder.check_editable([{"kind": "dense", "units": largest + 1}])


def test_an_empty_network_and_a_long_name_reach_the_editor():
    checked = builder.check_editable({"layers": [], "name": "n" * 500})
    assert checked["layers"] == [] and checked["name"] == "n" * 100


def test_check_editable_lets_through_what_validation_explains():
    # A kernel too big and an output layer in the middle are shown in the editor with their error.
    spec = {"layers": [{"kind": "conv", "kernel_size": 40}, {"kind": "output"}, {"kind": "dense"}], "normalize": False}
    assert builder.to_spec(builder.check_editable(spec))["layers"][0]["kernel_size"] == 40


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"layers": [{"kind": "convolution"}]}, "unknown kind"),
        ({"layers": [{"kind": "dense", "neurons": 3}]}, "no field"),
        ({"layers": [{"kind": "dense", "units": "ten"}]}, "whole number"),
        ({"layers": [{"kind": "dense", "units": True}]}, "whole number"),
        ({"layers": [{"kind": "dense", "units": 2.5}]}, "whole number"),
        ({"layers": [{"kind": "dense", "units": 0}]}, "at least 1"),
        ({"layers": [{"kind": "dense", "activation": "swish"}]}, "Choose one of"),
        ({"layers": [{"kind": "dropout", "p": float("nan")}]}, "must be a number"),
        ({"layers": [], "normalize": "yes"}, "true or false"),
        ({"layers": [], "optimizer": "sgd"}, "settings LayerLab does not know"),
        ({"layer": []}, '"layers" list'),
        ({"layers": [{"kind": "dense"}] * (vocabulary.MAX_LAYERS + 1)}, "at most"),
        ("dense", '"layers" list'),
    ],
)
def test_check_editable_refuses_what_the_editor_cannot_show(spec, words):
    with pytest.raises(builder.LoadError, match=words) as caught:
        builder.check_editable(spec)
    assert caught.value.reason == "not_network"


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_json_file_round_trip(name):
    work = builder.editable(presets.get(name).network)
    text = builder.spec_to_json(work)
    assert "uid" not in text
    assert builder.to_spec(builder.spec_from_json(text.encode("utf-8"))) == builder.to_spec(work)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"{" + b" " * builder.MAX_FILE_BYTES + b"}", "too_large"),
        (b"\xff\xfe\x00garbage", "not_text"),
        (b'{"layers": [', "not_json"),
        (b'{"layers": [{"kind": "dense", "units": -1}]}', "not_network"),
        (b"[" * 100_000 + b"]" * 100_000, "not_json"),  # RecursionError inside json.loads
        (b'{"layers": [{"kind": "dense", "units": ' + b"7" * 5000 + b"}]}", "not_json"),  # past Python's 4,300 digits
        (b'{"layers": [{"kind": []}]}', "not_network"),  # an unhashable kind
        (b'{"layers": [{"kind": "dense", "units": ' + b"7" * 4000 + b"}]}", "not_network"),  # more than a number box holds
        (b'{"layers": [], "name": [[["x"]]]}', "not_network"),
        (b'{"network": {"layers": [{"kind": "output"}]}, "layers": 5}', "not_network"),
    ],
)
def test_bad_files_give_a_reason_not_a_traceback(data, reason):
    with pytest.raises(builder.LoadError) as caught:
        builder.spec_from_json(data)
    assert caught.value.reason == reason


def test_json_error_says_where():
    with pytest.raises(builder.LoadError, match="line 2, column"):
        builder.spec_from_json(b'{"layers": []\n,,}')


# ----------------------------------------------------------------------------- links


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_link_round_trip_for_every_preset(name):
    spec = builder.to_spec(builder.editable(presets.get(name).network))
    link = builder.encode_link(spec)
    assert set(link) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(link) < builder.MAX_LINK_CHARACTERS
    assert builder.to_spec(builder.decode_link(link)) == spec


def test_share_url_carries_network_and_language():
    spec = builder.to_spec(builder.editable(presets.get("lenet-5").network))
    url = builder.share_url("http://localhost:8501/?old=1", spec, "ko")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "localhost:8501", "/")
    query = parse_qs(parts.query)
    assert query["lang"] == ["ko"] and "old" not in query
    assert builder.to_spec(builder.decode_link(query["net"][0])) == spec
    assert builder.share_url(None, spec, "en").startswith("?net=")


def _pack(data: bytes) -> str:
    return base64.urlsafe_b64encode(zlib.compress(data)).decode().rstrip("=")


@pytest.mark.parametrize(
    "link",
    [
        "",
        "not a link!",
        "A" * (builder.MAX_LINK_CHARACTERS + 1),
        _pack(b'{"layers": [{"kind": "dense"}]}')[:-6],  # cut off while copying
        _pack(b"[" * 10 + b"not json"),
        _pack(b" " * (builder.MAX_SPEC_BYTES * 20)),  # a small link that unpacks to a lot
        _pack(b"[" * 60_000),  # nested past what json.loads can follow
        _pack(b"9" * 5000),  # an integer past Python's 4,300 digits
        "ü" * 10,  # not base64
        12345,  # not text at all
    ],
)
def test_damaged_links_are_refused_with_a_reason(link):
    with pytest.raises(builder.LoadError) as caught:
        builder.decode_link(link)
    assert caught.value.reason == "not_link"


def test_link_to_something_that_is_not_a_network():
    with pytest.raises(builder.LoadError) as caught:
        builder.decode_link(_pack(b'{"layers": [{"kind": "magic"}]}'))
    assert caught.value.reason == "not_network"


# ----------------------------------------------------------------------------- checking


def nielsen_3() -> dict:
    return builder.to_spec(builder.editable(presets.get("nielsen-3-two-conv-pool").network))


def test_check_keeps_the_rows_before_a_shape_error():
    spec = nielsen_3()
    spec["layers"][2]["kernel_size"] = 13  # the second conv gets 12×12 maps from the first pool
    checked = builder.check(spec)
    assert not checked.valid and checked.error.layer_index == 2
    assert checked.summary.rows == networks.validate(nielsen_3()).rows[:2]


def test_check_names_the_layer_with_an_impossible_field():
    spec = nielsen_3()
    spec["layers"][0]["kernel_size"] = 40
    checked = builder.check(spec)
    assert checked.error.layer_index == 0 and checked.error.field_name == "kernel_size"
    assert checked.summary.rows == []


def test_check_without_output_layer_still_shows_every_layer():
    spec = nielsen_3()
    spec["layers"] = spec["layers"][:-1]
    checked = builder.check(spec)
    assert checked.error.layer_index == len(spec["layers"]) - 1
    assert checked.summary.rows == networks.validate(nielsen_3()).rows[:-1]


def test_check_of_an_output_layer_in_the_middle():
    spec = nielsen_3()
    spec["layers"].insert(1, {"kind": "output", "init": "default"})
    checked = builder.check(spec)
    assert checked.error.layer_index == 1
    assert [row.kind for row in checked.summary.rows] == ["conv"]


def test_check_of_a_valid_network_is_validate():
    checked = builder.check(nielsen_3())
    assert checked.valid and checked.summary.total_parameters == networks.validate(nielsen_3()).total_parameters


@pytest.mark.parametrize("size, kernel, padding, stride", [(28, 5, 0, 1), (28, 5, 2, 1), (28, 3, 1, 2), (12, 5, 0, 1), (27, 4, 1, 3), (24, 2, 0, 2)])
def test_output_size_formula_agrees_with_pytorch(size, kernel, padding, stride):
    images = torch.zeros(1, 1, size, size)
    convolved = nn.Conv2d(1, 1, kernel, stride, padding)(images)
    assert convolved.shape[-1] == builder.output_size(size, kernel, padding, stride)
    pooled = nn.MaxPool2d(kernel, stride)(images)
    assert pooled.shape[-1] == builder.output_size(size, kernel, 0, stride)


def test_layer_numbers_quote_the_validated_rows():
    spec = builder.to_spec(builder.editable(presets.get("nielsen-2-conv-pool").network))
    rows = networks.validate(spec).rows
    conv = builder.layer_numbers(spec["layers"][0], vocabulary.INPUT_SHAPE, rows[0])
    assert (conv["out"], conv["parameters"], conv["filters"], conv["kernel"]) == (24, "520", 20, 5)
    pool = builder.layer_numbers(spec["layers"][1], rows[0].output_shape, rows[1])
    assert (pool["size"], pool["window"], pool["stride"], pool["out"]) == (24, 2, 2, 12)
    dense = builder.layer_numbers(spec["layers"][2], rows[1].output_shape, rows[2])
    assert (dense["inputs"], dense["units"], dense["parameters"]) == ("2,880", 100, "288,100")


def test_shared_weights_example_matches_nielsen_chapter_6():
    # Nielsen ch. 6: 20 feature maps of 5×5 need 20 × 26 = 520 parameters; a 30-neuron dense
    # layer on 784 inputs needs 784 × 30 + 30 = 23,550, "about 40 times" (45.3) as many.
    example = builder.shared_weights_example()
    assert (example.conv_parameters, example.dense_parameters, example.ratio) == (520, 23_550, 45)
    numbers = builder.explanation_numbers()
    assert (numbers["conv_parameters"], numbers["dense_parameters"]) == ("520", "23,550")
    assert (numbers["hidden"], numbers["pooled"], numbers["padded"], numbers["strided"]) == (24, 12, 28, 12)


@pytest.mark.parametrize(
    "layers, pairs",
    [
        ([{"kind": "dense", "activation": "linear"}, {"kind": "dense"}, {"kind": "output"}], [(0, 1)]),
        ([{"kind": "dense", "activation": "linear"}, {"kind": "dropout"}, {"kind": "output"}], [(0, 2)]),
        ([{"kind": "dense", "activation": "linear"}, {"kind": "activation", "activation": "relu"}, {"kind": "output"}], []),
        ([{"kind": "conv", "activation": "linear"}, {"kind": "maxpool"}, {"kind": "output"}], []),
        ([{"kind": "conv", "activation": "linear"}, {"kind": "avgpool"}, {"kind": "output"}], [(0, 2)]),
        ([{"kind": "dense", "activation": "relu"}, {"kind": "output"}], []),
    ],
)
def test_linear_neighbours(layers, pairs):
    assert builder.linear_neighbours(layers) == pairs


def test_linear_neighbours_really_are_one_linear_map():
    # The warning's claim, checked: two dense layers without an activation equal one linear layer.
    spec = {"layers": [{"kind": "dense", "units": 16, "activation": "linear"}, {"kind": "output"}], "normalize": False}
    model = networks.build(spec, seed=0)
    first, second = model[1][1], model[2][0]  # block 1 is (flatten, linear, identity); block 2 is (linear)
    combined_weight = second.weight @ first.weight
    combined_bias = second.weight @ first.bias + second.bias
    images = torch.rand(4, 1, 28, 28)
    expected = images.flatten(1) @ combined_weight.T + combined_bias
    torch.testing.assert_close(model(images), expected, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- a layer that fits (issue 8)


@pytest.mark.parametrize(
    "stack, offered",
    [
        (("dense", "output"), "dense"),  # an MLP: the output's input is a vector
        (("output",), "conv"),  # logistic regression: the output still sees the image
        (("conv", "maxpool", "output"), "conv"),
        (("conv", "maxpool", "flatten", "output"), "dense"),
        (("conv", "maxpool", "dense", "output"), "dense"),
        ((), "output"),  # an empty network needs its output layer first
        (("conv", "dense"), "output"),
    ],
)
def test_add_layer_offers_a_kind_that_fits_before_the_output(stack, offered):
    layers = working(*stack)
    assert builder.fitting_kind(layers) == offered
    added = builder.insert_layer(layers, offered)
    if stack and stack[-1] == "output" or not stack:
        assert builder.check({"layers": added}).valid, f"{offered} inserted into {stack} must still validate"


def test_every_preset_stays_valid_after_adding_the_offered_layer():
    for name in PRESET_NAMES:
        layers = builder.editable(presets.get(name).network)["layers"]
        added = builder.insert_layer(layers, builder.fitting_kind(layers))
        assert builder.check({"layers": added}).valid, name


def test_image_layers_go_among_the_image_layers_even_in_an_mlp_tail():
    # A conv layer asked for in a conv-then-dense network goes before the dense layer, where its input is an image.
    layers = working("conv", "maxpool", "dense", "output")
    assert kinds(builder.insert_layer(layers, "conv")) == ["conv", "maxpool", "conv", "dense", "output"]
    assert kinds(builder.insert_layer(working("dense", "output"), "maxpool")) == ["maxpool", "dense", "output"]
    assert builder.insertion_position(layers, "dropout") == 3


# ----------------------------------------------------------------------------- is it still the preset?


def test_a_preset_stays_itself_until_it_is_edited():
    network = presets.get("nielsen-1-shallow").network
    work = builder.editable(network)
    assert builder.unedited_preset(builder.to_spec(work), "nielsen-1-shallow") == "nielsen-1-shallow"
    # A name does not make another network.
    assert builder.unedited_preset({**builder.to_spec(work), "name": "mine"}, "nielsen-1-shallow") == "nielsen-1-shallow"
    work["layers"][0] = builder.update_field(work["layers"][0], "units", 31)
    assert builder.unedited_preset(builder.to_spec(work), "nielsen-1-shallow") is None
    assert builder.unedited_preset(builder.to_spec(builder.editable(network)), "lenet-5") is None
    assert builder.unedited_preset(builder.to_spec(work), None) is None
    assert builder.unedited_preset(builder.to_spec(work), "no-such-preset") is None


def test_layer_labels_read_in_the_pages_language():
    conv = {**vocabulary.default_layer("conv"), "stride": 2, "padding": 1, "activation": "sigmoid"}
    assert builder.layer_label(conv) == "20 × 5×5, stride 2, pad 1, sigmoid"
    assert builder.layer_label(conv, "ko") == "20 × 5×5, 스트라이드 2, 패딩 1, 시그모이드"
    assert builder.layer_label({"kind": "output", "init": "zeros"}, "ko") == "소프트맥스 10"
    for preset in presets.all_presets().values():  # no English word in a Korean label, outside the activations' (name)
        for layer in vocabulary.normalize_spec(preset.network)["layers"]:
            korean = builder.layer_label(layer, "ko")
            if "activation" in layer:  # the catalog's own name for it (ReLU is ReLU in Korean classrooms too)
                korean = korean.replace(i18n.translate("ko", f"build.activation_short.{layer['activation']}"), "")
            assert not re.search(r"[A-Za-z]{2,}", korean), (preset.name, korean)
