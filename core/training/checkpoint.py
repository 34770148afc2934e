"""Checkpoints: weights saved with the spec and settings that rebuild their model, loaded safely.

Owns the checkpoint file formats. Weights go to safetensors (no code can hide in them) with
the spec, the settings and a SHA-256 of the tensors in the header, so a file that was
changed after saving is refused. The resume state (optimiser moments, schedule, history) is
a `torch.save` file read back only with `weights_only=True`, which refuses pickled objects.
Nothing here knows where files live; `core.store` says that.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from core.errors import LayerLabError
from core.model import network as networks
from core.training.settings import TrainSettings

FORMAT = "layerlab-checkpoint-1"


class CheckpointError(LayerLabError, ValueError):
    """A checkpoint that is missing, damaged, tampered with or not LayerLab's."""


def _digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order, then the header.

    The header is covered too: an edited spec would rebuild a different model around the
    same weights.
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(json.dumps({name: value for name, value in metadata.items() if name != "sha256"}, sort_keys=True).encode())
    return digest.hexdigest()


def save(path: Path, model: nn.Module, network: dict, settings: TrainSettings, **extra: Any) -> None:
    """Write `model`'s weights with the spec and settings; atomic (write then rename)."""
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "spec": json.dumps(network),
        "settings": json.dumps(settings.to_dict()),
        **{name: json.dumps(value) for name, value in extra.items()},
    }
    metadata["sha256"] = _digest(tensors, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(temporary), metadata=metadata)
    os.replace(temporary, path)


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return (tensors, metadata) after checking the format and the SHA-256."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}. Train the run first, or pick a run that finished an epoch.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw_metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # safetensors raises several types for a damaged header.
        raise CheckpointError(
            f"{path.name} is not a readable checkpoint ({error}). It may be damaged or not a LayerLab file; "
            "retrain the run or load another file."
        ) from None
    if raw_metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path.name} is a safetensors file but not a LayerLab checkpoint (it carries no LayerLab header).")
    if _digest(tensors, raw_metadata) != raw_metadata.get("sha256"):
        raise CheckpointError(f"{path.name} was changed after it was saved (its SHA-256 does not match). It is refused.")
    try:
        metadata = {"spec": json.loads(raw_metadata["spec"]), "settings": json.loads(raw_metadata["settings"])}
        for name, value in raw_metadata.items():
            if name not in ("format", "spec", "settings", "sha256"):
                metadata[name] = json.loads(value)
    except (KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path.name} has a damaged header ({error}).") from None
    return tensors, metadata


def load(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict, TrainSettings]:
    """Rebuild the model from the checkpoint's own spec and settings and load its weights."""
    tensors, metadata = read(path)
    try:
        settings = TrainSettings.from_dict(metadata["settings"])
        model = networks.build(metadata["spec"], settings.dataset)
        model.load_state_dict(tensors, strict=True)
    except (ValueError, RuntimeError) as error:
        raise CheckpointError(f"{Path(path).name} does not match the network it describes: {error}") from None
    model.eval()
    return model.to(device), metadata["spec"], settings


def save_resume_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def load_resume_state(path: Path) -> dict[str, Any]:
    """Read a resume state; `weights_only=True` refuses anything but tensors and plain values."""
    if not Path(path).is_file():
        raise CheckpointError("This run has no saved state to resume from: it never finished an epoch. Start it again instead.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"The saved state {Path(path).name} cannot be read safely ({error}). Start the run again.") from None
