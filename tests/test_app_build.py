"""The Build page in a simulated browser session: presets, editing, errors, languages, links and files."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.model import network as networks
from core.training import presets
from core.views import builder_state as builder
from core.views import i18n

APP = str(Path(__file__).resolve().parent.parent / "app.py")
CARD_TITLES = {"conv": "Convolution", "avgpool": "Average pooling", "maxpool": "Max-pooling", "dense": "Dense", "dropout": "Dropout",
               "output": "Output (softmax)"}


@pytest.fixture
def app(runs_dir) -> AppTest:
    """The app on its default page (Build), with an empty runs directory (see conftest.runs_dir)."""
    import streamlit as st

    st.cache_resource.clear()  # `service()` is cached per process: make it (and so the drafts) use this test's runs directory.
    return AppTest.from_file(APP, default_timeout=30)


def total_shown(at: AppTest) -> str | None:
    metrics = [metric.value for metric in at.metric if metric.label in ("Parameters to learn", "학습할 파라미터 수")]
    return metrics[0] if metrics else None


def page_text(at: AppTest) -> str:
    parts = [element.value for kind in ("title", "markdown", "caption", "error", "info", "warning") for element in getattr(at, kind)]
    return "\n".join(str(part) for part in parts)


def button(at: AppTest, label: str, key: str | None = None):
    if key is not None:
        return at.button(key=key)
    return next(widget for widget in at.button if widget.label == label)


def layers(at: AppTest) -> list[dict]:
    return at.session_state["build_work"]["layers"]


def load_preset(at: AppTest, name: str) -> AppTest:
    """Choosing a preset loads it: no separate Load click (issue 8)."""
    return at.selectbox(key="build_start").set_value(name).run()


def add_kind_box(at: AppTest):
    """The "Add layer" kind selectbox; its key names the kind it offers first."""
    return next(box for box in at.selectbox if str(box.key).startswith("build_add_kind"))


def test_build_page_loads_with_the_default_network(app):
    app.run()
    assert not app.exception
    assert app.title[0].value == "Build a network"
    network = presets.get("nielsen-2-conv-pool").network
    assert total_shown(app) == f"{networks.validate(network).total_parameters:,}"
    assert app.session_state["preset"] == "nielsen-2-conv-pool"
    assert app.session_state["network"] == builder.to_spec(builder.editable(network))


@pytest.mark.parametrize("name", ["lenet-5", "nielsen-7-dropout", "logistic-regression"])
def test_a_preset_shows_its_layers_and_the_total_that_core_computes(app, name):
    load_preset(app.run(), name)
    assert not app.exception and not app.error
    network = presets.get(name).network
    assert total_shown(app) == f"{networks.validate(network).total_parameters:,}"
    assert [layer["kind"] for layer in layers(app)] == [layer["kind"] for layer in network["layers"]]
    text = page_text(app)
    for index, layer in enumerate(network["layers"]):
        assert f"**{index + 1}. {CARD_TITLES[layer['kind']]}" in text
    table = app.dataframe[0].value
    assert list(table["Parameters"])[-1] == f"{networks.validate(network).total_parameters:,}"
    assert app.session_state["preset"] == name and presets.get(name).title in text


def test_an_impossible_kernel_shows_the_error_on_that_layer(app):
    load_preset(app.run(), "nielsen-3-two-conv-pool")
    first_conv = layers(app)[0]["uid"]
    app.number_input(key=f"build-{first_conv}-kernel_size").set_value(40).run()
    assert not app.exception
    errors = [error.value for error in app.error]
    assert len(errors) == 2, "one on top of the table, one inside the layer's card"
    assert all("Layer 1 (conv): Kernel size f is 40" in error for error in errors)
    assert any(error.startswith("Layer 1 (Convolution") for error in errors), "on top: which layer"
    assert any(error.startswith("This layer has a problem") for error in errors), "in the card"
    assert total_shown(app) is None
    assert app.session_state["network"]["layers"][0]["kernel_size"] == 40


def test_a_kernel_too_big_for_its_input_keeps_the_valid_rows(app):
    load_preset(app.run(), "nielsen-3-two-conv-pool")
    second_conv = layers(app)[2]["uid"]
    app.number_input(key=f"build-{second_conv}-kernel_size").set_value(13).run()
    assert not app.exception
    assert any("Layer 3 (Convolution" in error.value and "12×12" in error.value for error in app.error)
    table = app.dataframe[0].value
    assert list(table["Output shape"]) == ["1 × 28 × 28", "20 × 24 × 24", "20 × 12 × 12"]
    app.number_input(key=f"build-{second_conv}-kernel_size").set_value(5).run()
    assert not app.error and total_shown(app) == f"{networks.validate(presets.get('nielsen-3-two-conv-pool').network).total_parameters:,}"


def test_add_move_and_remove_layers(app):
    load_preset(app.run(), "nielsen-1-shallow")
    add_kind_box(app).set_value("dropout")
    button(app, "Add layer").click().run()
    assert [layer["kind"] for layer in layers(app)] == ["dense", "dropout", "output"]
    dropout = layers(app)[1]["uid"]
    button(app, "↑", key=f"build-{dropout}-up").click().run()
    assert [layer["kind"] for layer in layers(app)] == ["dropout", "dense", "output"]
    # The dropout layer's widget follows it: a value typed before the move is still there.
    app.number_input(key=f"build-{dropout}-p").set_value(0.3).run()
    button(app, "↓", key=f"build-{dropout}-down").click().run()
    assert [(layer["kind"], layer.get("p")) for layer in layers(app)] == [("dense", None), ("dropout", 0.3), ("output", None)]
    button(app, "✕", key=f"build-{dropout}-remove").click().run()
    assert [layer["kind"] for layer in layers(app)] == ["dense", "output"]
    assert not app.exception and not app.error
    assert app.session_state["network"] == builder.to_spec(builder.editable(presets.get("nielsen-1-shallow").network))


def test_removing_the_output_layer_explains_what_is_missing(app):
    load_preset(app.run(), "nielsen-1-shallow")
    output = layers(app)[-1]["uid"]
    button(app, "✕", key=f"build-{output}-remove").click().run()
    assert not app.exception
    assert any("no output layer" in error.value for error in app.error)


def test_an_empty_network_says_how_to_start(app):
    load_preset(app.run(), "")
    assert not app.exception and not app.error
    assert layers(app) == [] and app.info


def test_switching_to_korean_shows_korean_text(app):
    app.run()
    app.sidebar.radio(key="language_choice").set_value("ko").run()
    assert not app.exception
    assert app.title[0].value == "신경망 만들기"
    assert total_shown(app) is not None
    assert "합성곱(convolution)" in page_text(app)
    assert app.query_params.get("lang") == "ko"


def test_a_link_restores_its_network(runs_dir):
    spec = builder.to_spec(builder.editable(presets.get("lenet-5").network))
    spec["layers"][2]["filters"] = 12
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["net"] = builder.encode_link(spec)
    at.query_params["lang"] = "ko"
    at.run()
    assert not at.exception and not at.error
    assert at.session_state["network"] == spec and at.session_state["preset"] is None
    assert total_shown(at) == f"{networks.validate(spec).total_parameters:,}"
    assert at.title[0].value == "신경망 만들기"
    # The page's own share link opens the same network.
    link = at.code[0].value
    assert builder.to_spec(builder.decode_link(link.split("net=")[1].split("&")[0])) == spec


def test_a_broken_link_explains_and_falls_back(runs_dir):
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["net"] = "eNqrVkrOTszLS1GyUlBKTSxSqgUAKH8F"[:-5]
    at.run()
    assert not at.exception
    assert any("The shared link could not be opened" in error.value for error in at.error)
    assert at.session_state["preset"] == "nielsen-2-conv-pool"


def _pack(text: str) -> str:
    """A link the way encode_link makes one, around any text."""
    return base64.urlsafe_b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii").rstrip("=")


# JSON that once raised past our errors (TypeError, RecursionError, ValueError) or took long.
HOSTILE_JSON = {
    "unhashable-kind": '{"layers": [{"kind": []}, {"kind": "output"}]}',
    "unhashable-kind-bare-list": '[{"kind": {}}]',
    "nested-100000-deep": "[" * 100_000 + "]" * 100_000,
    "5000-digit-integer": '{"layers": [{"kind": "dense", "units": ' + "7" * 5000 + '}, {"kind": "output"}]}',
    "4000-digit-integer": '{"layers": [{"kind": "dense", "units": ' + "7" * 4000 + '}, {"kind": "output"}]}',
    "20000-layers": json.dumps([0] * 20_000),
    "name-a-list": '{"layers": [{"kind": "output"}], "name": [[["x"]]]}',
    "name-a-huge-number": '{"layers": [{"kind": "output"}], "name": ' + "9" * 3000 + "}",
}


@pytest.mark.parametrize("text", HOSTILE_JSON.values(), ids=HOSTILE_JSON.keys())
def test_a_hostile_link_explains_and_falls_back_on_every_rerun(runs_dir, text):
    link = _pack(text)
    assert len(link) <= builder.MAX_LINK_CHARACTERS, "small enough that the page reads it"
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["net"] = link
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    assert any(error.value.startswith(i18n.translate("en", "build.link_error")) for error in at.error)
    assert at.session_state["preset"] == "nielsen-2-conv-pool"
    assert total_shown(at) == f"{networks.validate(presets.get('nielsen-2-conv-pool').network).total_parameters:,}"
    at.run()  # The session keeps working: no traceback, and the message is not repeated.
    assert not at.exception and not at.error


def test_the_address_bar_follows_the_network(app):
    load_preset(app.run(), "lenet-5")
    assert builder.decode_link(app.query_params["net"]) == builder.check_editable(presets.get("lenet-5").network)


def test_a_network_set_by_another_page_is_shown(app):
    # The Runs page sets st.session_state.network and switches here to reload a run's network.
    app.run()
    spec = builder.to_spec(builder.editable(presets.get("pytorch-examples-mnist").network))
    app.session_state["network"] = spec
    app.session_state["preset"] = "pytorch-examples-mnist"
    app.run()
    assert not app.exception
    assert total_shown(app) == f"{networks.validate(spec).total_parameters:,}"
    assert [layer["kind"] for layer in layers(app)] == [layer["kind"] for layer in spec["layers"]]


def test_loading_a_json_file(app):
    app.run()
    spec = builder.to_spec(builder.editable(presets.get("lenet-5").network))
    app.file_uploader(key="build_upload").set_value(("mine.json", builder.spec_to_json(spec).encode(), "application/json")).run()
    assert not app.exception and not app.error
    assert app.session_state["network"] == spec
    assert total_shown(app) == f"{networks.validate(spec).total_parameters:,}"
    assert any("mine.json" in message.value for message in app.success)


@pytest.mark.parametrize(
    "content, words",
    [
        (b"{not json", "not valid JSON"),
        (json.dumps({"layers": [{"kind": "magic"}]}).encode(), "unknown kind 'magic'"),
        (HOSTILE_JSON["unhashable-kind"].encode(), "unknown kind []"),
        (HOSTILE_JSON["nested-100000-deep"].encode(), "too deeply"),
        (HOSTILE_JSON["5000-digit-integer"].encode(), "thousands of digits"),
        (HOSTILE_JSON["4000-digit-integer"].encode(), "far more than its maximum"),
        (json.dumps({"layers": [{"kind": "dense"}] * 20_000}).encode(), "at most 100"),
        (HOSTILE_JSON["name-a-list"].encode(), "name must be text"),
    ],
    ids=["not-json", "unknown-kind", "unhashable-kind", "nested", "5000-digits", "4000-digits", "20000-layers", "name-a-list"],
)
def test_a_bad_json_file_shows_why(app, content, words):
    app.run()
    before = app.session_state["network"]
    app.file_uploader(key="build_upload").set_value(("bad.json", content, "application/json")).run()
    assert not app.exception
    assert any(words in error.value for error in app.error), [error.value for error in app.error]
    reasons = ("not_json", "not_network")
    assert any(error.value.startswith(tuple(i18n.translate("en", f"build.load_error.{reason}") for reason in reasons)) for error in app.error)
    assert app.session_state["network"] == before


def test_save_offers_the_network_as_json(app):
    app.run()
    assert app.download_button[0].label == "Save as JSON"
    network = app.session_state["network"]
    assert builder.to_spec(builder.spec_from_json(builder.spec_to_json(network))) == network


# ----------------------------------------------------------------------------- a refresh keeps everything (issue 8)


def restart_with(query: dict, page: str | None = None) -> AppTest:
    """A new browser session with `query` in its address, as after F5; the cleared caches also stand for a server restart."""
    import streamlit as st

    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=30)
    for name, value in query.items():
        at.query_params[name] = value
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def choose(at: AppTest, language: str, owner: str) -> AppTest:
    """What the sidebar's language switch and name box set (AppTest drops the sidebar's widgets after a session's first run)."""
    at.session_state["language"], at.session_state["owner"] = language, owner
    return at.run()


def test_a_refresh_brings_back_the_edited_network_language_and_name(app):
    load_preset(app.run(), "nielsen-3-two-conv-pool")
    choose(app, "ko", "민지")
    conv = layers(app)[0]["uid"]
    app.number_input(key=f"build-{conv}-filters").set_value(7).run()
    edited = app.session_state["network"]
    query = dict(app.query_params)
    assert query["lang"] == "ko" and query["owner"] == "민지" and query["draft"], query
    # Without ?net= (the address of another page): the draft alone brings the network back.
    at = restart_with({name: query[name] for name in ("lang", "owner", "draft")})
    assert at.session_state["network"] == edited
    assert at.session_state["preset"] == "nielsen-3-two-conv-pool", "the preset it was edited from"
    assert at.title[0].value == "신경망 만들기" and at.sidebar.text_input[0].value == "민지"
    assert at.session_state["owner"] == "민지" and at.session_state["language"] == "ko"
    assert at.number_input(key=f"build-{layers(at)[0]['uid']}-filters").value == 7


def test_the_draft_alone_restores_language_and_name(app):
    choose(app.run(), "ko", "Jun")
    at = restart_with({"draft": app.query_params["draft"]})
    assert at.session_state["language"] == "ko" and at.session_state["owner"] == "Jun"


def test_language_name_and_draft_stay_in_the_address_on_every_page(app):
    choose(app.run(), "ko", "민지")
    draft = app.query_params["draft"]
    for page in ("pages/train.py", "pages/runs.py", "pages/build.py"):
        for name in list(app.query_params):
            del app.query_params[name]  # Streamlit's navigation drops the query string on a page switch
        app.switch_page(page).run()
        assert not app.exception
        assert (app.query_params.get("lang"), app.query_params.get("owner"), app.query_params.get("draft")) == ("ko", "민지", draft), page


def test_a_made_up_draft_key_is_replaced_not_used(app):
    app.query_params["draft"] = "../../../etc"
    app.run()
    assert not app.exception
    assert app.query_params["draft"] != "../../../etc" and len(app.query_params["draft"]) >= 8


# ----------------------------------------------------------------------------- a guided start (issue 8)


def test_the_first_visit_guide_and_name_prompt(app):
    app.run()
    text = page_text(app)
    assert i18n.translate("en", "guide.title") in text
    assert any(i18n.translate("en", "sidebar.owner_prompt") == caption.value for caption in app.sidebar.caption)
    app.button(key="guide_dismiss").click().run()
    assert i18n.translate("en", "guide.title") not in page_text(app)
    # Remembered per browser: the same draft key after a refresh shows no guide.
    at = restart_with({"draft": app.query_params["draft"]})
    assert i18n.translate("en", "guide.title") not in page_text(at)
    fresh = restart_with({})
    assert i18n.translate("en", "guide.title") in page_text(fresh), "another browser still gets it"


def test_the_guide_speaks_korean(app):
    app.query_params["lang"] = "ko"
    app.run()
    assert i18n.translate("ko", "guide.title") in page_text(app)
    assert i18n.translate("ko", "guide.dismiss") == app.button(key="guide_dismiss").label


def test_choosing_a_preset_loads_it_without_a_load_button(app):
    app.run()
    assert not [widget for widget in app.button if widget.label in ("Load", "불러오기")]
    app.selectbox(key="build_start").set_value("lenet-5").run()
    assert app.session_state["preset"] == "lenet-5"
    assert total_shown(app) == f"{networks.validate(presets.get('lenet-5').network).total_parameters:,}"


@pytest.mark.parametrize("preset, kind", [("nielsen-1-shallow", "dense"), ("logistic-regression", "conv"), ("nielsen-2-conv-pool", "dense")])
def test_add_layer_inserts_a_kind_that_fits(app, preset, kind):
    load_preset(app.run(), preset)
    assert add_kind_box(app).value == kind
    before = len(layers(app))
    button(app, "Add layer").click().run()
    assert len(layers(app)) == before + 1 and layers(app)[-2]["kind"] == kind
    assert not app.exception and not app.error, [error.value for error in app.error]


def test_a_preset_caption_goes_once_the_network_is_edited(app):
    load_preset(app.run(), "nielsen-1-shallow")
    description = presets.get("nielsen-1-shallow").title
    assert description in page_text(app)
    dense = layers(app)[0]["uid"]
    app.number_input(key=f"build-{dense}-units").set_value(31).run()
    text = page_text(app)
    assert description not in text.replace(i18n.translate("en", "build.preset_edited", preset=description), "")
    assert i18n.translate("en", "build.preset_edited", preset=i18n.translate("en", "build.preset.nielsen-1-shallow.title")) in text
    app.button(key="build_reload").click().run()
    assert app.session_state["network"] == builder.to_spec(builder.editable(presets.get("nielsen-1-shallow").network))
    assert description in page_text(app)
