"""Tests for core.run_views and the curve figures: the ETA follows from speed and step counts, the
CSV holds exactly the stored metrics, and table rows and figures show the store's numbers."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from core.jobs.store import METRIC_NAMES
from core.model import vocabulary
from core.training.presets import get as get_preset
from core.views import plots, run_views
from core.views.i18n import translate

NETWORK = get_preset("nielsen-2-conv-pool").network


def progress(epoch=1, epochs=2, step=50, steps_per_epoch=100, images_per_second=1000.0):
    return {
        "epoch": epoch,
        "epochs": epochs,
        "step": step,
        "steps_per_epoch": steps_per_epoch,
        "global_step": (epoch - 1) * steps_per_epoch + step,
        "loss": 0.5,
        "images_per_second": images_per_second,
    }


def metrics_row(epoch, seconds=3.0, images_per_second=1000.0, accuracy=0.9):
    return {
        "epoch": epoch,
        "train_loss": 0.4 / epoch,
        "train_accuracy": accuracy - 0.01,
        "validation_loss": 0.35 / epoch,
        "validation_accuracy": accuracy,
        "test_accuracy": accuracy - 0.002,
        "learning_rate": 0.1,
        "seconds": seconds,
        "images_per_second": images_per_second,
    }


# Before an epoch has finished, each epoch end is guessed to evaluate 20,000 images at three times the training speed.
GUESSED_EVALUATION = run_views.EVALUATION_IMAGES / (run_views.EVALUATION_SPEEDUP * 1000.0)


def test_eta_before_any_epoch_is_the_remaining_images_at_the_current_speed_and_a_guessed_evaluation():
    # 150 steps of 10 images left at 1,000 images/s, and two epoch ends (issue 8: evaluation time was left out).
    assert run_views.eta_seconds(progress(), {"batch_size": 10}, []) == pytest.approx(1.5 + 2 * GUESSED_EVALUATION)


def test_eta_adds_one_evaluation_per_remaining_epoch_end():
    # Epoch 1 took 3 s, of which 100 steps × 10 images at 1,000 images/s were training: 2 s were evaluation.
    history = [metrics_row(1, seconds=3.0)]
    eta = run_views.eta_seconds(progress(epoch=2, step=50), {"batch_size": 10}, history)
    assert eta == pytest.approx(50 * 10 / 1000 + 2.0)


def test_eta_stops_at_max_steps():
    # max_steps 60 ends the run inside epoch 1: 10 steps and one evaluation are left, not 150 steps and two.
    history = []
    assert run_views.eta_seconds(progress(step=50), {"batch_size": 10, "max_steps": 60}, history) == pytest.approx(0.1 + GUESSED_EVALUATION)
    assert run_views.total_steps(progress(), {"max_steps": 60}) == 60


def test_eta_is_unknown_without_a_speed():
    assert run_views.eta_seconds(progress(images_per_second=0.0), {"batch_size": 10}, []) is None


def test_eta_after_an_epoch_ignores_a_slow_start_of_the_next_one():
    # Epoch 1 trained at 1,000 images/s and took 3 s; epoch 2's first steps report 50 images/s (the data
    # was being shuffled): the time left follows the finished epoch, not that blip.
    history = [metrics_row(1, seconds=3.0)]
    eta = run_views.eta_seconds(progress(epoch=2, step=2, images_per_second=50.0), {"batch_size": 10}, history)
    assert eta == pytest.approx(98 * 10 / 1000 + 2.0)


def simulated_updates(epoch_seconds=50.0, evaluation_share=0.7, steps=100, epochs=3, batch_size=64, noise=None):
    """Progress as a worker reports it twice a second for a run whose epochs train for `epoch_seconds`,
    then evaluate for `evaluation_share` of the time eta_seconds guesses at first; the reported speed
    of an epoch's first steps may be off (`noise`), as on a real server."""
    speed = steps * batch_size / epoch_seconds
    evaluation_seconds = evaluation_share * run_views.EVALUATION_IMAGES / (run_views.EVALUATION_SPEEDUP * speed)
    now, history, updates = 0.0, [], []
    for epoch in range(1, epochs + 1):
        for step in range(1, steps + 1, 2):
            now += 2 * epoch_seconds / steps
            reported = speed * (noise(step) if noise else 1.0)
            updates.append((now, progress(epoch, epochs, step, steps, reported), list(history)))
        now += evaluation_seconds
        history.append(metrics_row(epoch, seconds=epoch_seconds + evaluation_seconds, images_per_second=speed))
    return updates, now


def shown_times(updates, batch_size=64):
    state, shown = None, []
    for now, update, history in updates:
        raw = run_views.eta_seconds(update, {"batch_size": batch_size}, history)
        state = run_views.smooth_eta(state, 7, raw, now)
        shown.append((now, state["eta"]))
    return shown


@pytest.mark.parametrize("noise", [None, lambda step: 0.1 if step < 5 else 1.0, lambda step: 0.5 + (step % 7) / 7])
def test_the_shown_time_left_never_jumps_up_while_the_run_advances(noise):
    updates, finish = simulated_updates(noise=noise)
    shown = shown_times(updates)
    for (_, before), (_, after) in zip(shown, shown[1:]):
        assert after <= before * run_views.ETA_MAX_RISE + 1e-9, f"{before:.1f} s → {after:.1f} s"
    # And it is honest: from ten updates into the second epoch, within 25 % (+ 5 s) of the real time left.
    for now, eta in shown[len(shown) // 3 + 10 :]:
        assert abs(eta - (finish - now)) <= 0.25 * (finish - now) + 5.0, (now, eta, finish - now)


def test_the_first_estimate_includes_evaluation_time():
    # Half-way through a one-epoch run: the training left plus an evaluation, within 1.5 × of the truth (not 8:53 for 50 s).
    updates, finish = simulated_updates(epochs=1)
    now, update, history = updates[len(updates) // 2]
    raw = run_views.eta_seconds(update, {"batch_size": 64}, history)
    training_left = 50.0 - now
    assert training_left < raw <= (finish - now) * 1.5


def test_smoothing_starts_again_for_another_run_and_keeps_its_value_without_an_estimate():
    state = run_views.smooth_eta(None, 1, 100.0, 0.0)
    assert run_views.smooth_eta(state, 1, None, 1.0) == state
    assert run_views.smooth_eta(state, 2, 40.0, 1.0) == {"run": 2, "eta": 40.0, "at": 1.0}
    assert run_views.smooth_eta(state, 2, None, 1.0) is None
    # Counting down: a second later with the same estimate, it moves towards it from 99 s.
    assert run_views.smooth_eta(state, 1, 100.0, 1.0)["eta"] == pytest.approx(99 + 0.3 * 1)


def test_default_run_names_are_distinct():
    assert run_views.next_run_name("fast", []) == "fast #1"
    assert run_views.next_run_name("fast", ["fast #1", "fast #3", "fast", "faster #9", "fast #x", "fast #²"]) == "fast #4"
    assert run_views.next_run_name("신경망", ["신경망 #1"]) == "신경망 #2"


def test_progress_view_of_a_running_run(store):
    run_id = store.create(NETWORK, {"batch_size": 10, "epochs": 2}, status="running")
    store.update(run_id, progress=progress(epoch=2, step=25))
    view = run_views.progress_view(store.get(run_id))
    assert (view.epoch, view.epochs, view.step, view.steps_per_epoch) == (2, 2, 25, 100)
    assert view.fraction == pytest.approx(125 / 200)
    assert view.eta_seconds == pytest.approx(75 * 10 / 1000 + GUESSED_EVALUATION)
    assert run_views.progress_view(store.get(store.create(NETWORK, {}, status="queued"))) is None


@pytest.mark.parametrize(
    "seconds, text", [(0, "0:00"), (42.4, "0:42"), (725, "12:05"), (3723, "1:02:03"), (None, "–"), (float("inf"), "–")]
)
def test_format_duration(seconds, text):
    assert run_views.format_duration(seconds) == text


def test_percent():
    assert run_views.percent(0.98784) == "98.78%"
    assert run_views.percent(None) == "–"


def test_metrics_csv_rows_equal_the_stored_metrics(store):
    run_id = store.create(NETWORK, {}, status="running")
    for epoch in (1, 2, 3):
        store.record_epoch(run_id, metrics_row(epoch, accuracy=0.9 + epoch / 100))
    stored = store.metrics(run_id)
    rows = list(csv.DictReader(io.StringIO(run_views.metrics_csv(stored))))
    assert list(rows[0]) == ["epoch", *METRIC_NAMES]
    assert len(rows) == len(stored) == 3
    for row, expected in zip(rows, stored):
        assert int(row["epoch"]) == expected["epoch"]
        for name in METRIC_NAMES:  # repr-exact floats survive the round trip; a missing value is an empty cell
            assert (float(row[name]) if row[name] else None) == expected[name], name


def test_network_json_round_trips(store):
    run = store.get(store.create(NETWORK, {}, status="succeeded"))
    assert json.loads(run_views.network_json(run)) == run.spec
    assert run_views.download_name(run, "network", "json") == f"run-{run.id}-network.json"


def test_table_rows_show_the_stored_numbers(store):
    first = store.create(NETWORK, {"dataset": "mnist", "epochs": 3}, owner="ada", status="succeeded", parameters=1234, owner_key_hash="ada-hash")
    store.record_epoch(first, metrics_row(1), epochs_done=1, best_epoch=1, best_validation_accuracy=0.9, test_accuracy=0.898, seconds=3.0)
    second = store.create(get_preset("logistic-regression").network, {"dataset": "fashion-mnist"}, owner="bo", status="queued")
    store.best_checkpoint_path(first).write_bytes(b"w" * 6_700_000)
    runs = store.list()
    disk_bytes = run_views.disk_use(store, runs)
    assert disk_bytes == {first: 6_700_000, second: 0}
    rows = run_views.table_rows(runs, "ko", disk_bytes=disk_bytes)
    assert [row["id"] for row in rows] == [second, first]  # newest first, as the store lists them
    assert [row["disk"] for row in rows] == ["0 B", "6.7 MB"]
    assert run_views.table_rows(runs)[0]["disk"] == "–"  # not measured
    finished = rows[1]
    assert finished["best_validation_accuracy"] == pytest.approx(90.0)
    assert finished["test_accuracy"] == pytest.approx(89.8)
    assert finished["epochs"] == "1/3" and finished["time"] == "0:03" and finished["parameters"] == 1234
    assert finished["status"] == translate("ko", "common.status.succeeded")
    # The network line speaks the table's language: layer names from the catalogs, not code names.
    assert finished["network"] == "합성곱 20 × 5×5 → 최대 풀링 2×2 → 완전 연결 100 → 출력 소프트맥스 10"
    assert run_views.table_rows(runs)[1]["network"] == vocabulary.summarize_network(NETWORK)
    assert math.isnan(rows[0]["test_accuracy"]) and rows[0]["dataset"] == translate("ko", "train.choice.fashion-mnist")
    # "Mine" goes by the browser's key, not the typed name; a run made before classroom mode (no key) is nobody's.
    assert [run.id for run in run_views.owned_by(runs, "ada-hash")] == [first]
    assert run_views.owned_by(runs, None) == [] and run_views.owned_by(runs, "ada") == []


@pytest.mark.parametrize(
    "count, text",
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (31_400, "31.4 kB"), (999_960, "1.0 MB"), (6_700_000, "6.7 MB"), (1.2e9, "1.2 GB")],
)
def test_format_bytes(count, text):
    assert run_views.format_bytes(count) == text


def test_only_idle_runs_can_be_pruned(store):
    run_id = store.create(NETWORK, {}, status="queued")
    assert not run_views.prunable(store.get(run_id))
    store.update(run_id, status="running")
    assert not run_views.prunable(store.get(run_id))
    for status in ("succeeded", "diverged", "failed", "cancelled", "interrupted"):
        store.update(run_id, status=status)
        assert run_views.prunable(store.get(run_id))


def test_only_runs_with_a_finished_epoch_can_resume(store):
    run_id = store.create(NETWORK, {}, status="interrupted")
    assert not run_views.resumable(store.get(run_id))
    store.update(run_id, epochs_done=2)
    assert run_views.resumable(store.get(run_id))
    store.update(run_id, status="diverged")
    assert not run_views.resumable(store.get(run_id))


def test_training_curves_plot_the_metrics():
    history = [metrics_row(1, accuracy=0.9), metrics_row(2, accuracy=0.95)]
    figure = plots.training_curves(history, "en")
    by_name = {(trace.name, trace.xaxis): trace for trace in figure.data}
    assert list(by_name[("Training", "x")].y) == [row["train_loss"] for row in history]
    assert list(by_name[("Validation", "x")].y) == [row["validation_loss"] for row in history]
    assert list(by_name[("Validation", "x2")].y) == pytest.approx([row["validation_accuracy"] * 100 for row in history])
    assert list(by_name[("Training", "x2")].x) == [1, 2]
    assert plots.training_curves([], "ko").layout.annotations[-1].text == translate("ko", "train.plot.waiting")


def test_overlay_curves_give_each_run_one_colour():
    figure = plots.overlay_curves([("#1", [metrics_row(1)]), ("#2", [metrics_row(1), metrics_row(2)])], "en")
    assert len(figure.data) == 4
    colours = {trace.name: set() for trace in figure.data}
    for trace in figure.data:
        colours[trace.name].add(trace.line.color)
    assert all(len(colour) == 1 for colour in colours.values()) and colours["#1"] != colours["#2"]
