"""What a run trained on besides the dataset: how many of its owner's "my digits" were added, kept beside the run.

Owns one small file in the run's folder, `training_data.json` = {"my_digits": N} (with a
"note", a message as data, when the set could not be used), written by the runner once the
training data is known and read by the pages. It is a file, not a database column, so the
run store's schema stays as it is. No torch: the Runs page reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.errors import Message

FILE = "training_data.json"


@dataclass(frozen=True)
class TrainingData:
    my_digits: int  # images from the owner's "my digits" put in front of the training split
    note: Message | None = None  # why the set added nothing, when it was asked for and could not be read


def write(run_directory: Path, training_data: TrainingData) -> None:
    """Record what the run trains on (replacing an earlier record, e.g. before a resume)."""
    payload: dict = {"my_digits": training_data.my_digits}
    if training_data.note is not None:
        payload["note"] = training_data.note.to_dict()
    run_directory.mkdir(parents=True, exist_ok=True)
    temporary = run_directory / f".{FILE}.tmp"
    temporary.write_text(json.dumps(payload), encoding="utf-8")
    temporary.replace(run_directory / FILE)


def read(run_directory: Path) -> TrainingData | None:
    """The run's record, or None when it added nothing to the dataset (or the record is unreadable)."""
    try:
        payload = json.loads((run_directory / FILE).read_text(encoding="utf-8"))
        note = Message.from_dict(payload["note"]) if payload.get("note") else None
        return TrainingData(int(payload["my_digits"]), note)
    except (OSError, ValueError, KeyError, TypeError):
        return None
