"""AppTest tests of the Draw page: it asks for a run when there is none; a drawing shows the digit and the
probabilities that core computes for it and leaves it in session state; a blank one gets a message; a
drawing can be saved to "my digits" on disk; clear and undo reload the canvas; Korean shows Korean.

In AppTest the canvas is an unknown element: a drawing is injected as the value the component
would send (its strokes and a PNG data URL) under its session-state key.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.drawing import classify, digits, preprocess, synthetic
from core.jobs import access, runner
from core.jobs.store import RunStore
from core.training import checkpoint
from core.training.presets import get as get_preset
from core.views import i18n

APP = str(Path(__file__).resolve().parent.parent / "app.py")
CANVAS_KEY = "draw.canvas"
STROKE = {"type": "path", "path": [["M", 140, 40], ["L", 140, 240]]}


def en(key: str, **values) -> str:
    return i18n.translate("en", key, **values)


@pytest.fixture
def app_store(runs_dir) -> RunStore:
    st.cache_resource.clear()  # `service()` and the models are cached per process; use this test's runs directory.
    st.cache_data.clear()
    yield RunStore(runs_dir)
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def finished_run(app_store) -> int:
    """A short logistic-regression run, trained and saved the way a worker does (its accuracy does not matter here)."""
    preset = get_preset("logistic-regression")
    settings = preset.train_settings(epochs=1, train_subset=3000, device="cpu", eval_batch_size=2000)
    run_id = app_store.create(preset.network, settings.to_dict(), name="logistic", owner="test")
    assert runner.execute(app_store, run_id) == "succeeded"
    return run_id


def canvas_value(image: np.ndarray, strokes: list[dict]) -> dict:
    """What the canvas component sends after a stroke: the Fabric.js objects and the canvas as a PNG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"drawing": {"raw": {"objects": strokes}, "data": url}, "backgroundFit": None}


DRAW_KEY = access.new_key()
KIM = access.key_hash(DRAW_KEY)  # whose "my digits" the page keeps: the browser's key, not the typed name


def open_draw(language: str = "en", **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["key"] = DRAW_KEY
    at.session_state["owner"] = "kim"
    at.run()
    at.session_state["language"] = language
    for name, value in state.items():
        at.session_state[name] = value
    at.switch_page("pages/draw.py")
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def draw(at: AppTest, image: np.ndarray, strokes: list[dict] | None = None) -> AppTest:
    at.session_state[CANVAS_KEY] = canvas_value(image, strokes or [STROKE])
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def metric(at: AppTest, label: str) -> str | None:
    return next((element.value for element in at.metric if element.label == label), None)


def test_without_a_finished_run_the_page_asks_to_train_first(app_store):
    at = open_draw()
    assert at.title[0].value == en("draw.title")
    assert [element.value for element in at.info] == [en("draw.no_runs")]


def test_a_drawing_shows_the_digit_and_probabilities_core_computes(app_store, finished_run, mnist):
    at = open_draw()
    assert en("draw.start") in [element.value for element in at.info]
    canvas = synthetic.as_drawn(mnist.test_images[0].numpy(), np.random.default_rng(3))
    draw(at, canvas)
    model, _, _ = checkpoint.load(app_store.best_checkpoint_path(finished_run))
    prepared = preprocess.prepare(canvas)
    probabilities = classify.probabilities(model, prepared.image)
    digit = int(probabilities.argmax())
    assert metric(at, en("draw.prediction")) == str(digit)
    assert en("draw.confidence", percent=f"{probabilities[digit]:.1%}") in [element.value for element in at.caption]
    assert np.array_equal(at.session_state["drawing"], prepared.image)  # for the inspect and attack pages
    charts = at.get("plotly_chart")
    assert any('"type":"bar"' in chart.proto.spec.replace(" ", "") for chart in charts)


def test_a_blank_drawing_gets_a_message_not_a_guess(app_store, finished_run):
    at = open_draw()
    draw(at, np.full((280, 280, 4), 255, dtype=np.uint8))
    assert metric(at, en("draw.prediction")) is None
    assert any("empty" in element.value for element in at.warning)
    assert "drawing" not in at.session_state


def test_saving_a_drawing_puts_it_in_my_digits_on_disk(app_store, finished_run, mnist):
    at = open_draw()
    canvas = synthetic.as_drawn(mnist.test_images[0].numpy(), np.random.default_rng(4))
    draw(at, canvas)
    assert metric(at, en("draw.my_digits_count")) == "0"
    guess = metric(at, en("draw.prediction"))
    label = at.selectbox(key=f"draw.true_label.{guess}")
    assert label.value == int(guess)  # the guess is offered as the label
    label.set_value(7)
    at.button(key="draw.save").click()
    at.run()
    assert not at.exception
    saved = digits.DigitSet(app_store.directory, KIM)
    images, labels = saved.tensors()
    assert labels.tolist() == [7]
    assert np.array_equal(images[0].numpy(), preprocess.prepare(canvas).image)
    assert metric(at, en("draw.my_digits_count")) == "1"
    assert any('"type":"heatmap"' in chart.proto.spec.replace(" ", "") for chart in at.get("plotly_chart"))  # the run on my digits


def test_clear_and_undo_reload_the_canvas_with_fewer_strokes(app_store, finished_run, mnist):
    at = open_draw()
    second = {"type": "path", "path": [["M", 80, 60], ["L", 200, 60]]}
    draw(at, synthetic.as_drawn(mnist.test_images[0].numpy(), np.random.default_rng(5)), [STROKE, second])
    at.button(key="draw.undo").click()
    at.run()
    assert at.session_state[f"{CANVAS_KEY}.initial"]["objects"] == [STROKE]
    at.button(key="draw.clear").click()
    at.run()
    initial = at.session_state[f"{CANVAS_KEY}.initial"]
    assert initial["objects"] == [] and initial["revision"] == 2


def test_the_page_in_korean(app_store, finished_run):
    at = open_draw("ko")
    assert at.title[0].value == "숫자 그리기"
    assert {button.label for button in at.button} >= {"지우기", "되돌리기"}
    assert at.slider(key="draw.pen_width").label == "펜 굵기"
    assert "내 숫자" in [element.value for element in at.subheader]


@pytest.mark.parametrize("view", ["activations", "attribution"])
def test_a_drawing_opens_in_inspect_for_the_run_that_classified_it(app_store, finished_run, mnist, view):
    at = open_draw()
    canvas = synthetic.as_drawn(mnist.test_images[0].numpy(), np.random.default_rng(3))
    draw(at, canvas)
    at.button(key=f"draw.open_{view}").click().run()
    assert not at.exception, [error.value for error in at.exception]
    assert at.session_state["selected_run"] == finished_run
    assert at.session_state["inspect.view"] == view and at.session_state["inspect.pick"] == "drawing"
    assert at.title[0].value == en("inspect.title")  # the Inspect page, showing the drawing
    assert at.radio(key="inspect.pick").value == "drawing"
    assert np.array_equal(at.session_state["drawing"], preprocess.prepare(canvas).image)
