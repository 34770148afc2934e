"""CLI start-up: wall time of the commands that need no tensors, beside `python -c pass`.

Each command runs as a fresh process, the way a learner or a script runs it, on a temporary
runs directory (LAYERLAB_RUNS) holding a few runs; `cancel` gets a fresh queued run each time,
so every repetition takes the same path. Figures are medians of the repeats. Target: < 0.5 s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.jobs.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 0.5
NETWORK = {"layers": [{"kind": "dense", "units": 30, "activation": "relu"}, {"kind": "output"}], "normalize": True}


def _seconds(command: list[str], environment: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()}")
    return seconds


def bench_cli(repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        store = RunStore(directory)
        shown = store.create(NETWORK, {"dataset": "mnist", "epochs": 3}, name="finished", status="succeeded")
        store.create(NETWORK, {"dataset": "fashion-mnist", "epochs": 3}, name="queued")
        environment = {**os.environ, "LAYERLAB_RUNS": directory}
        python = [sys.executable]
        commands = {
            "python -c pass": lambda: python + ["-c", "pass"],
            "runs list": lambda: python + ["-m", "core", "runs", "list"],
            "runs show ID": lambda: python + ["-m", "core", "runs", "show", str(shown)],
            "presets": lambda: python + ["-m", "core", "presets"],
            "cancel ID": lambda: python + ["-m", "core", "cancel", str(store.create(NETWORK, {"dataset": "mnist"}))],
        }
        for command in commands.values():  # One unmeasured run of each warms the file cache.
            _seconds(command(), environment)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeats):
            for name, command in commands.items():  # Interleaved, so a noisy moment hits every command alike.
                times[name].append(_seconds(command(), environment))
    baseline = statistics.median(times["python -c pass"])
    rows = []
    for name, values in times.items():
        seconds = statistics.median(values)
        row = {"command": name, "median_seconds": seconds, "all_seconds": values, "ratio_to_python": seconds / baseline}
        row["met"] = seconds < TARGET_SECONDS
        rows.append(row)
        print(f"cli {name}: {seconds:.3f} s ({row['ratio_to_python']:.1f}× python -c pass){'' if row['met'] else ' MISSED'}", flush=True)
    return {"repeats": repeats, "target_seconds": TARGET_SECONDS, "rows": rows}
