"""What the Inspect page and `python -m core inspect` ask of a run: its checkpoints, found through the run store, probed.

Owns the link between runs and probes: which checkpoint files a run has (the best weights,
the per-epoch ones the slider replays), where the cached top patches live (the run's own
folder, so deleting the run deletes them), and the run-level questions (test predictions,
one test image's activations). The probing itself is `core.probes`; the pictures are
`core.views.inspect_plots`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from core.data import datasets
from core.errors import counted
from core.jobs.store import RunNotFound, RunStore
from core.probes import activations as activation_probes
from core.probes import filters as filter_probes
from core.probes import loading, mistakes
from core.probes.loading import ProbeError
from core.training.checkpoint import CheckpointError

CACHE_FOLDER = "inspect"  # inside the run's folder
# What inspecting a run can fail with, each with a sentence a learner can act on.
ERRORS = (RunNotFound, ProbeError, CheckpointError)


@dataclass(frozen=True)
class LoadedRun:
    """A run's best-validation model with the spec and the dataset it was trained on."""

    run_id: int
    path: Path
    model: nn.Sequential
    spec: dict
    splits: datasets.Splits


def best_checkpoint(store: RunStore, run_id: int) -> Path:
    """The run's best-validation weights; `RunNotFound` for an unknown id, `ProbeError` when it has none yet."""
    run = store.get(run_id, with_metrics=False)
    path = store.best_checkpoint_path(run_id)
    if not path.is_file():
        raise ProbeError("probe.no_weights", run=run_id, status=run.status, done=counted("probe.epochs_done", run.epochs_done))
    return path


def load_run(store: RunStore, run_id: int) -> LoadedRun:
    path = best_checkpoint(store, run_id)
    model, spec, settings = loading.load(path)
    return LoadedRun(run_id, path, model, spec, datasets.load(settings.dataset))


def epoch_checkpoints(store: RunStore, run_id: int) -> dict[int, Path]:
    """Epoch → per-epoch checkpoint, for the epochs still on disk (epoch 0, the initial weights, when written)."""
    return loading.epochs_on_disk(store.epoch_checkpoints(run_id))


def test_predictions(loaded: LoadedRun) -> mistakes.Predictions:
    return mistakes.predict(loaded.model, loaded.splits.test_images, loaded.splits.test_labels)


def test_image_activations(loaded: LoadedRun, index: int) -> activation_probes.Activations:
    loading.checked_index(index, len(loaded.splits.test_images))
    return activation_probes.activations(loaded.model, loaded.spec, loaded.splits.test_images[index])


def image_activations(loaded: LoadedRun, image) -> activation_probes.Activations:
    """Every layer's output for any (28, 28) uint8 image: a test image or the user's drawing."""
    return activation_probes.activations(loaded.model, loaded.spec, image)


def top_patches(
    store: RunStore, run_id: int, checkpoint_path: Path, model: nn.Sequential, spec: dict, layer_index: int, splits: datasets.Splits,
    progress: Callable[[float], None] | None = None,
) -> filter_probes.TopPatches:
    """The top-9 validation patches per filter of a conv layer, cached in the run's folder per checkpoint file."""
    cache_file = store.run_directory(run_id) / CACHE_FOLDER / f"top_patches_{Path(checkpoint_path).stem}_layer{layer_index}.npz"
    return filter_probes.cached_top_patches(cache_file, checkpoint_path, model, spec, layer_index, splits.validation_images, progress=progress)


def runs_with_weights(store: RunStore) -> list:
    """Finished runs that saved weights, newest first (the ensemble's candidates)."""
    return [run for run in store.list() if run.finished and store.best_checkpoint_path(run.id).is_file()]


def image_as_array(images: torch.Tensor, index: int):
    """One uint8 image as a numpy array (28, 28), for st.image."""
    return images[index].numpy()
