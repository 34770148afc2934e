"""AppTest tests of the Train and Runs pages: they load, a short run trains to the end and shows
the numbers the store holds, the Runs page lists it and deletes it, failures show their message,
and Korean shows Korean.

The scheduler runs in a thread of the test process and holds the runs directory's lock, so
the page's `ensure_scheduler()` finds it and starts no process of its own; the fixture stops
it (and its worker processes) at the end of each test.
"""

from __future__ import annotations

import fcntl
import json
import threading
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.jobs import access, disk, runner
from core.jobs import scheduler as job_scheduler
from core.jobs import service as job_service
from core.jobs.store import FINISHED, RunNotFound, RunStore
from core.training.presets import get as get_preset
from core.training.settings import TrainSettings
from core.views import builder_state, i18n, run_views, train_form

APP = str(Path(__file__).resolve().parent.parent / "app.py")
ADA_KEY = access.new_key()  # the browser "ada" uses: her runs carry its hash
RUN_DEADLINE = 180.0  # seconds a 20-step logistic-regression run may take, worker start-up included


@pytest.fixture
def app_store(runs_dir) -> RunStore:
    """A fresh runs directory that the app's cached job service also uses."""
    st.cache_resource.clear()  # `service()` is cached per process; make it pick up this test's LAYERLAB_RUNS.
    st.cache_data.clear()
    yield RunStore(runs_dir)
    st.cache_resource.clear()


@pytest.fixture
def scheduler(app_store):
    """The job scheduler, in a thread of this process, holding the lock that ensure_scheduler checks."""
    lock = open(app_store.directory / "scheduler.lock", "a+")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    running = job_scheduler.Scheduler(app_store, limit=1)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            running.step()
            stop.wait(job_scheduler.POLL_SECONDS)

    thread = threading.Thread(target=loop, name="test-scheduler", daemon=True)
    thread.start()
    yield running
    stop.set()
    thread.join(timeout=10)
    running.shutdown()  # Terminates and joins any worker still running.
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()


def open_page(page: str, language: str = "en", **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for name, value in state.items():
        at.session_state[name] = value
    at.run()  # The default page (Build) first, in English: AppTest calls widgets' format_func outside the run.
    at.session_state["language"] = language
    at.switch_page(page)
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Everything the page wrote as text, for 'does it say X' checks."""
    kinds = ("title", "subheader", "markdown", "caption", "info", "error", "warning")
    parts = [element.value for kind in kinds for element in at.get(kind)]
    parts += [element.label for element in at.get("button")] + [element.label for element in at.get("number_input")]
    return "\n".join(str(part) for part in parts)


def logistic_state() -> dict:
    return {"network": get_preset("logistic-regression").network, "preset": "logistic-regression"}


def test_train_page_loads_with_the_preset_defaults(app_store):
    at = open_page("pages/train.py")
    assert at.title[0].value == i18n.translate("en", "train.title")
    expected = get_preset("nielsen-2-conv-pool").train_settings()
    assert at.number_input(key="train.epochs").value == expected.epochs
    assert at.number_input(key="train.batch_size").value == expected.batch_size
    assert at.number_input(key="train.learning_rate").value == pytest.approx(expected.learning_rate)
    assert "98.78%" in texts(at)  # the book's figure for this preset


def test_runs_page_loads_empty(app_store):
    at = open_page("pages/runs.py")
    assert at.info[0].value == i18n.translate("en", "runs.empty")


def test_invalid_setting_shows_next_to_its_field(app_store):
    at = open_page("pages/train.py", **logistic_state())
    at.number_input(key="train.learning_rate").set_value(0.0).run()
    assert not at.exception
    # Named as the form names it ("Learning rate η"), not by its code name.
    assert any(i18n.translate("en", "train.field.learning_rate") in error.value for error in at.error)
    assert not any("learning_rate" in error.value for error in at.error)
    assert at.button(key="train.submit").disabled


def test_short_run_trains_to_the_end_then_runs_page_lists_and_deletes_it(app_store, scheduler):
    at = open_page("pages/train.py", owner="ada", **logistic_state())
    at.number_input(key="train.epochs").set_value(1)
    at.number_input(key="train.max_steps").set_value(20)
    at.number_input(key="train.train_subset").set_value(2000)
    at.button(key="train.submit").click().run()
    assert not at.exception, [error.value for error in at.exception]
    run_id = at.session_state["selected_run"]
    assert run_id is not None and at.query_params["run"] == str(run_id)
    assert app_store.get(run_id).owner == "ada"

    # AppTest does not fire the fragment's timer: rerun the page until the run is over.
    deadline = time.monotonic() + RUN_DEADLINE
    while app_store.get(run_id, with_metrics=False).status not in FINISHED:
        assert time.monotonic() < deadline, f"run {run_id} still {app_store.get(run_id).status}"
        at.run()
        assert not at.exception, [error.value for error in at.exception]
        time.sleep(0.5)
    at.run()
    run = app_store.get(run_id)
    assert run.status == "succeeded", run.message
    assert run.settings["max_steps"] == 20 and len(run.metrics) == 1
    shown = {metric.label: metric.value for metric in at.metric}
    assert shown[i18n.translate("en", "common.test_accuracy")] == run_views.percent(run.test_accuracy)
    assert shown[i18n.translate("en", "common.best_validation_accuracy")] == run_views.percent(run.best_validation_accuracy)
    assert at.get("plotly_chart"), "the training curves are missing"
    assert i18n.translate("en", "common.status.succeeded") in at.subheader[0].value

    # Let the scheduler reap the finished worker first: it reads the run's row once more when it does.
    while scheduler.workers and time.monotonic() < deadline:
        time.sleep(0.1)

    # The Runs page lists it; ticking its row and confirming the delete removes it from the store.
    at.switch_page("pages/runs.py").run()
    assert not at.exception, [error.value for error in at.exception]
    table = at.dataframe[0]
    assert list(table.value["id"]) == [run_id]
    assert table.value["test_accuracy"][0] == pytest.approx(run.test_accuracy * 100)
    at.session_state[table.key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    assert at.get("plotly_chart"), "the overlay of the selected run is missing"
    at.button(key="runs.delete_confirm").click().run()
    assert not at.exception, [error.value for error in at.exception]
    with pytest.raises(RunNotFound):
        app_store.get(run_id)
    assert at.info[0].value == i18n.translate("en", "runs.empty")


def test_diverged_run_shows_what_to_change(app_store):
    network = get_preset("logistic-regression").network
    settings = get_preset("logistic-regression").train_settings(learning_rate=100.0).to_dict()
    run_id = app_store.create(network, settings, owner="ada", status="diverged")
    message = "The loss became nan at epoch 1, step 3: the run diverged. Lower the learning rate (now 100), e.g. to 10."
    app_store.update(run_id, message=message, finished_at=time.time())
    at = open_page("pages/train.py", selected_run=run_id, **logistic_state())
    assert any(message in error.value for error in at.error)
    assert any(i18n.translate("en", "train.outcome.diverged") in error.value for error in at.error)
    at.switch_page("pages/runs.py").run()
    at.session_state[at.dataframe[0].key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert any(message in error.value for error in at.error)
    # "Settings → Train" brings the run's settings back, to change the learning rate it names.
    at.button(key="runs.open_settings").click().run()
    assert not at.exception, [error.value for error in at.exception]
    assert at.number_input(key="train.learning_rate").value == 100.0


def test_a_run_that_really_diverges_says_to_lower_the_learning_rate(app_store, scheduler):
    # Nielsen's ReLU network with η = 100 overflows within a few steps (η = 0.03 in the book).
    state = {"network": get_preset("nielsen-4-relu-l2").network, "preset": "nielsen-4-relu-l2"}
    at = open_page("pages/train.py", **state)
    at.number_input(key="train.learning_rate").set_value(100.0)
    at.number_input(key="train.max_steps").set_value(50)
    at.number_input(key="train.train_subset").set_value(2000)
    at.button(key="train.submit").click().run()
    run_id = at.session_state["selected_run"]
    deadline = time.monotonic() + RUN_DEADLINE
    while app_store.get(run_id, with_metrics=False).status not in FINISHED:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    at.run()
    run = app_store.get(run_id)
    assert run.status == "diverged", run.message
    shown = [error.value for error in at.error]
    assert any(run.message in text and "Lower the learning rate" in text for text in shown), shown
    assert "train.resume" not in [button.key for button in at.button]  # a diverged run is retrained, not resumed


def wait_until_finished(store: RunStore, run_id: int) -> None:
    deadline = time.monotonic() + RUN_DEADLINE
    while store.get(run_id, with_metrics=False).status not in FINISHED:
        assert time.monotonic() < deadline, f"run {run_id} still {store.get(run_id).status}"
        time.sleep(0.3)


def test_resume_an_interrupted_run_from_the_runs_page(app_store, scheduler):
    # A one-epoch run leaves its resume state; calling it interrupted with a second epoch still to go
    # is what a server restart after epoch 1 of 2 leaves behind.
    service = job_service.JobService(app_store)
    settings = get_preset("logistic-regression").train_settings(epochs=1, train_subset=2000)
    run_id = service.submit(get_preset("logistic-regression").network, settings, owner="ada", actor=access.Actor.for_key(ADA_KEY))
    wait_until_finished(app_store, run_id)
    while scheduler.workers:
        time.sleep(0.1)
    app_store.update(run_id, status="interrupted", message="The server restarted.", settings={**settings.to_dict(), "epochs": 2})
    at = open_page("pages/runs.py", owner="ada", owner_key=ADA_KEY)
    at.session_state[at.dataframe[0].key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert any("The server restarted." in warning.value for warning in at.warning)
    at.button(key="runs.resume").click().run()  # resumes and shows the run on Train
    assert not at.exception, [error.value for error in at.exception]
    assert at.session_state["selected_run"] == run_id and at.title[0].value == i18n.translate("en", "train.title")
    wait_until_finished(app_store, run_id)
    at.switch_page("pages/train.py").run()  # AppTest's next run() would go back to the page it last switched to
    run = app_store.get(run_id)
    assert run.status == "succeeded" and [row["epoch"] for row in run.metrics] == [1, 2]
    assert {metric.label: metric.value for metric in at.metric}[i18n.translate("en", "common.epochs")] == "2/2"


def test_runs_page_shows_disk_use_and_frees_it_for_the_owner(app_store):
    settings = TrainSettings(epochs=12, batch_size=100, train_subset=500, learning_rate=0.5, device="cpu")
    run_id = app_store.create(
        get_preset("logistic-regression").network, settings.to_dict(), owner="ada", owner_key_hash=access.key_hash(ADA_KEY)
    )
    assert runner.execute(app_store, run_id) == "succeeded"  # in this process: 12 epoch checkpoints, best, resume state
    run = app_store.get(run_id, with_metrics=False)
    before = disk.run_disk_use(app_store, run_id)

    # Someone else (another browser, so another key) sees the run's disk use but not the action that frees it.
    at = open_page("pages/runs.py", owner="bo")
    at.radio(key="runs.scope").set_value("everyone").run()
    assert list(at.dataframe[0].value["disk"]) == [run_views.format_bytes(before)]
    assert i18n.translate("en", "runs.disk_total", count=1, size=run_views.format_bytes(before)) in texts(at)
    at.session_state[at.dataframe[0].key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert "runs.prune_confirm" not in [button.key for button in at.button]

    # Its owner frees it: the thinned epochs and best.safetensors stay, and the page says what went.
    at = open_page("pages/runs.py", owner="ada", owner_key=ADA_KEY)
    at.session_state[at.dataframe[0].key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    at.button(key="runs.prune_confirm").click().run()
    assert not at.exception, [error.value for error in at.exception]
    after = disk.run_disk_use(app_store, run_id)
    kept = disk.epochs_to_keep(12, run.best_epoch, disk.PRUNE_BUDGET)
    assert len(kept) < 12
    # The initial weights (epoch 0) are never pruned: a replay of the filters starts from them.
    assert [path.name for path in app_store.epoch_checkpoints(run_id)] == [f"epoch_{epoch:03d}.safetensors" for epoch in [0, *kept]]
    assert app_store.best_checkpoint_path(run_id).is_file() and not app_store.resume_state_path(run_id).exists()
    freed, left = run_views.format_bytes(before - after), run_views.format_bytes(after)
    assert [message.value for message in at.success] == [i18n.translate("en", "runs.pruned", id=run_id, freed=freed, left=left)]
    assert list(at.dataframe[0].value["disk"]) == [left]


def test_selected_run_comes_back_from_the_url(app_store):
    run_id = app_store.create(get_preset("logistic-regression").network, {"dataset": "mnist"}, status="cancelled")
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = str(run_id)
    at.run()
    at.switch_page("pages/train.py").run()
    assert at.session_state["selected_run"] == run_id
    assert f"#{run_id}" in at.subheader[0].value


@pytest.mark.parametrize("value", ["²", "٣", "99999999999999999999", str(2**63), "0", "-1", "1e3", "7\n", ""])
def test_a_run_in_the_url_that_names_none_is_ignored(app_store, value):
    # "²" and "٣" pass str.isdigit(); 2**63 and more overflow SQLite's integers.
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = value
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, [error.value for error in at.exception]
    assert at.session_state["selected_run"] is None
    assert i18n.translate("en", "train.no_run") in [info.value for info in at.info]


def test_the_largest_run_id_in_the_url_is_looked_up_not_crashed_on(app_store):
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = str(2**63 - 1)
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, [error.value for error in at.exception]
    assert at.session_state["selected_run"] is None  # The run does not exist, so the page lets it go.
    assert i18n.translate("en", "train.run_gone", id=2**63 - 1) in [info.value for info in at.info]


def test_korean_labels(app_store):
    run_id = app_store.create(get_preset("logistic-regression").network, {"dataset": "mnist", "epochs": 3}, status="succeeded")
    at = open_page("pages/train.py", language="ko", selected_run=run_id, **logistic_state())
    assert at.title[0].value == i18n.translate("ko", "train.title")
    assert at.number_input(key="train.learning_rate").label == i18n.translate("ko", "train.field.learning_rate")
    assert "학습률" in at.number_input(key="train.learning_rate").label
    assert i18n.translate("ko", "common.status.succeeded") in at.subheader[0].value
    at.switch_page("pages/runs.py").run()
    assert at.title[0].value == "실행 기록"
    assert list(at.dataframe[0].value["status"]) == [i18n.translate("ko", "common.status.succeeded")]


# ----------------------------------------------------------------------------- issue 8: a guided start, a refresh keeps everything


def test_a_long_run_warns_and_offers_short_settings(app_store):
    at = open_page("pages/train.py")  # Nielsen 2's book settings: 60 epochs of 50,000 images in mini-batches of 10
    warning_start = i18n.translate("en", "train.estimate_long", time="", epochs=2, batch_size=64, train_subset="10,000").split(" ")[0:4]
    assert any(warning.value.startswith(" ".join(warning_start)) for warning in at.warning), [warning.value for warning in at.warning]
    at.button(key="train_use_short").click().run()
    assert not at.exception
    short = train_form.SHORT_SETTINGS
    assert at.number_input(key="train.epochs").value == short["epochs"]
    assert at.number_input(key="train.batch_size").value == short["batch_size"]
    assert at.number_input(key="train.train_subset").value == short["train_subset"]
    assert not any(warning.value.startswith(" ".join(warning_start)) for warning in at.warning)
    estimate = i18n.translate("en", "train.estimate", time="", source="").split(":")[0]
    assert any(caption.value.startswith(estimate) for caption in at.caption), "the short run's estimate is still shown"


def test_the_book_figure_is_shown_only_for_the_books_network(app_store):
    network = builder_state.to_spec(builder_state.editable(get_preset("nielsen-2-conv-pool").network))
    network["layers"][2]["units"] = 50
    at = open_page("pages/train.py", network=network, preset="nielsen-2-conv-pool")
    assert "98.78%" not in texts(at)
    assert at.number_input(key="train.epochs").value == 60, "the preset's settings still apply to its edited network"


def test_default_run_names_are_distinct(app_store):
    app_store.create(get_preset("nielsen-2-conv-pool").network, {}, name="nielsen-2-conv-pool #1", status="succeeded")
    at = open_page("pages/train.py")
    assert at.text_input(key="train.name").placeholder == "nielsen-2-conv-pool #2"
    network = builder_state.to_spec(builder_state.editable(get_preset("nielsen-2-conv-pool").network))
    network["layers"][2]["units"] = 50
    edited = open_page("pages/train.py", network=network, preset="nielsen-2-conv-pool")
    assert edited.text_input(key="train.name").placeholder == "network #1", "an edited preset does not claim its name"


def test_the_settings_being_edited_survive_a_refresh(app_store):
    at = open_page("pages/train.py", **logistic_state())
    at.number_input(key="train.epochs").set_value(7).run()
    at.number_input(key="train.learning_rate").set_value(0.25).run()
    query = dict(at.query_params)
    st.cache_resource.clear()  # a restarted server: only the draft file remembers
    fresh = AppTest.from_file(APP, default_timeout=60)
    fresh.query_params.update({"draft": query["draft"], "lang": "ko"})
    fresh.run()
    fresh.switch_page("pages/train.py").run()
    assert not fresh.exception
    assert fresh.number_input(key="train.epochs").value == 7
    assert fresh.number_input(key="train.learning_rate").value == pytest.approx(0.25)
    assert fresh.session_state["network"] == builder_state.to_spec(builder_state.check_editable(get_preset("logistic-regression").network))
    assert fresh.title[0].value == i18n.translate("ko", "train.title")


def test_the_adversarial_section_submits_an_fgsm_run(app_store, monkeypatch):
    monkeypatch.setattr(job_service.JobService, "ensure_scheduler", lambda self: True)  # the run is only queued here
    at = open_page("pages/train.py", owner="ada", **logistic_state())
    assert "train.adversarial_epsilon" not in [box.key for box in at.number_input]  # nothing to size while training is plain
    at.selectbox(key="train.adversarial").set_value("fgsm").run()
    assert not at.exception, [error.value for error in at.exception]
    epsilon = at.number_input(key="train.adversarial_epsilon")
    assert epsilon.label == i18n.translate("en", "train.field.adversarial_epsilon") and epsilon.value == pytest.approx(0.3)
    assert "train.adversarial_steps" not in [box.key for box in at.number_input]  # PGD's steps only for PGD
    at.number_input(key="train.robust_eval_images").set_value(100)
    at.number_input(key="train.adversarial_warmup_epochs").set_value(0.5)
    at.number_input(key="train.max_steps").set_value(5)
    at.button(key="train.submit").click().run()
    assert not at.exception, [error.value for error in at.exception]
    stored = app_store.get(at.session_state["selected_run"]).settings
    assert stored["adversarial"] == "fgsm" and stored["adversarial_epsilon"] == pytest.approx(0.3)
    assert stored["robust_eval_images"] == 100 and stored["adversarial_warmup_epochs"] == 0.5
    assert TrainSettings.from_dict(stored).adversarial == "fgsm"


@pytest.mark.parametrize("language", ["en", "ko"])
def test_a_run_with_robust_accuracy_shows_it_beside_clean_accuracy(app_store, language):
    settings = get_preset("logistic-regression").train_settings(adversarial="fgsm", robust_eval_images=1000, epochs=2).to_dict()
    run_id = app_store.create(get_preset("logistic-regression").network, settings, status="succeeded")
    for epoch, robust in ((1, 0.4125), (2, 0.8125)):
        metrics = {"epoch": epoch, "train_loss": 0.5, "train_accuracy": 0.9, "validation_loss": 0.3, "validation_accuracy": 0.95,
                   "test_accuracy": 0.94, "learning_rate": 0.01, "seconds": 1.0, "images_per_second": 100.0, "robust_accuracy": robust}  # fmt: skip
        app_store.record_epoch(run_id, metrics, epochs_done=epoch, best_epoch=epoch, best_validation_accuracy=0.95, test_accuracy=0.94)
    at = open_page("pages/train.py", language=language, selected_run=run_id, **logistic_state())
    shown = {metric.label: metric for metric in at.metric}
    robust = shown[i18n.translate(language, "common.robust_accuracy")]
    assert robust.value == "81.25%" and "1,000" in robust.help
    curves = next(json.loads(chart.proto.spec) for chart in at.get("plotly_chart") if chart.key == "train.curves")
    trace = next(trace for trace in curves["data"] if trace["name"] == i18n.translate(language, "train.plot.robust"))
    assert trace["y"] == [41.25, 81.25]
