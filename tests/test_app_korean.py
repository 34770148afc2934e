"""A Korean classroom's pages in a simulated browser: an impossible network on Build, and a diverged and
a cancelled run on Train, are explained in Korean, with no English sentence anywhere on the page."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.errors import Message, counted
from core.jobs.store import RunStore
from core.training.presets import get as get_preset
from core.views import builder_state as builder
from tests.message_checks import HANGUL, english_sentences

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TEXT_KINDS = ("title", "subheader", "markdown", "caption", "info", "error", "warning", "success")


@pytest.fixture
def app_store(runs_dir) -> RunStore:
    """A fresh runs directory that the app's cached job service also uses."""
    st.cache_resource.clear()
    st.cache_data.clear()
    yield RunStore(runs_dir)
    st.cache_resource.clear()


def shown_texts(at: AppTest) -> list[str]:
    return [str(element.value) for kind in TEXT_KINDS for element in at.get(kind)]


def assert_no_english_sentence(at: AppTest) -> None:
    english = {text: english_sentences(text) for text in shown_texts(at) if english_sentences(text)}
    assert not english, english


def korean_page(page: str | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["lang"] = "ko"
    for name, value in query.items():
        at.query_params[name] = value
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


@pytest.mark.parametrize(
    "layers",
    [
        [{"kind": "maxpool", "size": 2}, {"kind": "conv", "filters": 8, "kernel_size": 15}, {"kind": "output"}],  # kernel larger than its input
        [{"kind": "conv", "filters": 8, "kernel_size": 29}, {"kind": "output"}],  # above the field's maximum
        [{"kind": "dense", "units": 10}, {"kind": "conv", "filters": 8, "kernel_size": 3}, {"kind": "output"}],  # an image layer after dense
        [{"kind": "dense", "units": 30}, {"kind": "dense", "units": 20}],  # no output layer
    ],
    ids=["kernel-too-big", "kernel-above-maximum", "conv-after-dense", "no-output"],
)
def test_korean_build_page_explains_an_impossible_stack_in_korean(runs_dir, layers):
    at = korean_page(net=builder.encode_link({"layers": layers, "normalize": True}))
    errors = [element.value for element in at.error]
    assert errors, "the impossible network shows no error"
    assert all(HANGUL.search(error) for error in errors), errors
    assert_no_english_sentence(at)


def test_korean_build_page_explains_a_broken_link_in_korean(runs_dir):
    at = korean_page(net="bm90IHpsaWIgYXQgYWxs")  # base64 of "not zlib at all"
    assert any("링크" in error.value for error in at.error)
    assert not any("decompress" in error.value or "Error -3" in error.value for error in at.error)
    assert_no_english_sentence(at)


@pytest.mark.parametrize(
    "status, message",
    [
        ("diverged", Message("run.diverged", {"loss": "nan", "epoch": 1, "step": 3, "rate": "100", "suggested": "10"})),
        ("cancelled", counted("run.cancelled_during", 1, epoch=2)),
        ("cancelled", counted("run.cancelled_during", 0, epoch=1)),
        ("interrupted", counted("run.process_stopped", 2)),
    ],
    ids=["diverged", "cancelled-one-kept", "cancelled-none-kept", "interrupted"],
)
def test_korean_train_page_explains_a_stopped_run_in_korean(app_store, status, message):
    preset = get_preset("logistic-regression")
    run_id = app_store.create(preset.network, preset.train_settings(learning_rate=100.0).to_dict(), owner="ada", status=status)
    app_store.update(run_id, message=message, finished_at=time.time(), epochs_done=message.params.get("count", 0))
    at = korean_page("pages/train.py", run=str(run_id))
    outcome = [element.value for element in (*at.error, *at.warning) if message.render("ko") in element.value]
    assert outcome, [element.value for element in (*at.error, *at.warning)]
    assert_no_english_sentence(at)


def test_korean_train_page_explains_an_invalid_network_in_korean(app_store):
    at = korean_page("pages/train.py", net=builder.encode_link({"layers": [{"kind": "conv", "kernel_size": 29}, {"kind": "output"}]}))
    assert any("커널 크기 f" in error.value for error in at.error), [error.value for error in at.error]
    assert_no_english_sentence(at)


def test_korean_train_page_names_the_device_in_korean(app_store):
    at = korean_page("pages/train.py")
    assert not any("threads" in caption.value for caption in at.sidebar.caption)
