"""The job service: background training that outlives browsers, shared by every user.

Owns the narrow interface that pages and the CLI use — `submit`, `cancel`, `resume`,
`run` (status and metrics come from the run store) — and the embedded executor behind it:
one scheduler process per runs directory that starts each run in its own worker process
(spawn context, as CUDA requires), so a crash, a segfault or an out-of-memory error in one
run cannot take down the app or other runs. A cluster backend would replace
`Scheduler._launch` and nothing above it; `docs/jobs.md` sketches one with Ray.

How a run moves: `submit` stores it as `queued`; the scheduler claims queued runs oldest
first while fewer than the device's limit are running, and the worker marks it `running`,
writes progress, heartbeats and metrics, and ends it `succeeded`, `diverged`, `failed` or
`cancelled`. A worker that dies, or a service that stops, leaves the run `interrupted`
with its finished epochs and checkpoints; `resume` queues it to continue from there.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import torch

from core import runner
from core import spec as specs
from core.device import cpu_count
from core.settings import TrainSettings
from core.store import FINISHED, Run, RunStore

STALE_SECONDS = 15.0  # a running run whose heartbeat is older than this has lost its worker
POLL_SECONDS = 0.2  # how often the scheduler looks for queued runs and finished workers
IDLE_EXIT_SECONDS = 120.0  # an auto-started scheduler exits after this long with nothing to do


def job_limit() -> int:
    """How many runs may train at once: `LAYERLAB_MAX_JOBS`, else one per GPU, else one per two cores."""
    configured = os.environ.get("LAYERLAB_MAX_JOBS")
    if configured:
        return max(1, int(configured))
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, cpu_count() // 2)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (finished, not yet reaped) counts as dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class JobService:
    """submit / cancel / resume / run: the only interface pages and the CLI use for training."""

    def __init__(self, store: RunStore | None = None):
        self.store = store or RunStore()

    def submit(self, network: dict, settings: TrainSettings, owner: str = "", name: str = "") -> int:
        """Validate and queue a run; returns its id. Raises SpecError/SettingsError for bad input."""
        settings.validate()
        summary = specs.validate(network, settings.dataset)
        return self.store.create(
            summary.spec, settings.to_dict(), name=name, owner=owner, status="queued", parameters=summary.total_parameters
        )

    def cancel(self, run_id: int) -> str:
        """Cancel a queued run at once, or ask a running one to stop (it does within about a second)."""
        if self.store.transition(run_id, ("queued",), status="cancelled", message="Cancelled before it started.", finished_at=time.time()):
            return "cancelled"
        run = self.store.get(run_id, with_metrics=False)
        if run.status == "running":
            self.store.request_cancel(run_id)
            return "cancelling"
        return run.status

    def resume(self, run_id: int) -> None:
        """Queue an interrupted, cancelled or failed run to continue after its last finished epoch."""
        run = self.store.get(run_id, with_metrics=False)
        if run.status not in ("interrupted", "cancelled", "failed"):
            raise ValueError(f"Run {run_id} is {run.status}; only interrupted, cancelled or failed runs can be resumed.")
        if not self.store.resume_state_path(run_id).is_file():
            raise ValueError(f"Run {run_id} never finished an epoch, so there is nothing to resume. Train it again instead.")
        self.store.transition(
            run_id, ("interrupted", "cancelled", "failed"), status="queued", resume_requested=1, cancel_requested=0, message=""
        )

    def run(self, run_id: int) -> Run:
        return self.store.get(run_id)

    def runs(self, owner: str | None = None) -> list[Run]:
        reconcile(self.store)
        return self.store.list(owner=owner)

    def queue_position(self, run_id: int) -> int | None:
        """1 for the next run to start; None when the run is not queued."""
        queued = [run.id for run in reversed(self.store.list(status="queued"))]
        return queued.index(run_id) + 1 if run_id in queued else None

    def run_here(self, run_id: int, poll: Callable[[], None] | None = None) -> str:
        """Train a queued run in this process (the CLI's foreground `train`), calling `poll` twice a second.

        Ctrl-C cancels the run cleanly; its finished epochs are kept.
        """
        if not self.store.transition(run_id, ("queued",), status="running", started_at=time.time(), heartbeat_at=time.time()):
            raise ValueError(f"Run {run_id} is not queued any more.")
        outcome: dict[str, str] = {}
        thread = threading.Thread(target=lambda: outcome.update(status=runner.execute(self.store, run_id)), daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.5)
                if poll:
                    poll()
        except KeyboardInterrupt:
            self.store.request_cancel(run_id)
            thread.join()
        return outcome.get("status", self.store.get(run_id, with_metrics=False).status)

    def ensure_scheduler(self) -> None:
        """Start the background scheduler for this runs directory unless one is running."""
        if scheduler_running(self.store):
            return
        log = open(self.store.directory / "scheduler.log", "ab")
        subprocess.Popen(
            [sys.executable, "-m", "core", "scheduler", "--exit-when-idle"],
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "LAYERLAB_RUNS": str(self.store.directory)},
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Outlives the app process that started it.
        )


def reconcile(store: RunStore) -> list[int]:
    """Mark runs whose worker is gone as `interrupted`; returns their ids.

    A run counts as orphaned when it is `running` but its worker process no longer exists
    or its heartbeat is older than STALE_SECONDS (e.g. after a server crash or reboot).
    """
    now = time.time()
    orphaned = []
    for run in store.list(status="running"):
        heartbeat = run.heartbeat_at or run.started_at or run.created_at
        if now - heartbeat > STALE_SECONDS or (run.worker_pid and not _pid_alive(run.worker_pid)):
            message = (
                f"The training process stopped without finishing (the server restarted or the process was killed) after "
                f"{run.epochs_done} finished epoch(s), which are kept. Resume it to continue."
            )
            if store.transition(run.id, ("running",), status="interrupted", message=message, finished_at=now, worker_pid=None):
                orphaned.append(run.id)
    return orphaned


# ----------------------------------------------------------------------------- the scheduler process


def _lock_path(store: RunStore) -> Path:
    return store.directory / "scheduler.lock"


def scheduler_running(store: RunStore) -> bool:
    """True when some process holds this runs directory's scheduler lock."""
    with open(_lock_path(store), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _worker_main(directory: str, run_id: int, resume: bool, threads: int) -> None:
    """Entry point of a worker process: train one run. SIGTERM ends it as `interrupted`."""

    def interrupt(signal_number, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    torch.set_num_threads(threads)
    runner.execute(RunStore(directory), run_id, resume=resume)


class Scheduler:
    """Starts queued runs in worker processes within the job limit and notices dead workers."""

    def __init__(self, store: RunStore, limit: int | None = None):
        self.store = store
        self.limit = limit or job_limit()
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, multiprocessing.Process] = {}
        self.stopping = False

    def _launch(self, run: Run) -> None:
        threads = max(1, cpu_count() // self.limit) if not torch.cuda.is_available() else max(1, cpu_count() // 2)
        process = self.context.Process(
            target=_worker_main, args=(str(self.store.directory), run.id, run.resume_requested, threads), name=f"layerlab-run-{run.id}"
        )
        process.start()
        self.store.update(run.id, worker_pid=process.pid, heartbeat_at=time.time(), resume_requested=0)
        self.workers[run.id] = process

    def _reap(self) -> None:
        """Give a final status to runs whose worker exited without writing one (killed, segfault)."""
        for run_id, process in list(self.workers.items()):
            if process.is_alive():
                continue
            process.join()
            del self.workers[run_id]
            code = process.exitcode
            how = f"was killed by signal {-code}" if code and code < 0 else f"exited with code {code}"
            run = self.store.get(run_id, with_metrics=False)
            message = (
                f"The training process {how} during epoch {run.epochs_done + 1}. Its {run.epochs_done} finished epoch(s) and best "
                "checkpoint are kept; resume it to continue. If it happens again, lower the batch size or use a smaller network."
            )
            status = "interrupted" if code and code < 0 else "failed"
            self.store.transition(run_id, ("running", "queued"), status=status, message=message, finished_at=time.time(), worker_pid=None)

    def step(self) -> bool:
        """One round of reaping, reconciling and launching; True when anything is queued or running."""
        self._reap()
        reconcile(self.store)
        running = len(self.store.list(status="running"))
        for run in reversed(self.store.list(status="queued")):
            if running >= self.limit or self.stopping:
                break
            if self.store.transition(run.id, ("queued",), status="running", started_at=time.time(), heartbeat_at=time.time()):
                self._launch(run)
                running += 1
        return bool(self.workers) or bool(self.store.list(status="queued", limit=1))

    def shutdown(self) -> None:
        """Stop every worker; their runs end `interrupted` and can be resumed."""
        self.stopping = True
        for process in self.workers.values():
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker records `interrupted` itself.
        for process in self.workers.values():
            process.join(timeout=20)
            if process.is_alive():
                process.kill()
                process.join()
        self._reap()


def run_scheduler(store: RunStore, exit_when_idle: bool = False, limit: int | None = None) -> None:
    """The scheduler loop; holds the runs directory's lock so only one runs. SIGTERM stops it cleanly."""
    handle = open(_lock_path(store), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("Another scheduler already serves this runs directory.", file=sys.stderr)
        return
    scheduler = Scheduler(store, limit)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda number, frame: stop.set())
    signal.signal(signal.SIGINT, lambda number, frame: stop.set())
    idle_since = time.monotonic()
    try:
        while not stop.is_set():
            if scheduler.step():
                idle_since = time.monotonic()
            elif exit_when_idle and time.monotonic() - idle_since > IDLE_EXIT_SECONDS:
                break
            stop.wait(POLL_SECONDS)
    finally:
        scheduler.shutdown()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def wait_for(store: RunStore, run_id: int, timeout: float = 600.0, statuses: tuple[str, ...] = FINISHED) -> Run:
    """Block until run `run_id` reaches one of `statuses` (tests and scripts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = store.get(run_id, with_metrics=False)
        if run.status in statuses:
            return store.get(run_id)
        time.sleep(0.1)
    raise TimeoutError(f"Run {run_id} did not reach {statuses} within {timeout} s (it is {run.status}).")
