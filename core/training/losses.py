"""Losses: what the output layer's cost is, and when a loss means the run has diverged.

Owns the registry of losses the engine can train with. Each takes the model's output and
the batch's targets and returns a scalar mean loss. It knows nothing of the loop.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

# A mean log-likelihood loss starts near ln 10 ≈ 2.3; one above this has blown up even if it
# is still finite (a ReLU net at η = 100 reaches 1e14 before it overflows).
DIVERGED_LOSS = 1e4

# The loss is pluggable: classification now, reconstruction (autoencoders) later. Each takes
# the model's output and the batch's targets and returns a scalar mean loss.
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    # Softmax + log-likelihood (Nielsen ch. 3/6): cross-entropy on logits does both at once.
    "log_likelihood": nn.functional.cross_entropy,
}
