"""Disk use and pruning: the thinning rule keeps epoch 1, the best, the last and evenly spaced epochs
within its budget; pruning a really trained run removes exactly the others, keeps the best
weights, drops the resume state only of runs that can never resume, and refuses busy runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.jobs import disk, runner
from core.jobs.service import JobService
from core.training import checkpoint
from core.training.presets import get as get_preset
from core.training.settings import TrainSettings

# ----------------------------------------------------------------------------- the thinning rule


def test_a_run_within_the_budget_keeps_every_epoch():
    assert disk.epochs_to_keep(5, 3, budget=8) == [1, 2, 3, 4, 5]
    assert disk.epochs_to_keep(8, 8, budget=8) == list(range(1, 9))
    assert disk.epochs_to_keep(0, 0, budget=8) == []


def test_forty_epochs_keep_first_best_last_and_evenly_spaced_ones():
    # 1 + i * 39 / 5 for i = 0..5 is 1, 8.8, 16.6, 24.4, 32.2, 40; the best epoch (23) is added.
    assert disk.epochs_to_keep(40, 23, budget=8) == [1, 9, 17, 23, 24, 32, 40]


@pytest.mark.parametrize("budget", [4, 5, 8, 20])
def test_the_rule_never_exceeds_its_budget_and_always_keeps_first_best_and_last(budget):
    for epochs_done in range(1, 80):
        for best_epoch in range(1, epochs_done + 1):
            kept = disk.epochs_to_keep(epochs_done, best_epoch, budget)
            assert len(kept) <= budget and kept == sorted(set(kept))
            assert {1, best_epoch, epochs_done} <= set(kept) <= set(range(1, epochs_done + 1))


def test_thinning_against_the_planned_epochs_never_needs_a_removed_checkpoint():
    # While a run trains, the spaced epochs come from its planned 40 epochs: what epoch n + 1 keeps
    # among epochs 1..n was already kept after epoch n, so removing the rest loses nothing later.
    best_after = {epoch: max(1, epoch - epoch % 7) for epoch in range(1, 41)}  # the best moves every 7 epochs
    for epochs_done in range(1, 40):
        now = set(disk.epochs_to_keep(epochs_done, best_after[epochs_done], 8, planned_epochs=40))
        later = set(disk.epochs_to_keep(epochs_done + 1, best_after[epochs_done + 1], 8, planned_epochs=40))
        assert {epoch for epoch in later if epoch <= epochs_done} <= now


def test_a_budget_too_small_for_the_anchors_is_refused():
    with pytest.raises(ValueError, match="at least 4"):
        disk.epochs_to_keep(10, 5, budget=3)


# ----------------------------------------------------------------------------- disk use


def test_disk_use_counts_every_file_of_the_run_only(store):
    run_id = store.create([{"kind": "output"}], {})
    other = store.create([{"kind": "output"}], {})
    folder = store.run_directory(run_id)
    (folder / "best.safetensors").write_bytes(b"w" * 1000)
    (folder / "worker.log").write_bytes(b"l" * 234)
    (folder / "extra").mkdir()
    (folder / "extra" / "notes.txt").write_bytes(b"n" * 66)
    store.run_directory(other).joinpath("best.safetensors").write_bytes(b"x" * 5000)
    assert disk.run_disk_use(store, run_id) == 1300
    store.delete(other)
    assert disk.run_disk_use(store, other) == 0  # no folder at all


def test_thin_as_it_goes_keeps_exactly_what_the_rule_keeps_after_every_epoch(store):
    run_id = store.create([{"kind": "output"}], {"epochs": 40})
    best_epoch = 1
    for epoch in range(1, 41):
        best_epoch = epoch if epoch % 9 == 1 else best_epoch
        store.epoch_checkpoint_path(run_id, epoch).write_bytes(b"c" * 100)  # what the runner writes each epoch
        disk.thin_as_it_goes(store, run_id, epoch, best_epoch, planned_epochs=40)
        kept = disk.epochs_to_keep(epoch, best_epoch, disk.AUTOMATIC_BUDGET, planned_epochs=40)
        assert sorted(disk.epoch_files(store, run_id)) == kept
    assert len(disk.epoch_files(store, run_id)) <= disk.AUTOMATIC_BUDGET


def test_disk_imports_no_torch():
    # The Runs page measures every run's folder; that must not load torch into the page.
    program = "import sys, core.jobs.disk\nsys.exit(1 if 'torch' in sys.modules else 0)\n"
    assert subprocess.run([sys.executable, "-c", program], capture_output=True).returncode == 0


# ----------------------------------------------------------------------------- pruning a real run


def train(store, epochs: int, owner: str = "ada") -> int:
    """A logistic-regression run of `epochs` short epochs, trained here to the end."""
    settings = TrainSettings(epochs=epochs, batch_size=100, train_subset=500, learning_rate=0.5, device="cpu")
    run_id = store.create(get_preset("logistic-regression").network, settings.to_dict(), owner=owner)
    assert runner.execute(store, run_id) == "succeeded"
    return run_id


def file_names(store, run_id: int) -> set[str]:
    return {path.name for path in store.run_directory(run_id).iterdir()}


def test_pruning_a_finished_run_removes_exactly_the_thinned_epochs_then_its_resume_state(store):
    run_id = train(store, epochs=6)
    run = store.get(run_id, with_metrics=False)
    epoch_names = {f"epoch_{epoch:03d}.safetensors" for epoch in range(1, 7)}
    # The best weights, the initial weights (epoch 0) and the recorded diagnostics are never pruned.
    always = {"best.safetensors", "epoch_000.safetensors", "recording.jsonl"}
    assert file_names(store, run_id) == epoch_names | always | {"last_state.pt"}
    best_bytes = store.best_checkpoint_path(run_id).read_bytes()
    before = disk.run_disk_use(store, run_id)
    store.resume_state_path(run_id).with_suffix(".pt.tmp").write_bytes(b"half a save")  # left by a killed save

    # Budget 4: epoch 1, the best epoch and the last (6) stay, plus the spaced ones (1 and 6 again).
    kept = {f"epoch_{epoch:03d}.safetensors" for epoch in {1, run.best_epoch, 6}}
    removed = sorted((epoch_names - kept) | {"last_state.pt.tmp"})
    removed_bytes = sum((store.run_directory(run_id) / name).stat().st_size for name in removed)
    freed = disk.prune(store, run_id, keep="resumable", budget=4)
    assert file_names(store, run_id) == kept | always | {"last_state.pt"}
    assert freed == removed_bytes == before + len(b"half a save") - disk.run_disk_use(store, run_id)
    assert store.best_checkpoint_path(run_id).read_bytes() == best_bytes
    for name in kept:  # what stays still loads, for the views that replay epochs
        assert checkpoint.read(store.run_directory(run_id) / name)[1]["epoch"] == int(name[6:9])

    # "views" also drops the resume state: a succeeded run is never resumed. A second prune frees nothing more.
    state_bytes = store.resume_state_path(run_id).stat().st_size
    assert disk.prune(store, run_id, keep="views", budget=4) == state_bytes
    assert file_names(store, run_id) == kept | always
    assert disk.prune(store, run_id, keep="views", budget=4) == 0
    assert checkpoint.load(store.best_checkpoint_path(run_id))[1] == run.spec


def test_pruning_keeps_the_resume_state_of_a_run_that_can_resume_and_refuses_busy_runs(store):
    run_id = train(store, epochs=5)
    store.update(run_id, status="interrupted")  # what a server restart leaves
    disk.prune(store, run_id, keep="views", budget=4)
    assert store.resume_state_path(run_id).is_file()
    assert len(store.epoch_checkpoints(run_id)) <= 4 + 1  # the budget, and the initial weights (epoch 0)

    JobService(store).resume(run_id)  # still resumable; now it is queued for a worker
    before = file_names(store, run_id)
    with pytest.raises(disk.PruneRefused, match="queued: wait until it finishes"):
        disk.prune(store, run_id)
    store.update(run_id, status="running")
    with pytest.raises(disk.PruneRefused, match="running"):
        disk.prune(store, run_id)
    assert file_names(store, run_id) == before
    store.update(run_id, status="succeeded")
    with pytest.raises(disk.PruneRefused, match="keep must be one of"):
        disk.prune(store, run_id, keep="everything")


def test_a_long_run_thins_its_epoch_checkpoints_as_it_trains(store):
    epochs = disk.AUTOMATIC_BUDGET + 4
    run_id = train(store, epochs)
    run = store.get(run_id, with_metrics=False)
    kept = {epoch for epoch in disk.epoch_files(store, run_id) if epoch >= 1}
    assert kept == set(disk.epochs_to_keep(epochs, run.best_epoch, disk.AUTOMATIC_BUDGET, planned_epochs=epochs))
    assert len(kept) <= disk.AUTOMATIC_BUDGET and {1, run.best_epoch, epochs} <= kept
    assert store.best_checkpoint_path(run_id).is_file()
