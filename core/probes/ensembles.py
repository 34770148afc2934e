"""Ensembles: several runs' predictions combined by majority vote or by averaged probabilities.

Owns the combining and what is worth showing about it: each member's accuracy beside the
ensemble's, the ensemble's mistakes, and the images on which the members disagree. Nielsen
ch. 6 reports 99.67% from five such nets voting. Members are `Predictions` of the same split.
`AveragedProbabilities` is the averaging ensemble as one network, for what needs a forward
pass and gradients (the Adversarial lab attacks it like a single run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from core.probes.loading import ProbeError
from core.probes.mistakes import Predictions

COMBINATIONS = ("vote", "average")


@dataclass(frozen=True)
class Ensemble:
    """The combined predictions of several members on one split."""

    combination: str
    labels: np.ndarray  # (N,)
    predicted: np.ndarray  # (N,) the ensemble's class per image
    member_accuracies: list[float]
    disagreements: np.ndarray  # indices of the images on which not every member predicts the same class

    @property
    def accuracy(self) -> float:
        return float((self.predicted == self.labels).mean()) if len(self.labels) else 0.0

    @property
    def mistakes(self) -> np.ndarray:
        return np.flatnonzero(self.predicted != self.labels)


def combine(members: list[Predictions], combination: str = "vote") -> Ensemble:
    """Majority vote (ties go to the class with the larger summed probability) or averaged probabilities."""
    if not members:
        raise ProbeError("probe.ensemble_empty")
    if combination not in COMBINATIONS:
        raise ProbeError("probe.unknown_combination", combination=str(combination), choices=list(COMBINATIONS))
    labels = members[0].labels
    if any(len(member.labels) != len(labels) or not np.array_equal(member.labels, labels) for member in members):
        raise ProbeError("probe.ensemble_different_images")
    probabilities = np.stack([member.probabilities for member in members])  # (members, N, 10)
    predicted = probabilities.argmax(axis=2)  # (members, N)
    disagreements = np.flatnonzero((predicted != predicted[0]).any(axis=0))
    ensemble_predicted = combined_classes(probabilities, combination)
    return Ensemble(combination, labels, ensemble_predicted, [member.accuracy for member in members], disagreements)


def combined_classes(probabilities: np.ndarray, combination: str = "vote") -> np.ndarray:
    """The ensemble's class per image (N,) from the members' probabilities (members, N, 10), as `combine` decides it.

    Needs no labels, so it also serves a single drawing, which has none.
    """
    if combination not in COMBINATIONS:
        raise ProbeError("probe.unknown_combination", combination=str(combination), choices=list(COMBINATIONS))
    predicted = probabilities.argmax(axis=2)  # (members, N)
    summed = probabilities.sum(axis=0)  # (N, 10)
    if combination == "average":
        return summed.argmax(axis=1)
    votes = np.stack([(predicted == digit).sum(axis=0) for digit in range(summed.shape[1])], axis=1)  # (N, 10)
    # Votes count first; the summed probability (below 1 per member) only breaks ties.
    return (votes * (len(probabilities) + 1) + summed).argmax(axis=1)


class AveragedProbabilities(nn.Module):
    """Several networks as one: the log of their mean softmax, returned as its logits (N, 10).

    softmax(log p̄) = p̄, so an ordinary forward pass gives the averaged probabilities of
    `combine(..., "average")`, cross-entropy is the ensemble's own loss, and the attacks in
    `core.attacks` work on it unchanged, their gradients flowing through every member. The
    mean is taken in log space (logsumexp) so that a member's tiny probabilities never
    underflow to log 0.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise ProbeError("probe.ensemble_empty")
        self.members = nn.ModuleList(members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        log_probabilities = torch.stack([functional.log_softmax(member(images).float(), dim=1) for member in self.members])  # (M, N, 10)
        return torch.logsumexp(log_probabilities, dim=0) - math.log(len(self.members))
