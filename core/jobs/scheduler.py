"""The scheduler: starts queued runs in worker processes within the job limit, and ends every run it started.

Owns the one process per runs directory that claims queued runs oldest first, launches
workers (keeping a warm standby, restarted with back-off when it keeps dying), enforces
cancels with SIGTERM and SIGKILL, and gives a final status to a run whose worker exits
without writing one. Nothing one run does (vanishing under it, a failing write) stops it
serving the others: such an error is logged and the next round goes on. A cluster backend
replaces `Scheduler._launch` and nothing above it (docs/jobs.md).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Protocol

import torch

from core.errors import Message, counted
from core.jobs.liveness import reconcile
from core.jobs.locks import LOCK_WAIT_SECONDS, held, lock_path, release, start_lock_path, take_lock
from core.jobs.service import queued_run_ids
from core.jobs.store import Run, RunNotFound, RunStore, StorageError
from core.jobs.worker import standby_main, worker_main
from core.training.device import cpu_count

POLL_SECONDS = 0.2  # how often the scheduler looks for queued runs, cancels and finished workers
STORAGE_RETRY_SECONDS = 1.0  # first wait after the runs database could not be used; it doubles on each failure
STORAGE_RETRY_MAX_SECONDS = 30.0
IDLE_EXIT_SECONDS = 120.0  # an auto-started scheduler exits after this long with nothing to do
# Workers notice a cancel within a quarter second; one that has not stopped this long after
# the scheduler saw the request (still starting up, or deep in an evaluation) is stopped
# with SIGTERM, so a cancel always lands within the 2 s the issue promises; one still
# alive (stuck in a driver call, or stopped with SIGSTOP) is killed a little later.
CANCEL_GRACE_SECONDS = 1.0
CANCEL_KILL_SECONDS = 10.0
# A standby that exits unasked within STANDBY_YOUNG_SECONDS of its start (a broken install, a
# failing import) would die again at once: the next one waits 1 s, then 2, 4, ... up to 60 s.
STANDBY_YOUNG_SECONDS = 30.0
STANDBY_FIRST_DELAY_SECONDS = 1.0
STANDBY_MAX_DELAY_SECONDS = 60.0


def log(text: str) -> None:
    """One timestamped line on the scheduler's output (`<runs dir>/scheduler.log` when auto-started)."""
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} scheduler {os.getpid()}: {text}", flush=True)


def job_limit() -> int:
    """How many runs may train at once: `LAYERLAB_MAX_JOBS`, else one per GPU, else one per two cores."""
    configured = os.environ.get("LAYERLAB_MAX_JOBS", "").strip()
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            raise ValueError(f"LAYERLAB_MAX_JOBS is {configured!r}; set it to a whole number of jobs, e.g. 2.") from None
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, cpu_count() // 2)





class Worker(Protocol):
    """What the scheduler needs of a started job. `multiprocessing.Process` is one; a Ray task wrapper can be another."""

    pid: int | None
    exitcode: int | None

    def is_alive(self) -> bool: ...

    def join(self, timeout: float | None = None) -> None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class Scheduler:
    """Starts queued runs in worker processes within the job limit, and gives every run whose worker ends a final status."""

    def __init__(self, store: RunStore, limit: int | None = None):
        self.store = store
        self.limit = limit or job_limit()
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, Worker] = {}  # run id -> its worker
        self.slots: dict[int, int] = {}  # run id -> slot number in range(limit); the GPU index on CUDA
        self.cancel_seen: dict[int, float] = {}  # run id -> when this scheduler first saw its cancel request
        self.stopping = False
        self.standby: tuple[multiprocessing.Process, Any] | None = None  # a warm worker and the pipe that hands it a run
        self.standby_started = 0.0  # when the current standby was started (monotonic)
        self.standby_delay = 0.0  # how long to wait before the next standby; grows while standbys die young
        self.standby_not_before = 0.0  # no new standby before this (monotonic)

    def _launch(self, run: Run, slot: int) -> Worker:
        """Start one worker process for `run`. A cluster backend overrides this method (docs/jobs.md)."""
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        threads = max(1, cpu_count() // self.limit)  # Share the cores instead of oversubscribing them.
        job = (str(self.store.directory), run.id, run.resume_requested, threads, slot % gpus if gpus else None, os.getpid())
        if self.standby is not None and self.standby[0].is_alive():
            process, connection = self.standby
            self.standby = None
            connection.send(job)
            connection.close()
            return process
        process = self.context.Process(target=worker_main, args=job, name=f"layerlab-run-{run.id}")
        process.start()
        return process

    def _keep_standby(self) -> None:
        """Keep one warm worker waiting (see `standby_main`), so the next run starts without the import delay.

        A standby that exited unasked is replaced after a delay that doubles while standbys
        die young, so a broken one cannot become a loop of process starts.
        """
        now = time.monotonic()
        if self.standby is not None:
            process, connection = self.standby
            if process.is_alive():
                return
            self.standby = None
            connection.close()
            process.join()
            lived = now - self.standby_started
            if lived < STANDBY_YOUNG_SECONDS:
                self.standby_delay = min(max(STANDBY_FIRST_DELAY_SECONDS, 2 * self.standby_delay), STANDBY_MAX_DELAY_SECONDS)
            else:
                self.standby_delay = 0.0
            self.standby_not_before = now + self.standby_delay
            log(f"standby {process.pid} exited with code {process.exitcode} after {lived:.1f} s; the next starts in {self.standby_delay:g} s")
        if now < self.standby_not_before:
            return
        receiver, sender = self.context.Pipe(duplex=False)
        process = self.context.Process(target=standby_main, args=(receiver, os.getpid()), name="layerlab-standby", daemon=True)
        process.start()
        receiver.close()
        self.standby = (process, sender)
        self.standby_started = now

    def _stop_standby(self) -> None:
        if self.standby is not None:
            process, connection = self.standby
            self.standby = None
            connection.close()  # The standby's recv() ends with EOFError and it exits.
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()

    def step(self) -> bool:
        """One round of reaping, enforcing cancels, reconciling and launching; True when anything is queued or running."""
        self._reap()
        self._enforce()
        reconcile(self.store, frozenset(worker.pid for worker in self.workers.values() if worker.pid))
        if not self.stopping:
            self._start_queued()
            self._keep_standby()
        return bool(self.workers) or bool(self.store.list(status="queued", limit=1))

    def _start_queued(self) -> None:
        """Claim queued runs, oldest first and however many wait, while slots are free."""
        running = len(self.store.list(status="running"))  # Foreground CLI runs count too: they use the same cores.
        for run_id in queued_run_ids(self.store):
            free_slots = sorted(set(range(self.limit)) - set(self.slots.values()))
            if running >= self.limit or not free_slots:
                return
            try:
                started = self._start(run_id, free_slots[0])
            except RunNotFound:
                continue  # Deleted while it waited.
            except Exception:  # One run's trouble must not stop the others from starting.
                log(f"could not start run {run_id}:\n{traceback.format_exc()}")
                continue
            running += started

    def _start(self, run_id: int, slot: int) -> bool:
        """Claim queued run `run_id` and launch its worker in `slot`; False when it was no longer queued."""
        now = time.time()
        claimed = self.store.transition(
            run_id, ("queued",), status="running", started_at=now, heartbeat_at=now, finished_at=None, worker_pid=None, progress={}
        )
        if not claimed:
            return False  # Cancelled between listing and claiming.
        run = self.store.get(run_id, with_metrics=False)  # Read after the claim: a running run's row cannot be resumed under us.
        try:
            worker = self._launch(run, slot)
        except Exception as error:  # E.g. no memory left for a new process: fail this run, keep serving.
            message = Message("run.no_worker", {"cause": str(error)})  # the cause is kept for whoever reads the database
            self.store.transition(run_id, ("running",), status="failed", message=message, finished_at=time.time())
            return False
        self.workers[run_id] = worker
        self.slots[run_id] = slot
        self.store.transition(run_id, ("running",), worker_pid=worker.pid, resume_requested=0)
        return True

    def _enforce(self) -> None:
        """Stop workers that ignore a cancel for CANCEL_GRACE_SECONDS; kill those that ignore the stop too."""
        now = time.monotonic()
        for run_id, worker in list(self.workers.items()):
            try:
                if not worker.is_alive() or not self.store.cancel_requested(run_id):
                    continue
                waited = now - self.cancel_seen.setdefault(run_id, now)
                if waited >= CANCEL_KILL_SECONDS:
                    worker.kill()  # Stuck in a driver call or stopped with SIGSTOP; reaped as cancelled.
                elif waited >= CANCEL_GRACE_SECONDS:
                    worker.terminate()  # The worker records `cancelled` itself; a repeat SIGTERM is ignored.
            except Exception:  # Logged; the next round tries again, and the other runs are served meanwhile.
                log(f"could not enforce the cancel of run {run_id}:\n{traceback.format_exc()}")

    def _reap(self) -> None:
        """Give a final status to runs whose worker exited without writing one (killed, segfault, out of memory)."""
        for run_id, worker in list(self.workers.items()):
            if worker.is_alive():
                continue
            worker.join()
            del self.workers[run_id]
            self.slots.pop(run_id, None)
            self.cancel_seen.pop(run_id, None)
            try:
                self._end_run(run_id, worker)
            except RunNotFound:
                continue  # Deleted once it had ended (a cancel, then a delete): nothing is left to end.
            except Exception:  # Logged; `reconcile` ends the run later if this scheduler could not.
                log(f"could not record how run {run_id}'s worker ended:\n{traceback.format_exc()}")

    def _end_run(self, run_id: int, worker: Worker) -> None:
        run = self.store.get(run_id, with_metrics=False)
        if run.status != "running" or run.worker_pid not in (None, worker.pid):
            return  # The worker wrote its own final status, or the run has moved on.
        status, message = self._exit_outcome(run, worker.exitcode)
        self.store.transition(run_id, ("running",), status=status, message=message, finished_at=time.time(), worker_pid=None)

    def _exit_outcome(self, run: Run, exitcode: int | None) -> tuple[str, str]:
        kept = counted("run.kept", run.epochs_done)
        if run.cancel_requested:
            return "cancelled", counted("run.cancelled", run.epochs_done)
        if exitcode is not None and exitcode < 0:
            how = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else f"signal {-exitcode}"
            return "interrupted", Message("run.killed", {"signal": how, "epoch": run.epochs_done + 1, "kept": kept})
        if self.stopping:
            return "interrupted", Message("run.service_stopped", {"epoch": run.epochs_done + 1, "kept": kept})
        log = self.store.run_directory(run.id) / "worker.log"
        return "failed", Message("run.exited", {"code": exitcode, "epoch": run.epochs_done + 1, "log": str(log), "kept": kept})

    def shutdown(self, timeout: float = 20.0) -> None:
        """Stop every worker; their runs end `interrupted` (or `cancelled`) and can be resumed."""
        self.stopping = True
        self._stop_standby()
        for worker in self.workers.values():
            if worker.is_alive():
                worker.terminate()  # SIGTERM: the worker records its final status itself.
        deadline = time.monotonic() + timeout
        for worker in self.workers.values():
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                worker.kill()
                worker.join()
        self._reap()


def run_scheduler(
    store: RunStore, exit_when_idle: bool = False, limit: int | None = None, stop: threading.Event | None = None
) -> bool:
    """Serve `store` until SIGTERM or SIGINT (or until `stop` is set); False when another scheduler already serves it.

    Holds `<runs dir>/scheduler.lock` (with this process's id in it) while it serves, so
    only one scheduler runs per runs directory. Without `stop` it must run in the main
    thread, where it installs the signal handlers; with `stop` it can run in any thread.
    """
    handle = take_lock(lock_path(store), LOCK_WAIT_SECONDS)
    if handle is None:
        print("Another scheduler already serves this runs directory.", file=sys.stderr)
        return False
    os.ftruncate(handle.fileno(), 0)
    handle.write(str(os.getpid()))
    handle.flush()
    if stop is None:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda number, frame: stop.set())
        signal.signal(signal.SIGINT, lambda number, frame: stop.set())
    scheduler = Scheduler(store, limit)
    log(f"serves {store.directory} (limit {scheduler.limit})")
    idle_since = time.monotonic()
    storage_wait, storage_problem = 0.0, ""
    try:
        while not stop.is_set():
            try:
                busy = scheduler.step()
                if storage_problem:
                    log("the runs database can be used again; serving as before")
                storage_wait, storage_problem = 0.0, ""
            except StorageError as error:
                # A damaged database, a full or read-only disk: say so once, keep the running workers, and
                # look again after a wait that doubles up to STORAGE_RETRY_MAX_SECONDS, so a full disk is not
                # hammered five times a second while someone frees space.
                if str(error) != storage_problem:
                    log(f"cannot use the runs database; retrying with back-off: {error}")
                storage_problem = str(error)
                storage_wait = min(max(storage_wait * 2, STORAGE_RETRY_SECONDS), STORAGE_RETRY_MAX_SECONDS)
                stop.wait(storage_wait)
                continue
            except Exception:  # E.g. the database busy past its timeout: log it and serve on, never take the runs down.
                log(f"a scheduling round failed; the next one follows:\n{traceback.format_exc()}")
                busy = True
            if busy:
                idle_since = time.monotonic()
            elif exit_when_idle and time.monotonic() - idle_since > IDLE_EXIT_SECONDS:
                # Decide under the start lock: a run submitted meanwhile is either seen here, or
                # its `ensure_scheduler` finds this lock released and starts a new scheduler.
                with held(start_lock_path(store)):
                    if not store.list(status="queued", limit=1):
                        release(handle)
                        break
                idle_since = time.monotonic()
            stop.wait(POLL_SECONDS)
    finally:
        scheduler.shutdown()
        release(handle)
    return True
