"""Liveness: whether a run's worker is still there, and the final status of runs whose worker is gone.

Owns the pid, process-start-time and heartbeat checks that tell a live worker from a lost one,
and `reconcile`, which any process (the app, the CLI, the scheduler) may call to end lost runs
`interrupted` (or `cancelled`, when a cancel was asked for). It imports no torch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from core.errors import counted
from core.jobs.store import Run, RunStore

STALE_SECONDS = 30.0  # a run whose worker cannot be checked by pid is lost once its heartbeat (written every second) is this old
PID_REUSE_SLACK_SECONDS = 5.0  # a process with the worker's pid that started this long after the run is another process


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
            status, message = "cancelled", counted("run.cancelled", run.epochs_done)
        else:
            status, message = "interrupted", counted("run.process_stopped", run.epochs_done)
        if store.transition(run.id, ("running",), status=status, message=message, finished_at=now, worker_pid=None):
            orphaned.append(run.id)
    return orphaned
