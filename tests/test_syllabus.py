"""Lessons (core.views.syllabus): every lesson loads in both languages and trains; a learner's runs fill its table."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re

import pytest

from core.jobs import access, runner
from core.jobs.service import JobService
from core.training.loop import train
from core.views import syllabus

LESSONS = syllabus.all_lessons()
STEPS = [(lesson.id, step.id) for lesson in LESSONS.values() for step in lesson.steps if not step.demo]
HANGUL = re.compile("[\uac00-\ud7a3]")


@pytest.fixture(scope="module")
def tiny_mnist(mnist):
    """Real MNIST with 500 validation and 500 test images, so each step's epoch-end evaluation is quick."""
    return dataclasses.replace(
        mnist, validation_images=mnist.validation_images[:500], validation_labels=mnist.validation_labels[:500],
        test_images=mnist.test_images[:500], test_labels=mnist.test_labels[:500],
    )  # fmt: skip


def test_the_source_texts_lessons_are_there():
    assert {"nielsen-ladder", "dlfs-optimizers", "vanishing-gradients"} <= set(LESSONS)
    ladder = LESSONS["nielsen-ladder"]
    # The book's ladder, rung by rung, from the presets (and the ensemble's figure from the lesson).
    assert [step.claim for step in ladder.steps] == [97.80, 98.78, 99.06, 99.23, 99.37, 99.43, 99.60, 99.67]
    assert ladder.steps[-1].ensemble == 5
    assert {step.settings["optimizer"] for step in LESSONS["dlfs-optimizers"].steps} == {"sgd", "momentum", "adagrad", "adam"}


@pytest.mark.parametrize("lesson_id", list(LESSONS))
def test_every_text_exists_in_english_and_korean(lesson_id):
    lesson = LESSONS[lesson_id]
    for texts in [lesson.title, lesson.intro, lesson.source] + [part for step in lesson.steps for part in (step.title, step.text)]:
        assert set(texts) == {"en", "ko"}
        assert HANGUL.search(texts["ko"]), texts["ko"]  # a Korean text, not the English one copied
        assert not HANGUL.search(texts["en"]), texts["en"]


@pytest.mark.parametrize(("lesson_id", "step_id"), STEPS)
def test_every_step_trains_a_few_steps_on_real_mnist(lesson_id, step_id, tiny_mnist):
    step = LESSONS[lesson_id].step(step_id)
    result = train(step.network, step.train_settings(epochs=1, max_steps=3, device="cpu"), tiny_mnist)
    assert result.status == "succeeded" and len(result.history) == 1
    assert 0.0 <= result.history[0].test_accuracy <= 1.0


def test_a_broken_lesson_is_refused_with_its_reason():
    good = json.loads((syllabus.LESSON_DIR / "vanishing-gradients.json").read_text(encoding="utf-8"))
    no_korean = copy.deepcopy(good)
    del no_korean["steps"][0]["text"]["ko"]
    with pytest.raises(syllabus.LessonError) as caught:
        syllabus.parse(no_korean, "broken")
    assert caught.value.code == "lesson.missing_text" and "broken/sigmoid" in caught.value.render("en")
    bad_view = copy.deepcopy(good)
    bad_view["steps"][1]["view"] = "nowhere"
    with pytest.raises(syllabus.LessonError, match="nowhere"):
        syllabus.parse(bad_view, "broken")
    with pytest.raises(syllabus.LessonError) as caught:
        syllabus.get("no-such-lesson")
    assert "nielsen-ladder" in caught.value.render("ko")


def test_a_learners_runs_fill_the_table_and_nobody_elses(store):
    service = JobService(store)
    lesson = LESSONS["vanishing-gradients"]
    relu, sigmoid = lesson.step("relu"), lesson.step("sigmoid")
    mine, theirs = access.new_key(), access.new_key()
    me, them = access.Actor.for_key(mine), access.Actor.for_key(theirs)
    # Fewer epochs and another seed are still the step; another learning rate is another experiment.
    shortened = service.submit(relu.network, relu.train_settings(epochs=1, seed=3, max_steps=20, device="cpu"), owner="me", actor=me)
    other_rate = service.submit(relu.network, relu.train_settings(epochs=1, learning_rate=0.2, max_steps=5, device="cpu"), owner="me", actor=me)
    for run_id in (shortened, other_rate):
        store.transition(run_id, ("queued",), status="running")
        assert runner.execute(store, run_id) == "succeeded"
    service.submit(sigmoid.network, sigmoid.train_settings(epochs=1, max_steps=5, device="cpu"), owner="them", actor=them)

    runs = store.list(limit=50)
    results = {result.step.id: result for result in syllabus.progress(lesson, runs, me.key_hash)}
    assert [run.id for run in results["relu"].runs] == [shortened]
    assert results["relu"].done and results["relu"].best.id == shortened
    assert results["sigmoid"].runs == () and not results["sigmoid"].done  # their run is not mine
    theirs_results = {result.step.id: result for result in syllabus.progress(lesson, runs, them.key_hash)}
    assert [run.id for run in theirs_results["sigmoid"].runs] and theirs_results["sigmoid"].active
    assert all(result.runs == () for result in syllabus.progress(lesson, runs, None))  # no key, no runs

    published = {"relu": {"test_accuracy": 0.97, "epochs": 5}}
    rows = {row["step"]: row for row in syllabus.table_rows(list(results.values()), "ko", published)}
    row = rows[relu.title["ko"]]
    assert row["yours"] == store.get(shortened).test_accuracy and row["your_epochs"] == 1 and row["runs"] == 1
    assert row["layerlab"] == 0.97 and row["layerlab_epochs"] == 5
    assert rows[sigmoid.title["ko"]]["yours"] is None


def test_the_ladder_table_shows_the_books_figures_until_anything_is_measured(tmp_path):
    lesson = LESSONS["nielsen-ladder"]
    rows = syllabus.table_rows(syllabus.progress(lesson, [], None), "en", syllabus.published_figures(tmp_path / "missing.json"))
    assert [row["source"] for row in rows][:2] == [pytest.approx(0.978), pytest.approx(0.9878)]
    assert [row["source_epochs"] for row in rows] == [60, 60, 60, 60, 60, 60, 40, 40]
    assert all(row["layerlab"] is None and row["yours"] is None for row in rows)


def test_a_random_search_samples_on_a_log_scale_per_learner_and_plots_finished_runs(store):
    step = LESSONS["ng-depth-bias-variance"].step("random-search")
    mine, theirs = access.key_hash(access.new_key()), access.key_hash(access.new_key())
    points = [syllabus.sample(step, mine, index) for index in range(200)]
    assert points[:3] == [syllabus.sample(step, mine, index) for index in range(3)]  # the same draw after a refresh
    assert points[:8] != [syllabus.sample(step, theirs, index) for index in range(8)]  # another learner, other points
    for name, (low, high) in step.search.items():
        exponents = [math.log10(point[name]) for point in points]
        assert low - 0.01 <= min(exponents) and max(exponents) <= high + 0.01
        # Uniform in the exponent: each half of the range holds roughly half of the points (a linear draw would put ~90% in the top one).
        assert 60 <= sum(exponent < (low + high) / 2 for exponent in exponents) <= 140
    # A run with a sampled learning rate and λ is still this step's; its best validation accuracy becomes a point.
    service = JobService(store)
    me = access.Actor(key_hash=mine)
    run_id = service.submit(step.network, step.train_settings(**points[0], epochs=1, max_steps=5, device="cpu"), actor=me)
    store.transition(run_id, ("queued",), status="running")
    assert runner.execute(store, run_id) == "succeeded"
    (result,) = [result for result in syllabus.progress(LESSONS["ng-depth-bias-variance"], store.list(), mine) if result.step is step]
    (point,) = syllabus.search_points(result)
    assert point["learning_rate"] == points[0]["learning_rate"] and point["l2"] == points[0]["l2"]
    assert point["accuracy"] == store.get(run_id).best_validation_accuracy


def test_the_neuron_demo_computes_the_weighted_sum_and_each_activation():
    out = syllabus.neuron([0.5, -1.0], [1.5, 0.8], 0.2)
    assert out["z"] == pytest.approx(1.5 * 0.5 - 0.8 + 0.2)
    assert out["sigmoid"] == pytest.approx(1 / (1 + math.exp(-out["z"])))
    assert out["tanh"] == pytest.approx(math.tanh(out["z"]))
    assert out["relu"] == pytest.approx(max(0.0, out["z"]))
    assert syllabus.neuron([1.0], [-2.0], 0.0)["relu"] == 0.0


def test_next_sample_walks_the_test_digits_and_keeps_the_score():
    import numpy as np

    labels = np.array([3, 1, 4, 1])
    probabilities = np.eye(10)[[3, 7, 4, 1]] * 0.9 + 0.01  # right, wrong, right, right
    shown = [syllabus.next_sample(labels, probabilities, index) for index in range(5)]
    assert [item["guess"] for item in shown[:4]] == [3, 7, 4, 1]
    assert [(item["right"], item["seen"]) for item in shown[:4]] == [(1, 1), (1, 2), (2, 3), (3, 4)]
    assert shown[4]["index"] == 0  # wraps round after the last digit
    assert shown[0]["confidence"] == pytest.approx(0.91)


def test_a_demo_must_use_a_training_step_of_its_lesson():
    good = json.loads((syllabus.LESSON_DIR / "ml4a-neural-networks.json").read_text(encoding="utf-8"))
    bad = copy.deepcopy(good)
    bad["steps"][3]["uses"] = "neuron"  # a demo, not a run
    with pytest.raises(syllabus.LessonError) as caught:
        syllabus.parse(bad, "broken")
    assert caught.value.code == "lesson.bad_uses"
    assert [result.step.id for result in syllabus.progress(syllabus.parse(good, "ml4a"), [], None)] == ["small-net"]
