"""Which runs can leave LayerLab, and the bytes of each export format.

A run can be exported once it has stopped (not queued or running), did not fail, and saved
a best-validation checkpoint, i.e. finished at least one epoch; anything else is refused with
an `ExportError` the learner can act on. The formats:

- "safetensors": the best-validation checkpoint file itself (plain safetensors; its header
  also carries the spec and settings), with `<name>.json` beside it: the network and settings
  in the format the Build page loads.
- "onnx": `torch.onnx.export` (the dynamo exporter) with a dynamic batch dimension; input
  "images" (N, 1, 28, 28) in [0, 1], output "logits" (N, 10).
- "python": `<name>.py` (see `core.export.source`) and its weights `<name>.pt`, a state dict
  that `torch.load(weights_only=True)` reads.

The page offers each as one download (a zip where a format is two files); the CLI writes
them beside each other.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.errors import LayerLabError
from core.export.source import python_source
from core.jobs.store import Run, RunStore
from core.training import checkpoint

FORMATS = ("safetensors", "onnx", "python", "report")
STOPPED = ("succeeded", "diverged", "cancelled", "interrupted")  # "failed" is refused: its weights are not to be trusted
ONNX_OPSET = 18


class ExportError(LayerLabError, ValueError):
    """A run that cannot be exported yet (or at all), or an export that cannot be written."""


@dataclass(frozen=True)
class ExportFile:
    name: str
    data: bytes


def exportable(store: RunStore, run_id: int) -> tuple[Run, Path]:
    """The run and its best checkpoint, or `ExportError` saying why this run cannot be exported."""
    run = store.get(run_id, with_metrics=False)
    if run.status in ("queued", "running"):
        raise ExportError("export.not_stopped", run=run_id, status=run.status)
    if run.status not in STOPPED:
        raise ExportError("export.failed_run", run=run_id, status=run.status)
    path = store.best_checkpoint_path(run_id)
    if not run.best_epoch or not path.is_file():
        raise ExportError("export.no_epoch", run=run_id, status=run.status)
    return run, path


def stem(run: Run) -> str:
    """The base name of a run's files, e.g. 'run_12_fast': letters, digits and underscores only (the name is the learner's),
    so the PyTorch file is also an importable module name."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", run.name).strip("_").lower()[:40]
    return f"run_{run.id}" + (f"_{name}" if name else "")


def spec_json(run: Run) -> str:
    """The network and settings as the Build page loads them (it reads "network"; Train can reuse "settings")."""
    payload = {"network": run.spec, "settings": run.settings, "run": {"id": run.id, "name": run.name, "test_accuracy": run.test_accuracy}}
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


def safetensors_files(store: RunStore, run_id: int) -> list[ExportFile]:
    run, path = exportable(store, run_id)
    checkpoint.read(path)  # refuses a damaged file before it leaves
    name = stem(run)
    return [ExportFile(f"{name}.safetensors", path.read_bytes()), ExportFile(f"{name}.json", spec_json(run).encode())]


def onnx_bytes(model: nn.Module) -> bytes:
    """`model` (images in [0, 1] → logits) as an ONNX file with a dynamic batch dimension."""
    model = model.cpu().eval()
    example = torch.rand(2, 1, 28, 28)
    program = torch.onnx.export(
        model, (example,), input_names=["images"], output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
        opset_version=ONNX_OPSET, dynamo=True, verbose=False,
    )  # fmt: skip
    buffer = io.BytesIO()
    program.save(buffer)
    return buffer.getvalue()


def onnx_files(store: RunStore, run_id: int) -> list[ExportFile]:
    run, path = exportable(store, run_id)
    model, _, _ = checkpoint.load(path)
    return [ExportFile(f"{stem(run)}.onnx", onnx_bytes(model))]


def python_files_for(model: nn.Module, spec: dict, dataset: str, name: str, title: str) -> list[ExportFile]:
    """The PyTorch file and its weights for a built `model` of `spec`."""
    buffer = io.BytesIO()
    torch.save({key: tensor.detach().cpu().contiguous() for key, tensor in model.state_dict().items()}, buffer)
    return [ExportFile(f"{name}.py", python_source(spec, dataset, name, title).encode()), ExportFile(f"{name}.pt", buffer.getvalue())]


def python_files(store: RunStore, run_id: int) -> list[ExportFile]:
    run, path = exportable(store, run_id)
    model, spec, settings = checkpoint.load(path)
    title = f"Run #{run.id} {run.name}".strip() + f": {settings.dataset}, best validation epoch {run.best_epoch}"
    return [*python_files_for(model, spec, settings.dataset, stem(run), title)]


def as_zip(files: list[ExportFile]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.writestr(file.name, file.data)
    return buffer.getvalue()


def write(files: list[ExportFile], out: Path) -> list[Path]:
    """Write the files: the first at `out`, any others beside it with their own suffix (`net.py` → `net.pt`)."""
    out = Path(out)
    if out.is_dir():
        raise ExportError("export.out_is_directory", path=str(out))
    targets = [out] + [out.with_suffix(Path(file.name).suffix) for file in files[1:]]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for target, file in zip(targets, files):
            temporary = target.with_name(target.name + ".tmp")
            temporary.write_bytes(file.data)
            temporary.replace(target)
    except OSError as error:
        raise ExportError("export.cannot_write", path=str(out), detail=str(error)) from None
    return targets
