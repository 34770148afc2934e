"""The leaderboard of a lesson link: each student's best run, for the Train page and the presenter view.

A student is an owner key. Their best run is the one with the highest test accuracy at its
best-validation epoch (the book's protocol), ties going to the shorter training time; a student
whose runs have no figure yet is listed below the others with their latest run's status, so the
board fills in live as epochs finish. When the teacher hides names, every row's name is
"Student N", numbered by when each student's first run was made — decided here, so no page can
show a name the teacher hid.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.jobs.store import Run
from core.views import run_views
from core.views.i18n import translate


@dataclass(frozen=True)
class Row:
    rank: int | None  # None until the student has a figure
    name: str
    test_accuracy: float | None
    epochs: int
    seconds: float
    status: str
    run_id: int
    key_hash: str


def rows(runs: list[Run], hide_names: bool, language: str = "en") -> list[Row]:
    by_owner: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda run: run.id):
        if run.owner_key_hash is not None:
            by_owner.setdefault(run.owner_key_hash, []).append(run)
    numbers = {key: number for number, key in enumerate(by_owner, start=1)}  # by each student's first run
    ranked, waiting = [], []
    for key, owned in by_owner.items():
        measured = [run for run in owned if run.test_accuracy is not None]
        best = max(measured, key=lambda run: (run.test_accuracy, -run_views.run_seconds(run))) if measured else owned[-1]
        named = next((run.owner for run in reversed(owned) if run.owner), "")
        name = translate(language, "leaderboard.student", number=numbers[key]) if hide_names or not named else named
        row = Row(None, name, best.test_accuracy, best.epochs_done, run_views.run_seconds(best), best.status, best.id, key)
        (ranked if measured else waiting).append(row)
    ranked.sort(key=lambda row: (-row.test_accuracy, row.seconds))
    placed = [dataclasses.replace(row, rank=rank) for rank, row in enumerate(ranked, start=1)]
    return placed + waiting
