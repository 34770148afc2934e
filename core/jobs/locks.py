"""Locks: one scheduler per runs directory, and the lock that serialises starting one.

Owns `<runs dir>/scheduler.lock` (held by the serving scheduler, with its pid inside) and
`scheduler.start.lock` (held while a scheduler is started or decides to exit idle). It
imports no torch.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from core.jobs.store import RunStore

LOCK_WAIT_SECONDS = 2.0  # a starting scheduler retries its lock this long (a status check may hold it for a moment)


def lock_path(store: RunStore) -> Path:
    return store.directory / "scheduler.lock"


def start_lock_path(store: RunStore) -> Path:
    """Held while a scheduler is started or decides to exit idle, so the two never cross."""
    return store.directory / "scheduler.start.lock"


@contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`, waiting for it."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def take_lock(path: Path, wait: float) -> IO[str] | None:
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
    with open(lock_path(store), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def scheduler_pid(store: RunStore) -> int | None:
    """The process id of the scheduler serving this runs directory, or None when none does."""
    try:
        text = lock_path(store).read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() and scheduler_running(store) else None


def release(handle: IO[str]) -> None:
    """Clear the pid from the scheduler lock file and let go of the lock (once)."""
    if not handle.closed:
        os.ftruncate(handle.fileno(), 0)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
