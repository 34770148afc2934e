"""Nielsen's ch. 6 ladder at the book's length: each rung's preset trained once, its figure published.

`python -m benchmarks.ladder --rungs rung-1` trains the Lessons page's `nielsen-ladder` steps
named (all seven single-network rungs by default) with their presets' settings — the book's
epochs (60; 40 for dropout), mini-batch 10, η, λ, seed 0 — and merges each result into
`docs/ladder.json`, which the Lessons page shows as "LayerLab measured", then rewrites
`docs/ladder.md` from it. A rung measured earlier keeps its figure unless it is run again.
The five-net ensemble (rung 8) is not trained here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path

import torch

from core.data import datasets as data
from core.training.device import describe, pick_device
from core.training.loop import train
from core.views import syllabus

DOCS = Path(__file__).resolve().parent.parent / "docs"
SINGLE_RUNGS = tuple(step.id for step in syllabus.get("nielsen-ladder").steps if not step.ensemble)


def measure(step_id: str, splits: data.Splits, command: str) -> dict:
    step = syllabus.get("nielsen-ladder").step(step_id)
    settings = step.train_settings()
    result = train(step.network, settings, splits)
    figure = {
        "preset": step.preset,
        "test_accuracy": result.test_accuracy,
        "best_epoch": result.best_epoch,
        "epochs": len(result.history),
        "status": result.status,
        "seconds": result.seconds,
        "book_accuracy": step.claim,
        "book_epochs": step.claim_epochs,
        "device": describe(pick_device()),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "date": datetime.date.today().isoformat(),
        "command": command,
    }
    print(f"ladder {step_id}: {result.test_accuracy:.2%} at epoch {result.best_epoch} of {len(result.history)} in {result.seconds:.0f} s "
          f"(book {step.claim}%)", flush=True)  # fmt: skip
    return figure


def render(figures: dict[str, dict]) -> str:
    lesson = syllabus.get("nielsen-ladder")
    lines = [
        "# Nielsen's ladder, measured",
        "",
        "Produced by `python -m benchmarks.ladder` (do not edit by hand): each rung's preset trained once at the book's length",
        "with the book's settings and seed 0; the figure is the test accuracy at the best-validation epoch, as the book reports",
        "it. The Lessons page shows these as \"LayerLab measured\". A rung not yet measured says so.",
        "",
        "| rung | book | LayerLab | difference | epochs | best epoch | time | device | date | command |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for step in lesson.steps:
        if step.ensemble:
            lines.append(f"| {step.title['en']} | {step.claim:.2f}% | not measured (five runs of rung 7 voting) | | | | | | | |")
            continue
        figure = figures.get(step.id)
        if figure is None:
            lines.append(f"| {step.title['en']} | {step.claim:.2f}% | not measured yet | | {step.claim_epochs} | | | | | |")
            continue
        ours = figure["test_accuracy"] * 100
        lines.append(
            f"| {step.title['en']} | {step.claim:.2f}% | **{ours:.2f}%** | {ours - step.claim:+.2f} | {figure['epochs']} | {figure['best_epoch']} | "
            f"{figure['seconds'] / 60:.1f} min | {figure['device']}, {figure['cpu']} | {figure['date']} | `{figure['command']}` |"
        )
    return "\n".join(lines) + "\n"


def rewrite() -> None:
    """docs/ladder.md again from docs/ladder.json (`python -m benchmarks.ladder --rungs ""`)."""
    published = json.loads((DOCS / "ladder.json").read_text(encoding="utf-8"))
    (DOCS / "ladder.md").write_text(render(published["steps"]), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rungs", default=",".join(SINGLE_RUNGS), help=f"comma-separated, of {', '.join(SINGLE_RUNGS)}")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    rungs = [rung for rung in arguments.rungs.split(",") if rung]
    unknown = sorted(set(rungs) - set(SINGLE_RUNGS))
    if unknown:
        parser.error(f"unknown rungs {unknown}; choose from {', '.join(SINGLE_RUNGS)}")
    path = DOCS / "ladder.json"
    if not rungs:
        rewrite()
        return
    splits = data.load("mnist")
    published = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"steps": {}}
    for rung in rungs:
        command = f"python -m benchmarks.ladder --rungs {rung}" + (f" --threads {arguments.threads}" if arguments.threads else "")
        published["steps"][rung] = measure(rung, splits, command)
        path.write_text(json.dumps(published, indent=2) + "\n", encoding="utf-8")  # after each rung: a long series keeps what it has
        (DOCS / "ladder.md").write_text(render(published["steps"]), encoding="utf-8")


if __name__ == "__main__":
    main()
