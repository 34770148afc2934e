"""Classroom mode: owner keys, the teacher, the fair queue and the queue cap, against the real job service and store.

Runs are made with the store directly (no training), so the whole file takes a few seconds;
the CLI tests start `python -m core` as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import render
from core.jobs import access
from core.jobs import service as job_service
from core.jobs.access import ADMIN, AccessDenied, Actor, TeacherGate, TeacherLocked
from core.jobs.store import QueueFull, RunStore
from core.training.settings import TrainSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOGISTIC = {"layers": [{"kind": "output", "init": "zeros"}], "normalize": True}
SETTINGS = TrainSettings(epochs=1, batch_size=100, train_subset=2000, device="cpu").to_dict()
KEY_A, KEY_B = access.new_key(), access.new_key()
STUDENT_A, STUDENT_B = Actor.for_key(KEY_A), Actor.for_key(KEY_B)
TEACHER = Actor.for_key(access.new_key(), teacher=True)


def run_of(store: RunStore, key: str | None, status: str = "queued", owner: str = "") -> int:
    """A run in `status` owned by the browser with `key` (None: made before classroom mode)."""
    return store.create(LOGISTIC, SETTINGS, owner=owner, status=status, owner_key_hash=access.key_hash(key) if key else None)


def resumable_run(store: RunStore, key: str | None) -> int:
    run_id = run_of(store, key, status="interrupted")
    store.resume_state_path(run_id).write_bytes(b"state")
    return run_id


# ----------------------------------------------------------------------------- ownership


def test_keys_are_random_urlsafe_and_only_their_hash_is_stored(store):
    assert access.valid_key(KEY_A) and KEY_A != KEY_B
    assert not access.valid_key("short") and not access.valid_key(KEY_A + "x") and not access.valid_key("a" * 21 + "!")
    assert Actor.for_key("not a key").key_hash is None  # a malformed ?key= owns nothing
    run = store.get(run_of(store, KEY_A), with_metrics=False)
    assert run.owner_key_hash == access.key_hash(KEY_A) != KEY_A and len(run.owner_key_hash) == 64


def test_student_b_cannot_cancel_resume_delete_or_prune_student_a_runs(store):
    service = job_service.JobService(store)
    queued, interrupted, finished = run_of(store, KEY_A, owner="Ada"), resumable_run(store, KEY_A), run_of(store, KEY_A, "succeeded")
    for action, run_id in ((service.cancel, queued), (service.resume, interrupted), (service.delete, finished), (service.free_disk, finished)):
        with pytest.raises(AccessDenied) as refused:
            action(run_id, actor=STUDENT_B)
        assert refused.value.code == "access.not_yours"
    assert render("access.not_yours", {"run": queued, "owner": "Ada"}, "ko") != render("access.not_yours", {"run": queued, "owner": "Ada"})
    # Nothing changed: the refusals came before any write.
    assert [store.get(run_id, with_metrics=False).status for run_id in (queued, interrupted, finished)] == ["queued", "interrupted", "succeeded"]
    # Its owner can.
    assert service.cancel(queued, actor=STUDENT_A) == "cancelled"
    service.resume(interrupted, actor=STUDENT_A)
    assert store.get(interrupted, with_metrics=False).status == "queued"
    assert service.free_disk(finished, actor=STUDENT_A) == 0
    service.delete(finished, actor=STUDENT_A)
    assert finished not in [run.id for run in store.list()]


@pytest.mark.parametrize("overseer", [TEACHER, ADMIN], ids=["teacher", "admin"])
def test_the_teacher_and_the_admin_can_act_on_every_run_even_those_made_before_classroom_mode(store, overseer):
    service = job_service.JobService(store)
    for key in (KEY_A, None):
        queued, interrupted, finished = run_of(store, key), resumable_run(store, key), run_of(store, key, "succeeded")
        assert service.cancel(queued, actor=overseer) == "cancelled"
        service.resume(interrupted, actor=overseer)
        assert store.get(interrupted, with_metrics=False).status == "queued"
        service.free_disk(finished, actor=overseer)
        service.delete(finished, actor=overseer)
        assert finished not in [run.id for run in store.list()]


def test_a_run_made_before_classroom_mode_is_nobody_elses(store):
    old = run_of(store, None, owner="Ada")
    with pytest.raises(AccessDenied) as refused:
        job_service.JobService(store).cancel(old, actor=STUDENT_A)
    assert refused.value.code == "access.before_classroom"


def test_an_old_database_gains_the_key_column_with_null_for_its_runs(runs_dir):
    import sqlite3

    database = runs_dir / "runs.sqlite"
    runs_dir.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(database)
    store = RunStore(runs_dir)  # today's schema, then wound back to version 2 without the column
    connection.execute("ALTER TABLE runs DROP COLUMN owner_key_hash")
    connection.execute("INSERT INTO runs (name, owner, dataset, spec, settings, status, created_at) VALUES ('old', 'Ada', 'mnist', '{}', '{}', 'succeeded', 0)")
    connection.execute("PRAGMA user_version = 2")
    connection.commit()
    connection.close()
    store = RunStore(runs_dir)
    [old] = store.list()
    assert old.owner == "Ada" and old.owner_key_hash is None
    assert store.get(run_of(store, KEY_A), with_metrics=False).owner_key_hash == access.key_hash(KEY_A)


def test_display_names_are_sanitised_and_shown_literally():
    assert access.display_name("  Min\x00ji\u200b \n\t Kim  ") == "Minji Kim"
    assert access.display_name("x" * 100) == "x" * access.NAME_MAX_CHARACTERS
    assert access.display_name(None) == ""
    for name in ("<img src=x onerror=alert(1)>", "**bold**", "[link](http://x)"):
        assert access.display_name(name) == name  # kept as typed; the pages show it as text
        escaped = access.markdown_literal(name)
        # Every character Markdown or HTML would act on is backslash-escaped (CommonMark: any ASCII punctuation may be).
        assert all(escaped[index - 1] == "\\" for index, char in enumerate(escaped) if char in "<>*[]()")
        assert escaped.replace("\\", "") == name


def test_submit_stores_the_sanitised_owner_and_the_actor_key(store):
    service = job_service.JobService(store)
    run_id = service.submit(LOGISTIC, TrainSettings.from_dict(SETTINGS), owner="**Ada**\x07\n", name="<b>x</b>", actor=STUDENT_A)
    run = store.get(run_id, with_metrics=False)
    assert (run.owner, run.name, run.owner_key_hash) == ("**Ada**", "<b>x</b>", STUDENT_A.key_hash)


# ----------------------------------------------------------------------------- the fair queue and its cap


def test_with_five_of_a_queued_first_b_starts_second_not_sixth(store):
    a_runs = [run_of(store, KEY_A) for _ in range(5)]
    b_run = run_of(store, KEY_B)
    order = job_service.queued_run_ids(store)
    assert order == [a_runs[0], b_run, *a_runs[1:]]
    assert job_service.JobService(store).queue_position(b_run) == 2

    # What the scheduler sees after starting A's first run, and after it finished: B's run goes next both times.
    store.update(a_runs[0], status="running", started_at=100.0)
    assert job_service.queued_run_ids(store)[0] == b_run
    store.update(a_runs[0], status="succeeded")
    assert job_service.queued_run_ids(store)[0] == b_run


def test_fair_order_takes_turns_between_owners():
    owners = {
        "a": job_service.Owner((1, 2, 3), running=0, last_started=None),
        "b": job_service.Owner((4, 5)),
        "c": job_service.Owner((6,), running=2, last_started=50.0),  # two running already: waits behind the others' first two runs
    }
    assert job_service.fair_order(owners) == [1, 4, 2, 5, 3, 6]
    # Owners who have never been served go before one who was.
    assert job_service.fair_order({"a": job_service.Owner((1,), last_started=5.0), "b": job_service.Owner((2,))}) == [2, 1]


def test_old_runs_take_turns_by_owner_name(store):
    ada = [run_of(store, None, owner="Ada") for _ in range(3)]
    bob = run_of(store, None, owner="Bob")
    assert job_service.queued_run_ids(store) == [ada[0], bob, ada[1], ada[2]]


def test_the_cap_refuses_a_third_queued_run_but_not_the_teacher_or_admin(store, monkeypatch):
    monkeypatch.delenv("LAYERLAB_MAX_QUEUED_PER_OWNER", raising=False)
    service = job_service.JobService(store)
    settings = TrainSettings.from_dict(SETTINGS)
    for _ in range(2):
        service.submit(LOGISTIC, settings, actor=STUDENT_A)
    with pytest.raises(QueueFull) as refused:
        service.submit(LOGISTIC, settings, actor=STUDENT_A)
    assert refused.value.code == "queue.owner_full" and refused.value.params == {"count": 2, "limit": 2}
    assert "at most 2" in str(refused.value) and refused.value.render("ko") != str(refused.value)
    service.submit(LOGISTIC, settings, actor=STUDENT_B)  # another student is not held back
    for _ in range(3):
        service.submit(LOGISTIC, settings, actor=TEACHER)
        service.submit(LOGISTIC, settings)  # the admin
    # A resume joins the queue too: held to the cap for the student, not for the teacher.
    stopped = resumable_run(store, KEY_A)
    with pytest.raises(QueueFull):
        service.resume(stopped, actor=STUDENT_A)
    assert store.get(stopped, with_metrics=False).status == "interrupted"
    monkeypatch.setenv("LAYERLAB_MAX_QUEUED_PER_OWNER", "3")
    service.submit(LOGISTIC, settings, actor=STUDENT_A)
    service.resume(stopped, actor=TEACHER)
    assert len([run for run in store.list(status="queued") if run.owner_key_hash == STUDENT_A.key_hash]) == 4


# ----------------------------------------------------------------------------- the teacher


def test_no_passcode_configured_means_no_teacher(monkeypatch):
    monkeypatch.delenv(access.PASSCODE_VARIABLE, raising=False)
    assert access.configured_passcode() is None
    gate = TeacherGate(access.configured_passcode())
    assert not gate.enabled and gate.check("") is False and gate.check("anything") is False
    monkeypatch.setenv(access.PASSCODE_VARIABLE, "   ")
    assert access.configured_passcode() is None
    monkeypatch.setenv(access.PASSCODE_VARIABLE, "owl-42")
    assert TeacherGate(access.configured_passcode()).check("owl-42") is True


def test_wrong_passcodes_are_rate_limited_and_the_lock_doubles():
    now = [1000.0]
    gate = TeacherGate("owl-42", clock=lambda: now[0])
    assert [gate.check("guess") for _ in range(access.FREE_GUESSES)] == [False] * access.FREE_GUESSES
    with pytest.raises(TeacherLocked) as locked:
        gate.check("owl-42")  # even the right passcode waits out the lock
    assert locked.value.params["seconds"] == 31
    now[0] += access.FIRST_LOCKOUT_SECONDS + 0.1
    assert gate.check("wrong again") is False
    now[0] += access.FIRST_LOCKOUT_SECONDS + 0.1  # the second lock is twice as long
    with pytest.raises(TeacherLocked):
        gate.check("owl-42")
    now[0] += access.FIRST_LOCKOUT_SECONDS
    assert gate.check("owl-42") is True and gate.wrong == 0


# ----------------------------------------------------------------------------- the CLI


def cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", *arguments], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, env={**os.environ}
    )


def test_cli_as_owner_obeys_the_browser_rules_and_delete_works(store):
    a_run, b_run = run_of(store, KEY_A, "succeeded"), run_of(store, KEY_B)
    refused = cli("cancel", str(b_run), "--as-owner", KEY_A)
    assert refused.returncode == 2 and "only its owner or the teacher" in refused.stderr
    korean = cli("delete", str(b_run), "--as-owner", KEY_A, "--lang", "ko", "--json")
    assert korean.returncode == 2 and json.loads(korean.stdout.splitlines()[-1])["error"] == render(
        "access.not_yours", {"run": b_run, "owner": "—"}, "ko"
    )
    assert store.get(b_run, with_metrics=False).status == "queued"

    assert cli("cancel", str(b_run), "--as-owner", KEY_B).returncode == 0
    assert store.get(b_run, with_metrics=False).status == "cancelled"
    deleted = cli("delete", str(a_run), "--as-owner", KEY_A, "--json")
    assert deleted.returncode == 0 and json.loads(deleted.stdout.splitlines()[-1]) == {"run_id": a_run, "deleted": True}
    assert cli("delete", str(b_run)).returncode == 0  # the admin
    assert store.list() == []
    missing = cli("delete", str(b_run))
    assert missing.returncode == 2 and f"There is no run {b_run}" in missing.stderr
    resumable = resumable_run(store, KEY_A)
    assert cli("resume", str(resumable), "--as-owner", KEY_B).returncode == 2
    assert store.get(resumable, with_metrics=False).status == "interrupted"
    malformed = cli("cancel", str(a_run), "--as-owner", "guess")
    assert malformed.returncode == 2 and "--as-owner needs an owner key" in malformed.stderr


def test_the_estimated_start_is_when_the_nth_running_run_ends(store):
    from core.views import run_views

    def running_with(step: int) -> object:  # 100 steps of 10 images at 1,000 images/s, `step` of them done
        run_id = store.create(LOGISTIC, {"batch_size": 10, "epochs": 1}, status="running")
        store.update(run_id, progress={"epoch": 1, "epochs": 1, "step": step, "steps_per_epoch": 100, "global_step": step,
                                       "loss": 0.5, "images_per_second": 1000.0})  # fmt: skip
        return store.get(run_id)

    soon, later = running_with(90), running_with(10)
    etas = [run_views.progress_view(run).eta_seconds for run in (soon, later)]
    assert etas[0] < etas[1]
    assert run_views.estimated_wait([later, soon], 1) == pytest.approx(etas[0])
    assert run_views.estimated_wait([later, soon], 2) == pytest.approx(etas[1])
    assert run_views.estimated_wait([later, soon], 3) is None  # waits for a run that has not started: unknown
    store.update(soon.id, progress={})
    assert run_views.estimated_wait([later, store.get(soon.id)], 1) is None  # one ETA unknown: no guess


def test_run_names_in_chart_legends_are_escaped_for_plotly():
    from core.views import attack_plots, run_views

    # Plotly reads a few tags (<b>, <a href>) in trace names and turns entities back into characters, so escaped text shows as typed.
    assert run_views.legend_text("#3 <b>x</b> & y") == "#3 &lt;b&gt;x&lt;/b&gt; &amp; y"
    point = type("Point", (), {"name": "#1 <img src=x onerror=alert(1)>", "method": "fgsm", "epsilon": 0.1, "accuracy": 0.5})
    figure = attack_plots.robustness_curve([point], {"fgsm": "FGSM"}, "ε", "accuracy")
    assert figure.data[0].name == "#1 &lt;img src=x onerror=alert(1)&gt; · FGSM"


def test_cli_train_as_owner_is_held_to_the_queue_cap(store, monkeypatch):
    monkeypatch.delenv("LAYERLAB_MAX_QUEUED_PER_OWNER", raising=False)
    for _ in range(2):
        run_of(store, KEY_A)
    refused = cli("train", "--preset", "logistic-regression", "--background", "--as-owner", KEY_A, "--json")
    assert refused.returncode == 2
    assert json.loads(refused.stdout.splitlines()[-1])["error"] == render("queue.owner_full", {"count": 2, "limit": 2})
    assert len(store.list()) == 2


def test_cli_runs_show_gives_the_fair_position_and_the_estimated_start(store):
    import time

    from core.views import run_views

    now = time.time()
    running = store.create(LOGISTIC, {"batch_size": 10, "epochs": 1}, status="running", owner_key_hash=access.key_hash(KEY_A))
    # This process stands in for its worker (alive, started after the run), so no reader ends the run as lost.
    store.update(running, worker_pid=os.getpid(), started_at=now, heartbeat_at=now, progress={
        "epoch": 1, "epochs": 1, "step": 50, "steps_per_epoch": 100, "global_step": 50, "loss": 0.5, "images_per_second": 1000.0})  # fmt: skip
    a_queued, b_queued = run_of(store, KEY_A), run_of(store, KEY_B)
    shown = cli("runs", "show", str(b_queued), "--json")
    assert shown.returncode == 0, shown.stderr
    payload = json.loads(shown.stdout.splitlines()[-1])
    assert payload["queue_position"] == 1  # A has a run going, so B's first queued run goes before A's second
    assert payload["estimated_start_seconds"] == pytest.approx(run_views.progress_view(store.get(running)).eta_seconds, abs=1e-6)
    assert json.loads(cli("runs", "show", str(a_queued), "--json").stdout.splitlines()[-1])["estimated_start_seconds"] is None
