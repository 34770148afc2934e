"""Attribution: which pixels a prediction rests on, through Captum (captum==0.9.0), not hand-written gradients.

Owns the three methods the Inspect page offers: Saliency (the absolute input gradient,
Simonyan 2014), Integrated Gradients from a black image (Sundararajan 2017) and Grad-CAM on
the last conv layer (Selvaraju 2017), upsampled to the image. Each returns a (28, 28) map
for one image and one target class.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency
from torch import nn

from core.probes.loading import ProbeError, as_inputs

METHODS = ("saliency", "integrated_gradients", "grad_cam")
INTEGRATED_GRADIENT_STEPS = 50  # Captum's default; the sum of the map then matches the logit change to ~1%


def last_conv(model: nn.Sequential) -> nn.Conv2d | None:
    """The model's last Conv2d (Grad-CAM's layer), or None for a network without convolutions."""
    convolutions = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    return convolutions[-1] if convolutions else None


def methods_for(model: nn.Sequential) -> tuple[str, ...]:
    """The methods that apply: Grad-CAM needs a conv layer."""
    return METHODS if last_conv(model) is not None else METHODS[:2]


def attribute(model: nn.Sequential, image: torch.Tensor, target: int, method: str) -> np.ndarray:
    """A (28, 28) attribution map of uint8 `image` (28, 28) for class `target`."""
    model.eval()
    inputs = as_inputs(image.unsqueeze(0)).requires_grad_()  # (1, 1, 28, 28) in [0, 1]; Captum differentiates by it
    if method == "saliency":
        attributions = Saliency(model).attribute(inputs, target=target, abs=True)
    elif method == "integrated_gradients":
        attributions = IntegratedGradients(model).attribute(inputs, baselines=torch.zeros_like(inputs), target=target, n_steps=INTEGRATED_GRADIENT_STEPS)
    elif method == "grad_cam":
        layer = last_conv(model)
        if layer is None:
            raise ProbeError("probe.grad_cam_needs_conv")
        maps = LayerGradCam(model, layer).attribute(inputs, target=target)  # (1, 1, h, w) at the layer's resolution
        attributions = LayerAttribution.interpolate(maps, tuple(inputs.shape[-2:]), interpolate_mode="bilinear")
    else:
        raise ProbeError("probe.unknown_method", method=str(method), choices=list(METHODS))
    return attributions[0, 0].detach().numpy().astype(np.float32)
