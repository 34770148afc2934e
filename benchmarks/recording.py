"""`make bench --only recording`: what recording the training diagnostics costs, measured side by side.

The same training run with and without `core.probes.recording.Recorder` (the callback the
runner adds to every run), alternating the two so that a machine getting busier slows both:
the `fast` preset's first epoch, and Nielsen's second network at its mini-batch of 10, where
per-step overhead decides the speed. Whole-run wall time, evaluation and the probe batch
included; medians of the repeats. Target: ≤ 5% extra time (see benchmarks/report.py).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from core.data import datasets as data
from core.probes import recording
from core.training import presets
from core.training.loop import train


def _cases() -> list[tuple[str, str, dict]]:
    """(label, preset, settings overrides): one full epoch each, so the epoch-end probe is included."""
    return [
        ("fast, 1 epoch", "fast", {"epochs": 1}),
        ("nielsen-2-conv-pool, batch 10, 1 epoch of 10,000 images", "nielsen-2-conv-pool", {"epochs": 1, "batch_size": 10, "train_subset": 10_000}),
    ]


def _seconds(preset_name: str, overrides: dict, splits: data.Splits, record: bool, folder: Path) -> float:
    preset = presets.get(preset_name)
    settings = preset.train_settings(**overrides)
    callbacks = recording.Recorder(folder / f"{time.monotonic_ns()}.jsonl", preset.network, splits.validation_images) if record else None
    started = time.perf_counter()
    train(preset.network, settings, splits, callbacks)
    return time.perf_counter() - started


def bench_recording(splits: data.Splits, repeats: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, preset_name, overrides in _cases():
            _seconds(preset_name, {**overrides, "max_steps": 20}, splits, True, Path(folder))  # warm-up: first-call costs hit neither side
            plain, recorded = [], []
            for _ in range(repeats):
                plain.append(_seconds(preset_name, overrides, splits, False, Path(folder)))
                recorded.append(_seconds(preset_name, overrides, splits, True, Path(folder)))
            row = {
                "case": label,
                "seconds_without": statistics.median(plain),
                "seconds_with": statistics.median(recorded),
                "all_without": plain,
                "all_with": recorded,
            }
            row["overhead_percent"] = (row["seconds_with"] / row["seconds_without"] - 1) * 100
            print(f"recording {label}: {row['seconds_without']:.2f} s without, {row['seconds_with']:.2f} s with = {row['overhead_percent']:+.1f}%", flush=True)
            rows.append(row)
    return rows
