"""Background tasks for the pages: a measurement that takes seconds to minutes runs in a thread of the server.

Owns a small registry, kept in this module for the life of the server process, of tasks keyed
by their owner (a browser's draft key, which its address keeps), their kind and their
parameters. A page starts one and goes on drawing; it reads the task's progress on its next
runs, and the finished result stays here, so a page refreshed in the browser, which is a new
session with the same owner, finds the task (`latest`) and shows its result. Starting the same
task again returns the one already running or finished instead of computing twice.

It knows nothing of what a task computes: the work is a function that takes an
`on_progress(done, total)` callback and returns the result. Threads, not processes: the work is
PyTorch, which releases the interpreter lock while it computes, and the result stays in memory
for the page without being pickled. This is the Adversarial lab's scale of work (seconds to a
few minutes); training runs go to the job service (`core.jobs`), which survives a restart.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from core.errors import LayerLabError

MAX_KEPT = 32  # finished tasks kept in memory, the oldest forgotten first

Work = Callable[[Callable[[int, int], None]], Any]


class Cancelled(Exception):
    """Raised inside a task's progress callback once the task was cancelled, to end its work early."""


@dataclass
class Task:
    """One piece of background work and what is known of it so far."""

    owner: str
    kind: str
    parameters: dict
    started: float = field(default_factory=time.time)
    done: int = 0
    total: int = 0
    result: Any = None
    error: LayerLabError | None = None  # an error with a message a learner can act on
    failure: BaseException | None = None  # anything else: a bug, shown with its traceback
    finished: float | None = None
    cancelled: bool = False

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def seconds(self) -> float:
        return (self.finished or time.time()) - self.started


_tasks: dict[tuple[str, str, str], Task] = {}
_lock = threading.Lock()


def _key(owner: str, kind: str, parameters: dict) -> tuple[str, str, str]:
    return owner, kind, json.dumps(parameters, sort_keys=True, default=str)


def start(owner: str, kind: str, parameters: dict, work: Work) -> Task:
    """The task of `owner` and `kind` with these `parameters`: the one already running or done, or a new one started now.

    A new task cancels the owner's other running task of the same kind, so one browser keeps
    at most one of each kind busy on the server. A task that failed or was cancelled is started again.
    """
    key = _key(owner, kind, parameters)
    with _lock:
        existing = _tasks.get(key)
        if existing is not None and not existing.cancelled and existing.failure is None and existing.error is None:
            return existing
        for other in _tasks.values():
            if other.owner == owner and other.kind == kind and other.running:
                other.cancelled = True
        task = Task(owner, kind, dict(parameters))
        _tasks[key] = task
        _forget_old()
    threading.Thread(target=_run, args=(task, work), name=f"layerlab-{kind}", daemon=True).start()
    return task


def _run(task: Task, work: Work) -> None:
    def on_progress(done: int, total: int) -> None:
        if task.cancelled:
            raise Cancelled()
        task.done, task.total = done, total

    try:
        task.result = work(on_progress)
    except Cancelled:
        pass
    except LayerLabError as error:
        task.error = error
    except Exception as error:  # noqa: BLE001 — kept for the page, which shows it with its traceback
        task.failure = error
    finally:
        task.finished = time.time()


def _forget_old() -> None:
    """Drop the oldest finished tasks beyond `MAX_KEPT` (called with the lock held)."""
    finished = sorted((task.started, key) for key, task in _tasks.items() if not task.running)
    for _, key in finished[: max(0, len(_tasks) - MAX_KEPT)]:
        del _tasks[key]


def latest(owner: str, kind: str) -> Task | None:
    """The owner's most recently started task of `kind` that was not cancelled, or None."""
    with _lock:
        found = [task for task in _tasks.values() if task.owner == owner and task.kind == kind and not task.cancelled]
    return max(found, key=lambda task: task.started, default=None)


def cancel(task: Task) -> None:
    """Ask the task to stop at its next progress report; `latest` no longer returns it."""
    task.cancelled = True


def wait(task: Task, timeout: float) -> bool:
    """Block until the task finished or `timeout` seconds passed; True if it finished (for tests and scripts)."""
    deadline = time.monotonic() + timeout
    while task.running and time.monotonic() < deadline:
        time.sleep(0.05)
    return not task.running
