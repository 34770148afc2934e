"""The job service: background training that outlives browsers, shared by every user.

Owns the narrow interface that pages and the CLI use — `submit`, `cancel`, `resume`,
`run` (status and metrics come from the run store) — and the embedded executor behind it:
one scheduler process per runs directory that starts each run in its own worker process
(spawn context, as CUDA requires), so a crash, a segfault or an out-of-memory error in one
run cannot take down the app or other runs. A cluster backend replaces `Scheduler._launch`
and nothing above it; `docs/jobs.md` shows one with Ray. It knows nothing of training
itself (`core.runner` does) or of the UI.

How a run moves: `submit` stores it as `queued`; the scheduler claims queued runs oldest
first while fewer than the limit are running, and the worker marks it `running`, writes
progress, heartbeats and metrics, and ends it `succeeded`, `diverged`, `failed` or
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
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Protocol

import torch

from core import runner
from core import spec as specs
from core.device import cpu_count
from core.settings import TrainSettings
from core.store import FINISHED, Run, RunStore

STALE_SECONDS = 30.0  # a run whose worker cannot be checked by pid is lost once its heartbeat (written every second) is this old
PID_REUSE_SLACK_SECONDS = 5.0  # a process with the worker's pid that started this long after the run is another process
POLL_SECONDS = 0.2  # how often the scheduler looks for queued runs, cancels and finished workers
IDLE_EXIT_SECONDS = 120.0  # an auto-started scheduler exits after this long with nothing to do
# Workers notice a cancel within a quarter second; one that has not stopped this long after
# the scheduler saw the request (still starting up, or deep in an evaluation) is stopped
# with SIGTERM, so a cancel always lands within the 2 s the issue promises; one still
# alive (stuck in a driver call, or stopped with SIGSTOP) is killed a little later.
CANCEL_GRACE_SECONDS = 1.0
CANCEL_KILL_SECONDS = 10.0
START_TIMEOUT_SECONDS = 30.0  # how long `ensure_scheduler` waits for a new scheduler to take its lock
LOCK_WAIT_SECONDS = 2.0  # a starting scheduler retries its lock this long (a status check may hold it for a moment)
PARENT_CHECK_SECONDS = 0.5  # how often a worker checks that its scheduler is still alive


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


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (finished, not yet reaped by its parent) counts as dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _process_start_time(pid: int) -> float | None:
    """When process `pid` started, in seconds since the epoch, from /proc (Linux); None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # fields[19] is field 22 of proc(5), `starttime`.
    except (OSError, IndexError, StopIteration, ValueError):
        return None


def worker_gone(run: Run, now: float | None = None) -> bool:
    """True when a `running` run has lost its worker.

    The pid decides when it can be checked: the worker is gone when no such process exists,
    or when the process with that pid started after the run did (the pid was reused, e.g.
    after a reboot). A live worker that is slow to start (importing torch on a busy
    machine) is therefore never mistaken for a lost one. Only a run without a checkable pid
    (being launched, or where /proc is missing) falls back to its heartbeat's age.
    """
    now = now or time.time()
    if run.worker_pid:
        if not _pid_alive(run.worker_pid):
            return True
        started = _process_start_time(run.worker_pid)
        if started is not None:
            return started > (run.started_at or run.created_at) + PID_REUSE_SLACK_SECONDS
    heartbeat = run.heartbeat_at or run.started_at or run.created_at
    return now - heartbeat > STALE_SECONDS


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
        """Cancel a queued run at once, or ask a running one to stop; returns "cancelled", "cancelling" or the final status.

        A running run stops within 2 s when a scheduler serves it, keeping its finished epochs and best checkpoint.
        """
        if self.store.transition(run_id, ("queued",), status="cancelled", message="Cancelled before it started.", finished_at=time.time()):
            return "cancelled"
        run = self.store.get(run_id, with_metrics=False)
        if run.status != "running":
            return run.status
        self.store.request_cancel(run_id)
        reconcile(self.store)  # A run whose worker is already gone ends now.
        status = self.store.get(run_id, with_metrics=False).status
        return "cancelling" if status == "running" else status

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
        """The run with its metrics; a `running` run whose worker is gone is first marked interrupted."""
        run = self.store.get(run_id)
        if run.status == "running" and run_id in reconcile(self.store):
            run = self.store.get(run_id)
        return run

    def runs(self, owner: str | None = None) -> list[Run]:
        reconcile(self.store)
        return self.store.list(owner=owner)

    def queue_position(self, run_id: int) -> int | None:
        """1 for the next run to start; None when the run is not queued. The scheduler starts runs in this order."""
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

    def ensure_scheduler(self) -> bool:
        """Start a background scheduler for this runs directory unless one serves it; True when this call started one.

        Callers take turns on a start lock, and each waits until the scheduler it started holds the
        directory's lock, so two browser sessions (or the app and the CLI) never start two.
        The scheduler logs to `<runs dir>/scheduler.log` and exits after IDLE_EXIT_SECONDS idle.
        """
        with _held(_start_lock_path(self.store)):
            if scheduler_running(self.store):
                return False
            with open(self.store.directory / "scheduler.log", "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "core", "scheduler", "--exit-when-idle"],
                    cwd=Path(__file__).resolve().parent.parent,
                    env={**os.environ, "LAYERLAB_RUNS": str(self.store.directory)},
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # Outlives the app process that started it, and its Ctrl-C.
                )
            # Reap it when it exits, so an idle-exited scheduler does not linger as a zombie.
            threading.Thread(target=process.wait, name="scheduler-reaper", daemon=True).start()
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while time.monotonic() < deadline and process.poll() is None and scheduler_pid(self.store) != process.pid:
                time.sleep(0.05)
            return True


def reconcile(store: RunStore, owned_pids: frozenset[int] = frozenset()) -> list[int]:
    """Give runs whose worker is gone a final status (`interrupted`, or `cancelled` if asked); returns their ids.

    Any process may call it (the app on start and on every listing, the CLI, the scheduler);
    `worker_gone` decides. Workers in `owned_pids` are left to the scheduler that owns them,
    which knows their exit codes.
    """
    now = time.time()
    orphaned = []
    for run in store.list(status="running"):
        if (run.worker_pid and run.worker_pid in owned_pids) or not worker_gone(run, now):
            continue
        if run.cancel_requested:
            status, message = "cancelled", f"Cancelled; the {run.epochs_done} finished epoch(s) are kept."
        else:
            status, message = "interrupted", (
                f"The training process stopped without finishing (the server restarted or the process was killed) after "
                f"{run.epochs_done} finished epoch(s), which are kept. Resume it to continue."
            )
        if store.transition(run.id, ("running",), status=status, message=message, finished_at=now, worker_pid=None):
            orphaned.append(run.id)
    return orphaned


def wait_for(store: RunStore, run_id: int, timeout: float = 600.0, statuses: tuple[str, ...] = FINISHED) -> Run:
    """Block until run `run_id` reaches one of `statuses` (tests and scripts)."""
    deadline = time.monotonic() + timeout
    while True:
        run = store.get(run_id, with_metrics=False)
        if run.status in statuses:
            return store.get(run_id)
        if time.monotonic() > deadline:
            raise TimeoutError(f"Run {run_id} did not reach {statuses} within {timeout} s (it is {run.status}).")
        time.sleep(0.1)


# ----------------------------------------------------------------------------- locks


def _lock_path(store: RunStore) -> Path:
    return store.directory / "scheduler.lock"


def _start_lock_path(store: RunStore) -> Path:
    """Held while a scheduler is started or decides to exit idle, so the two never cross."""
    return store.directory / "scheduler.start.lock"


@contextmanager
def _held(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`, waiting for it."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _take_lock(path: Path, wait: float) -> IO[str] | None:
    """Take the exclusive lock on `path` within `wait` seconds and return its open file, or None."""
    handle = open(path, "a+")
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                return None
            time.sleep(0.05)


def scheduler_running(store: RunStore) -> bool:
    """True when some process holds this runs directory's scheduler lock."""
    with open(_lock_path(store), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def scheduler_pid(store: RunStore) -> int | None:
    """The process id of the scheduler serving this runs directory, or None when none does."""
    try:
        text = _lock_path(store).read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() and scheduler_running(store) else None


# ----------------------------------------------------------------------------- the worker process


def _worker_main(directory: str, run_id: int, resume: bool, threads: int, gpu: int | None) -> None:
    """Entry point of a worker process: train one run, logging to `<run dir>/worker.log`.

    SIGTERM, SIGINT or the death of the scheduler end the run `interrupted` (or `cancelled`
    when a cancel was asked for) with its finished epochs kept.
    """
    store = RunStore(directory)
    _redirect_output(store.run_directory(run_id) / "worker.log")

    def interrupt(signal_number, frame):
        # Ignore further signals so they cannot break the final status write.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    threading.Thread(target=_stop_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    torch.set_num_threads(threads)
    if gpu is not None:
        torch.cuda.set_device(gpu)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} worker {os.getpid()} starts run {run_id} (resume={resume})", flush=True)
    status = runner.execute(store, run_id, resume=resume)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} run {run_id} ended {status}", flush=True)


def _standby_main(connection) -> None:
    """A worker started ahead of need: it imports torch and loads MNIST, then waits for one run.

    Starting a Python process and importing torch takes seconds; a standby pays that while
    nobody waits, so a submitted run starts training at once. It still trains exactly one
    run in its own process, like any worker, and exits when its scheduler goes away.
    """
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    from core import data

    try:
        data.load("mnist")
    except Exception:  # No data yet: the run will load (and report) it itself.
        pass
    _warm_up()
    try:
        job = connection.recv()
    except EOFError:
        return
    if job is not None:
        _worker_main(*job)


def _warm_up() -> None:
    """Pay torch's first-use costs (spec checks on the meta device, autograd, oneDNN kernels) before a run arrives."""
    from core import spec as specs

    network = {"layers": [{"kind": "conv", "filters": 8, "kernel_size": 5}, {"kind": "maxpool"}, {"kind": "dense", "units": 16}, {"kind": "output"}]}
    model = specs.build(network).to(memory_format=torch.channels_last)
    images = torch.rand(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    torch.nn.functional.cross_entropy(model(images), torch.zeros(16, dtype=torch.long)).backward()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def _redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr (tracebacks included) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)


def _stop_with_parent(parent: int) -> None:
    """Interrupt this worker once its scheduler is gone (killed with SIGKILL), instead of training on unseen."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


# ----------------------------------------------------------------------------- the scheduler


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

    def _launch(self, run: Run, slot: int) -> Worker:
        """Start one worker process for `run`. A cluster backend overrides this method (docs/jobs.md)."""
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        threads = max(1, cpu_count() // self.limit)  # Share the cores instead of oversubscribing them.
        job = (str(self.store.directory), run.id, run.resume_requested, threads, slot % gpus if gpus else None)
        if self.standby is not None and self.standby[0].is_alive():
            process, connection = self.standby
            self.standby = None
            connection.send(job)
            connection.close()
            return process
        process = self.context.Process(target=_worker_main, args=job, name=f"layerlab-run-{run.id}")
        process.start()
        return process

    def _keep_standby(self) -> None:
        """Keep one warm worker waiting (see `_standby_main`), so the next run starts without the import delay."""
        if self.standby is not None and self.standby[0].is_alive():
            return
        receiver, sender = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_standby_main, args=(receiver,), name="layerlab-standby", daemon=True)
        process.start()
        receiver.close()
        self.standby = (process, sender)

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
        running = len(self.store.list(status="running"))  # Foreground CLI runs count too: they use the same cores.
        for run in reversed(self.store.list(status="queued")):
            free_slots = sorted(set(range(self.limit)) - set(self.slots.values()))
            if running >= self.limit or not free_slots:
                return
            now = time.time()
            claimed = self.store.transition(
                run.id, ("queued",), status="running", started_at=now, heartbeat_at=now, finished_at=None, worker_pid=None, progress={}
            )
            if not claimed:
                continue  # Cancelled between listing and claiming.
            try:
                worker = self._launch(run, free_slots[0])
            except Exception as error:  # E.g. no memory left for a new process: fail this run, keep serving.
                message = f"The job service could not start a worker: {error}"
                self.store.transition(run.id, ("running",), status="failed", message=message, finished_at=time.time())
                continue
            self.workers[run.id] = worker
            self.slots[run.id] = free_slots[0]
            self.store.update(run.id, worker_pid=worker.pid, resume_requested=0)
            running += 1

    def _enforce(self) -> None:
        """Stop workers that ignore a cancel for CANCEL_GRACE_SECONDS; kill those that ignore the stop too."""
        now = time.monotonic()
        for run_id, worker in self.workers.items():
            if not worker.is_alive() or not self.store.cancel_requested(run_id):
                continue
            waited = now - self.cancel_seen.setdefault(run_id, now)
            if waited >= CANCEL_KILL_SECONDS:
                worker.kill()  # Stuck in a driver call or stopped with SIGSTOP; reaped as cancelled.
            elif waited >= CANCEL_GRACE_SECONDS:
                worker.terminate()  # The worker records `cancelled` itself; a repeat SIGTERM is ignored.

    def _reap(self) -> None:
        """Give a final status to runs whose worker exited without writing one (killed, segfault, out of memory)."""
        for run_id, worker in list(self.workers.items()):
            if worker.is_alive():
                continue
            worker.join()
            del self.workers[run_id]
            self.slots.pop(run_id, None)
            self.cancel_seen.pop(run_id, None)
            run = self.store.get(run_id, with_metrics=False)
            if run.status != "running" or run.worker_pid not in (None, worker.pid):
                continue  # The worker wrote its own final status, or the run has moved on.
            status, message = self._exit_outcome(run, worker.exitcode)
            self.store.transition(run_id, ("running",), status=status, message=message, finished_at=time.time(), worker_pid=None)

    def _exit_outcome(self, run: Run, exitcode: int | None) -> tuple[str, str]:
        kept = f"Its {run.epochs_done} finished epoch(s) and best checkpoint are kept"
        if run.cancel_requested:
            return "cancelled", f"Cancelled; the {run.epochs_done} finished epoch(s) are kept."
        if exitcode is not None and exitcode < 0:
            how = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else f"signal {-exitcode}"
            return "interrupted", (
                f"The training process was killed ({how}) during epoch {run.epochs_done + 1}. {kept}; resume it to continue. "
                "If this keeps happening the machine may be running out of memory: lower the batch size or use a smaller network."
            )
        if self.stopping:
            return "interrupted", f"The job service stopped during epoch {run.epochs_done + 1}. {kept}; resume it to continue."
        log = self.store.run_directory(run.id) / "worker.log"
        return "failed", (
            f"The training process exited with code {exitcode} during epoch {run.epochs_done + 1} without saying why "
            f"(see {log}). {kept}; resume it to continue."
        )

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
    handle = _take_lock(_lock_path(store), LOCK_WAIT_SECONDS)
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
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} scheduler {os.getpid()} serves {store.directory} (limit {scheduler.limit})", flush=True)
    idle_since = time.monotonic()
    try:
        while not stop.is_set():
            if scheduler.step():
                idle_since = time.monotonic()
            elif exit_when_idle and time.monotonic() - idle_since > IDLE_EXIT_SECONDS:
                # Decide under the start lock: a run submitted meanwhile is either seen here, or
                # its `ensure_scheduler` finds this lock released and starts a new scheduler.
                with _held(_start_lock_path(store)):
                    if not store.list(status="queued", limit=1):
                        _release(handle)
                        break
                idle_since = time.monotonic()
            stop.wait(POLL_SECONDS)
    finally:
        scheduler.shutdown()
        _release(handle)
    return True


def _release(handle: IO[str]) -> None:
    """Clear the pid from the scheduler lock file and let go of the lock (once)."""
    if not handle.closed:
        os.ftruncate(handle.fileno(), 0)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
