"""Helpers for the browser test: a real Streamlit server on a free port, process clean-up, and waits with deadlines.

Streamlit reruns replace DOM elements, so every wait re-queries the page instead of holding
element handles; every wait has an explicit deadline and says what it waited for when it fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SERVER_START_SECONDS = 60.0

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(runs: Path, port: int, log_path: Path) -> subprocess.Popen:
    """`streamlit run app.py` serving `runs`, once /_stcore/health answers; raises with the server's log otherwise."""
    env = {**os.environ, "LAYERLAB_RUNS": str(runs), "LAYERLAB_MAX_JOBS": "1"}
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
        "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    log = open(log_path, "wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    stop_process(process)
    log_tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"The Streamlit server did not become healthy within {SERVER_START_SECONDS:.0f} s:\n{log_tail}")


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def processes_using(runs: Path) -> list[int]:
    """Ids of this user's processes started with LAYERLAB_RUNS=`runs` (the scheduler, its workers and helpers)."""
    marker = f"LAYERLAB_RUNS={runs}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone, or another user's
            continue
        if state != "Z" and marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_runs_processes(runs: Path, scheduler_pid: int | None, timeout: float = 20.0) -> list[int]:
    """Stop the detached scheduler (SIGTERM lets it stop its workers), then anything else still using `runs`.

    Returns the ids still alive after SIGKILL (none, unless something is badly stuck).
    """
    if scheduler_pid:
        kill_all([scheduler_pid], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while processes_using(runs) and time.monotonic() < deadline:
        time.sleep(0.2)
    leftover = processes_using(runs)
    if leftover:
        kill_all(leftover, signal.SIGTERM)
        time.sleep(2)
        kill_all(processes_using(runs), signal.SIGKILL)
        time.sleep(1)
    return processes_using(runs)


def wait_for(what: str, check: Callable[[], T], timeout: float, interval: float = 0.2) -> T:
    """Call `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 — an element re-rendered mid-read; try again
            last_error = error
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


# ----------------------------------------------------------------------------- what every browser test shares

NO_EXCEPTION = "[data-testid=stException]"
PAGE_DEADLINE = 60.0  # seconds for a page to draw (the first one imports torch on the server)


def launch_browser():
    """Debian's Chromium through Playwright, for a fixture to yield; closed when the fixture ends."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise AssertionError("Python playwright is missing: run `make test`, which installs requirements.txt.") from None
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def stop_server(process: subprocess.Popen, runs: Path, scheduler: int | None) -> None:
    """Stop a test's app server and every process it started with `runs`; fail if any is left."""
    stop_process(process)
    left = stop_runs_processes(runs, scheduler)
    assert not left, f"processes still using {runs} after the test: {left}"


def assert_no_exception(page) -> None:
    boxes = page.locator(NO_EXCEPTION)
    assert boxes.count() == 0, f"the page shows an exception: {boxes.first.inner_text()[:2000]}"


def wait_idle(page, timeout: float = PAGE_DEADLINE) -> None:
    """Wait until Streamlit has finished the current rerun (its status widget says 'Running…' meanwhile)."""
    wait_for("the app to finish running", lambda: page.locator("[data-testid=stStatusWidget]").count() == 0, timeout)
    assert_no_exception(page)


def metric_value(page, label: str) -> str | None:
    """The value of the metric labelled `label`, or None while it is not shown."""
    metric = page.locator("[data-testid=stMetric]").filter(has=page.locator("[data-testid=stMetricLabel]", has_text=label))
    if metric.count() == 0:
        return None
    return metric.first.locator("[data-testid=stMetricValue]").inner_text().strip()


def main_text(page) -> str:
    return page.locator("[data-testid=stMain]").inner_text()


@contextmanager
def serving(runs: Path, **extra):
    """A real LayerLab server on a free port over `runs`, for a fixture to yield from.

    Yields {"url", "runs", "store", **extra}; afterwards the server, its scheduler and every
    process it started with `runs` are stopped, and the test fails if any is left.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test`, which installs Debian's chromium for the browser tests.")
    from core.jobs.locks import scheduler_pid
    from core.jobs.store import RunStore

    store = RunStore(runs)
    port = free_port()
    process = start_server(runs, port, runs.parent / "streamlit.log")
    try:
        yield {"url": f"http://127.0.0.1:{port}", "runs": runs, "store": store, **extra}
    finally:
        stop_server(process, runs, scheduler_pid(store))
