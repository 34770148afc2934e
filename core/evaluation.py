"""Evaluation of a finished run on the test set: accuracy, per-class accuracy, confusion matrix.

Owns predictions of a saved model over a whole split. It returns numbers and lists; drawing
them is the pictures module's job.
"""

from __future__ import annotations

import torch

from core import checkpoint, data
from core.store import RunStore


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Class predictions (N,) for uint8 images (N, 28, 28) in batches, on the model's device."""
    device = next(model.parameters()).device
    model.eval()
    predictions = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].unsqueeze(1).to(device).float().div_(255.0)
        predictions.append(model(batch).argmax(dim=1).cpu())
    return torch.cat(predictions)


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, classes: int = 10) -> torch.Tensor:
    """(classes, classes) counts; rows are true classes, columns predicted ones."""
    return torch.bincount(labels * classes + predictions, minlength=classes * classes).reshape(classes, classes)


def evaluate_run(store: RunStore, run_id: int) -> dict:
    """Test-set report of a run's best-validation checkpoint."""
    model, _, settings = checkpoint.load(store.best_checkpoint_path(run_id))
    splits = data.load(settings.dataset)
    predictions = predict(model, splits.test_images)
    matrix = confusion_matrix(splits.test_labels, predictions)
    per_class = (matrix.diagonal().float() / matrix.sum(dim=1).clamp(min=1).float()).tolist()
    correct = int(matrix.diagonal().sum())
    total = int(matrix.sum())
    return {
        "run_id": run_id,
        "test_accuracy": correct / total,
        "errors": total - correct,
        "total": total,
        "class_names": splits.class_names,
        "per_class_accuracy": per_class,
        "confusion_matrix": matrix.tolist(),
    }
