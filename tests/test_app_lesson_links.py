"""AppTest tests of lesson links in the pages: a student's Train page from a link (locked inputs disabled, the run
made from the link), a crafted link, the teacher's link maker, and the presenter view with names shown or hidden."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.jobs import access
from core.jobs.service import JobService
from core.jobs.store import RunStore
from core.training.settings import TrainSettings
from core.views import i18n
from tests.test_app_classroom import APP

NETWORK = {"layers": [{"kind": "dense", "units": 30, "activation": "sigmoid", "init": "default"}, {"kind": "output", "init": "default"}],
           "normalize": True}  # fmt: skip
SETTINGS = TrainSettings(epochs=3, batch_size=50, learning_rate=0.1, train_subset=2000, device="cpu")
TEACHER = access.Actor.for_key(access.new_key(), teacher=True)
KEY_A, KEY_B = access.new_key(), access.new_key()


@pytest.fixture
def app_store(runs_dir, monkeypatch) -> RunStore:
    monkeypatch.delenv(access.PASSCODE_VARIABLE, raising=False)
    monkeypatch.setattr("core.jobs.service.JobService.ensure_scheduler", lambda self: False)  # queue only: nothing trains here
    st.cache_resource.clear()
    yield RunStore(runs_dir)
    st.cache_resource.clear()


def page(path: str, key: str, lesson: str | None = None, language: str = "en") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["key"] = key
    at.query_params["lang"] = language
    if lesson:
        at.query_params["lesson"] = lesson
    at.run()
    at.switch_page(path).run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def test_a_student_from_a_link_gets_its_settings_with_the_locked_ones_disabled(app_store):
    link_id = JobService(app_store).create_lesson_link(NETWORK, SETTINGS, ["epochs", "network"], "**Lesson 3**", TEACHER)
    at = page("pages/train.py", KEY_A, link_id, "ko")
    banner = [info.value for info in at.info if "🔒" in str(info.icon) or access.markdown_literal("**Lesson 3**") in info.value]
    assert banner and access.markdown_literal("**Lesson 3**") in banner[0] and i18n.translate("ko", "lesson_link.lock.network") in banner[0]
    epochs, rate = at.number_input(key="train.epochs"), at.number_input(key="train.learning_rate")
    assert epochs.disabled and epochs.value == 3 and not rate.disabled
    rate.set_value(0.3).run()
    at.button(key="train.submit").click().run()
    assert not at.exception and not at.error, [error.value for error in at.error]
    (run,) = app_store.list()
    assert run.lesson_link == link_id and run.settings["epochs"] == 3 and run.settings["learning_rate"] == 0.3
    assert run.owner_key_hash == access.key_hash(KEY_A)
    assert run.spec["layers"][0]["units"] == 30  # the link's network, not the default one
    # The leaderboard under the live view lists the run.
    assert i18n.translate("ko", "leaderboard.title") in [header.value for header in at.subheader]
    assert [frame.value.shape[0] for frame in at.dataframe] == [1]


def test_a_crafted_link_says_so_and_the_page_still_works(app_store):
    at = page("pages/train.py", KEY_A, "'; DROP TABLE runs; --")
    assert [error.value for error in at.error] == [
        i18n.render("lesson_link.malformed", {"value": repr("'; DROP TABLE runs; --")}, "en")
    ]
    assert at.button(key="train.submit") and not at.exception


def test_the_teacher_makes_a_link_from_the_train_page(app_store, monkeypatch):
    monkeypatch.setenv(access.PASSCODE_VARIABLE, "owl-42")
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["key"] = KEY_B
    at.run()
    at.text_input(key="teacher_passcode").input("owl-42")
    at.button(key="teacher_enter").click().run()
    at.switch_page("pages/train.py").run()
    at.text_input(key="lesson_link.title").input("Rates").run()
    at.multiselect(key="lesson_link.locks").select("epochs").select("dataset").run()
    at.button(key="lesson_link.create").click().run()
    assert not at.exception and not at.error
    link_id = at.session_state["lesson_link_made"]
    link = JobService(app_store).lesson_link(link_id)
    assert link.title == "Rates" and set(link.locked) == {"epochs", "dataset"}
    assert any(f"lesson={link_id}" in code.value for code in at.code)
    # A student without the passcode has no maker.
    student = page("pages/train.py", KEY_A)
    assert "lesson_link.create" not in {button.key for button in student.button}


def test_the_presenter_view_shows_the_board_and_hides_names_when_asked(app_store):
    service = JobService(app_store)
    link_id = service.create_lesson_link(NETWORK, SETTINGS, ["epochs"], "Projector", TEACHER)
    run_id = service.submit(NETWORK, SETTINGS, owner="<img src=x onerror=alert(1)>", actor=access.Actor.for_key(KEY_A), lesson_link=link_id)
    app_store.update(run_id, status="succeeded", test_accuracy=0.9512, best_validation_accuracy=0.95, epochs_done=3, seconds=12)
    at = page("pages/present.py", KEY_B, link_id)
    assert at.title[0].value == "Projector"
    table = at.table[0].value
    assert list(table[i18n.translate("en", "leaderboard.column.name")]) == ["<img src=x onerror=alert(1)>"]
    assert list(table[i18n.translate("en", "leaderboard.column.test_accuracy")]) == ["95.12%"]
    assert "present.hide" not in {toggle.key for toggle in at.toggle}  # a student cannot hide or show names
    service.hide_names(link_id, True, TEACHER)
    at.run()
    assert list(at.table[0].value[i18n.translate("en", "leaderboard.column.name")]) == [i18n.translate("en", "leaderboard.student", number=1)]
