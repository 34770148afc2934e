"""Runs one stored run to its end: the glue between the run store and the training engine.

Owns what a run keeps while it trains: progress and a heartbeat in the store, per-epoch
metrics, the best and per-epoch checkpoints, the resume state, and the final status with a
message the learner can act on. A run's stored row is parsed here once, into `TrainSettings`
and a validated `Summary`, and only those typed objects go on to the engine. The outcome is
recorded only over `running`, so a late cancel, reconcile or stop signal never overwrites a
final status with a wrong one. Both the CLI's foreground `train` and the job service's worker
processes call `execute`; neither knows how training works.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from core.data import datasets
from core.drawing.digits import DigitSet
from core.jobs import disk, training_data
from core.errors import LayerLabError, Message, counted
from core.jobs.store import Run, RunStore
from core.model import network as networks
from core.probes import recording
from core.training import checkpoint
from core.training.device import describe, pick_device
from core.training.loop import Callbacks, EpochMetrics, Progress, TrainingState, TrainResult, train
from core.training.settings import TrainSettings

PROGRESS_INTERVAL = 0.5  # seconds between progress writes, so 30 browsers polling see it move
HEARTBEAT_INTERVAL = 1.0  # seconds between heartbeats
CANCEL_POLL_INTERVAL = 0.25  # seconds between cancel checks, well inside the 2 s a cancel may take
# Test-only fault injection, off unless set (see `fault`): "oom_at_step:N" makes global step N
# raise CUDA's out-of-memory error; "exit_at_step:N" prints a line and leaves the process with
# exit code 3 at step N, as a native library that calls exit() would; "sigterm_after_training"
# sends the process SIGTERM the moment training returns; "standby_warm_up_fails" and
# "standby_exits" break a standby worker (core.jobs.worker). "@NAME" limits a fault to runs named NAME.
FAULT_INJECTION_VARIABLE = "LAYERLAB_FAULT_INJECTION"
EPOCH_CHECKPOINT_LIMIT = 2_000_000  # keep one checkpoint per epoch only for nets this small
FINAL_WRITE_ATTEMPTS = 6  # tries at recording a final status, each after the store's 30 s busy timeout


class StoreCallbacks(Callbacks):
    """Writes a run's progress, metrics and checkpoints to the store as the engine reports them.

    With `record` (the default) it also keeps the run's training diagnostics (gradient norms,
    activation and weight statistics) in the run's folder, through `core.probes.recording`.
    """

    def __init__(self, store: RunStore, run_id: int, network: dict, settings: TrainSettings, parameters: int, record: bool = True):
        self.store, self.run_id, self.network, self.settings = store, run_id, network, settings
        self.record = record
        self.recorder: recording.Recorder | None = None
        self.keep_epoch_checkpoints = settings.checkpoint_every_epoch and parameters <= EPOCH_CHECKPOINT_LIMIT
        self.cancelled = threading.Event()
        self.finished = threading.Event()
        self._last_progress = 0.0
        self.oom_at_step = 0  # see FAULT_INJECTION_VARIABLE
        self.exit_at_step = 0  # see FAULT_INJECTION_VARIABLE
        self._heartbeat = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        """Refresh the heartbeat and watch for a cancel request, off the training thread."""
        last_beat = 0.0
        while not self.finished.wait(CANCEL_POLL_INTERVAL):
            try:
                if time.monotonic() - last_beat >= HEARTBEAT_INTERVAL:
                    self.store.update(self.run_id, heartbeat_at=time.time())
                    last_beat = time.monotonic()
                if self.store.cancel_requested(self.run_id):
                    self.cancelled.set()
            except Exception:  # A busy database must never kill the run; the next beat retries.
                pass

    def on_train_start(self, state: TrainingState) -> None:
        if not state.history and state.global_step == 0:
            # A fresh run: keep the initial weights as epoch 0, where a replay of the filters starts.
            checkpoint.save(self.store.epoch_checkpoint_path(self.run_id, 0), state.model, self.network, self.settings, epoch=0)
        if self.record:
            # The validation images are already in memory (the datasets module caches them), so this costs nothing.
            validation_images = datasets.load(self.settings.dataset).validation_images
            path = self.store.run_directory(self.run_id) / recording.RECORDING_FILE
            self.recorder = recording.Recorder(path, self.network, validation_images)
            self.recorder.on_train_start(state)

    def on_step(self, progress: Progress) -> None:
        if self.recorder is not None:
            self.recorder.on_step(progress)
        if self.oom_at_step and progress.global_step == self.oom_at_step:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (injected by {FAULT_INJECTION_VARIABLE})")
        if self.exit_at_step and progress.global_step == self.exit_at_step:
            print(f"run {self.run_id} leaves with exit code 3 at step {progress.global_step} (injected by {FAULT_INJECTION_VARIABLE})")
            os._exit(3)
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_INTERVAL or progress.step == progress.steps_per_epoch:
            self._last_progress = now
            self.store.update(self.run_id, progress=progress.to_dict())

    def should_stop(self) -> bool:
        return self.cancelled.is_set()

    def on_epoch_end(self, metrics: EpochMetrics, state: TrainingState, improved: bool) -> None:
        # Metrics first, so every browser sees the finished epoch before the checkpoints are written.
        best = state.history[state.best_epoch - 1]
        self.store.record_epoch(
            self.run_id,
            metrics.to_dict(),
            epochs_done=metrics.epoch,
            best_epoch=state.best_epoch,
            best_validation_accuracy=best.validation_accuracy,
            test_accuracy=best.test_accuracy,
            seconds=sum(item.seconds for item in state.history),
            heartbeat_at=time.time(),
        )
        if self.recorder is not None:  # Before the resume state: a resumed run then never misses this epoch's record.
            self.recorder.on_epoch_end(metrics, state, improved)
        model = state.model
        if improved:
            checkpoint.save(self.store.best_checkpoint_path(self.run_id), model, self.network, self.settings, epoch=metrics.epoch)
        if self.keep_epoch_checkpoints:
            checkpoint.save(
                self.store.epoch_checkpoint_path(self.run_id, metrics.epoch), model, self.network, self.settings, epoch=metrics.epoch
            )
            # A long run keeps a thinned set (disk.AUTOMATIC_BUDGET), not one file per epoch without end.
            disk.thin_as_it_goes(self.store, self.run_id, metrics.epoch, state.best_epoch, self.settings.epochs)
        checkpoint.save_resume_state(self.store.resume_state_path(self.run_id), state.state_dict())

    def close(self) -> None:
        self.finished.set()
        self._heartbeat.join(timeout=5)


def failure_message(error: BaseException, settings: TrainSettings, log: Path | None = None) -> Message:
    """Turn an exception into a sentence a learner can act on (a `Message`, so it shows in any language); `log` is where its traceback went."""
    if isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower():
        device = pick_device(settings.device)
        return Message("run.out_of_memory", {"device": str(device), "batch": settings.batch_size, "half": max(1, settings.batch_size // 2)})
    if isinstance(error, LayerLabError):
        return error.message
    if isinstance(error, (ValueError, LookupError)):
        return str(error)
    # The exception's own text is for the log (printed there), not for the learner.
    if log:
        return Message("run.crashed_logged", {"kind": type(error).__name__, "log": str(log)})
    return Message("run.crashed", {"kind": type(error).__name__})


def execute(
    store: RunStore,
    run_id: int,
    resume: bool = False,
    log: Path | None = None,
    outcome_decided: Callable[[], None] = lambda: None,
) -> str:
    """Train run `run_id` as stored (continuing from its saved state when `resume`); return its final status.

    The run must be `queued` or already claimed as `running` (by the scheduler or
    `JobService.run_here`); one that was cancelled or ended meanwhile is left as it is. The
    stored row is parsed here, once, into `TrainSettings` and a validated `Summary` that
    everything below trusts. `log` names the file this process's output goes to, for the
    failure message. `outcome_decided` is called as soon as the outcome is known: the
    worker stops turning SIGTERM into an interrupt then, so a stop that arrives after
    training ended cannot change the outcome or break its write.
    """
    settings: TrainSettings | None = None
    callbacks = None
    result: TrainResult | None = None
    run_name = ""
    try:
        run = store.get(run_id, with_metrics=False)
        run_name = run.name
        settings = TrainSettings.from_dict(run.settings)
        summary = networks.validate(run.spec, settings.dataset)
        resume_state = checkpoint.load_resume_state(store.resume_state_path(run_id)) if resume else None
        epochs_kept = len(resume_state["history"]) if resume_state else 0
        now = time.time()
        started = store.transition(
            run_id,
            ("queued", "running"),
            status="running",
            message="",
            started_at=now,
            finished_at=None,
            heartbeat_at=now,
            worker_pid=os.getpid(),
            device=describe(pick_device(settings.device)),
            parameters=summary.total_parameters,
            epochs_done=epochs_kept,
            progress={},
        )
        if not started:  # Cancelled (or ended by a reconcile) before this process got going: nothing to train.
            outcome_decided()
            return store.get(run_id, with_metrics=False).status
        store.truncate_metrics(run_id, epochs_kept)
        recorded = {row["epoch"] for row in store.metrics(run_id)}
        for metrics in resume_state["history"] if resume_state else []:
            if metrics["epoch"] not in recorded:  # Stopped between saving the state and recording the epoch.
                store.record_epoch(run_id, metrics)
        callbacks = StoreCallbacks(store, run_id, summary.spec, settings, summary.total_parameters)
        callbacks.oom_at_step = int(fault("oom_at_step", run_name) or 0)
        callbacks.exit_at_step = int(fault("exit_at_step", run_name) or 0)
        splits = datasets.load(settings.dataset, full_train=settings.full_train)
        if settings.include_my_digits:
            splits = with_my_digits(store, run, splits)
        result = train(summary, settings, splits, callbacks, resume_state=resume_state)
        if fault("sigterm_after_training", run_name) is not None:
            os.kill(os.getpid(), signal.SIGTERM)  # Test-only: a stop arriving just as training ends.
        outcome_decided()
        status, message = result.status, result.message
    except BaseException as error:  # Every failure ends as a status with a message, never a lost run.
        outcome_decided()
        status, message = _outcome(error, result, store, run_id, settings, log)
    if callbacks is not None:
        callbacks.close()
    _write_final_status(store, run_id, status, message)
    return status


def with_my_digits(store: RunStore, run: Run, splits: datasets.Splits) -> datasets.Splits:
    """The splits with the run owner's "my digits" in front of the training images, and how many in `training_data.json`.

    In front, so that `train_subset` (which keeps the first N images) keeps them too. A set
    that is missing, empty or damaged, a run without an owner, or a dataset other than MNIST
    adds nothing: the run trains on the dataset alone, and the record says why.
    """
    images, labels, note = _my_digits(store, run, splits.dataset)
    training_data.write(store.run_directory(run.id), training_data.TrainingData(len(labels), note))
    if not len(labels):
        return splits
    return dataclasses.replace(
        splits, train_images=torch.cat([images, splits.train_images]), train_labels=torch.cat([labels, splits.train_labels])
    )


def _my_digits(store: RunStore, run: Run, dataset: str) -> tuple[torch.Tensor, torch.Tensor, Message | None]:
    """The owner's digits as (N, 28, 28) uint8 images and (N,) int64 labels, or none with the reason."""
    nothing = torch.zeros((0, 28, 28), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    if dataset != "mnist":
        return *nothing, Message("run.my_digits_not_mnist", {"dataset": dataset})
    # A browser's digits are kept under its owner key's hash (core.jobs.access), so a typed name cannot reach anyone else's;
    # runs made before classroom mode had only the typed name.
    owner = run.owner_key_hash or run.owner.strip()
    if not owner:
        return *nothing, Message("run.my_digits_no_owner")
    try:
        images, labels = DigitSet(store.directory, owner).tensors()
    except (LayerLabError, OSError, ValueError, SyntaxError) as error:  # A damaged index or PNG (Pillow raises all three).
        return *nothing, Message("run.my_digits_unreadable", {"detail": str(error)[:300]})
    if not len(labels):
        return *nothing, Message("run.my_digits_empty")
    return images, labels, None


def _outcome(
    error: BaseException, result: TrainResult | None, store: RunStore, run_id: int, settings: TrainSettings | None, log: Path | None
) -> tuple[str, str]:
    """The status and message of a run that `error` ended; `result` is set when training had already finished."""
    if result is not None:  # The stop came after training ended: the run's own outcome stands.
        return result.status, result.message
    if isinstance(error, KeyboardInterrupt) and store.cancel_requested(run_id):
        # The job service stops a worker that has not honoured a cancel in time; it is still a cancel.
        return "cancelled", counted("run.cancelled", store.get(run_id, with_metrics=False).epochs_done)
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", Message("run.interrupted")
    traceback.print_exc()
    return "failed", failure_message(error, settings or TrainSettings(), log)


def _write_final_status(store: RunStore, run_id: int, status: str, message: str) -> None:
    """Record the outcome of a `running` run, retrying while the database stays busy past its timeout.

    Only a run still `running` is changed: one that was deleted, or ended meanwhile by
    another process, keeps what it has.
    """
    for attempt in range(FINAL_WRITE_ATTEMPTS):
        try:
            store.transition(run_id, ("running",), status=status, message=message, finished_at=time.time(), worker_pid=None)
            return
        except sqlite3.OperationalError as error:  # "database is locked" after the 30 s busy timeout.
            if attempt == FINAL_WRITE_ATTEMPTS - 1:
                raise
            print(f"Could not record run {run_id} as {status} ({error}); trying again.", file=sys.stderr, flush=True)
            time.sleep(min(2.0**attempt, 10.0))


def fault(kind: str, run_name: str = "") -> str | None:
    """The argument of test-only fault `kind` when FAULT_INJECTION_VARIABLE asks for it, else None.

    The variable holds comma-separated entries `KIND[:ARGUMENT][@RUN NAME]`; an entry with a
    run name applies only to runs of that name. Unset (always, outside tests), it is None.
    """
    for entry in os.environ.get(FAULT_INJECTION_VARIABLE, "").split(","):
        head, _, target = entry.strip().partition("@")
        name, _, argument = head.partition(":")
        if name == kind and (not target or target == run_name):
            return argument
    return None
