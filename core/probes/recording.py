"""Training diagnostics recorded while a run trains: gradient norms, activation and weight statistics.

Owns the `Recorder` (a training callback), what it measures and the per-run file it appends to,
`recording.jsonl` in the run's folder: one JSON object per line, one line per epoch (epoch 0 is
the initial weights, recorded before the first step). A resumed run appends; a reader keeps the
last line of each epoch and skips lines it cannot read (a run killed mid-write), so a damaged
file never breaks a run or a view. It knows nothing of the run store or of plotting.

What is measured (Nielsen ch. 5, the vanishing gradient; Deep Learning from Scratch §6.2):
- Every K training steps, the L2 norm of each dense and conv layer's weight gradient, with K
  chosen so that an epoch gives about 50 points. The norms are written into a tensor on the
  device and read once at the epoch's end, so recording adds no host sync to a step.
- At epoch 0 and at each epoch's end, on a fixed probe batch (the first 512 validation images,
  the model in eval mode): for each layer with an activation, a histogram of its outputs, their
  mean and standard deviation, the fraction of dead ReLU units and of saturated sigmoid/tanh
  units; for each weight layer, a histogram of its weights with their mean and deviation.

A unit is one output of a dense layer, or one feature map (filter) of a conv layer, whose
values are then all its positions on all probe images. A ReLU unit is dead when it is never
positive on the probe batch. A sigmoid or tanh unit is saturated when at least 99% of its
values lie within 0.01 of the activation's limits (0 or 1 for sigmoid, −1 or 1 for tanh),
where its derivative is almost zero and it barely learns.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.model.vocabulary import normalize_spec
from core.training.loop import Callbacks, EpochMetrics, Progress, TrainingState

RECORDING_FILE = "recording.jsonl"
FORMAT_VERSION = 1
PROBE_IMAGES = 512  # the first validation images; the same ones at every epoch, so epochs compare
GRADIENT_POINTS_PER_EPOCH = 50
HISTOGRAM_BINS = 40
SATURATION_MARGIN = 0.01  # "near the limit": within this distance of it
SATURATION_SHARE = 0.99  # a unit is saturated when this share of its values is near a limit
# Activations with a bounded range get the same bins at every epoch, so their histograms compare
# directly; the others are binned over the range the probe batch gives.
FIXED_RANGES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
SATURATION_LIMITS = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
ACTIVATION_KINDS = ("dense", "conv", "activation")  # spec kinds whose block ends in an activation


def gradient_interval(steps_per_epoch: int) -> int:
    """K, the steps between two gradient-norm points: an epoch gives about GRADIENT_POINTS_PER_EPOCH of them."""
    return max(1, steps_per_epoch // GRADIENT_POINTS_PER_EPOCH)


def weight_layers(model: nn.Sequential, network: dict | list) -> list[tuple[int, str, torch.Tensor]]:
    """(spec layer index, kind, weight) of every dense and conv weight, in spec-layer order.

    The built model is `Sequential(Normalize, block_0, …)`, so spec layer i is `model[i + 1]`.
    """
    layers = normalize_spec(network)["layers"]
    found = []
    for index, layer in enumerate(layers):
        for module in model[index + 1].modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                found.append((index, layer["kind"], module.weight))
    return found


def unit_values(outputs: torch.Tensor) -> torch.Tensor:
    """A layer's outputs as (values per unit, units): dense (N, U) stays; conv (N, C, H, W) becomes (N·H·W, C)."""
    if outputs.dim() == 4:
        return outputs.transpose(0, 1).reshape(outputs.shape[1], -1).T
    return outputs.reshape(outputs.shape[0], -1)


def dead_fraction(outputs: torch.Tensor) -> float:
    """The fraction of units never positive on these outputs (a ReLU that never fires gets no gradient)."""
    values = unit_values(outputs)
    return float((values.amax(dim=0) <= 0).float().mean())


def saturated_fraction(outputs: torch.Tensor, activation: str) -> float:
    """The fraction of units whose values lie within SATURATION_MARGIN of a limit SATURATION_SHARE of the time."""
    low, high = SATURATION_LIMITS[activation]
    values = unit_values(outputs)
    near = (values <= low + SATURATION_MARGIN) | (values >= high - SATURATION_MARGIN)
    return float((near.float().mean(dim=0) >= SATURATION_SHARE).float().mean())


def histogram(values: torch.Tensor, low: float | None = None, high: float | None = None) -> dict[str, Any]:
    """HISTOGRAM_BINS equal bins over [low, high] (the values' own range when not given): {"edges": [low, high], "counts": […]}."""
    values = values.detach().float().reshape(-1)
    if low is None or high is None:
        low, high = float(values.min()), float(values.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        return {"edges": [0.0, 1.0], "counts": [0] * HISTOGRAM_BINS}
    if high <= low:  # One value only (e.g. zero-initialised weights): a narrow bin around it.
        low, high = low - 0.5e-6, low + 0.5e-6
    counts = torch.histc(values, bins=HISTOGRAM_BINS, min=low, max=high)
    return {"edges": [low, high], "counts": [int(count) for count in counts.tolist()]}


def _statistics(values: torch.Tensor) -> dict[str, float]:
    values = values.detach().float()
    return {"mean": float(values.mean()), "std": float(values.std()) if values.numel() > 1 else 0.0}


@torch.no_grad()
def probe(model: nn.Sequential, network: dict | list, images: torch.Tensor) -> dict[str, list[dict]]:
    """Activation and weight statistics of `model` on `images` (N, 1, 28, 28) in [0, 1], in eval mode.

    Returns {"activations": [one dict per layer with an activation], "weights": [one per weight layer]}.
    """
    layers = normalize_spec(network)["layers"]
    was_training = model.training
    model.eval()
    activations = []
    outputs = model[0](images)
    for index, layer in enumerate(layers):
        outputs = model[index + 1](outputs)
        if layer["kind"] not in ACTIVATION_KINDS:
            continue
        activation = layer["activation"]
        low, high = FIXED_RANGES.get(activation, (None, None))
        entry = {"index": index, "kind": layer["kind"], "activation": activation, **_statistics(outputs), **histogram(outputs, low, high)}
        entry["dead_fraction"] = dead_fraction(outputs) if activation == "relu" else None
        entry["saturated_fraction"] = saturated_fraction(outputs, activation) if activation in SATURATION_LIMITS else None
        activations.append(entry)
    weights = []
    for index, kind, weight in weight_layers(model, network):
        reach = float(weight.detach().abs().max())
        weights.append({"index": index, "kind": kind, **_statistics(weight), **histogram(weight, -reach, reach)})
    model.train(was_training)
    return {"activations": activations, "weights": weights}


def append(path: Path, record: dict) -> None:
    """Append one record as a line; a line left unfinished by a killed run is closed first, so it spoils only itself."""
    line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        handle.seek(0, 2)
        if handle.tell() > 0:
            handle.seek(-1, 2)
            if handle.read(1) != b"\n":
                line = b"\n" + line
        handle.write(line)


class Recorder(Callbacks):
    """A training callback that appends one diagnostics record per epoch (and epoch 0) to `path`.

    `validation_images` are the split's uint8 images (N, 28, 28); the first PROBE_IMAGES are
    the probe batch. Use it alone with `train()`, or let the runner's callbacks forward to it.
    """

    def __init__(self, path: Path | str, network: dict | list, validation_images: torch.Tensor):
        self.path = Path(path)
        self.network = normalize_spec(network)
        self.validation_images = validation_images[:PROBE_IMAGES]
        self.model: nn.Sequential | None = None
        self.weights: list[torch.Tensor] = []
        self.names: list[dict] = []
        self.epoch = 0
        self.interval, self.steps_per_epoch = 1, 1
        self.norms: torch.Tensor | None = None  # (points this epoch, weight layers), on the model's device
        self.steps: list[int] = []

    def on_train_start(self, state: TrainingState) -> None:
        self.model = state.model
        found = weight_layers(self.model, self.network)
        self.weights = [weight for _, _, weight in found]
        self.names = [{"index": index, "kind": kind} for index, kind, _ in found]
        device = self.weights[0].device if self.weights else torch.device("cpu")
        self.probe_images = self.validation_images.unsqueeze(1).to(device).float().div_(255.0)  # (512, 1, 28, 28)
        if not state.history:  # A fresh run: epoch 0 is the initial weights. A resumed run already has it.
            append(self.path, self._record(0, state.global_step, None))

    def on_step(self, progress: Progress) -> None:
        if progress.epoch != self.epoch:
            self.epoch = progress.epoch
            self.steps_per_epoch = progress.steps_per_epoch
            self.interval = gradient_interval(progress.steps_per_epoch)
            points = progress.steps_per_epoch // self.interval
            self.norms = torch.zeros((points, len(self.weights)), device=self.probe_images.device)
            self.steps = []
        if progress.step % self.interval or len(self.steps) >= len(self.norms):
            return
        gradients = [weight.grad for weight in self.weights]
        if any(gradient is None for gradient in gradients) or not gradients:
            return
        # No `.item()` here: the norms stay on the device until the epoch ends.
        self.norms[len(self.steps)].copy_(torch.stack([torch.linalg.vector_norm(gradient.float()) for gradient in gradients]))
        self.steps.append(progress.global_step)

    def on_epoch_end(self, metrics: EpochMetrics, state: TrainingState, improved: bool) -> None:
        gradients = None
        if self.norms is not None and self.epoch == metrics.epoch:
            gradients = {
                "steps_per_epoch": self.steps_per_epoch,
                "interval": self.interval,
                "steps": self.steps,
                "norms": self.norms[: len(self.steps)].cpu().tolist(),
            }
        append(self.path, self._record(metrics.epoch, state.global_step, gradients))

    def _record(self, epoch: int, global_step: int, gradients: dict | None) -> dict:
        return {
            "version": FORMAT_VERSION,
            "epoch": epoch,
            "global_step": global_step,
            "weight_layers": self.names,
            "gradients": gradients,
            **probe(self.model, self.network, self.probe_images),
        }


# ----------------------------------------------------------------------------- reading


@dataclass
class Recording:
    """A run's records by epoch (epoch 0 first), and what could not be read."""

    records: dict[int, dict] = field(default_factory=dict)
    damaged_lines: int = 0  # lines skipped because they were cut short or not a record

    @property
    def epochs(self) -> list[int]:
        return sorted(self.records)

    def weight_layers(self) -> list[dict]:
        """{"index", "kind"} of each weight layer, from the latest record."""
        return self.records[self.epochs[-1]]["weight_layers"] if self.records else []

    def gradient_series(self) -> tuple[list[float], list[list[float]]]:
        """(positions in epochs, e.g. 1.02 = 2% into epoch 2, one list of norms per weight layer) over all epochs."""
        positions: list[float] = []
        layers = len(self.weight_layers())
        norms: list[list[float]] = [[] for _ in range(layers)]
        for epoch in self.epochs:
            gradients = self.records[epoch].get("gradients")
            if not gradients or len(self.records[epoch]["weight_layers"]) != layers:
                continue
            # The j-th point of an epoch was taken after its step (j + 1) · interval.
            for point, row in enumerate(gradients["norms"]):
                positions.append(epoch - 1 + (point + 1) * gradients["interval"] / gradients["steps_per_epoch"])
                for layer, value in enumerate(row):
                    norms[layer].append(value)
        return positions, norms

    def unit_fractions(self, name: str) -> dict[int, tuple[list[int], list[float]]]:
        """For `name` "dead_fraction" or "saturated_fraction": spec layer index → (epochs, fractions)."""
        series: dict[int, tuple[list[int], list[float]]] = {}
        for epoch in self.epochs:
            for layer in self.records[epoch]["activations"]:
                if layer.get(name) is not None:
                    epochs, values = series.setdefault(layer["index"], ([], []))
                    epochs.append(epoch)
                    values.append(layer[name])
        return series


def _check(record: Any) -> dict:
    """The record itself when it has what the views read; raises (KeyError, TypeError, ValueError) otherwise."""
    if not isinstance(record, dict) or record.get("version") != FORMAT_VERSION:
        raise ValueError("not a recording line")
    int(record["epoch"])
    for layer in record["activations"] + record["weights"]:
        if len(layer["edges"]) != 2 or not isinstance(layer["counts"], list):
            raise ValueError("a histogram without edges")
    gradients = record["gradients"]
    if gradients is not None and (len(gradients["steps"]) != len(gradients["norms"]) or gradients["steps_per_epoch"] < 1):
        raise ValueError("gradient steps and norms differ in length")
    if gradients is not None:
        int(gradients["interval"])
    return record


def read(path: Path | str) -> Recording | None:
    """The recording at `path`, or None when the run has none (older runs, or one that never started).

    A resumed run may have written an epoch twice; the later line wins. Unreadable lines are
    counted in `damaged_lines`, never raised.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    recording = Recording()
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            record = _check(json.loads(line))
        except (ValueError, KeyError, TypeError, IndexError):
            recording.damaged_lines += 1
            continue
        recording.records[int(record["epoch"])] = record
    return recording
