"""AppTest tests of the Adversarial lab: with no run it says where to train one; with trained runs each
experiment shows the numbers `core` computes for the same choices (FGSM and targeted PGD on a test image,
the Draw page's drawing, a fooling image, a robustness curve measured in the background, transfer between
two runs); a damaged checkpoint shows its message; Korean shows Korean."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from core.attacks import robustness
from core.jobs.store import RunStore
from core.training.checkpoint import CheckpointError
from core.views import attack_view, i18n, inspection, tasks
from tests.inspect_support import train_run
from tests.test_app_draw import CANVAS_KEY, canvas_value

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def en(key: str, **values) -> str:
    return i18n.translate("en", key, **values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two short conv runs (the second smaller), so that transfer and ensembles have two networks."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # single images and small batches: one thread is fastest on a shared 2-core machine
    directory = tmp_path_factory.mktemp("app-attack-runs")
    store = RunStore(directory)
    first = train_run(store, name="first")
    second = train_run(store, name="second", seed=1, epochs=1, train_subset=2000)
    yield store, first, second
    torch.set_num_threads(threads)


@pytest.fixture
def app_runs(trained, monkeypatch):
    store = trained[0]
    monkeypatch.setenv("LAYERLAB_RUNS", str(store.directory))
    st.cache_resource.clear()  # the job service and the loaded networks are cached per process
    yield trained
    st.cache_resource.clear()


def open_lab(run_id: int | None, language: str = "en", draft: str | None = None, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if draft:
        at.query_params["draft"] = draft  # as a refreshed browser's address carries it
    at.session_state["selected_run"] = run_id
    at.run()
    at.session_state["language"] = language
    for name, value in state.items():
        at.session_state[name] = value
    at.switch_page("pages/attack.py")
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def metric(at: AppTest, key: str) -> str:
    return next(item.value for item in at.metric if item.label == en(key))


def texts(at: AppTest) -> str:
    kinds = ("title", "markdown", "caption", "info", "warning")
    return "\n".join(str(element.value) for kind in kinds for element in at.get(kind))


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def chart_keys(at: AppTest) -> list[str]:
    return [chart.key or "" for chart in at.get("plotly_chart")]


def heatmap(trace: dict) -> np.ndarray:
    """A heatmap's values as Plotly sent them to the browser (a typed array, base64-encoded)."""
    z = trace["z"]
    if isinstance(z, dict):
        values = np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"]))
        return values.reshape([int(side) for side in str(z.get("shape", len(values))).split(",")])
    return np.asarray(z, dtype=float)


def network_of(store: RunStore, *run_ids: int) -> attack_view.Attacked:
    return attack_view.load_attacked(store, list(run_ids))


def test_without_a_finished_run_the_lab_says_to_train_one(runs_dir):
    st.cache_resource.clear()
    at = open_lab(None)
    assert at.info[0].value == en("attack.no_runs")
    assert not [key for key in chart_keys(at) if key.startswith("attack.")]
    st.cache_resource.clear()


def test_fgsm_on_a_test_image_shows_the_prediction_core_computes(app_runs):
    store, run_id, _ = app_runs
    network = network_of(store, run_id)
    epsilon = 0.2
    # The first test image FGSM flips at this ε, found with core itself.
    index, outcome = next(
        (index, outcome)
        for index in range(200)
        if (outcome := attack_view.attack_image(network, attack_view.test_subject(network, index), "fgsm", epsilon)).predicted_after
        != outcome.predicted_before
    )
    at = open_lab(run_id)
    at.number_input(key="attack.index").set_value(index)
    at.slider(key="attack.epsilon.linf").set_value(epsilon).run()
    assert not at.exception
    assert metric(at, "attack.before") == str(outcome.predicted_before)
    assert metric(at, "attack.after") == str(outcome.predicted_after) != str(outcome.predicted_before)
    assert metric(at, "attack.linf") == f"{outcome.change.linf:.3f}" and float(metric(at, "attack.linf")) <= epsilon + 1e-6
    assert metric(at, "attack.l0") == str(outcome.change.l0)
    verdict = en("attack.verdict.fooled", before=str(outcome.predicted_before), after=str(outcome.predicted_after), target="")
    assert verdict in texts(at)
    trio = next(figure for figure in figures(at) if len(figure["data"]) == 3)  # original, change, adversarial image
    assert np.allclose(heatmap(trio["data"][2]), outcome.adversarial) and np.allclose(heatmap(trio["data"][1]), outcome.perturbation)


def test_targeted_pgd_walks_to_the_chosen_class(app_runs):
    store, run_id, _ = app_runs
    network = network_of(store, run_id)
    subject = attack_view.test_subject(network, 0)
    target = (subject.label + 3) % 10
    expected = attack_view.attack_image(network, subject, "pgd", 0.3, steps=20, target=target)
    assert expected.predicted_after == target  # the authority reaches it too: PGD-20 at ε = 0.3 on a 2-epoch net
    at = open_lab(run_id)
    at.selectbox(key="attack.method").set_value("pgd").run()
    at.slider(key="attack.epsilon.linf").set_value(0.3)
    at.slider(key="attack.steps").set_value(20)
    at.toggle(key="attack.targeted").set_value(True).run()
    at.selectbox(key="attack.target").set_value(target).run()
    assert not at.exception
    assert metric(at, "attack.after") == str(target)
    assert metric(at, "attack.l2") == f"{expected.change.l2:.3f}"
    assert en("attack.verdict.reached", before=str(expected.predicted_before), after=str(target), target=str(target)) in texts(at)


def test_the_draw_pages_button_opens_the_drawing_here_and_it_opens_in_activations(app_runs):
    store = app_runs[0]
    digit = network_of(store, app_runs[1]).splits.test_images[1].numpy()
    canvas = np.kron(digit, np.ones((10, 10), dtype=np.uint8))  # the 280×280 canvas the component would send
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/draw.py")
    at.run()
    at.session_state[CANVAS_KEY] = canvas_value(canvas, [{"type": "path", "path": [["M", 140, 40], ["L", 140, 240]]}])
    at.run()
    drawing, run_id = at.session_state["drawing"], at.selectbox(key="draw.run").value.id  # the run that classified it
    network = network_of(store, run_id)
    at.button(key="draw.open_attack").click().run()
    assert not at.exception, [error.value for error in at.exception]
    assert at.session_state["attack.pick"] == "drawing" and at.session_state["attack.runs"] == [run_id]
    expected = attack_view.attack_image(network, attack_view.drawing_subject(drawing), "fgsm", attack_view.EPSILON["linf"].default)
    assert metric(at, "attack.before") == str(expected.predicted_before)
    assert metric(at, "attack.after") == str(expected.predicted_after)
    at.switch_page("pages/attack.py")  # AppTest's next run() would go back to the page it last switched to (Draw)
    at.button(key="attack.open_activations").click().run()
    assert not at.exception, [error.value for error in at.exception]
    assert np.array_equal(at.session_state["drawing"], expected.saved)  # the adversarial image, as the PNG keeps it
    assert at.session_state["inspect.view"] == "activations" and at.session_state["inspect.pick"] == "drawing"
    with torch.no_grad():
        saved = torch.softmax(network.model(torch.as_tensor(expected.saved).float().div(255).view(1, 1, 28, 28)), dim=1)[0]
    predicted = int(saved.argmax())
    assert en("inspect.image.drawing_caption", prediction=str(predicted), confidence=f"{float(saved[predicted]) * 100:.2f}%") in texts(at)


def test_a_fooling_image_reaches_the_confidence_core_reports(app_runs):
    store, run_id, _ = app_runs
    expected = attack_view.grow_fooling_image(network_of(store, run_id), 3, "noise", 200)
    assert expected.reached  # Nguyen et al.'s ≥ 99%
    at = open_lab(run_id, **{"attack.view": "fooling"})
    at.selectbox(key="attack.fool_target").set_value(3).run()
    assert not at.exception
    shown = next(item.value for item in at.metric if item.label == en("attack.fool_confidence", target="3"))
    assert shown == f"{expected.confidence * 100:.2f}%"
    assert en("attack.fool_steps_taken", steps=expected.steps) in texts(at)


def test_the_robustness_curve_runs_in_the_background_and_survives_a_refresh(app_runs):
    store, first, second = app_runs
    at = open_lab(first, **{"attack.view": "robustness"})
    at.multiselect(key="attack.curve_runs").set_value([first, second])
    at.number_input(key="attack.curve_images").set_value(100)
    at.slider(key="attack.curve_max_epsilon").set_value(0.1)
    at.number_input(key="attack.curve_steps").set_value(5)
    at.button(key="attack.curve_start").click().run()
    assert not at.exception, [error.value for error in at.exception]
    task = tasks.latest(at.session_state["draft_key"], "curve")
    assert task is not None and tasks.wait(task, 120) and task.failure is None and task.error is None
    # The authority: core's curve on the same images, networks and seed.
    models = {attack_view.run_name(run_id, store.get(run_id).name): inspection.load_run(store, run_id).model for run_id in (first, second)}
    splits = inspection.load_run(store, first).splits
    expected = robustness.robustness_curve(
        models, splits.test_images[:100], splits.test_labels[:100], [0.0, 0.05, 0.1], steps=5, generator=attack_view.generator()
    )
    # A refresh is a new session with the same draft key (the address keeps it): it finds the finished curve.
    refreshed = open_lab(first, draft=at.session_state["draft_key"], **{"attack.view": "robustness"})
    assert refreshed.session_state["draft_key"] == at.session_state["draft_key"]
    table = refreshed.dataframe[0].value
    shown = list(zip(table[en("attack.column.network")], table["ε"], table[en("attack.accuracy")]))
    assert shown == [(point.name, point.epsilon, f"{point.accuracy * 100:.2f}%") for point in expected]
    assert "attack.curve" in chart_keys(refreshed)


def test_transfer_shows_both_runs_accuracies_as_core_computes_them(app_runs):
    store, first, second = app_runs
    at = open_lab(first, **{"attack.view": "transfer"})
    at.selectbox(key="attack.transfer_source").set_value(first).run()
    at.selectbox(key="attack.transfer_target").set_value(second)
    at.number_input(key="attack.transfer_images").set_value(200)
    at.button(key="attack.transfer_start").click().run()
    task = tasks.latest(at.session_state["draft_key"], "transfer")
    assert task is not None and tasks.wait(task, 120) and task.failure is None
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    source, target = inspection.load_run(store, first), inspection.load_run(store, second)
    images, labels = source.splits.test_images[:200], source.splits.test_labels[:200]
    report = robustness.transfer(source.model, target.model, images, labels, "fgsm", 0.1, generator=attack_view.generator())
    table = at.table[0].value
    assert list(table[en("attack.column.clean")]) == [
        f"{report.source_clean_accuracy * 100:.2f}%",
        f"{report.target_clean_accuracy * 100:.2f}%",
    ]
    adversarial = [f"{report.source_adversarial_accuracy * 100:.2f}%", f"{report.target_adversarial_accuracy * 100:.2f}%"]
    assert list(table[en("attack.column.adversarial")]) == adversarial


def test_an_ensemble_is_attacked_through_its_averaged_probabilities(app_runs):
    store, first, second = app_runs
    ensemble = network_of(store, first, second)
    subject = attack_view.test_subject(ensemble, 0)
    expected = attack_view.attack_image(ensemble, subject, "fgsm", 0.1)
    members = [inspection.load_run(store, run_id).model for run_id in (first, second)]
    image = torch.as_tensor(subject.image).float().div(255).view(1, 1, 28, 28)
    with torch.no_grad():
        average = torch.stack([torch.softmax(member(image), dim=1) for member in members]).mean(dim=0)[0]
    assert np.allclose(expected.before, average.numpy(), atol=1e-6)
    at = open_lab(first, **{"attack.runs": [first, second]})
    assert en("attack.ensemble_caption", count=2) in texts(at)
    assert metric(at, "attack.before") == str(int(average.argmax())) and metric(at, "attack.after") == str(expected.predicted_after)


def test_a_damaged_checkpoint_shows_its_message(app_runs):
    store, run_id, _ = app_runs
    path = store.best_checkpoint_path(run_id)
    original = path.read_bytes()
    try:
        damaged = bytearray(original)
        damaged[-100] ^= 0xFF
        path.write_bytes(bytes(damaged))
        with pytest.raises(CheckpointError) as raised:
            inspection.load_run(store, run_id)
        at = open_lab(run_id)
        assert raised.value.render("en") in [warning.value for warning in at.warning]
    finally:
        path.write_bytes(original)


def test_korean_shows_the_lab_in_korean(app_runs):
    _, run_id, _ = app_runs
    at = open_lab(run_id, language="ko")
    text = texts(at)
    assert i18n.translate("ko", "attack.title") in text
    labels = [item.label for item in at.metric]
    assert i18n.translate("ko", "attack.before") in labels and i18n.translate("ko", "attack.after") in labels
    assert en("attack.title") not in text and en("attack.before") not in labels
