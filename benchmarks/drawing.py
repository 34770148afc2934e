"""Draw page speed: preprocessing + prediction for one drawing, and the browser round trip from mouse-up to the prediction shown.

In-process: 200 MNIST test digits re-drawn as the canvas returns them (280×280 RGBA, see
`core.drawing.synthetic`), each through `preprocess.prepare` and `classify.probabilities`
with a short `fast` run's model, timed one at a time; the reference is the bare model
forward on one prepared image, measured in the same run. Target: p95 ≤ 20 ms.

Browser: a real server and headless Chromium; each repetition clears the canvas, draws a
"1" with the mouse and times from the mouse's release to the prediction on the page. This
includes the canvas component's own wait before it sends a drawing. The reference is the
round trip of a rerun that classifies nothing (pressing Clear until its hint shows). Target:
p95 ≤ 500 ms.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from core.data import datasets
from core.drawing import classify, preprocess, synthetic
from core.jobs.store import RunStore
from core.training import checkpoint

DRAWINGS = 200
TARGET_MILLISECONDS = 20.0
ROUND_TRIP_TARGET_SECONDS = 0.5


def _percentiles(values: list[float]) -> dict:
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)), "all": [round(value, 4) for value in values]}


def bench_prediction(model: torch.nn.Module, splits: datasets.Splits) -> dict:
    random = np.random.default_rng(0)
    drawings = [synthetic.as_drawn(image, random) for image in splits.test_images[:DRAWINGS].numpy()]
    classify.probabilities(model, preprocess.prepare(drawings[0]).image)  # warm-up: first calls allocate
    whole, forward = [], []
    for drawing in drawings:
        started = time.perf_counter()
        prepared = preprocess.prepare(drawing)
        classify.probabilities(model, prepared.image)
        whole.append((time.perf_counter() - started) * 1000)
        batch = torch.from_numpy(prepared.image).reshape(1, 1, 28, 28).float().div_(255)
        started = time.perf_counter()
        with torch.inference_mode():
            model(batch)
        forward.append((time.perf_counter() - started) * 1000)
    return {"drawings": DRAWINGS, "milliseconds": _percentiles(whole), "forward_milliseconds": _percentiles(forward), "target_milliseconds": TARGET_MILLISECONDS}


def bench_round_trip(runs: Path, repeats: int) -> dict:
    from playwright.sync_api import sync_playwright

    from core.jobs.locks import scheduler_pid
    from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, free_port, start_server, stop_process, stop_runs_processes, wait_for
    from tests.test_browser_draw import ONE, VIEWPORT, clear_canvas, draw_strokes, open_draw_page, prediction, wait_idle

    port = free_port()
    process = start_server(runs, port, runs / "streamlit.log")
    drawn, cleared = [], []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            open_draw_page(page, f"http://127.0.0.1:{port}")
            for repetition in range(repeats + 1):  # the first is a warm-up (the first rerun loads the model)
                started = time.monotonic()
                clear_canvas(page)
                if repetition:
                    cleared.append(time.monotonic() - started)
                released = draw_strokes(page, ONE)
                wait_for("a prediction", lambda: prediction(page) is not None, 20, interval=0.01)
                drawn.append(time.monotonic() - released)
                wait_idle(page)
            browser.close()
    finally:
        stop_process(process)
        stop_runs_processes(runs, scheduler_pid(RunStore(runs)))
    return {"repeats": repeats, "seconds": _percentiles(drawn[1:]), "clear_seconds": _percentiles(cleared), "target_seconds": ROUND_TRIP_TARGET_SECONDS}


def bench_drawing(repeats: int) -> dict:
    from tests.test_browser_draw import train_run

    splits = datasets.load("mnist")
    with tempfile.TemporaryDirectory(prefix="layerlab-bench-draw-") as directory:
        store = RunStore(Path(directory))
        run_id = train_run(store)
        model, _, _ = checkpoint.load(store.best_checkpoint_path(run_id))
        result = {"prediction": bench_prediction(model, splits), "test_accuracy": store.get(run_id).test_accuracy}
        result["round_trip"] = bench_round_trip(Path(directory), max(repeats * 3, 10))
    return result
