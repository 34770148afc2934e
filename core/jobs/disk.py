"""How much disk a run's files take, and freeing it: which per-epoch checkpoints to keep.

Owns the thinning rule (`epochs_to_keep`), measuring a run's folder (`run_disk_use`) and
pruning it (`prune`, and `thin_as_it_goes` for the runner to call after each epoch). It reads
where files live from the run store and never opens a checkpoint, so it imports no torch.

The rule keeps what later views need: the best weights (`best.safetensors`, always kept),
the initial weights (epoch 0, always kept: a replay of the filters starts from that noise),
epoch 1, the best epoch, the last epoch, and a few evenly spaced epochs between them, so a slider that replays the filters still has frames.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.errors import LayerLabError
from core.jobs.store import RunStore

PRUNE_BUDGET = 8  # epoch checkpoints the Runs page's "free disk space" keeps at most
# What a new run keeps as it trains: every epoch while it plans at most this many epochs, then a
# thinned set of this size (nielsen-7's 40 epochs × 6.7 MB would otherwise be 270 MB per run).
AUTOMATIC_BUDGET = 20
# What `prune` may remove besides the thinned epoch checkpoints: "views" also removes the resume
# state of a run that can never be resumed (succeeded or diverged); "resumable" always keeps it.
KEEP_CHOICES = ("views", "resumable")
FINISHED_FOR_GOOD = ("succeeded", "diverged")  # `JobService.resume` refuses these, so their resume state is dead weight
BUSY = ("queued", "running")
INITIAL_EPOCH = 0  # `epoch_000.safetensors`, the weights before the first step; never pruned
EPOCH_FILE = re.compile(r"epoch_(\d+)\.safetensors")


class PruneRefused(LayerLabError, ValueError):
    """Pruning was asked for a run that is training or about to, or with an unknown `keep`."""


def evenly_spaced(span: int, count: int) -> list[int]:
    """`count` epochs spread evenly over 1..`span`, the first and the last among them."""
    if span <= count:
        return list(range(1, span + 1))
    return sorted({round(1 + index * (span - 1) / (count - 1)) for index in range(count)})


def epochs_to_keep(epochs_done: int, best_epoch: int, budget: int, planned_epochs: int = 0) -> list[int]:
    """The per-epoch checkpoints worth keeping among epochs 1..`epochs_done`, at most `budget` of them.

    Every epoch when the run spans at most `budget` epochs; otherwise epoch 1, the best epoch,
    the last finished epoch, and `budget - 2` evenly spaced epochs (1 and the span's end among
    them). The span is `planned_epochs` when that is larger (the run's settings, while it
    trains), so the spaced epochs do not move as epochs finish: thinning as it goes never
    needs a checkpoint it removed earlier. For example, 40 epochs with the best at 23 and a
    budget of 8 keep epochs 1, 9, 17, 23, 24, 32 and 40.
    """
    if budget < 4:
        raise ValueError(f"A budget of {budget} cannot hold epoch 1, the best, the last and one between; use at least 4.")
    if epochs_done <= 0:
        return []
    span = max(epochs_done, planned_epochs)
    if span <= budget:
        return list(range(1, epochs_done + 1))
    spaced = [epoch for epoch in evenly_spaced(span, budget - 2) if epoch <= epochs_done]
    anchors = {1, epochs_done} | ({best_epoch} if 1 <= best_epoch <= epochs_done else set())
    return sorted(set(spaced) | anchors)


def run_disk_use(store: RunStore, run_id: int) -> int:
    """Bytes of every file under the run's folder (0 when it has none); one directory listing per folder."""
    return _folder_bytes(store.run_directory(run_id))


def _folder_bytes(folder: Path) -> int:
    total = 0
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                total += _folder_bytes(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:  # removed while we looked (a checkpoint being replaced)
            continue
    return total


def epoch_files(store: RunStore, run_id: int) -> dict[int, Path]:
    """The run's per-epoch checkpoints by epoch number."""
    files = {}
    for path in store.epoch_checkpoints(run_id):
        match = EPOCH_FILE.fullmatch(path.name)
        if match:
            files[int(match.group(1))] = path
    return files


def _remove(paths: list[Path]) -> int:
    """Delete `paths`; the bytes that went (a file already gone counts nothing)."""
    freed = 0
    for path in paths:
        try:
            size = path.stat().st_size
            path.unlink()
            freed += size
        except FileNotFoundError:
            continue
    return freed


def prune(store: RunStore, run_id: int, keep: str = "views", budget: int = PRUNE_BUDGET) -> int:
    """Remove the run's per-epoch checkpoints outside `epochs_to_keep`; return the bytes freed.

    `best.safetensors` always stays. With `keep="views"` the resume state (`last_state.pt`)
    goes too when the run succeeded or diverged, which no resume accepts; an interrupted,
    cancelled or failed run keeps it, so it can still be resumed. Half-written `.tmp` files
    left by a killed save go as well. A queued or running run is refused: its worker is
    writing these files.
    """
    if keep not in KEEP_CHOICES:
        raise PruneRefused("prune.unknown_keep", value=repr(keep), choices=list(KEEP_CHOICES))
    run = store.get(run_id, with_metrics=False)
    if run.status in BUSY:
        raise PruneRefused("prune.busy", run=run_id, status=run.status)
    kept = set(epochs_to_keep(run.epochs_done, run.best_epoch, budget)) | {INITIAL_EPOCH}
    doomed = [path for epoch, path in epoch_files(store, run_id).items() if epoch not in kept]
    doomed += sorted(store.run_directory(run_id).glob("*.tmp"))
    if keep == "views" and run.status in FINISHED_FOR_GOOD:
        doomed.append(store.resume_state_path(run_id))
    return _remove(doomed)


def thin_as_it_goes(store: RunStore, run_id: int, epochs_done: int, best_epoch: int, planned_epochs: int) -> int:
    """For the runner after each epoch: drop the epoch checkpoints AUTOMATIC_BUDGET no longer keeps; bytes freed."""
    kept = set(epochs_to_keep(epochs_done, best_epoch, AUTOMATIC_BUDGET, planned_epochs=planned_epochs)) | {INITIAL_EPOCH}
    return _remove([path for epoch, path in epoch_files(store, run_id).items() if epoch <= epochs_done and epoch not in kept])
