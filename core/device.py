"""Which accelerator to train on: CUDA, then Apple's MPS, then the CPU.

Owns device choice and a human-readable description of it. It knows nothing about models
or training.
"""

from __future__ import annotations

import os

import torch


def pick_device(requested: str = "auto") -> torch.device:
    """Return the device to use; `requested` may be "auto", "cpu", "cuda", "cuda:1" or "mps"."""
    if requested and requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"Device '{requested}' was asked for, but this machine has no CUDA GPU. Use 'auto' or 'cpu'.")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"Device '{requested}' was asked for, but MPS is not available here. Use 'auto' or 'cpu'.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe(device: torch.device | None = None) -> str:
    """A short label for the sidebar and the runs table, e.g. 'CUDA: NVIDIA H100' or 'CPU, 2 threads'."""
    device = device or pick_device()
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU, {torch.get_num_threads()} threads"


def cpu_count() -> int:
    """Cores this process may use (respects CPU affinity in containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no sched_getaffinity.
        return os.cpu_count() or 1
