"""Which accelerator to train on (CUDA, then Apple's MPS, then the CPU) and the data that lives there.

Owns device choice, a human-readable description of it, and a split's images and labels
moved to the device once, so training and evaluation never copy them per batch. It knows
nothing about models or the loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from core.data.datasets import Splits
from core.errors import LayerLabError, Message
from core.training.settings import TrainSettings


class DeviceError(LayerLabError, ValueError):
    """The device asked for is not on this machine."""


def pick_device(requested: str = "auto") -> torch.device:
    """Return the device to use; `requested` may be "auto", "cpu", "cuda", "cuda:1" or "mps"."""
    if requested and requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError("device.no_cuda", requested=requested)
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise DeviceError("device.no_mps", requested=requested)
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe(device: torch.device | None = None) -> str:
    """A short English label for the runs table and logs, e.g. 'CUDA: NVIDIA H100' or 'CPU, 2 threads'."""
    return describe_message(device).render()


def describe_message(device: torch.device | None = None) -> Message:
    """The same label as a message, so the sidebar shows it in the page's language ("CPU, 스레드 2개")."""
    device = device or pick_device()
    if device.type == "cuda":
        return Message("device.cuda", {"name": torch.cuda.get_device_name(device)})
    if device.type == "mps":
        return Message("device.mps")
    return Message("device.cpu", {"threads": torch.get_num_threads()})


def cpu_count() -> int:
    """Cores this process may use (respects CPU affinity in containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no sched_getaffinity.
        return os.cpu_count() or 1


@dataclass
class DeviceData:
    """A split's images (N, 1, 28, 28) uint8 and labels (N,) int64, already on the device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.images[indices].float().div_(255.0)  # (B, 1, 28, 28) in [0, 1]
        return images, self.labels[indices]


def to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> DeviceData:
    return DeviceData(images.unsqueeze(1).to(device), labels.to(device))


def training_data(splits: Splits, settings: TrainSettings, device: torch.device) -> DeviceData:
    images, labels = splits.train_images, splits.train_labels
    if settings.train_subset:
        images, labels = images[: settings.train_subset], labels[: settings.train_subset]
    return to_device(images, labels, device)
