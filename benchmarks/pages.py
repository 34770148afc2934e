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

from core.jobs import runner
from core.jobs.service import JobService
from core.jobs.store import RunStore
from core.training import presets
from core.views.i18n import translate

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
# Each page: its URL path, its title's catalog key, what shows its main content has drawn,
# and the page a person comes from when they click its link in the sidebar.
PAGES = {
    "Build": ("", "build.title", "[data-testid=stMain] .js-plotly-plot .main-svg", "Runs"),
    "Train": ("train", "train.title", "[data-testid=stMain] .js-plotly-plot .main-svg", "Runs"),
    "Runs": ("runs", "runs.title", "[data-testid=stMain] [data-testid=stDataFrame]", "Build"),
    # Its first view, Filters: the run's first weight layer drawn as images (loading the model and the dataset first).
    "Inspect": ("inspect", "inspect.title", "[data-testid=stMain] .js-plotly-plot .main-svg", "Runs"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(runs: Path, port: int, options: tuple[str, ...] = ()) -> subprocess.Popen:
    """The app on 127.0.0.1:`port` serving `runs`; `options` are more `streamlit run` flags (e.g. `--runner.postScriptGC true`)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true", *options],
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


def _wait_for_page(page, name: str) -> None:
    _, title_key, selector, _ = PAGES[name]
    page.locator("h1", has_text=translate("en", title_key)).first.wait_for(state="visible", timeout=60_000)
    page.locator(selector).first.wait_for(state="visible", timeout=60_000)


def cold_load_seconds(browser, base: str, name: str, run_id: int) -> float:
    """A fresh browser (empty cache) opens the page's address: JavaScript download and parse included."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    started = time.perf_counter()
    page.goto(f"{base}/{PAGES[name][0]}?run={run_id}")
    _wait_for_page(page, name)
    seconds = time.perf_counter() - started
    context.close()
    return seconds


def navigation_seconds(browser, base: str, name: str, run_id: int) -> float:
    """The app is open on another page; the person clicks this page's link in the sidebar for the first time."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    origin = PAGES[name][3]
    page.goto(f"{base}/{PAGES[origin][0]}?run={run_id}")
    _wait_for_page(page, origin)
    page.locator("[data-testid=stSidebar] .js-plotly-plot").wait_for(state="attached", timeout=60_000)  # the app has loaded
    link = page.locator("[data-testid=stSidebarNav] a", has_text=translate("en", f"nav.{name.lower()}"))
    started = time.perf_counter()
    link.click()
    _wait_for_page(page, name)
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
                cold_load_seconds(browser, base, "Build", run_id)  # Warm-up: the server's first imports.
                results = {}
                for name in PAGES:
                    clicks = [navigation_seconds(browser, base, name, run_id) for _ in range(repeats)]
                    loads = [cold_load_seconds(browser, base, name, run_id) for _ in range(repeats)]
                    results[name] = {
                        "navigation_median": statistics.median(clicks),
                        "navigation_all": clicks,
                        "cold_median": statistics.median(loads),
                        "cold_all": loads,
                    }
                    print(f"pages: {name} click {statistics.median(clicks):.2f} s, cold {statistics.median(loads):.2f} s", flush=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=20)
    return {"pages": results}
