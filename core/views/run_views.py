"""What the Train and Runs pages show about a run: progress with an ETA, table rows and downloads.

Owns turning stored `Run`s into display values (a progress fraction, an estimated time left,
percentages, durations, disk sizes, one table row per run, the run's message, network and
device in the page's language) and into downloadable text (metrics
as CSV, the network as JSON). It reads what the run store returns and knows nothing of
Streamlit, Plotly or how training works.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
import time
from dataclasses import dataclass

from core.jobs import disk, training_data
from core.jobs.store import METRIC_NAMES, Run, RunStore
from core.model import vocabulary
from core.views.i18n import DEFAULT_LANGUAGE, render, translate

# Statuses that `JobService.resume` accepts; it also needs one finished epoch (the resume state).
RESUMABLE = ("interrupted", "cancelled", "failed")
CSV_COLUMNS = ("epoch", *METRIC_NAMES)
# The runs table's columns, in order; `table_rows` fills each and the catalogs name them `runs.column.<name>`.
# Each epoch ends by measuring validation and test accuracy, 10,000 images each (core.data.datasets;
# not imported, since it imports torch and this module must not).
EVALUATION_IMAGES = 20_000
TABLE_COLUMNS = (
    "id", "name", "status", "best_validation_accuracy", "test_accuracy", "epochs", "time", "owner", "dataset", "network",
    "parameters", "disk", "device", "created",
)  # fmt: skip


@dataclass(frozen=True)
class ProgressView:
    """Where a running run stands, ready to print."""

    fraction: float  # share of all gradient steps this run will take, in [0, 1]
    epoch: int  # 1-based epoch in progress
    epochs: int
    step: int  # steps done in this epoch
    steps_per_epoch: int
    images_per_second: float
    eta_seconds: float | None  # None until the first steps have given a speed


def total_steps(progress: dict, settings: dict) -> int:
    """All the gradient steps the run will take: every epoch's, or `max_steps` when that is smaller."""
    steps = progress["epochs"] * progress["steps_per_epoch"]
    max_steps = settings.get("max_steps") or 0
    return min(steps, max_steps) if max_steps else steps


def evaluation_seconds(metrics: list[dict], batch_size: int, steps_per_epoch: int) -> float:
    """Mean time a finished epoch spent outside its training steps (measuring validation and test accuracy)."""
    overheads = [
        row["seconds"] - steps_per_epoch * batch_size / row["images_per_second"] for row in metrics if row.get("images_per_second")
    ]
    return max(0.0, sum(overheads) / len(overheads)) if overheads else 0.0


# Measuring accuracy runs a forward pass only, about three times faster per image than a training step.
EVALUATION_SPEEDUP = 3.0
# The shown time left moves a third of the way to each new estimate, and never rises more than 10 % at once.
ETA_SMOOTHING = 0.3
ETA_MAX_RISE = 1.1


def eta_seconds(progress: dict, settings: dict, metrics: list[dict]) -> float | None:
    """Seconds left: the remaining training steps plus one evaluation per remaining epoch end.

    Once an epoch has finished, both come from the finished epochs (their mean training speed
    and the mean time their evaluation took, from their measured wall time), which the slow
    first steps of a new epoch cannot disturb. Before that, the speed is the one the epoch in
    progress reports (measured from the epoch's start, so the worker's start-up and data
    loading do not count, which made the first estimate many times too long), and each
    evaluation is guessed from it: EVALUATION_IMAGES forward passes at EVALUATION_SPEEDUP times it.
    """
    steps_per_epoch = progress.get("steps_per_epoch")
    if not steps_per_epoch:
        return None
    batch_size = settings.get("batch_size", 64)
    finished = [row["images_per_second"] for row in metrics if row.get("images_per_second")]
    if finished:
        speed = sum(finished) / len(finished)
        evaluation = evaluation_seconds(metrics, batch_size, steps_per_epoch)
    else:
        speed = progress.get("images_per_second") or 0.0
        evaluation = EVALUATION_IMAGES / (EVALUATION_SPEEDUP * speed) if speed > 0 else 0.0
    if speed <= 0:
        return None
    total = total_steps(progress, settings)
    training = max(0, total - progress["global_step"]) * batch_size / speed
    last_epoch = math.ceil(total / steps_per_epoch)
    epoch_ends_left = max(0, last_epoch - progress["epoch"] + 1)  # the epoch in progress still ends with an evaluation
    return training + epoch_ends_left * evaluation


def smooth_eta(previous: dict | None, run_id: int, estimate: float | None, now: float) -> dict | None:
    """The time left to show, as state to keep between progress updates: {"run", "eta", "at"}.

    The last shown value counts down with the clock; each new `estimate` pulls it ETA_SMOOTHING
    of the way, and it never rises above ETA_MAX_RISE times the last shown value, so a slow
    step or the pause at an epoch's end does not make the time left jump.
    """
    if estimate is None:
        return previous if previous and previous.get("run") == run_id else None
    if not previous or previous.get("run") != run_id or previous.get("eta") is None:
        return {"run": run_id, "eta": estimate, "at": now}
    expected = max(0.0, previous["eta"] - max(0.0, now - previous["at"]))
    value = min(expected + ETA_SMOOTHING * (estimate - expected), previous["eta"] * ETA_MAX_RISE)
    return {"run": run_id, "eta": max(0.0, value), "at": now}


def progress_view(run: Run) -> ProgressView | None:
    """The run's latest progress with its ETA; None before its first step was reported."""
    progress = run.progress
    if not progress or not progress.get("steps_per_epoch"):
        return None
    total = total_steps(progress, run.settings)
    return ProgressView(
        fraction=min(1.0, progress["global_step"] / total) if total else 0.0,
        epoch=progress["epoch"],
        epochs=progress["epochs"],
        step=progress["step"],
        steps_per_epoch=progress["steps_per_epoch"],
        images_per_second=progress["images_per_second"],
        eta_seconds=eta_seconds(progress, run.settings, run.metrics),
    )


def estimated_wait(running: list[Run], position: int) -> float | None:
    """Seconds until the queued run at `position` (1 starts next) should start, from the running runs' ETAs; None when unknown.

    Each running run frees its slot when it ends, so position p starts when the p-th of them
    ends. Only that far: a run further back waits for runs that have not started, whose length
    nobody knows yet. Every running run (with its metrics) must have an ETA, else None.
    """
    etas = [view.eta_seconds if (view := progress_view(run)) else None for run in running]
    if not 1 <= position <= len(etas) or any(eta is None for eta in etas):
        return None
    return sorted(etas)[position - 1]


def format_duration(seconds: float | None) -> str:
    """'0:42', '12:05' or '1:02:03'; '–' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    whole = int(round(max(0.0, seconds)))
    hours, rest = divmod(whole, 3600)
    minutes, seconds_left = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds_left:02d}" if hours else f"{minutes}:{seconds_left:02d}"


def percent(fraction: float | None) -> str:
    """An accuracy in [0, 1] as '98.78%'; '–' when there is none yet."""
    return "–" if fraction is None else f"{fraction * 100:.2f}%"


def robust_figure(run: Run) -> dict | None:
    """The last recorded robust accuracy with what measured it (accuracy, epsilon, steps, images), or None when the run measured none."""
    measured = [row for row in run.metrics if row.get("robust_accuracy") is not None]
    if not measured:
        return None
    settings = run.settings
    return {
        "accuracy": measured[-1]["robust_accuracy"],
        "epsilon": settings.get("adversarial_epsilon"),
        "steps": settings.get("robust_eval_steps"),
        "images": settings.get("robust_eval_images"),
    }


def run_seconds(run: Run, now: float | None = None) -> float:
    """Training time so far: the finished epochs' time, or the wall time since a running run started."""
    if run.status == "running" and run.started_at:
        return max(run.seconds, (now or time.time()) - run.started_at)
    return run.seconds


def format_bytes(count: int | float) -> str:
    """A size in decimal units: '512 B', '31.4 kB', '6.7 MB', '1.2 GB'."""
    if count < 1000:
        return f"{int(count)} B"
    for power, unit in enumerate(("kB", "MB"), start=1):
        if round(count / 1000**power, 1) < 1000:  # 999,960 bytes is '1.0 MB', not '1000.0 kB'
            return f"{count / 1000**power:.1f} {unit}"
    return f"{count / 1000**3:.1f} GB"


def disk_use(store: RunStore, runs: list[Run]) -> dict[int, int]:
    """Bytes each run's folder holds, by run id: one directory listing per run."""
    return {run.id: disk.run_disk_use(store, run.id) for run in runs}


def prunable(run: Run) -> bool:
    """True when `disk.prune` accepts the run: no worker is writing its files."""
    return run.status not in disk.BUSY


def resumable(run: Run) -> bool:
    """True when `JobService.resume` can continue the run: it stopped early after at least one epoch."""
    return run.status in RESUMABLE and run.epochs_done > 0


def network_summary(spec: dict, language: str = DEFAULT_LANGUAGE) -> str:
    """The one-line network description of the Train page and the runs table, in `language`.

    'conv 20 × 5×5 → maxpool 2×2 → dense 100 → output softmax 10' in English, '합성곱 20 × 5×5 →
    최대 풀링 2×2 → …' in Korean; a spec the builder rejects shows as '?'.
    """
    try:
        layers = vocabulary.normalize_spec(spec)["layers"]
    except ValueError:
        return "?"
    return " → ".join(_layer_summary(layer, language) for layer in layers)


def _layer_summary(layer: dict, language: str) -> str:
    kind = layer["kind"]
    values: dict[str, object] = {}
    if kind == "dense":
        values = {"units": layer["units"]}
    elif kind == "conv":
        values = {"filters": layer["filters"], "kernel": layer["kernel_size"]}
    elif kind in vocabulary.POOL_KINDS:
        values = {"size": layer["size"]}
    elif kind == "dropout":
        values = {"p": f"{layer['p']:g}"}
    elif kind == "activation":
        values = {"activation": translate(language, f"build.choice.activation.{layer['activation']}")}
    elif kind == "output":
        values = {"classes": vocabulary.NUM_CLASSES}
    return translate(language, f"summary.{kind}", **values)


def message(run: Run, language: str = DEFAULT_LANGUAGE) -> str:
    """Why the run stopped (or a note about it), in `language`; rows stored before codes show their English text."""
    return run.message_in(language)


# The device labels `core.training.device.describe` stores with each run, read back into messages.
_STORED_DEVICES = ((re.compile(r"CPU, (?P<threads>\d+) threads"), "device.cpu"), (re.compile(r"Apple MPS"), "device.mps"),
                   (re.compile(r"CUDA: (?P<name>.+)"), "device.cuda"))  # fmt: skip


def device_text(device: str, language: str = DEFAULT_LANGUAGE) -> str:
    """A stored run's device label in `language` ("CPU, 2 threads" reads "CPU, 스레드 2개"); other text as stored."""
    for pattern, code in _STORED_DEVICES:
        if match := pattern.fullmatch(device or ""):
            return render(code, match.groupdict(), language)
    return device


def display_name(run: Run, language: str = DEFAULT_LANGUAGE) -> str:
    """The run's name, or for a run started without one "Run #12" in `language`."""
    return run.name or translate(language, "runs.default_name", id=run.id)


def owned_by(runs: list[Run], owner_key_hash: str | None) -> list[Run]:
    """The runs the browser with this key hash started (`core.jobs.access`); none for no key, nor runs made before classroom mode."""
    return [run for run in runs if owner_key_hash is not None and run.owner_key_hash == owner_key_hash]


def legend_text(text: str) -> str:
    """A run's label for a Plotly legend or hover, which reads a few HTML tags (<b>, <a href>): escaped, it shows as typed."""
    return html.escape(text, quote=False)


def _in_percent(fraction: float | None) -> float:
    """An accuracy in percent; NaN (an empty cell in a number column) when there is none yet."""
    # Rounded to the table's two decimals: 0.9624 * 100 is 96.24000000000001 in binary floating point.
    return math.nan if fraction is None else round(fraction * 100, 2)


def table_rows(runs: list[Run], language: str = "en", now: float | None = None, disk_bytes: dict[int, int] | None = None) -> list[dict]:
    """One row per run for the runs table, newest first as given; accuracies are in percent (NaN when none).

    "disk" is the size of the run's files from `disk_bytes` (see `disk_use`) as text such as '6.7 MB',
    '–' when not given. (Streamlit's "bytes" number format would follow the browser's locale and
    write 6.7 MB as "670만B" on a Korean machine.)
    """
    disk_bytes = disk_bytes or {}
    rows = []
    for run in runs:
        epochs = run.settings.get("epochs", 0)
        rows.append(
            {
                "id": run.id,
                "name": display_name(run, language),
                "status": translate(language, f"common.status.{run.status}"),
                "owner": run.owner,
                "dataset": translate(language, f"train.choice.{run.dataset}"),
                "network": network_summary(run.spec, language),
                "parameters": run.parameters,
                "disk": format_bytes(disk_bytes[run.id]) if run.id in disk_bytes else "–",
                "best_validation_accuracy": _in_percent(run.best_validation_accuracy),
                "test_accuracy": _in_percent(run.test_accuracy),
                "epochs": f"{run.epochs_done}/{epochs}",
                "time": format_duration(run_seconds(run, now)),
                "device": device_text(run.device, language),
                "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created_at)),
            }
        )
    return rows


def my_digits_text(store: RunStore, run: Run, language: str = DEFAULT_LANGUAGE) -> str | None:
    """'Trained with 12 of my digits' (and why none, when the set could not be used); None for a run that did not ask for them."""
    record = training_data.read(store.run_directory(run.id))
    if record is None:
        return None
    text = translate(language, "runs.my_digits", count=record.my_digits)
    return f"{text} {record.note.render(language)}" if record.note is not None else text


def metrics_csv(metrics: list[dict]) -> str:
    """A run's per-epoch metrics as CSV text with a header row; accuracies stay fractions in [0, 1]."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(metrics)
    return buffer.getvalue()


def network_json(run: Run) -> str:
    """The run's network spec as indented JSON, the format the Build page and `python -m core` read."""
    return json.dumps(run.spec, indent=2, ensure_ascii=False) + "\n"


def download_name(run: Run, what: str, extension: str) -> str:
    """A file name such as 'run-12-metrics.csv'."""
    return f"run-{run.id}-{what}.{extension}"


def next_run_name(base: str, existing: list[str]) -> str:
    """`base` with the next number no existing name uses, e.g. 'fast #3' after 'fast #1' and 'fast #2'."""
    prefix = f"{base} #"
    numbers = [int(name[len(prefix) :]) for name in existing if name.startswith(prefix) and re.fullmatch(r"[0-9]{1,9}", name[len(prefix) :])]
    return f"{prefix}{max(numbers, default=0) + 1}"
