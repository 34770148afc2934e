"""Runs one stored run to its end: the glue between the run store and the training engine.

Owns what a run keeps while it trains: progress and a heartbeat in the store, per-epoch
metrics, the best and per-epoch checkpoints, the resume state, and the final status with a
message the learner can act on. Both the CLI's foreground `train` and the job service's
worker processes call `execute`; neither knows how training works.
"""

from __future__ import annotations

import os
import threading
import time
import traceback

import torch

from core.data import datasets
from core.errors import LayerLabError, Message, counted
from core.jobs.store import RunStore
from core.model import network as networks
from core.model import vocabulary
from core.training import checkpoint
from core.training.device import describe, pick_device
from core.training.loop import Callbacks, EpochMetrics, Progress, TrainingState, train
from core.training.settings import TrainSettings

PROGRESS_INTERVAL = 0.5  # seconds between progress writes, so 30 browsers polling see it move
HEARTBEAT_INTERVAL = 1.0  # seconds between heartbeats
CANCEL_POLL_INTERVAL = 0.25  # seconds between cancel checks, well inside the 2 s a cancel may take
# Test-only fault injection, off unless set: "oom_at_step:N" makes global step N raise CUDA's
# out-of-memory error; "oom_at_step:N@NAME" does so only in runs named NAME.
FAULT_INJECTION_VARIABLE = "LAYERLAB_FAULT_INJECTION"
EPOCH_CHECKPOINT_LIMIT = 2_000_000  # keep one checkpoint per epoch only for nets this small


class StoreCallbacks(Callbacks):
    """Writes a run's progress, metrics and checkpoints to the store as the engine reports them."""

    def __init__(self, store: RunStore, run_id: int, network: dict, settings: TrainSettings, parameters: int):
        self.store, self.run_id, self.network, self.settings = store, run_id, network, settings
        self.keep_epoch_checkpoints = settings.checkpoint_every_epoch and parameters <= EPOCH_CHECKPOINT_LIMIT
        self.cancelled = threading.Event()
        self.finished = threading.Event()
        self._last_progress = 0.0
        self.oom_at_step = 0  # see FAULT_INJECTION_VARIABLE
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

    def on_step(self, progress: Progress) -> None:
        if self.oom_at_step and progress.global_step == self.oom_at_step:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (injected by {FAULT_INJECTION_VARIABLE})")
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
        model = state.model
        if improved:
            checkpoint.save(self.store.best_checkpoint_path(self.run_id), model, self.network, self.settings, epoch=metrics.epoch)
        if self.keep_epoch_checkpoints:
            checkpoint.save(
                self.store.epoch_checkpoint_path(self.run_id, metrics.epoch), model, self.network, self.settings, epoch=metrics.epoch
            )
        checkpoint.save_resume_state(self.store.resume_state_path(self.run_id), state.state_dict())

    def close(self) -> None:
        self.finished.set()
        self._heartbeat.join(timeout=5)


def failure_message(error: BaseException, settings: TrainSettings) -> str:
    """Turn an exception into a sentence a learner can act on (a `Message`, so it shows in any language)."""
    if isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower():
        device = pick_device(settings.device)
        return Message("run.out_of_memory", {"device": str(device), "batch": settings.batch_size, "half": max(1, settings.batch_size // 2)})
    if isinstance(error, LayerLabError):
        return error.message
    if isinstance(error, (ValueError, LookupError)):
        return str(error)
    # The exception's own text is for the server log (printed there), not for the learner.
    return Message("run.crashed", {"kind": type(error).__name__})


def execute(store: RunStore, run_id: int, resume: bool = False) -> str:
    """Train run `run_id` as stored (continuing from its saved state when `resume`); return its final status."""
    run = store.get(run_id, with_metrics=False)
    callbacks = None
    try:
        settings = TrainSettings.from_dict(run.settings)
        network = vocabulary.normalize_spec(run.spec)
        resume_state = checkpoint.load_resume_state(store.resume_state_path(run_id)) if resume else None
        epochs_kept = len(resume_state["history"]) if resume_state else 0
        store.truncate_metrics(run_id, epochs_kept)
        recorded = {row["epoch"] for row in store.metrics(run_id)}
        for metrics in resume_state["history"] if resume_state else []:
            if metrics["epoch"] not in recorded:  # Stopped between saving the state and recording the epoch.
                store.record_epoch(run_id, metrics)
        parameters = networks.validate(network, settings.dataset).total_parameters
        store.update(
            run_id,
            status="running",
            message="",
            started_at=time.time(),
            finished_at=None,
            heartbeat_at=time.time(),
            worker_pid=os.getpid(),
            device=describe(pick_device(settings.device)),
            parameters=parameters,
            epochs_done=epochs_kept,
            progress={},
        )
        callbacks = StoreCallbacks(store, run_id, network, settings, parameters)
        callbacks.oom_at_step = _injected_oom_step(run.name)
        splits = datasets.load(settings.dataset, full_train=settings.full_train)
        result = train(network, settings, splits, callbacks, resume_state=resume_state)
        status, message = result.status, result.message
    except BaseException as error:  # Every failure ends as a status with a message, never a lost run.
        if isinstance(error, KeyboardInterrupt) and store.cancel_requested(run_id):
            # The job service stops a worker that has not honoured a cancel in time; it is still a cancel.
            status, message = "cancelled", counted("run.cancelled", store.get(run_id, with_metrics=False).epochs_done)
        elif isinstance(error, KeyboardInterrupt):
            status, message = "interrupted", Message("run.interrupted")
        else:
            status = "failed"
            message = failure_message(error, TrainSettings.from_dict(run.settings) if _settings_ok(run.settings) else TrainSettings())
            traceback.print_exc()
    finally:
        if callbacks is not None:
            callbacks.close()
    store.update(run_id, status=status, message=message, finished_at=time.time(), worker_pid=None)
    return status


def _injected_oom_step(run_name: str) -> int:
    """The step at which FAULT_INJECTION_VARIABLE asks this run to fail with out of memory, or 0 (tests only)."""
    value = os.environ.get(FAULT_INJECTION_VARIABLE, "")
    if not value.startswith("oom_at_step:"):
        return 0
    step, _, name = value.removeprefix("oom_at_step:").partition("@")
    return int(step) if not name or name == run_name else 0


def _settings_ok(values: dict) -> bool:
    try:
        TrainSettings.from_dict(values)
        return True
    except ValueError:
        return False
