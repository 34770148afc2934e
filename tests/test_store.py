"""Tests for core/store.py: run rows, metric rows, run files, and many writers at once.

The store is shared by the app, the CLI and worker processes, so besides the plain reads
and writes these tests check the promises that sharing depends on: a status transition
happens at most once, a delete cannot race a claim, an epoch's metrics and the run's summary
are written together, the database is in WAL mode so a reader never blocks a writer, several
threads and processes writing at once lose nothing and never see "database is locked", and
several processes upgrading an old database at once all succeed. Storage trouble (a damaged
database, a directory that cannot be made) is a StorageError naming the directory; the CLI
tests check a read-only and a full disk on real file systems.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
import time
import traceback

import pytest

from core.jobs.store import MAX_RUN_ID, METRIC_NAMES, SCHEMA_VERSION, RunNotFound, RunStillRunning, RunStore, StorageError

SPEC = {"layers": [{"kind": "dense", "units": 30, "activation": "relu"}, {"kind": "output"}], "normalize": True}
SETTINGS = {"dataset": "mnist", "epochs": 3, "learning_rate": 0.1}


def epoch_metrics(epoch: int, run_id: int = 0) -> dict:
    """A metrics row whose values encode the run and epoch, so a mixed-up row is noticed."""
    return {"epoch": epoch, **{name: run_id * 1000 + epoch + index / 10 for index, name in enumerate(METRIC_NAMES)}}


def raw_rows(store: RunStore, query: str, *arguments) -> list[tuple]:
    connection = sqlite3.connect(store.database)
    try:
        return connection.execute(query, arguments).fetchall()
    finally:
        connection.close()


# ----------------------------------------------------------------------------- runs


def test_create_get_list_and_update(store):
    first = store.create(SPEC, SETTINGS, name="first", owner="ada")
    second = store.create(SPEC, {**SETTINGS, "dataset": "fashion-mnist"}, name="second", owner="bob", status="running")
    assert second > first
    assert store.run_directory(first).is_dir() and store.run_directory(second).is_dir()

    run = store.get(first)
    assert (run.id, run.name, run.owner, run.status, run.dataset) == (first, "first", "ada", "queued", "mnist")
    assert run.spec == SPEC and run.settings == SETTINGS  # JSON columns come back decoded
    assert run.metrics == [] and run.epochs_done == 0 and not run.finished
    assert store.get(second).dataset == "fashion-mnist"

    assert [run.id for run in store.list()] == [second, first]  # newest first
    assert [run.id for run in store.list(owner="ada")] == [first]
    assert [run.id for run in store.list(status="running")] == [second]
    assert [run.id for run in store.list(limit=1)] == [second]

    store.update(first, status="succeeded", message="Done.", progress={"step": 3, "loss": 0.5}, best_epoch=2)
    run = store.get(first)
    assert (run.status, run.message, run.best_epoch) == ("succeeded", "Done.", 2)
    assert run.progress == {"step": 3, "loss": 0.5}
    assert run.finished
    assert store.get(second).status == "running"  # the other run is untouched


def test_transition_happens_only_from_the_named_statuses(store):
    run_id = store.create(SPEC, SETTINGS)
    assert store.transition(run_id, ("queued",), status="running", worker_pid=111) is True
    before = store.get(run_id).to_dict()
    # A second claim, or a finish from a status the run is not in, changes nothing.
    assert store.transition(run_id, ("queued",), status="running", worker_pid=222) is False
    assert store.transition(run_id, ("queued", "interrupted"), status="succeeded", message="no") is False
    assert store.get(run_id).to_dict() == before
    assert store.transition(run_id, ("running",), status="succeeded") is True
    assert store.get(run_id).status == "succeeded"
    assert store.transition(12345, ("queued",), status="running") is False  # no such run


def test_only_one_of_many_racing_workers_claims_a_run(store):
    run_id = store.create(SPEC, SETTINGS)
    barrier = threading.Barrier(8)
    claims: list[int] = []

    def claim(worker: int) -> None:
        barrier.wait()
        if store.transition(run_id, ("queued",), status="running", worker_pid=worker):
            claims.append(worker)

    threads = [threading.Thread(target=claim, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claims) == 1
    assert store.get(run_id).worker_pid == claims[0]


def test_a_missing_run_says_which_and_how_to_find_the_others(store):
    with pytest.raises(RunNotFound, match=r"no run 404\b.*runs list"):
        store.get(404)
    with pytest.raises(RunNotFound, match="404"):
        store.request_cancel(404)
    with pytest.raises(RunNotFound, match="404"):
        store.delete(404)
    assert issubclass(RunNotFound, LookupError)


@pytest.mark.parametrize("run_id", [0, -1, MAX_RUN_ID + 1, 10**20, -(10**20)])
def test_an_id_no_run_can_have_is_not_found(store, run_id):
    # Above 2**63 - 1 SQLite cannot even take the number (OverflowError); it is simply no run.
    for call in (store.get, store.request_cancel, store.delete):
        with pytest.raises(RunNotFound, match=f"no run {run_id}"):
            call(run_id)
    with pytest.raises(RunNotFound):
        store.record_epoch(run_id, epoch_metrics(1))
    assert store.transition(run_id, ("queued",), status="running") is False
    assert store.cancel_requested(run_id) is False and store.metrics(run_id) == []
    store.update(run_id, status="running")  # A missing run is left alone, as for any unknown id.
    store.truncate_metrics(run_id, 0)
    assert store.list() == []


def test_cancel_request_round_trip(store):
    run_id = store.create(SPEC, SETTINGS)
    assert store.cancel_requested(run_id) is False
    store.request_cancel(run_id)
    assert store.cancel_requested(run_id) is True
    assert store.get(run_id).cancel_requested is True


# ----------------------------------------------------------------------------- metrics


def test_record_epoch_keeps_epoch_order_and_updates_the_summary(store):
    run_id = store.create(SPEC, SETTINGS)
    for epoch in (3, 1, 2):
        store.record_epoch(run_id, epoch_metrics(epoch, run_id), epochs_done=epoch, best_epoch=1)
    rows = store.metrics(run_id)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    for row in rows:
        expected = epoch_metrics(row["epoch"], run_id)
        assert {name: row[name] for name in expected} == pytest.approx(expected)
        assert row["recorded_at"] > 0
    assert store.get(run_id).metrics == rows
    run = store.get(run_id)
    assert (run.epochs_done, run.best_epoch) == (2, 1)  # the last call's summary

    # Recording an epoch again replaces its row rather than adding a second one.
    replacement = {**epoch_metrics(2, run_id), "validation_accuracy": 0.5}
    store.record_epoch(run_id, replacement)
    rows = store.metrics(run_id)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert rows[1]["validation_accuracy"] == 0.5


def test_record_epoch_is_one_transaction(store):
    run_id = store.create(SPEC, SETTINGS)
    # A bad summary column fails the whole call: the metric row must not be left behind.
    with pytest.raises(sqlite3.OperationalError):
        store.record_epoch(run_id, epoch_metrics(1, run_id), no_such_column=1)
    assert store.metrics(run_id) == []


def test_truncate_metrics_keeps_the_first_epochs(store):
    run_id = store.create(SPEC, SETTINGS)
    other = store.create(SPEC, SETTINGS)
    for epoch in range(1, 6):
        store.record_epoch(run_id, epoch_metrics(epoch, run_id))
        store.record_epoch(other, epoch_metrics(epoch, other))
    store.truncate_metrics(run_id, 2)
    assert [row["epoch"] for row in store.metrics(run_id)] == [1, 2]
    assert [row["epoch"] for row in store.metrics(other)] == [1, 2, 3, 4, 5]
    store.truncate_metrics(run_id, 0)
    assert store.metrics(run_id) == []


# ----------------------------------------------------------------------------- delete


def test_delete_removes_rows_and_files(store):
    run_id = store.create(SPEC, SETTINGS, status="succeeded")
    keep = store.create(SPEC, SETTINGS, status="succeeded")
    store.record_epoch(run_id, epoch_metrics(1, run_id))
    store.record_epoch(keep, epoch_metrics(1, keep))
    store.best_checkpoint_path(run_id).write_bytes(b"weights")
    store.epoch_checkpoint_path(run_id, 1).write_bytes(b"weights")
    store.resume_state_path(run_id).write_bytes(b"state")
    assert store.epoch_checkpoints(run_id) == [store.epoch_checkpoint_path(run_id, 1)]

    store.delete(run_id)
    with pytest.raises(RunNotFound):
        store.get(run_id)
    assert raw_rows(store, "SELECT COUNT(*) FROM metrics WHERE run_id = ?", run_id) == [(0,)]
    assert not store.run_directory(run_id).exists()
    assert store.get(keep).metrics and store.run_directory(keep).is_dir()


def test_delete_refuses_a_running_run(store):
    run_id = store.create(SPEC, SETTINGS, status="running")
    store.record_epoch(run_id, epoch_metrics(1, run_id))
    store.best_checkpoint_path(run_id).write_bytes(b"weights")
    with pytest.raises(ValueError, match="still running.*Cancel it first"):
        store.delete(run_id)
    assert store.get(run_id).status == "running"
    assert len(store.metrics(run_id)) == 1
    assert store.best_checkpoint_path(run_id).read_bytes() == b"weights"


def test_a_run_claimed_after_the_delete_read_it_is_not_deleted(store):
    # The Runs page reads a queued run, then the learner clicks delete; meanwhile the
    # scheduler (another connection) claims it. The delete must see the claim and refuse,
    # or the worker would write into a run directory that no row owns.
    run_id = store.create(SPEC, SETTINGS)
    assert store.get(run_id).status == "queued"  # What the page saw.
    scheduler = RunStore(store.directory)

    class ClaimedJustBeforeTheDelete(RunStore):
        def _transaction(self):
            scheduler.transition(run_id, ("queued",), status="running", worker_pid=4242)
            return super()._transaction()

    with pytest.raises(RunStillRunning, match=f"Run {run_id} is still running. Cancel it first"):
        ClaimedJustBeforeTheDelete(store.directory).delete(run_id)
    assert store.get(run_id).status == "running" and store.get(run_id).worker_pid == 4242
    assert store.run_directory(run_id).is_dir()
    assert issubclass(RunStillRunning, ValueError)  # The Runs page catches ValueError.


def claim_runs(directory: str, run_ids: list[int], claimed, barrier) -> None:
    """A scheduler stand-in: claim each run as soon as it can, recording the ones it got."""
    store = RunStore(directory)
    barrier.wait()
    for run_id in run_ids:
        if store.transition(run_id, ("queued",), status="running", worker_pid=os.getpid()):
            claimed.append(run_id)


def test_deletes_racing_a_scheduler_process_never_remove_a_claimed_run(store):
    run_ids = [store.create(SPEC, SETTINGS) for _ in range(60)]
    context = multiprocessing.get_context("spawn")
    manager = context.Manager()
    claimed, barrier = manager.list(), context.Barrier(2)
    claimer = context.Process(target=claim_runs, args=(str(store.directory), run_ids, claimed, barrier))
    claimer.start()
    barrier.wait()
    deleted, refused = [], []
    for run_id in run_ids:
        try:
            store.delete(run_id)
            deleted.append(run_id)
        except RunStillRunning:
            refused.append(run_id)
    claimer.join(timeout=60)
    assert claimer.exitcode == 0
    claimed = list(claimed)
    manager.shutdown()
    # Each run was either deleted before any claim (and the claim then found nothing) or
    # claimed and kept with its directory; never both.
    assert set(claimed).isdisjoint(deleted)
    assert sorted(claimed) == sorted(refused)
    for run_id in claimed:
        assert store.get(run_id).status == "running" and store.run_directory(run_id).is_dir()
    for run_id in deleted:
        with pytest.raises(RunNotFound):
            store.get(run_id)


# ----------------------------------------------------------------------------- sharing


def test_the_database_is_in_wal_mode(store):
    assert raw_rows(store, "PRAGMA journal_mode") == [("wal",)]


def test_an_open_reader_does_not_block_a_writer(store):
    run_id = store.create(SPEC, SETTINGS)
    reader = sqlite3.connect(store.database, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone() == ("queued",)
        # In rollback-journal mode this write would wait on the reader's lock (up to the 30 s
        # busy timeout); in WAL mode it goes through at once.
        writer = threading.Thread(target=store.record_epoch, args=(run_id, epoch_metrics(1, run_id)), kwargs={"epochs_done": 1})
        writer.start()
        writer.join(timeout=5)
        assert not writer.is_alive(), "the write waited for a reader"
        # The reader still sees its snapshot; a new read sees the write.
        assert reader.execute("SELECT COUNT(*) FROM metrics").fetchone() == (0,)
        reader.execute("COMMIT")
    finally:
        reader.close()
    assert store.get(run_id).epochs_done == 1


def write_many(directory: str, run_ids: list[int], shared_run: int, writer: int, epochs: int) -> None:
    """One writer's work: every epoch of its own runs, its slice of a shared run, and progress updates."""
    store = RunStore(directory)
    for epoch in range(1, epochs + 1):
        for run_id in run_ids:
            store.record_epoch(run_id, epoch_metrics(epoch, run_id), epochs_done=epoch)
            store.update(run_id, progress={"epoch": epoch}, heartbeat_at=time.time())
        store.record_epoch(shared_run, epoch_metrics(writer * epochs + epoch, shared_run))
        store.list(limit=5)
        store.get(shared_run)


def process_writer(directory: str, run_ids: list[int], shared_run: int, writer: int, epochs: int, errors) -> None:
    try:
        write_many(directory, run_ids, shared_run, writer, epochs)
    except BaseException:
        errors.put(traceback.format_exc())
        raise


def check_nothing_lost(store: RunStore, runs_by_writer: dict[int, list[int]], shared_run: int, epochs: int) -> None:
    for run_ids in runs_by_writer.values():
        for run_id in run_ids:
            rows = store.metrics(run_id)
            assert [row["epoch"] for row in rows] == list(range(1, epochs + 1)), run_id
            assert rows[-1]["train_loss"] == pytest.approx(epoch_metrics(epochs, run_id)["train_loss"])
            run = store.get(run_id, with_metrics=False)
            assert run.epochs_done == epochs and run.progress == {"epoch": epochs}
    shared = [row["epoch"] for row in store.metrics(shared_run)]
    assert shared == list(range(1, len(runs_by_writer) * epochs + 1))


def test_threads_writing_at_once_lose_no_rows(store):
    writers, epochs = 6, 25
    runs_by_writer = {writer: [store.create(SPEC, SETTINGS) for _ in range(2)] for writer in range(writers)}
    shared_run = store.create(SPEC, SETTINGS)
    errors: list[str] = []
    barrier = threading.Barrier(writers)

    def work(writer: int) -> None:
        try:
            barrier.wait()
            write_many(str(store.directory), runs_by_writer[writer], shared_run, writer, epochs)
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=work, args=(writer,)) for writer in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert not any(thread.is_alive() for thread in threads)
    check_nothing_lost(store, runs_by_writer, shared_run, epochs)


def test_processes_writing_at_once_lose_no_rows(store):
    # The job service's workers are separate processes started with `spawn`.
    writers, epochs = 2, 40
    runs_by_writer = {writer: [store.create(SPEC, SETTINGS) for _ in range(2)] for writer in range(writers)}
    shared_run = store.create(SPEC, SETTINGS)
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    processes = [
        context.Process(target=process_writer, args=(str(store.directory), runs_by_writer[writer], shared_run, writer, epochs, errors))
        for writer in range(writers)
    ]
    for process in processes:
        process.start()
    # The parent writes too, as the app does while workers train.
    for _ in range(epochs):
        store.update(shared_run, progress={"parent": True})
    for process in processes:
        process.join(timeout=120)
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    assert reported == []
    assert [process.exitcode for process in processes] == [0] * writers
    check_nothing_lost(store, runs_by_writer, shared_run, epochs)


def make_old_database(directory) -> None:
    """A runs.sqlite made by the first release: no ended_at, no resume_requested, no schema version."""
    database = sqlite3.connect(directory / "runs.sqlite")
    database.executescript(
        "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL DEFAULT '', owner TEXT NOT NULL DEFAULT '',"
        " dataset TEXT NOT NULL, spec TEXT NOT NULL, settings TEXT NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',"
        " device TEXT NOT NULL DEFAULT '', parameters INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, started_at REAL,"
        " finished_at REAL, heartbeat_at REAL, worker_pid INTEGER, cancel_requested INTEGER NOT NULL DEFAULT 0,"
        " progress TEXT NOT NULL DEFAULT '{}', epochs_done INTEGER NOT NULL DEFAULT 0, best_epoch INTEGER NOT NULL DEFAULT 0,"
        " best_validation_accuracy REAL, test_accuracy REAL, seconds REAL NOT NULL DEFAULT 0);"
        "CREATE TABLE metrics (run_id INTEGER NOT NULL, epoch INTEGER NOT NULL, train_loss REAL, train_accuracy REAL,"
        " validation_loss REAL, validation_accuracy REAL, test_accuracy REAL, learning_rate REAL, seconds REAL,"
        " images_per_second REAL, recorded_at REAL NOT NULL, PRIMARY KEY (run_id, epoch));"
    )
    database.close()


def test_a_database_from_before_a_column_was_added_is_upgraded(tmp_path):
    make_old_database(tmp_path)
    store = RunStore(tmp_path)
    run_id = store.create({"layers": []}, {"dataset": "mnist"})
    store.record_epoch(run_id, epoch_metrics(1, run_id) | {"ended_at": 123.0})
    assert store.metrics(run_id)[0]["ended_at"] == 123.0
    assert store.get(run_id).resume_requested is False
    assert raw_rows(store, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert raw_rows(store, "PRAGMA journal_mode") == [("wal",)]


def open_and_write(directory: str, barrier, errors) -> None:
    try:
        barrier.wait()
        store = RunStore(directory)
        run_id = store.create(SPEC, SETTINGS)
        store.record_epoch(run_id, epoch_metrics(1, run_id) | {"ended_at": 1.0})
    except BaseException:
        errors.put(traceback.format_exc())
        raise


def test_an_old_database_opened_by_four_processes_at_once_is_upgraded_once(tmp_path):
    # Without the write lock and the version check inside it, two of them add the same
    # column ("duplicate column name"); the lock upgrade for WAL can also deadlock.
    make_old_database(tmp_path)
    context = multiprocessing.get_context("spawn")
    barrier, errors = context.Barrier(4), context.Queue()
    processes = [context.Process(target=open_and_write, args=(str(tmp_path), barrier, errors)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    assert reported == []
    assert [process.exitcode for process in processes] == [0] * 4
    store = RunStore(tmp_path)
    columns = {table: [row[1] for row in raw_rows(store, f"PRAGMA table_info({table})")] for table in ("runs", "metrics")}
    assert columns["runs"].count("resume_requested") == 1 and columns["metrics"].count("ended_at") == 1
    assert raw_rows(store, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert len(store.list()) == 4 and all(store.metrics(run.id)[0]["ended_at"] == 1.0 for run in store.list())


# ----------------------------------------------------------------------------- storage errors


def test_a_damaged_database_is_a_storage_error_naming_it(tmp_path):
    (tmp_path / "runs.sqlite").write_bytes(b"this is not a database, just some bytes " * 100)
    (tmp_path / "7").mkdir()
    with pytest.raises(StorageError) as raised:
        RunStore(tmp_path)
    assert str(raised.value) == (
        f"The runs database {tmp_path / 'runs.sqlite'} is damaged. Move it away to start a "
        f"fresh one; the runs' files in {tmp_path}/<id>/ are kept."
    )
    # SQLite's own words are for the log, not the sentence a learner reads.
    assert raised.value.detail == "file is not a database"
    assert (tmp_path / "7").is_dir()  # Nothing was removed.


def test_a_database_damaged_after_opening_is_a_storage_error(store):
    run_id = store.create(SPEC, SETTINGS)
    store.database.write_bytes(os.urandom(8192))
    for wal_file in store.directory.glob("runs.sqlite-*"):
        wal_file.unlink()
    with pytest.raises(StorageError, match="is damaged"):
        store.get(run_id)
    with pytest.raises(StorageError, match="is damaged"):
        store.create(SPEC, SETTINGS)


def test_a_runs_directory_inside_a_file_is_a_storage_error(tmp_path):
    (tmp_path / "plain-file").write_text("not a folder")
    with pytest.raises(StorageError, match=r"plain-file/runs cannot be made: part of that path is a file"):
        RunStore(tmp_path / "plain-file" / "runs")


def test_a_bad_query_is_still_a_plain_sqlite_error(store):
    # Only storage trouble becomes StorageError; a mistake in our own SQL stays a bug to see.
    with pytest.raises(sqlite3.OperationalError, match="no such column"):
        store.update(store.create(SPEC, SETTINGS), no_such_column=1)


def test_a_version_2_database_gains_robust_accuracy_and_its_rows_read_none(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create(SPEC, SETTINGS)
    store.record_epoch(run_id, epoch_metrics(1, run_id))
    # Make it the database version 2 left: no robust_accuracy column, user_version 2.
    database = sqlite3.connect(tmp_path / "runs.sqlite")
    database.executescript("ALTER TABLE metrics DROP COLUMN robust_accuracy; PRAGMA user_version = 2;")
    database.close()
    store = RunStore(tmp_path)
    assert raw_rows(store, "PRAGMA user_version") == [(SCHEMA_VERSION,)] and SCHEMA_VERSION >= 3
    old_row = store.metrics(run_id)[0]
    assert old_row["robust_accuracy"] is None and old_row["test_accuracy"] == epoch_metrics(1, run_id)["test_accuracy"]
    store.record_epoch(run_id, epoch_metrics(2, run_id) | {"robust_accuracy": 0.875})
    assert [row["robust_accuracy"] for row in store.metrics(run_id)] == [None, 0.875]
