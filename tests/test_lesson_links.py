"""Lesson links through the real job service and store: the teacher makes one, the server refuses a submission
that changes what it locks, crafted links are refused, and the leaderboard picks each student's best run.

Runs are made and finished through the store directly (no training), so the file takes a few seconds.
"""

from __future__ import annotations

import sqlite3

import pytest

from core.jobs import access, lesson_links
from core.jobs.access import AccessDenied, Actor
from core.jobs.service import JobService
from core.jobs.store import RunStore
from core.training.settings import TrainSettings
from core.views import leaderboard

NETWORK = {"layers": [{"kind": "dense", "units": 30, "activation": "sigmoid"}, {"kind": "output"}], "normalize": True}
OTHER_NETWORK = {"layers": [{"kind": "dense", "units": 40, "activation": "sigmoid"}, {"kind": "output"}], "normalize": True}
SETTINGS = TrainSettings(epochs=3, batch_size=50, learning_rate=0.1, train_subset=2000, device="cpu")
TEACHER = Actor.for_key(access.new_key(), teacher=True)
KEY_A, KEY_B, KEY_C = access.new_key(), access.new_key(), access.new_key()
A, B, C = Actor.for_key(KEY_A), Actor.for_key(KEY_B), Actor.for_key(KEY_C)


@pytest.fixture
def service(store) -> JobService:
    return JobService(store)


def a_link(service: JobService, locked=("epochs", "network")) -> str:
    return service.create_lesson_link(NETWORK, SETTINGS, list(locked), "Lesson 3", TEACHER)


def test_a_submission_that_keeps_the_locks_is_queued_with_the_link(service):
    link_id = a_link(service)
    link = service.lesson_link(link_id)
    assert link.locked == ("epochs", "network") and link.settings["epochs"] == 3 and link.title == "Lesson 3"
    # What the link leaves unlocked may change: the learning rate here.
    run_id = service.submit(NETWORK, TrainSettings(**{**SETTINGS.to_dict(), "learning_rate": 0.5}), owner="Ada", actor=A, lesson_link=link_id)
    run = service.store.get(run_id, with_metrics=False)
    assert run.lesson_link == link_id and run.settings["learning_rate"] == 0.5
    assert [run.id for run in service.store.lesson_link_runs(link_id)] == [run_id]


def test_a_submission_that_breaks_a_lock_is_refused_by_the_server(service):
    link_id = a_link(service)
    longer = TrainSettings(**{**SETTINGS.to_dict(), "epochs": 30})
    with pytest.raises(lesson_links.LessonLinkError) as caught:
        service.submit(NETWORK, longer, actor=A, lesson_link=link_id)
    assert caught.value.code == "lesson_link.locked_setting" and caught.value.params["setting"] == "epochs"
    assert "3" in caught.value.render("ko") and "에포크" in caught.value.render("ko")  # the setting named in the reader's language
    with pytest.raises(lesson_links.LessonLinkError) as caught:
        service.submit(OTHER_NETWORK, SETTINGS, actor=A, lesson_link=link_id)
    assert caught.value.code == "lesson_link.locked_network"
    assert service.store.list() == []  # nothing was queued


def test_crafted_and_unknown_links_are_refused_and_only_the_teacher_makes_links(service):
    with pytest.raises(lesson_links.LessonLinkError) as caught:
        service.submit(NETWORK, SETTINGS, actor=A, lesson_link="../../etc/passwd")
    assert caught.value.code == "lesson_link.malformed"
    with pytest.raises(lesson_links.LessonLinkError) as caught:
        service.lesson_link(lesson_links.new_id())
    assert caught.value.code == "lesson_link.unknown"
    with pytest.raises(AccessDenied) as caught:
        service.create_lesson_link(NETWORK, SETTINGS, ["epochs"], "mine", A)
    assert caught.value.code == "access.teacher_only"
    with pytest.raises(lesson_links.LessonLinkError, match="nonsense"):
        service.create_lesson_link(NETWORK, SETTINGS, ["nonsense"], "bad lock", TEACHER)
    link_id = a_link(service)
    with pytest.raises(AccessDenied):
        service.hide_names(link_id, True, B)
    assert service.lesson_link(link_id).hide_names is False
    service.hide_names(link_id, True, TEACHER)
    assert service.lesson_link(link_id).hide_names is True


def finish(store: RunStore, run_id: int, accuracy: float, seconds: float) -> None:
    store.update(run_id, status="succeeded", test_accuracy=accuracy, best_validation_accuracy=accuracy, epochs_done=3, seconds=seconds)


def test_the_leaderboard_shows_each_students_best_run_and_can_hide_names(service):
    link_id = a_link(service, locked=("epochs",))
    ada_1 = service.submit(NETWORK, SETTINGS, owner="Ada", actor=A, lesson_link=link_id)
    bob = service.submit(NETWORK, SETTINGS, owner="<img src=x onerror=alert(1)>", actor=B, lesson_link=link_id)
    ada_2 = service.submit(NETWORK, SETTINGS, owner="Ada", actor=A, lesson_link=link_id)
    cyd = service.submit(NETWORK, SETTINGS, owner="Cyd", actor=C, lesson_link=link_id)
    finish(service.store, ada_1, 0.91, 20)
    finish(service.store, ada_2, 0.95, 25)
    finish(service.store, bob, 0.93, 10)
    service.submit(NETWORK, SETTINGS, owner="Ada", actor=A)  # not from the link: not on its board
    service.store.update(cyd, status="running", started_at=1.0)  # no figure yet: listed last, training
    runs = service.store.lesson_link_runs(link_id)
    board = leaderboard.rows(runs, hide_names=False)
    assert [(row.rank, row.name, row.run_id, row.test_accuracy) for row in board] == [
        (1, "Ada", ada_2, 0.95), (2, "<img src=x onerror=alert(1)>", bob, 0.93), (None, "Cyd", cyd, None)
    ]
    assert board[2].status == "running"
    hidden = leaderboard.rows(runs, hide_names=True, language="ko")
    # Numbered by each student's first run: Ada 1, the img name 2, Cyd 3; no name survives.
    assert [row.name for row in hidden] == ["학생 1", "학생 2", "학생 3"]
    assert not {"Ada", "Cyd"} & {row.name for row in hidden}


def test_a_version_4_database_gains_lesson_links(runs_dir):
    store = RunStore(runs_dir)
    run_id = store.create(NETWORK, SETTINGS.to_dict(), owner="old", owner_key_hash=access.key_hash(KEY_A))
    connection = sqlite3.connect(runs_dir / "runs.sqlite")
    connection.executescript("DROP TABLE lesson_links; ALTER TABLE runs DROP COLUMN lesson_link; PRAGMA user_version = 4;")
    connection.close()
    store = RunStore(runs_dir)
    assert store.get(run_id, with_metrics=False).lesson_link is None
    link_id = JobService(store).create_lesson_link(NETWORK, SETTINGS, ["epochs"], "after the upgrade", TEACHER)
    assert store.lesson_link(link_id)["title"] == "after the upgrade"
