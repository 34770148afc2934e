"""The run store: a SQLite database of runs and per-epoch metrics, plus each run's files.

Owns the schema (and its upgrades), every read and write of run rows, and where run files
live (`<runs dir>/<id>/`). Many processes use it at once (the app, the CLI, training
workers): each call opens a short connection, the database runs in WAL mode so readers never
block the writer, and a busy timeout absorbs brief write contention. A damaged database, a
full disk or a read-only runs directory become a `StorageError` that names the directory and
the cause. It knows nothing of training or of the UI; checkpoints are in
`core.training.checkpoint`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from core.errors import LayerLabError, Message, render

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
    "robust_accuracy",
)

# The statements that make a fresh database; `_migrate` runs them under the write lock.
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    owner_key_hash TEXT,             -- SHA-256 of the owner's browser key (core.jobs.access); NULL: made before classroom mode
    lesson_link TEXT,                -- the teacher's lesson link the run was made from (core.jobs.lesson_links); NULL: none
    dataset TEXT NOT NULL,
    spec TEXT NOT NULL,              -- the network spec as JSON
    settings TEXT NOT NULL,          -- TrainSettings as JSON
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',-- a sentence for the learner: why it failed, diverged or stopped (English)
    message_code TEXT,               -- the same sentence as a message code, rendered in the reader's language
    message_params TEXT,             -- that message's parameters as JSON
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
)
""",
    """
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    train_loss REAL, train_accuracy REAL, validation_loss REAL, validation_accuracy REAL,
    test_accuracy REAL, learning_rate REAL, seconds REAL, images_per_second REAL,
    ended_at REAL,                   -- when the epoch finished (its evaluation done)
    robust_accuracy REAL,            -- PGD accuracy on the first robust_eval_images test images (NULL when not measured)
    recorded_at REAL NOT NULL,
    PRIMARY KEY (run_id, epoch)
)
""",
    """
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status)
""",
    """
CREATE TABLE IF NOT EXISTS lesson_links (
    id TEXT PRIMARY KEY,             -- the random id in the link's address (?lesson=…)
    title TEXT NOT NULL DEFAULT '',
    spec TEXT NOT NULL,              -- the network as the teacher built it, as JSON
    settings TEXT NOT NULL,          -- TrainSettings as JSON
    locked TEXT NOT NULL,            -- JSON list of locked names: "network" and TrainSettings fields
    hide_names INTEGER NOT NULL DEFAULT 0, -- the leaderboard and presenter view show "Student N" instead of names
    created_at REAL NOT NULL
)
""",
)



# The schema version stored in the database header (`PRAGMA user_version`). Databases made
# before versions were stored read 0; version 1 added resume_requested and metrics.ended_at;
# version 2 keeps a run's message as a code and parameters (message_code, message_params);
# version 3 adds metrics.robust_accuracy (adversarial training's per-epoch PGD accuracy; NULL in older rows).
# version 4 records who may act on a run (owner_key_hash; older runs keep NULL, owned by nobody but the teacher and admin).
# version 5 adds the teacher's lesson links (table lesson_links) and the link a run was made from (runs.lesson_link).
SCHEMA_VERSION = 5
# How long a write waits for another process's write lock before "database is locked".
BUSY_TIMEOUT_SECONDS = 30
# SQLite's rowids are signed 64-bit integers; a larger id can name no run.
MAX_RUN_ID = 2**63 - 1


class RunNotFound(LayerLabError, LookupError):
    """No run has this id."""


class RunStillRunning(LayerLabError, ValueError):
    """The run is running, so it cannot be deleted yet."""


class RunNotResumable(LayerLabError, ValueError):
    """The run cannot be resumed (or run here): its status does not allow it, or it has no saved state."""


class QueueFull(LayerLabError, ValueError):
    """The owner already has as many queued runs as one owner may; one must start (or be cancelled) first."""


class StorageError(LayerLabError):
    """The runs database or directory cannot be used: damaged, read-only, full or missing.

    The message names the runs directory and the problem in plain words (SQLite's or the
    operating system's own words are in `detail`). A transient busy lock is
    not one of these: the busy timeout absorbs it, and one that outlasts the timeout stays a
    `sqlite3.OperationalError` ("database is locked").
    """


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
    message: str  # the English sentence; `message_in(language)` renders it in another language
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
    owner_key_hash: str | None = None  # who may act on it (core.jobs.access); None for runs made before classroom mode
    lesson_link: str | None = None  # the lesson link it was made from (core.jobs.lesson_links), if any
    message_code: str | None = None  # None for a message stored as text only (older rows, plain notes)
    message_params: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def message_in(self, language: str) -> str:
        """The run's message in `language`; a row stored before messages had codes shows its English text."""
        if self.message_code:
            return render(self.message_code, self.message_params, language)
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def runs_dir() -> Path:
    """Where runs live: `LAYERLAB_RUNS` if set, else `<project>/runs`."""
    return Path(os.environ.get("LAYERLAB_RUNS") or PROJECT_ROOT / "runs")


class RunStore:
    """Reads and writes runs. Cheap to create; safe to share between threads and processes."""

    def __init__(self, directory: Path | str | None = None):
        self.directory = Path(directory) if directory else runs_dir()
        self.database = self.directory / "runs.sqlite"
        with self._storage_errors():
            self.directory.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            # An up-to-date database needs no write to open, so a read-only one can still be read.
            if _schema_version(connection) < SCHEMA_VERSION:
                _use_write_ahead_log(connection)
                _migrate(connection)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._storage_errors():
            connection = sqlite3.connect(self.database, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            try:
                connection.row_factory = sqlite3.Row
                connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
                connection.execute("PRAGMA foreign_keys=ON")
                connection.execute("PRAGMA synchronous=NORMAL")
                yield connection
            finally:
                connection.close()

    @contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """Turn a damaged database, a full disk or an unwritable directory into a StorageError."""
        try:
            yield
        except sqlite3.DatabaseError as error:
            problem = _database_problem(error, self.directory, self.database)
            if problem is None:  # A busy lock past the timeout, or a bug in a query: not the storage.
                raise
            raise problem from error
        except OSError as error:
            raise _directory_problem(error, self.directory) from error

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction; BEGIN IMMEDIATE takes the write lock up front."""
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                _roll_back(connection)
                raise

    # ------------------------------------------------------------------ runs

    def create(
        self, spec: dict, settings: dict, *, name: str = "", owner: str = "", status: str = "queued", parameters: int = 0,
        owner_key_hash: str | None = None, queued_cap: int | None = None, lesson_link: str | None = None,
    ) -> int:
        """Insert a run; returns its id. With `queued_cap`, raise QueueFull when the key's owner already has that many queued.

        The count and the insert share one write transaction, so two quick submissions cannot both slip under the cap.
        """  # fmt: skip
        with self._transaction() as connection:
            if queued_cap is not None and owner_key_hash is not None:
                _check_queue_cap(connection, owner_key_hash, queued_cap)
            cursor = connection.execute(
                "INSERT INTO runs (name, owner, owner_key_hash, lesson_link, dataset, spec, settings, status, parameters, created_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                (name, owner, owner_key_hash, lesson_link, settings.get("dataset", "mnist"), json.dumps(spec), json.dumps(settings), status,
                 parameters, time.time()),
            )  # fmt: skip
            run_id = int(cursor.lastrowid)
        with self._storage_errors():
            self.run_directory(run_id).mkdir(parents=True, exist_ok=True)
        return run_id

    def create_lesson_link(self, link_id: str, title: str, spec: dict, settings: dict, locked: list[str] | tuple[str, ...]) -> None:
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO lesson_links (id, title, spec, settings, locked, created_at) VALUES (?,?,?,?,?,?)",
                (link_id, title, json.dumps(spec), json.dumps(settings), json.dumps(list(locked)), time.time()),
            )

    def lesson_link(self, link_id: str) -> dict | None:
        """The lesson link's row as a dict (see core.jobs.lesson_links.from_row), or None when no link has this id."""
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM lesson_links WHERE id = ?", (link_id,)).fetchone()
        return dict(row) if row is not None else None

    def set_lesson_link_names_hidden(self, link_id: str, hidden: bool) -> None:
        with self._transaction() as connection:
            connection.execute("UPDATE lesson_links SET hide_names = ? WHERE id = ?", (int(hidden), link_id))

    def lesson_link_runs(self, link_id: str) -> list[Run]:
        """Every run made from the lesson link, oldest first, without metrics."""
        with self._connect() as connection:
            rows = connection.execute("SELECT * FROM runs WHERE lesson_link = ? ORDER BY id", (link_id,)).fetchall()
        return [_run_from_row(row) for row in rows]

    def requeue(self, run_id: int, from_statuses: tuple[str, ...], queued_cap: int | None = None, **values: Any) -> bool:
        """`transition` to `queued`, refused with QueueFull when the run's owner already has `queued_cap` queued (one transaction)."""
        encoded = _encoded({"status": "queued", **values})
        columns = ", ".join(f"{name} = ?" for name in encoded)
        marks = ",".join("?" for _ in from_statuses)
        with self._transaction() as connection:
            row = connection.execute("SELECT owner_key_hash FROM runs WHERE id = ?", (run_id,)).fetchone()
            if queued_cap is not None and row is not None and row[0] is not None:
                _check_queue_cap(connection, row[0], queued_cap)
            cursor = connection.execute(
                f"UPDATE runs SET {columns} WHERE id = ? AND status IN ({marks})", (*encoded.values(), run_id, *from_statuses)
            )
            return cursor.rowcount == 1

    def get(self, run_id: int, with_metrics: bool = True) -> Run:
        if not _possible_id(run_id):
            raise _not_found(run_id)
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise _not_found(run_id)
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
        """Set columns of a run; dict values are stored as JSON. A missing run is left alone."""
        if not values or not _possible_id(run_id):
            return
        encoded = _encoded(values)
        columns = ", ".join(f"{name} = ?" for name in encoded)
        with self._transaction() as connection:
            connection.execute(f"UPDATE runs SET {columns} WHERE id = ?", (*encoded.values(), run_id))

    def transition(self, run_id: int, from_statuses: tuple[str, ...], **values: Any) -> bool:
        """Update a run only if its status is one of `from_statuses`; True when it was.

        This is how a worker claims a queued run without two workers taking the same one.
        """
        if not _possible_id(run_id):
            return False
        encoded = _encoded(values)
        columns = ", ".join(f"{name} = ?" for name in encoded)
        marks = ",".join("?" for _ in from_statuses)
        with self._transaction() as connection:
            cursor = connection.execute(
                f"UPDATE runs SET {columns} WHERE id = ? AND status IN ({marks})", (*encoded.values(), run_id, *from_statuses)
            )
            return cursor.rowcount == 1

    def record_epoch(self, run_id: int, metrics: dict[str, float], **run_values: Any) -> None:
        """Store one epoch's metrics and update the run's summary columns in one transaction."""
        if not _possible_id(run_id):
            raise _not_found(run_id)
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
        if not _possible_id(run_id):
            return
        with self._transaction() as connection:
            connection.execute("DELETE FROM metrics WHERE run_id = ? AND epoch > ?", (run_id, keep_epochs))

    def metrics(self, run_id: int) -> list[dict]:
        if not _possible_id(run_id):
            return []
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
        if not _possible_id(run_id):
            return False
        with self._connect() as connection:
            row = connection.execute("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    def delete(self, run_id: int) -> None:
        """Delete a run that is not running, with its metrics and files.

        The status check and the delete are one statement inside one write transaction, so a
        scheduler cannot claim the run between them (its worker would then write into a run
        directory that no row owns). Raises RunStillRunning or RunNotFound.
        """
        if not _possible_id(run_id):
            raise _not_found(run_id)
        with self._transaction() as connection:
            deleted = connection.execute("DELETE FROM runs WHERE id = ? AND status != 'running'", (run_id,)).rowcount
            if not deleted:
                exists = connection.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone()
                raise RunStillRunning("store.still_running", run=run_id) if exists else _not_found(run_id)
            connection.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
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


# Columns added after the first release, with the schema version that added them; older
# databases get them on open.
ADDED_COLUMNS = (
    (1, "runs", "resume_requested", "INTEGER NOT NULL DEFAULT 0"),
    (1, "metrics", "ended_at", "REAL"),
    (2, "runs", "message_code", "TEXT"),
    (2, "runs", "message_params", "TEXT"),
    (3, "metrics", "robust_accuracy", "REAL"),
    (4, "runs", "owner_key_hash", "TEXT"),
    (5, "runs", "lesson_link", "TEXT"),
)


def _schema_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def _use_write_ahead_log(connection: sqlite3.Connection) -> None:
    """Switch the database to WAL mode (persistent: done once, when the database is made or upgraded).

    Two processes switching an old database at once can deadlock on the lock upgrade; SQLite
    then answers one of them "database is locked" at once instead of waiting, so it tries again.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            busy = (getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _migrate(connection: sqlite3.Connection) -> None:
    """Bring the database to SCHEMA_VERSION: make missing tables, add missing columns.

    Many processes may open an old database at once. Each takes the write lock and checks the
    version again inside it, so exactly one upgrades and the others find it done (an unlocked
    check-then-ALTER let two of them add the same column: "duplicate column name").
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        if _schema_version(connection) < SCHEMA_VERSION:
            for statement in SCHEMA:
                connection.execute(statement)
            for _version, table, column, declaration in ADDED_COLUMNS:
                # Databases made before versions were stored may have some of these already.
                existing = {row["name"] for row in connection.execute(f"PRAGMA table_info({table})")}
                if column not in existing:
                    connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        _roll_back(connection)
        raise


def _check_queue_cap(connection: sqlite3.Connection, owner_key_hash: str, queued_cap: int) -> None:
    """Raise QueueFull when the owner with this key hash already has `queued_cap` runs queued."""
    queued = connection.execute("SELECT COUNT(*) FROM runs WHERE status = 'queued' AND owner_key_hash = ?", (owner_key_hash,)).fetchone()[0]
    if queued >= queued_cap:
        raise QueueFull("queue.owner_full", count=queued, limit=queued_cap)


def _roll_back(connection: sqlite3.Connection) -> None:
    """Roll back unless SQLite already has: after a full disk or an I/O error it may roll back
    by itself, and a second ROLLBACK would hide the real error behind "no transaction is active"."""
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def _possible_id(run_id: Any) -> bool:
    """Whether `run_id` could name a run at all (a larger number would overflow SQLite's integer)."""
    try:
        return 1 <= int(run_id) <= MAX_RUN_ID
    except (TypeError, ValueError):
        return False


def _not_found(run_id: Any) -> RunNotFound:
    return RunNotFound("store.no_run", run=shown_id(run_id))


def shown_id(run_id: Any) -> str:
    """A run id as a message shows it, however long or odd the text someone typed."""
    text = str(run_id)
    return text if len(text) <= 30 else text[:30] + "…"


# SQLite's primary result codes for storage trouble (the low byte of the extended code).
_DAMAGED_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_STORAGE_CODES = (sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_PERM)


def _database_problem(error: sqlite3.DatabaseError, directory: Path, database: Path) -> StorageError | None:
    """The StorageError for a storage failure reported by SQLite, or None when it is not one.

    SQLite's own words go to the error's `detail` (for logs), not into the sentence.
    """
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    cause = str(error)
    if code in _DAMAGED_CODES:
        return StorageError("store.damaged", detail=cause, database=str(database), directory=str(directory))
    if code == sqlite3.SQLITE_FULL:
        return StorageError("store.full", detail=cause, directory=str(directory))
    if code in _STORAGE_CODES:
        # SQLite says "unable to open" or "attempt to write a readonly database" for several
        # causes; the file system says which.
        return _directory_state(directory, cause) or StorageError(
            "store.cannot_open", detail=cause, database=str(database), directory=str(directory)
        )
    return None


def _directory_problem(error: OSError, directory: Path) -> StorageError:
    """The StorageError for a file-system failure on the runs directory."""
    cause = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError("store.full", detail=cause, directory=str(directory))
    if error.errno == errno.EROFS:
        return StorageError("store.read_only", detail=cause, directory=str(directory))
    if error.errno in (errno.EACCES, errno.EPERM):
        return StorageError("store.no_permission", detail=cause, directory=str(directory))
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        return StorageError("store.not_a_folder", detail=cause, directory=str(directory))
    return _directory_state(directory, cause) or StorageError("store.unusable", detail=cause, directory=str(directory))


def _directory_state(directory: Path, cause: str) -> StorageError | None:
    """The read-only or full error when the file system holding `directory` is so."""
    try:
        state = os.statvfs(directory)
    except OSError:
        return None
    if state.f_flag & os.ST_RDONLY:
        return StorageError("store.read_only", detail=cause, directory=str(directory))
    if state.f_bavail == 0:
        return StorageError("store.full", detail=cause, directory=str(directory))
    return None


def _run_from_row(row: sqlite3.Row) -> Run:
    values = dict(row)
    values["spec"] = json.loads(values["spec"])
    values["settings"] = json.loads(values["settings"])
    values["progress"] = json.loads(values["progress"] or "{}")
    values["cancel_requested"] = bool(values["cancel_requested"])
    values["resume_requested"] = bool(values["resume_requested"])
    values["message_params"] = json.loads(values["message_params"] or "{}")
    return Run(**values)


def _encoded(values: dict[str, Any]) -> dict[str, Any]:
    """Column values as SQLite stores them: dicts as JSON, and a message as its English text plus its code and parameters.

    `message` may be a `Message` or one of our errors (stored with code and parameters, so a
    page renders it in its own language) or plain text (stored as text only, its code cleared).
    """
    encoded = {name: json.dumps(value) if isinstance(value, dict) else value for name, value in values.items()}
    if "message" in values:
        message = values["message"]
        if isinstance(message, LayerLabError):
            message = message.message
        if isinstance(message, Message):
            encoded.update(message=message.render(), message_code=message.code, message_params=json.dumps(message.params))
        else:
            encoded.update(message=str(message or ""), message_code=None, message_params=None)
    return encoded
