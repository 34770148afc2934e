"""The run store: a SQLite database of runs and per-epoch metrics, plus each run's files.

Owns the schema, every read and write of run rows, and where run files live
(`<runs dir>/<id>/`). Many processes use it at once (the app, the CLI, training workers):
each call opens a short connection, the database runs in WAL mode so readers never block
the writer, and a busy timeout absorbs brief write contention. It knows nothing of
training or of the UI; checkpoints are in `core.checkpoint`.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from core.errors import LayerLabError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Statuses a run moves through; the last five are final until a resume.
STATUSES = ("queued", "running", "succeeded", "diverged", "failed", "cancelled", "interrupted")
FINISHED = ("succeeded", "diverged", "failed", "cancelled", "interrupted")
METRIC_NAMES = (
    "train_loss",
    "train_accuracy",
    "validation_loss",
    "validation_accuracy",
    "test_accuracy",
    "learning_rate",
    "seconds",
    "images_per_second",
    "ended_at",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    dataset TEXT NOT NULL,
    spec TEXT NOT NULL,              -- the network spec as JSON
    settings TEXT NOT NULL,          -- TrainSettings as JSON
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',-- a sentence for the learner: why it failed, diverged or stopped
    device TEXT NOT NULL DEFAULT '',
    parameters INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    heartbeat_at REAL,               -- refreshed by the worker while it runs
    worker_pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    resume_requested INTEGER NOT NULL DEFAULT 0, -- continue from the saved state when the worker starts
    progress TEXT NOT NULL DEFAULT '{}', -- the latest in-epoch Progress as JSON
    epochs_done INTEGER NOT NULL DEFAULT 0,
    best_epoch INTEGER NOT NULL DEFAULT 0,
    best_validation_accuracy REAL,
    test_accuracy REAL,
    seconds REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    train_loss REAL, train_accuracy REAL, validation_loss REAL, validation_accuracy REAL,
    test_accuracy REAL, learning_rate REAL, seconds REAL, images_per_second REAL,
    ended_at REAL,                   -- when the epoch finished (its evaluation done)
    recorded_at REAL NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status);
"""


class RunNotFound(LayerLabError, LookupError):
    pass


@dataclass
class Run:
    """One row of `runs`, with its JSON columns decoded."""

    id: int
    name: str
    owner: str
    dataset: str
    spec: dict
    settings: dict
    status: str
    message: str
    device: str
    parameters: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    worker_pid: int | None
    cancel_requested: bool
    resume_requested: bool
    progress: dict
    epochs_done: int
    best_epoch: int
    best_validation_accuracy: float | None
    test_accuracy: float | None
    seconds: float
    metrics: list[dict] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def runs_dir() -> Path:
    """Where runs live: `LAYERLAB_RUNS` if set, else `<project>/runs`."""
    return Path(os.environ.get("LAYERLAB_RUNS") or PROJECT_ROOT / "runs")


class RunStore:
    """Reads and writes runs. Cheap to create; safe to share between threads and processes."""

    def __init__(self, directory: Path | str | None = None):
        self.directory = Path(directory) if directory else runs_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.database = self.directory / "runs.sqlite"
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(SCHEMA)
            _migrate(connection)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.database, timeout=30.0, isolation_level=None)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA busy_timeout=30000")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA synchronous=NORMAL")
        try:
            yield connection
        finally:
            connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction; BEGIN IMMEDIATE takes the write lock up front."""
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ runs

    def create(
        self, spec: dict, settings: dict, *, name: str = "", owner: str = "", status: str = "queued", parameters: int = 0
    ) -> int:
        with self._transaction() as connection:
            cursor = connection.execute(
                "INSERT INTO runs (name, owner, dataset, spec, settings, status, parameters, created_at) VALUES (?,?,?,?,?,?,?,?)",
                (name, owner, settings.get("dataset", "mnist"), json.dumps(spec), json.dumps(settings), status, parameters, time.time()),
            )
            run_id = int(cursor.lastrowid)
        self.run_directory(run_id).mkdir(parents=True, exist_ok=True)
        return run_id

    def get(self, run_id: int, with_metrics: bool = True) -> Run:
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(f"There is no run {run_id}. `python -m core runs list` shows the runs there are.")
            run = _run_from_row(row)
            if with_metrics:
                run.metrics = self._metrics(connection, run_id)
        return run

    def list(self, owner: str | None = None, status: str | None = None, limit: int = 500) -> list[Run]:
        query, arguments = "SELECT * FROM runs", []
        conditions = []
        if owner:
            conditions.append("owner = ?")
            arguments.append(owner)
        if status:
            conditions.append("status = ?")
            arguments.append(status)
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY id DESC LIMIT ?"
        with self._connect() as connection:
            return [_run_from_row(row) for row in connection.execute(query, (*arguments, limit))]

    def update(self, run_id: int, **values: Any) -> None:
        """Set columns of a run; dict values are stored as JSON."""
        if not values:
            return
        encoded = {name: json.dumps(value) if isinstance(value, dict) else value for name, value in values.items()}
        columns = ", ".join(f"{name} = ?" for name in encoded)
        with self._transaction() as connection:
            connection.execute(f"UPDATE runs SET {columns} WHERE id = ?", (*encoded.values(), run_id))

    def transition(self, run_id: int, from_statuses: tuple[str, ...], **values: Any) -> bool:
        """Update a run only if its status is one of `from_statuses`; True when it was.

        This is how a worker claims a queued run without two workers taking the same one.
        """
        encoded = {name: json.dumps(value) if isinstance(value, dict) else value for name, value in values.items()}
        columns = ", ".join(f"{name} = ?" for name in encoded)
        marks = ",".join("?" for _ in from_statuses)
        with self._transaction() as connection:
            cursor = connection.execute(
                f"UPDATE runs SET {columns} WHERE id = ? AND status IN ({marks})", (*encoded.values(), run_id, *from_statuses)
            )
            return cursor.rowcount == 1

    def record_epoch(self, run_id: int, metrics: dict[str, float], **run_values: Any) -> None:
        """Store one epoch's metrics and update the run's summary columns in one transaction."""
        with self._transaction() as connection:
            connection.execute(
                f"INSERT OR REPLACE INTO metrics (run_id, epoch, {', '.join(METRIC_NAMES)}, recorded_at) "
                f"VALUES (?, ?, {', '.join('?' for _ in METRIC_NAMES)}, ?)",
                (run_id, metrics["epoch"], *(metrics.get(name) for name in METRIC_NAMES), time.time()),
            )
            if run_values:
                columns = ", ".join(f"{name} = ?" for name in run_values)
                connection.execute(f"UPDATE runs SET {columns} WHERE id = ?", (*run_values.values(), run_id))

    def truncate_metrics(self, run_id: int, keep_epochs: int) -> None:
        """Drop metric rows after `keep_epochs` (a resumed run redoes those epochs)."""
        with self._transaction() as connection:
            connection.execute("DELETE FROM metrics WHERE run_id = ? AND epoch > ?", (run_id, keep_epochs))

    def metrics(self, run_id: int) -> list[dict]:
        with self._connect() as connection:
            return self._metrics(connection, run_id)

    @staticmethod
    def _metrics(connection: sqlite3.Connection, run_id: int) -> list[dict]:
        rows = connection.execute("SELECT * FROM metrics WHERE run_id = ? ORDER BY epoch", (run_id,)).fetchall()
        return [{name: row[name] for name in ("epoch", *METRIC_NAMES, "recorded_at")} for row in rows]

    def request_cancel(self, run_id: int) -> None:
        self.get(run_id, with_metrics=False)  # Raises RunNotFound for a wrong id.
        self.update(run_id, cancel_requested=1)

    def cancel_requested(self, run_id: int) -> bool:
        with self._connect() as connection:
            row = connection.execute("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    def delete(self, run_id: int) -> None:
        run = self.get(run_id, with_metrics=False)
        if run.status in ("running",):
            raise ValueError(f"Run {run_id} is still running. Cancel it first, then delete it.")
        with self._transaction() as connection:
            connection.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            connection.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(self.run_directory(run_id), ignore_errors=True)

    # ------------------------------------------------------------------ files

    def run_directory(self, run_id: int) -> Path:
        return self.directory / str(run_id)

    def best_checkpoint_path(self, run_id: int) -> Path:
        return self.run_directory(run_id) / "best.safetensors"

    def epoch_checkpoint_path(self, run_id: int, epoch: int) -> Path:
        return self.run_directory(run_id) / f"epoch_{epoch:03d}.safetensors"

    def resume_state_path(self, run_id: int) -> Path:
        return self.run_directory(run_id) / "last_state.pt"

    def epoch_checkpoints(self, run_id: int) -> list[Path]:
        return sorted(self.run_directory(run_id).glob("epoch_*.safetensors"))


# Columns added after the first release; older databases get them on open.
ADDED_COLUMNS = (
    ("runs", "resume_requested", "INTEGER NOT NULL DEFAULT 0"),
    ("metrics", "ended_at", "REAL"),
)


def _migrate(connection: sqlite3.Connection) -> None:
    for table, column, declaration in ADDED_COLUMNS:
        existing = {row["name"] for row in connection.execute(f"PRAGMA table_info({table})")}
        if column not in existing:
            connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def _run_from_row(row: sqlite3.Row) -> Run:
    values = dict(row)
    values["spec"] = json.loads(values["spec"])
    values["settings"] = json.loads(values["settings"])
    values["progress"] = json.loads(values["progress"] or "{}")
    values["cancel_requested"] = bool(values["cancel_requested"])
    values["resume_requested"] = bool(values["resume_requested"])
    return Run(**values)
