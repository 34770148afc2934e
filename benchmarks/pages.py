"""Page render time: first load of each page in headless Chromium with a finished run selected."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from core import presets, runner
from core.jobs import JobService
from core.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
# What shows that each page has drawn its main content.
PAGES = {
    "Build": ("", "[data-testid=stPlotlyChart]"),
    "Train": ("train", "[data-testid=stMetricValue]"),
    "Runs": ("runs", "[data-testid=stDataFrame]"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(runs: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true"],
        cwd=ROOT,
        env={**os.environ, "LAYERLAB_RUNS": str(runs)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("The Streamlit server did not become healthy within 60 s.")


def finished_run(store: RunStore) -> int:
    preset = presets.get("logistic-regression")
    run_id = JobService(store).submit(preset.network, preset.train_settings(epochs=2, train_subset=5000), owner="bench")
    store.transition(run_id, ("queued",), status="running")
    status = runner.execute(store, run_id)
    if status != "succeeded":
        raise RuntimeError(f"The benchmark's run ended {status}.")
    return run_id


def load_seconds(browser, url: str, selector: str) -> float:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(selector, state="visible", timeout=60_000)
    seconds = time.perf_counter() - started
    context.close()
    return seconds


def bench_pages(repeats: int) -> dict:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as directory:
        runs = Path(directory)
        run_id = finished_run(RunStore(runs))
        port = free_port()
        server = start_server(runs, port)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                base = f"http://127.0.0.1:{port}"
                load_seconds(browser, f"{base}/?run={run_id}", PAGES["Build"][1])  # Warm-up: the server's first imports.
                results = {}
                for name, (path, selector) in PAGES.items():
                    loads = [load_seconds(browser, f"{base}/{path}?run={run_id}", selector) for _ in range(repeats)]
                    results[name] = {"median": statistics.median(loads), "all": loads}
                    print(f"pages: {name} {statistics.median(loads):.2f} s ({', '.join(f'{value:.2f}' for value in loads)})", flush=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=20)
    return {"pages": results}
