"""The Diagnostics view's logic: a run's recording, its layers' names, and a plain-words verdict on its fit.

Owns `verdict` (overfitting, underfitting, a good fit or too early to tell, from the per-epoch
metrics alone) and the text it becomes in each language. The recording itself is read by
`core.probes.recording`; the figures are drawn by `core.views.diagnostics_plots`.
"""

from __future__ import annotations

from pathlib import Path

from core.jobs.store import RunStore
from core.probes import recording
from core.views.i18n import translate

MINIMUM_EPOCHS = 3  # fewer finished epochs than this is too early to tell
STALL_EPOCHS = 2  # validation accuracy "stopped improving" after this many epochs without a new best
RISE = 0.002  # training accuracy that climbs by at least 0.2 points after the best epoch "kept rising"
# Below this final training accuracy the network does not even fit the images it learns from
# (logistic regression reaches about 92% on MNIST; a hidden layer of 30 sigmoids about 98%).
UNDERFIT_TRAIN_ACCURACY = {"mnist": 0.97, "fashion-mnist": 0.88}
VERDICTS = ("too_early", "overfitting", "underfitting", "good_fit")


def recording_path(store: RunStore, run_id: int) -> Path:
    return store.run_directory(run_id) / recording.RECORDING_FILE


def load(store: RunStore, run_id: int) -> recording.Recording | None:
    """The run's training diagnostics, or None when it has none (runs trained before they were recorded)."""
    return recording.read(recording_path(store, run_id))


def layer_name(language: str, index: int, kind: str) -> str:
    """"Layer 3 (dense)": the 1-based spec layer number, as the Build page numbers layers."""
    return translate(language, "diagnostics.layer", number=index + 1, kind=translate(language, f"build.kind_short.{kind}"))


def verdict(metrics: list[dict], dataset: str = "mnist") -> tuple[str, dict]:
    """(code, values) for the train–validation gap of per-epoch `metrics` (the run store's rows).

    - "too_early": fewer than MINIMUM_EPOCHS epochs; values {"epochs"}.
    - "overfitting": the best validation accuracy is STALL_EPOCHS or more epochs old while the
      training accuracy kept rising since; values {"epoch" (the best), "gap" (points at the end)}.
    - "underfitting": the final training accuracy is below UNDERFIT_TRAIN_ACCURACY; values {"train_accuracy"} in percent.
    - "good_fit": otherwise; values {"epoch", "gap"}.
    Training accuracy is the running accuracy of the epoch's mini-batches (dropout on), as the store keeps it.
    """
    epochs = len(metrics)
    if epochs < MINIMUM_EPOCHS:
        return "too_early", {"epochs": epochs}
    validation = [row["validation_accuracy"] for row in metrics]
    training = [row["train_accuracy"] for row in metrics]
    best = validation.index(max(validation))  # the first epoch that reached the best
    gap = (training[-1] - validation[-1]) * 100
    if epochs - 1 - best >= STALL_EPOCHS and training[-1] - training[best] >= RISE:
        return "overfitting", {"epoch": metrics[best]["epoch"], "gap": gap}
    if training[-1] < UNDERFIT_TRAIN_ACCURACY.get(dataset, UNDERFIT_TRAIN_ACCURACY["mnist"]):
        return "underfitting", {"train_accuracy": training[-1] * 100}
    return "good_fit", {"epoch": metrics[best]["epoch"], "gap": gap}


def verdict_text(language: str, code: str, values: dict) -> str:
    """The verdict as a sentence in `language` (numbers rounded for reading)."""
    shown = {name: f"{value:.1f}" if isinstance(value, float) else value for name, value in values.items()}
    return translate(language, f"diagnostics.verdict.{code}", **shown)
