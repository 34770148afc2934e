"""One prediction: a prepared 28×28 digit and a trained model in, the ten class probabilities out.

Owns turning MNIST-format uint8 images into the model's input ([0, 1], shape (N, 1, 28, 28);
normalisation is the model's own first layer) and its logits into probabilities. Loading
the model is `core.training.checkpoint`'s job.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.data.datasets import class_names  # noqa: F401 — the labels of `probabilities`, for the pages


@torch.inference_mode()
def probabilities(model: nn.Module, images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Softmax probabilities (N, 10) for uint8 images (N, 28, 28), or (10,) for one image (28, 28)."""
    batch = torch.as_tensor(np.asarray(images, dtype=np.uint8))
    single = batch.ndim == 2
    if single:
        batch = batch.unsqueeze(0)
    device = next(model.parameters()).device
    logits = model(batch.unsqueeze(1).to(device).float().div_(255.0)).float()  # (N, 10)
    result = torch.softmax(logits, dim=1).cpu().numpy()
    return result[0] if single else result
