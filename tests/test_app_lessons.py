"""AppTest tests of the Lessons page: each lesson shows in both languages, "Train this step" queues a run owned
by this browser, the learner's table and steps then show it, and "Change first" hands the step to Train."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.jobs import access
from core.jobs.store import RunStore
from core.views import i18n, syllabus
from tests.test_app_classroom import APP

KEY = access.new_key()


@pytest.fixture
def app_store(runs_dir, monkeypatch) -> RunStore:
    monkeypatch.delenv(access.PASSCODE_VARIABLE, raising=False)
    monkeypatch.setattr("core.jobs.service.JobService.ensure_scheduler", lambda self: False)  # queue only: nothing trains here
    st.cache_resource.clear()
    yield RunStore(runs_dir)
    st.cache_resource.clear()


def lessons_page(language: str = "en", key: str | None = KEY) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["lang"] = language
    if key:
        at.query_params["key"] = key
    at.run()
    at.switch_page("pages/lessons.py")
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


@pytest.mark.parametrize("language", ["en", "ko"])
def test_every_lesson_shows_in_each_language(app_store, language):
    at = lessons_page(language)
    assert at.title[0].value == i18n.translate(language, "lessons.title")
    for lesson in syllabus.all_lessons().values():
        at.selectbox(key="lessons.choice").set_value(lesson.id).run()
        assert not at.exception
        shown = " ".join(element.value for element in at.markdown)
        assert lesson.intro[language] in shown
        assert all(step.title[language] in shown for step in lesson.steps)
        assert at.dataframe[0].value.shape[0] == sum(1 for step in lesson.steps if not step.demo)
        steps_state = [caption.value for caption in at.caption if i18n.translate(language, "lessons.state.not_started") in caption.value]
        assert len(steps_state) == sum(1 for step in lesson.steps if not (step.ensemble or step.search or step.demo))


def test_train_this_step_queues_a_run_of_this_browser_and_the_table_shows_it(app_store):
    at = lessons_page("ko")
    at.selectbox(key="lessons.choice").set_value("vanishing-gradients").run()
    at.number_input(key="lessons.epochs.relu").set_value(2)
    at.button(key="lessons.train.relu").click().run()
    assert not at.exception and not at.error, [error.value for error in at.error]
    (run,) = app_store.list()
    step = syllabus.get("vanishing-gradients").step("relu")
    assert run.owner_key_hash == access.key_hash(KEY) and run.settings["epochs"] == 2 and run.status == "queued"
    assert syllabus.is_run_of(run, step)
    at.run()
    table = at.dataframe[0].value
    assert table.loc[table["step"] == step.title["ko"], "runs"].item() == 1
    assert any(f"#{run.id}" in caption.value for caption in at.caption)
    # Another browser sees none of it in its own lesson table.
    other = lessons_page("ko", key=access.new_key())
    other.selectbox(key="lessons.choice").set_value("vanishing-gradients").run()
    assert other.dataframe[0].value["runs"].sum() == 0


def test_change_first_hands_the_steps_network_and_settings_to_train(app_store):
    at = lessons_page("en")
    at.selectbox(key="lessons.choice").set_value("dlfs-optimizers").run()
    at.button(key="lessons.open.adam").click().run()
    assert not at.exception
    step = syllabus.get("dlfs-optimizers").step("adam")
    assert at.session_state["settings"]["optimizer"] == "adam" and at.session_state["settings"]["learning_rate"] == 0.001
    assert at.session_state["network"] == step.network


def test_a_third_queued_step_is_refused_with_the_reason_in_the_learners_language(app_store, monkeypatch):
    monkeypatch.setenv("LAYERLAB_MAX_QUEUED_PER_OWNER", "2")
    at = lessons_page("ko")
    at.selectbox(key="lessons.choice").set_value("dlfs-optimizers").run()
    for step_id in ("sgd", "momentum"):
        at.button(key=f"lessons.train.{step_id}").click().run()
        assert not at.error
    at.button(key="lessons.train.adam").click().run()
    assert len(app_store.list()) == 2
    assert [error.value for error in at.error] == [i18n.render("queue.owner_full", {"count": 2, "limit": 2}, "ko")]


def test_a_random_search_queues_what_the_queue_takes_then_the_rest(app_store, monkeypatch):
    monkeypatch.setenv("LAYERLAB_MAX_QUEUED_PER_OWNER", "2")
    at = lessons_page("en")
    at.selectbox(key="lessons.choice").set_value("ng-depth-bias-variance").run()
    at.button(key="lessons.train.random-search").click().run()
    assert not at.error
    step = syllabus.get("ng-depth-bias-variance").step("random-search")
    runs = sorted(app_store.list(), key=lambda run: run.id)
    assert len(runs) == 2  # the cap: two queued per browser
    assert [{name: run.settings[name] for name in step.search} for run in runs] == [
        syllabus.sample(step, access.key_hash(KEY), index) for index in range(2)
    ]
    assert all(syllabus.is_run_of(run, step) for run in runs)
    for run in runs:  # they start: the next click queues the next two points, not the same ones again
        app_store.transition(run.id, ("queued",), status="running")
    at.button(key="lessons.train.random-search").click().run()
    later = sorted(app_store.list(), key=lambda run: run.id)[2:]
    assert [run.settings["learning_rate"] for run in later] == [syllabus.sample(step, access.key_hash(KEY), index)["learning_rate"] for index in (2, 3)]


def test_the_ml4a_demos_a_neuron_and_the_next_sample_classifier(app_store):
    at = lessons_page("en")
    at.selectbox(key="lessons.choice").set_value("ml4a-neural-networks").run()
    assert any(i18n.translate("en", "lessons.needs_run", step="") .split('"')[0] in info.value for info in at.info)
    at.slider(key="lessons.neuron.neuron.b").set_value(-3.0).run()
    z = 1.5 * 0.5 + 0.8 * -1.0 - 3.0
    assert any(f"**{z:.2f}**" in element.value for element in at.markdown)
    relu = [metric for metric in at.metric if metric.label == "ReLU"][0]
    assert relu.value == "0.000"

    # The learner trains the small net (a real, short run), and the next-sample demo reads test digits with it.
    step = syllabus.get("ml4a-neural-networks").step("small-net")
    from core.jobs import runner

    run_id = app_store.create(step.network, step.train_settings(epochs=1, max_steps=30, device="cpu").to_dict(), status="running",
                              owner_key_hash=access.key_hash(KEY))  # fmt: skip
    assert runner.execute(app_store, run_id) == "succeeded"
    at.run()
    guess = [element.value for element in at.markdown if "#0" in element.value]
    assert guess and "**" in guess[0], [element.value for element in at.markdown]
    at.button(key="lessons.sample.next-sample.next").click().run()
    assert any("#1" in element.value for element in at.markdown)
    scores = [caption.value for caption in at.caption if f"out of 2 (run #{run_id})" in caption.value]
    assert scores and scores[0] in {i18n.translate("en", "lessons.sample.score", right=right, seen=2, id=run_id) for right in range(3)}
