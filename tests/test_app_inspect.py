"""AppTest tests of the Inspect page: with no run it says how to pick one; with a trained run each view
shows what the probes compute (filters, a confusion cell's exact images, a mistake opened in
Activations), and Korean shows Korean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from core.jobs.store import RunStore
from core.probes import mistakes
from core.views import i18n, inspection
from tests.inspect_support import train_run

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    directory = tmp_path_factory.mktemp("app-inspect-runs")
    store = RunStore(directory)
    return store, train_run(store)


@pytest.fixture
def app_runs(trained, monkeypatch):
    store, run_id = trained
    monkeypatch.setenv("LAYERLAB_RUNS", str(store.directory))
    st.cache_resource.clear()  # the page's job service and loaded models are cached per process
    yield store, run_id
    st.cache_resource.clear()


def open_inspect(run_id: int | None, language: str = "en", view: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["selected_run"] = run_id
    at.run()
    at.session_state["language"] = language
    if view:
        at.session_state["inspect.view"] = view
    at.switch_page("pages/inspect.py")
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def texts(at: AppTest) -> str:
    kinds = ("title", "markdown", "caption", "info", "warning")
    return "\n".join(str(element.value) for kind in kinds for element in at.get(kind))


def test_without_a_run_the_page_says_how_to_pick_one(app_runs):
    at = open_inspect(None)
    assert at.info[0].value == i18n.translate("en", "inspect.no_run")


def test_filters_show_one_tile_per_filter_of_the_chosen_layer(app_runs):
    store, run_id = app_runs
    at = open_inspect(run_id)
    assert i18n.translate("en", "inspect.filters.caption", count=16, layer=1, description="conv 16 × 5×5, relu", epoch=2) in texts(at)
    assert at.select_slider(key="inspect.epoch").options == ["0", "1", "2"]  # the engine keeps the initial weights as epoch 0
    at.select_slider(key="inspect.epoch").set_value(1).run()
    assert i18n.translate("en", "inspect.filters.caption", count=16, layer=1, description="conv 16 × 5×5, relu", epoch=1) in texts(at)
    assert (store.run_directory(run_id) / inspection.CACHE_FOLDER / "top_patches_epoch_001_layer0.npz").is_file()


def test_a_confusion_cell_shows_exactly_its_images_and_a_mistake_opens_in_activations(app_runs):
    store, run_id = app_runs
    predictions = inspection.test_predictions(inspection.load_run(store, run_id))
    matrix = mistakes.confusion(predictions)
    off_diagonal = matrix - np.diag(matrix.diagonal())
    true_class, predicted_class = np.unravel_index(off_diagonal.argmax(), matrix.shape)
    at = open_inspect(run_id, view="mistakes")
    at.selectbox(key="inspect.true_class").set_value(int(true_class))
    at.selectbox(key="inspect.predicted_class").set_value(int(predicted_class)).run()
    expected = mistakes.cell(predictions, true_class, predicted_class)
    heading = i18n.translate("en", "inspect.mistakes.cell", label=str(true_class), prediction=str(predicted_class), count=len(expected))
    assert heading in texts(at)
    shown = [int(button.key.rsplit(".", 1)[1]) for button in at.button if button.key and button.key.startswith("inspect.open.")]
    # The gallery's columns are read column by column; the first tile is the most confident.
    assert sorted(shown) == sorted(expected[:40].tolist()) and shown[0] == expected[0]
    at.button(key=f"inspect.open.{shown[0]}").click().run()
    assert not at.exception
    assert at.session_state["inspect.view"] == "activations" and at.number_input(key="inspect.image_input").value == shown[0]
    caption = i18n.translate(
        "en", "inspect.image.caption", index=shown[0], label=str(true_class), prediction=str(predicted_class),
        confidence=f"{predictions.confidence[shown[0]] * 100:.2f}%",
    )  # fmt: skip
    assert caption in texts(at)
    assert len(at.get("plotly_chart")) >= 1 + 5  # the probabilities and one chart per layer


def open_with_drawing(run_id: int, view: str, drawing: np.ndarray) -> AppTest:
    """The Inspect page as the Draw page's buttons open it: the drawing in session state, picked as the source."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["selected_run"] = run_id
    at.run()
    at.session_state["drawing"] = drawing
    at.session_state["inspect.view"], at.session_state["inspect.pick"] = view, "drawing"
    at.switch_page("pages/inspect.py")
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def test_the_users_drawing_is_a_source_of_activations_and_attribution(app_runs):
    store, run_id = app_runs
    loaded = inspection.load_run(store, run_id)
    drawing = loaded.splits.test_images[7].numpy().T.copy()  # a 28×28 uint8 digit that is not any test image
    at = open_with_drawing(run_id, "activations", drawing)
    with torch.no_grad():  # the authority: a plain forward pass of the drawing, in [0, 1]
        direct = torch.softmax(loaded.model(torch.as_tensor(drawing).float().div(255).view(1, 1, 28, 28)), dim=1)[0]
    predicted = int(direct.argmax())
    caption = i18n.translate("en", "inspect.image.drawing_caption", prediction=str(predicted), confidence=f"{float(direct[predicted]) * 100:.2f}%")
    assert caption in texts(at)
    assert len(at.get("plotly_chart")) >= 1 + len(loaded.spec["layers"]) - 1  # the probabilities and the layers' outputs

    at = open_with_drawing(run_id, "attribution", drawing)
    assert at.radio(key="inspect.attribution_target").options == [f"{i18n.translate('en', 'inspect.plot.predicted')}: {predicted}"]  # no true class


@pytest.mark.parametrize("view", ["attribution", "ensembles", "diagnostics"])
def test_the_other_views_draw_without_errors(app_runs, view):
    _, run_id = app_runs
    at = open_inspect(run_id, view=view)
    if view == "ensembles":
        assert at.multiselect(key="inspect.ensemble_members").value == [run_id]
        assert at.metric[0].value == at.metric[1].value  # an ensemble of one run scores as that run
    if view == "diagnostics":
        assert i18n.translate("en", "diagnostics.verdict.too_early", epochs=2) in texts(at)  # the recorded run's own verdict


def test_korean_shows_the_page_in_korean(app_runs):
    _, run_id = app_runs
    at = open_inspect(run_id, language="ko", view="mistakes")
    text = texts(at)
    assert i18n.translate("ko", "inspect.title") in text and i18n.translate("ko", "inspect.mistakes.confusion") in text
    assert i18n.translate("en", "inspect.mistakes.confusion") not in text
