"""AppTest tests of classroom mode in the pages: the owner key in the address, who sees which actions,
the teacher box, the queue cap on the Train page, and names shown as typed, never as Markdown.

Runs are made with the store directly; nothing trains, so no scheduler is needed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.jobs import access
from core.jobs.store import RunStore
from core.training.presets import get as get_preset
from core.views import i18n

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
KEY_A, KEY_B = access.new_key(), access.new_key()
NASTY_NAME, NASTY_OWNER = "**bold**", "<img src=x onerror=alert(1)>"
LOGISTIC = get_preset("logistic-regression")


@pytest.fixture
def app_store(runs_dir, monkeypatch) -> RunStore:
    """A fresh runs directory that the app's cached job service (and teacher gate) use; no passcode unless a test sets one."""
    monkeypatch.delenv(access.PASSCODE_VARIABLE, raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield RunStore(runs_dir)
    st.cache_resource.clear()


def open_page(page: str, key: str | None = None, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if key:
        at.query_params["key"] = key
    for name, value in state.items():
        at.session_state[name] = value
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def a_run_of_a(store: RunStore, status: str = "queued") -> int:
    return store.create(
        LOGISTIC.network, LOGISTIC.settings, name=NASTY_NAME, owner=NASTY_OWNER, status=status, owner_key_hash=access.key_hash(KEY_A)
    )


def select_first_row(at: AppTest) -> AppTest:
    at.radio(key="runs.scope").set_value("everyone").run()
    at.session_state[at.dataframe[0].key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def button_keys(at: AppTest) -> set[str]:
    return {button.key for button in at.button}


def test_a_first_visit_gets_a_key_in_the_address_and_the_notice_until_closed(app_store):
    at = AppTest.from_file(APP, default_timeout=60).run()  # app.py draws the sidebar (a switched-to page runs alone in AppTest)
    key = at.session_state["owner_key"]
    assert access.valid_key(key) and at.query_params["key"] == key
    notice = i18n.translate("en", "sidebar.key_notice")
    assert notice in [info.value for info in at.sidebar.info]
    at.button(key="key_notice_ok").click().run()
    assert notice not in [info.value for info in at.sidebar.info] and at.session_state["owner_key"] == key
    # A bookmark brings the same key back, with no notice; a malformed one is replaced.
    again = first_run(key)
    assert again.session_state["owner_key"] == key and notice not in [info.value for info in again.sidebar.info]
    assert open_page("pages/build.py", key="guessed").session_state["owner_key"] != "guessed"


def test_another_student_sees_the_run_as_text_but_gets_no_actions(app_store):
    run_id = a_run_of_a(app_store)
    at = select_first_row(open_page("pages/runs.py", key=KEY_B))
    assert not {"runs.cancel", "runs.delete_confirm", "runs.resume"} & button_keys(at)
    # The name is escaped for Markdown: the subheader's source is the literal, backslashed, so it renders as typed.
    assert at.subheader[0].value == i18n.translate("en", "runs.run_title", id=run_id, name=access.markdown_literal(NASTY_NAME))
    assert list(at.dataframe[0].value["owner"]) == [NASTY_OWNER] and list(at.dataframe[0].value["name"]) == [NASTY_NAME]
    # On the Train page too, the run shows without Cancel.
    train = open_page("pages/train.py", key=KEY_B, selected_run=run_id)
    assert "train.cancel" not in button_keys(train)


def test_the_owner_cancels_their_run_from_the_runs_page(app_store):
    run_id = a_run_of_a(app_store)
    at = select_first_row(open_page("pages/runs.py", key=KEY_A))
    assert {"runs.cancel", "runs.delete_confirm"} <= button_keys(at)
    at.button(key="runs.cancel").click().run()
    assert not at.exception and app_store.get(run_id, with_metrics=False).status == "cancelled"


def first_run(key: str) -> AppTest:
    """A browser's first run, through app.py, which draws the sidebar (a switched-to page runs alone in AppTest)."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["key"] = key
    return at.run()


def test_no_passcode_means_no_teacher_box(app_store):
    at = first_run(KEY_B)
    assert at.sidebar.text_input and "teacher_passcode" not in [text.key for text in at.sidebar.text_input]


def test_the_teacher_passcode_lets_a_session_act_on_every_run(app_store, monkeypatch):
    monkeypatch.setenv(access.PASSCODE_VARIABLE, "owl-42")
    run_id = a_run_of_a(app_store, status="succeeded")
    old_run = app_store.create(LOGISTIC.network, LOGISTIC.settings, owner="before", status="succeeded")  # no key: made before classroom mode
    # AppTest draws the sidebar on a session's first run only: type and click there, then one run.
    wrong = first_run(KEY_B)
    wrong.text_input(key="teacher_passcode").input("owl")
    wrong.button(key="teacher_enter").click().run()
    assert wrong.session_state["teacher"] is False and wrong.session_state["teacher_error"] == "sidebar.teacher_wrong"
    at = first_run(KEY_B)
    at.text_input(key="teacher_passcode").input("owl-42")
    at.button(key="teacher_enter").click().run()
    assert at.session_state["teacher"] is True
    at.switch_page("pages/runs.py").run()
    at.session_state[at.dataframe[0].key] = {"selection": {"rows": [1], "columns": [], "cells": []}}  # newest first: A's run
    at.run()
    assert "runs.delete_confirm" in button_keys(at)
    at.button(key="runs.delete_confirm").click().run()
    assert not at.exception and [run.id for run in app_store.list()] == [old_run]
    assert run_id not in [run.id for run in app_store.list()]


def test_the_train_page_shows_why_a_third_queued_run_is_refused(app_store, monkeypatch):
    monkeypatch.delenv("LAYERLAB_MAX_QUEUED_PER_OWNER", raising=False)
    for _ in range(2):
        a_run_of_a(app_store)
    at = open_page("pages/train.py", key=KEY_A, network=LOGISTIC.network, preset=LOGISTIC.name)
    at.button(key="train.submit").click().run()
    assert not at.exception, [error.value for error in at.exception]
    assert i18n.render("queue.owner_full", {"count": 2, "limit": 2}, "en") in [error.value for error in at.error]
    assert len(app_store.list()) == 2


def test_pages_pass_the_browser_actor_to_every_service_call_that_changes_a_run():
    """The server checks whoever the pages say asks; a call without `actor=` would act as the administrator."""
    changing = {"submit", "cancel", "resume", "delete", "free_disk"}
    missing = []
    for path in sorted((ROOT / "pages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in changing:
                owner = node.func.value
                if isinstance(owner, ast.Call) and getattr(owner.func, "id", None) == "service":
                    if "actor" not in {keyword.arg for keyword in node.keywords}:
                        missing.append(f"{path.name}:{node.lineno} {node.func.attr}")
                if isinstance(owner, ast.Attribute) and owner.attr == "store" and node.func.attr in ("delete", "create"):
                    missing.append(f"{path.name}:{node.lineno} store.{node.func.attr} bypasses the access check")
    assert missing == []
