"""Job service overhead: the same run through the service vs the engine called directly,
and the delay from an epoch finishing to another reader seeing its metrics."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time

from core.data import datasets as data
from core.jobs.scheduler import POLL_SECONDS, Scheduler
from core.jobs.service import JobService
from core.jobs.store import RunStore
from core.training import presets
from core.training.loop import train

PRESET = "nielsen-2-conv-pool"
WARM_UP_SECONDS = 8.0
OVERRIDES = {"epochs": 3, "batch_size": 64, "train_subset": 20_000}


def _direct_seconds() -> float:
    preset = presets.get(PRESET)
    started = time.perf_counter()
    splits = data.load("mnist")
    train(preset.network, preset.train_settings(**OVERRIDES), splits)
    return time.perf_counter() - started


def _watch_metrics(store: RunStore, run_id: int, seen: dict[int, float], done: threading.Event) -> None:
    """Another reader polling every 50 ms (a browser polls once a second); notes when each epoch appears.

    Polling faster would itself take CPU from the worker on a 2-core machine."""
    while not done.is_set():
        for row in store.metrics(run_id):
            seen.setdefault(row["epoch"], time.time())
        time.sleep(0.05)


def _service_run() -> tuple[float, list[float]]:
    preset = presets.get(PRESET)
    with tempfile.TemporaryDirectory() as directory:
        store = RunStore(directory)
        scheduler = Scheduler(store, limit=1)
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                scheduler.step()
                stop.wait(POLL_SECONDS)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        # Measure a service that is already up, as on a class server: its standby worker has
        # imported torch and loaded MNIST before the run is submitted.
        time.sleep(WARM_UP_SECONDS)
        started = time.perf_counter()
        run_id = JobService(store).submit(preset.network, preset.train_settings(**OVERRIDES), owner="bench")
        seen: dict[int, float] = {}
        done = threading.Event()
        watcher = threading.Thread(target=_watch_metrics, args=(store, run_id, seen, done), daemon=True)
        watcher.start()
        while store.get(run_id, with_metrics=False).status in ("queued", "running"):
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        deadline = time.monotonic() + 5
        while len(seen) < OVERRIDES["epochs"] and time.monotonic() < deadline:
            time.sleep(0.01)  # The watcher's next poll sees the last epoch.
        done.set()
        watcher.join()
        stop.set()
        thread.join()
        scheduler.shutdown()
        run = store.get(run_id)
        if run.status != "succeeded":
            raise RuntimeError(f"The benchmark run ended {run.status}: {run.message}")
        latencies = [seen[row["epoch"]] - row["ended_at"] for row in run.metrics]
    return seconds, latencies


def bench_service(repeats: int) -> dict:
    direct, service, latencies = [], [], []
    for _ in range(repeats):
        direct.append(_direct_seconds())
        seconds, epoch_latencies = _service_run()
        service.append(seconds)
        latencies += epoch_latencies
        print(f"service: direct {direct[-1]:.2f} s, service {seconds:.2f} s, latencies {[round(x, 3) for x in epoch_latencies]}", flush=True)
    direct_median, service_median = statistics.median(direct), statistics.median(service)
    return {
        "description": f"{PRESET}, {OVERRIDES['epochs']} epochs of {OVERRIDES['train_subset']:,} images, batch {OVERRIDES['batch_size']}",
        "direct_seconds": direct_median,
        "service_seconds": service_median,
        "overhead_percent": (service_median / direct_median - 1) * 100,
        "latency_median_seconds": statistics.median(latencies),
        "latency_max_seconds": max(latencies),
        "latency_samples": len(latencies),
    }
