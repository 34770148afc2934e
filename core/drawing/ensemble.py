"""A drawing, or a set of "my digits", classified by several runs at once: an ensemble by vote or averaged probabilities.

Owns asking each member and combining their answers the way `core.probes.ensembles.combine`
does on a test split (the same `COMBINATIONS`, the same tie-breaking), so the Draw page and
the Inspect page's ensembles agree. Loading the members' models is the caller's job; one
member is simply that run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from core.drawing import classify
from core.drawing.digits import DigitSet, SetReport, report
from core.drawing.preprocess import DrawingError
from core.probes.ensembles import COMBINATIONS, combine, combined_classes
from core.probes.mistakes import Predictions

__all__ = ["COMBINATIONS", "EnsemblePrediction", "evaluate", "predict", "same_dataset"]


@dataclass(frozen=True)
class EnsemblePrediction:
    """What the members and the ensemble think of one drawing."""

    combination: str
    digit: int  # the ensemble's answer
    probabilities: np.ndarray  # (10,) the members' probabilities averaged
    member_probabilities: np.ndarray  # (members, 10)

    @property
    def member_digits(self) -> list[int]:
        return self.member_probabilities.argmax(axis=1).tolist()

    @property
    def agreeing(self) -> int:
        """How many members answer what the ensemble answers."""
        return sum(digit == self.digit for digit in self.member_digits)


def same_dataset(datasets: list[str]) -> str:
    """The one dataset every member was trained on; DrawingError when they differ (digits and clothes do not mix)."""
    names = sorted(set(datasets))
    if len(names) != 1:
        raise DrawingError("drawing.ensemble_mixed_datasets", datasets=", ".join(names) or "–")
    return names[0]


def predict(models: list[nn.Module], image: np.ndarray, combination: str = "vote") -> EnsemblePrediction:
    """The members' and the ensemble's answer for one prepared (28, 28) uint8 digit."""
    if not models:
        raise DrawingError("drawing.ensemble_empty")
    member_probabilities = np.stack([classify.probabilities(model, image) for model in models])  # (members, 10)
    digit = int(combined_classes(member_probabilities[:, None, :], combination)[0])
    return EnsemblePrediction(combination, digit, member_probabilities.mean(axis=0), member_probabilities)


def evaluate(models: list[nn.Module], digit_set: DigitSet, combination: str = "vote") -> SetReport:
    """How the ensemble does on the set, counted as `digits.evaluate` counts one model."""
    if not models:
        raise DrawingError("drawing.ensemble_empty")
    images, labels = digit_set.tensors()
    if not len(labels):
        return report(labels.numpy(), np.zeros(0, dtype=np.int64))
    members = [Predictions(labels.numpy(), classify.probabilities(model, images.numpy())) for model in models]
    return report(labels.numpy(), combine(members, combination).predicted)
