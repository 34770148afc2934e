"""Mistakes: a model's predictions on a split, which images it gets wrong, and the confusion matrix.

Owns one batched pass of predictions with their probabilities (`predict`), and the questions
asked of it: the misclassified images sorted by confidence and filtered by class, the
confusion matrix, the images of one of its cells, and per-class accuracy. The counting itself
is `core.training.evaluation.confusion_matrix`, the same one `python -m core eval` prints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.probes.loading import as_inputs
from core.training.evaluation import confusion_matrix


@dataclass(frozen=True)
class Predictions:
    """A model's answer for each image of a split."""

    labels: np.ndarray  # (N,) int64, the true classes
    probabilities: np.ndarray  # (N, 10) float32, softmax of the logits

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        """The probability the model gave its own prediction."""
        return self.probabilities.max(axis=1)

    @property
    def accuracy(self) -> float:
        return float((self.predicted == self.labels).mean()) if len(self.labels) else 0.0


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 5000) -> Predictions:
    """Probabilities of `model` (eval mode, CPU) for uint8 images (N, 28, 28) with their labels."""
    model.eval()
    batches = [torch.softmax(model(as_inputs(images[start : start + batch_size])), dim=1) for start in range(0, len(images), batch_size)]
    return Predictions(labels.numpy().astype(np.int64), torch.cat(batches).numpy())


def misclassified(predictions: Predictions, true_class: int | None = None, predicted_class: int | None = None) -> np.ndarray:
    """Indices of the wrong predictions, most confident first, optionally only one true and/or predicted class."""
    predicted = predictions.predicted
    wrong = predicted != predictions.labels
    if true_class is not None:
        wrong &= predictions.labels == true_class
    if predicted_class is not None:
        wrong &= predicted == predicted_class
    indices = np.flatnonzero(wrong)
    # A stable sort keeps equal confidences in index order, so the gallery never reshuffles.
    return indices[np.argsort(-predictions.confidence[indices], kind="stable")]


def confusion(predictions: Predictions, classes: int = 10) -> np.ndarray:
    """(classes, classes) counts: rows are true classes, columns predictions."""
    return confusion_matrix(torch.from_numpy(predictions.labels), torch.from_numpy(predictions.predicted), classes).numpy()


def cell(predictions: Predictions, true_class: int, predicted_class: int) -> np.ndarray:
    """Indices of the images with this true class and this prediction (a diagonal cell holds the correct ones)."""
    indices = np.flatnonzero((predictions.labels == true_class) & (predictions.predicted == predicted_class))
    return indices[np.argsort(-predictions.confidence[indices], kind="stable")]


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Fraction of each true class predicted right (0 for a class with no images)."""
    totals = matrix.sum(axis=1)
    return np.divide(matrix.diagonal(), totals, out=np.zeros(len(totals)), where=totals > 0)
