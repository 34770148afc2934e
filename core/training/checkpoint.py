"""Checkpoints: weights saved with the spec and settings that rebuild their model, loaded safely.

Owns the checkpoint file formats. Weights go to safetensors (no code can hide in them) with
the spec, the settings and a SHA-256 of the tensors and the header, so a file damaged after
saving (a flipped bit, a cut-short copy, a header edited by hand) is refused. The resume state
(optimiser moments, schedule, history) is a `torch.save` payload behind one header line with
its SHA-256, read back only with `weights_only=True`, which refuses pickled objects.

The SHA-256 is not keyed: whoever can edit a file can also write a new sum into it. So it
catches corruption and accidental edits, not deliberate tampering; what keeps a hostile file
from running code is the formats themselves (safetensors holds only tensors, and the resume
state is unpickled with `weights_only=True`). Nothing here knows where files live;
`core.jobs.store` says that.
"""

from __future__ import annotations

import hashlib
import io
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
# A resume state file starts with this, a space, "sha256=", 64 hex digits and a newline; the
# `torch.save` bytes follow.
RESUME_FORMAT = b"layerlab-resume-1"


class CheckpointError(LayerLabError, ValueError):
    """A checkpoint or resume state that is missing, damaged, changed after saving, or not LayerLab's."""


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
        raise CheckpointError("checkpoint.missing", path=str(path))
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw_metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # safetensors raises several types for a damaged header.
        raise CheckpointError("checkpoint.unreadable", detail=str(error), file=path.name) from None
    if raw_metadata.get("format") != FORMAT:
        raise CheckpointError("checkpoint.not_layerlab", file=path.name)
    if _digest(tensors, raw_metadata) != raw_metadata.get("sha256"):
        raise CheckpointError("checkpoint.changed", file=path.name)
    try:
        metadata = {"spec": json.loads(raw_metadata["spec"]), "settings": json.loads(raw_metadata["settings"])}
        for name, value in raw_metadata.items():
            if name not in ("format", "spec", "settings", "sha256"):
                metadata[name] = json.loads(value)
    except (KeyError, json.JSONDecodeError) as error:
        raise CheckpointError("checkpoint.damaged_header", detail=str(error), file=path.name) from None
    return tensors, metadata


def load(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict, TrainSettings]:
    """Rebuild the model from the checkpoint's own spec and settings and load its weights."""
    tensors, metadata = read(path)
    try:
        settings = TrainSettings.from_dict(metadata["settings"])
        model = networks.build(metadata["spec"], settings.dataset)
        model.load_state_dict(tensors, strict=True)
    except (ValueError, RuntimeError) as error:
        problem = error.message if isinstance(error, LayerLabError) else ""
        raise CheckpointError("checkpoint.mismatch", detail=str(error), file=Path(path).name, problem=problem) from None
    model.eval()
    return model.to(device), metadata["spec"], settings


def _resume_header(payload: bytes) -> bytes:
    return RESUME_FORMAT + b" sha256=" + hashlib.sha256(payload).hexdigest().encode("ascii") + b"\n"


def save_resume_state(path: Path, state: dict[str, Any]) -> None:
    """Write a resume state: a header line with the SHA-256 of the `torch.save` bytes, then those bytes.

    The sum travels inside the one file (not beside it), so the file is replaced atomically
    with its sum and a copy of it stays checkable.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(_resume_header(payload) + payload)
    os.replace(temporary, path)


def load_resume_state(path: Path) -> dict[str, Any]:
    """Read a resume state after checking its SHA-256; `weights_only=True` refuses anything but tensors and plain values."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint.no_resume_state")
    header, newline, payload = path.read_bytes().partition(b"\n")
    if not newline or not header.startswith(RESUME_FORMAT + b" sha256="):
        raise CheckpointError("checkpoint.resume_unsigned", file=path.name)
    if _resume_header(payload) != header + newline:
        raise CheckpointError("checkpoint.resume_changed", file=path.name)
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError("checkpoint.resume_unreadable", detail=str(error), file=path.name) from None
