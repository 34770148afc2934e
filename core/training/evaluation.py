"""Evaluation: loss and accuracy during training, and a saved model's report on the test set.

Owns predictions of a model over a whole split: mean loss and accuracy on device data for
the loop, and accuracy, per-class accuracy and the confusion matrix of a checkpoint. It
returns numbers and lists; drawing them is the views' job, finding the files the store's.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from core.data import datasets
from core.training import checkpoint
from core.training.device import DeviceData
from core.training.losses import LOSSES


@torch.no_grad()
def evaluate(model: nn.Module, data: DeviceData, batch_size: int = 2000, loss_name: str = "log_likelihood") -> tuple[float, float]:
    """Mean loss and accuracy of `model` on `data`, in eval mode (dropout off, batch-norm frozen)."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(data), batch_size):
        indices = torch.arange(start, min(start + batch_size, len(data)), device=data.labels.device)
        images, labels = data.batch(indices)
        logits = model(images).float()
        total_loss += LOSSES[loss_name](logits, labels, reduction="sum").item()
        correct += (logits.argmax(dim=1) == labels).sum().item()
    model.train(was_training)
    return total_loss / max(len(data), 1), correct / max(len(data), 1)


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


def evaluate_checkpoint(path: Path, run_id: int) -> dict:
    """Test-set report of a checkpoint (a run's best-validation weights)."""
    model, _, settings = checkpoint.load(path)
    splits = datasets.load(settings.dataset)
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
