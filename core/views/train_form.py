"""The Train page's settings form as data: sections, widget steps, and when a field applies.

Owns the form's layout facts (which setting sits in which section, its widget's step, which
optimiser or schedule it belongs to), the defaults a preset gives, the dropout layers of a
spec, and the augmentation preview mosaic. Each widget's kind, bounds and choices are the
setting's own, read from `core.training.settings`; labels and hints live in the catalogs as
`train.field.<name>` and `train.hint.<name>`; drawing widgets is the page's job, and checking
values is `TrainSettings.validate`'s.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import torch

from core.data import augment, datasets
from core.drawing import digits
from core.errors import DEFAULT_LANGUAGE, Message
from core.model import network as networks
from core.model import vocabulary
from core.training import settings as training_settings
from core.training.presets import DEFAULT_PRESET
from core.training.presets import get as get_preset
from core.training.settings import SettingsError, TrainSettings

_DEFAULTS = TrainSettings()  # A field's type is its default's: the widget's kind follows from it.
AUGMENTATION_FIELDS = ("shift_pixels", "rotation_degrees", "scale", "skew", "elastic_alpha", "elastic_sigma")


def _always(values: dict) -> bool:
    return True


@dataclass(frozen=True)
class FormField:
    """One setting's widget: which setting, the step of its number box, and when it applies.

    Its kind ("int", "float", "bool" or "choice"), bounds and choices come from the setting,
    so the form offers exactly the range training accepts. Where a bound's end is itself
    refused (a learning rate of 0, momentum 1) the widget still reaches it, and the page shows
    the settings error next to the field.
    """

    name: str
    step: float | None = None
    applies: Callable[[dict], bool] = _always

    @property
    def kind(self) -> str:
        wanted = type(getattr(_DEFAULTS, self.name))
        if wanted is bool:
            return "bool"
        if wanted is str:
            return "choice"
        return "int" if wanted is int else "float"

    @property
    def minimum(self) -> float | None:
        bound = training_settings.bound_of(self.name)
        return None if bound is None else self._number(bound.minimum)

    @property
    def maximum(self) -> float | None:
        bound = training_settings.bound_of(self.name)
        return None if bound is None else self._number(bound.maximum)

    @property
    def choices(self) -> tuple[str, ...]:
        return training_settings.choices_of(self.name) or ()

    def _number(self, value: float) -> int | float:
        # The number box wants its bounds, value and step all of one type.
        return int(value) if self.kind == "int" else float(value)

    def coerce(self, value: Any) -> Any:
        """`value` as this widget holds it: the right type, inside the bounds, one of the choices."""
        if self.kind == "bool":
            return bool(value)
        if self.kind == "choice":
            return value if value in self.choices else self.choices[0]
        number = self._number(value)
        if self.minimum is not None:
            number = max(number, self.minimum)
        if self.maximum is not None:
            number = min(number, self.maximum)
        return number


def _uses(field_name: str, *choices: str) -> Callable[[dict], bool]:
    return lambda values: values.get(field_name) in choices


def _attacks(values: dict) -> bool:
    """Whether the run attacks at all: to train on attacked images, or to measure robust accuracy."""
    return values.get("adversarial", "none") != "none" or values.get("robust_eval_images", 0) > 0


# Which setting sits in which section, in the order the page shows them, with its widget step.
SECTIONS: dict[str, tuple[FormField, ...]] = {
    "data": (FormField("dataset"), FormField("full_train"), FormField("epochs", 1), FormField("batch_size", 1)),
    "optimizer": (
        FormField("optimizer"),
        FormField("learning_rate", 0.01),
        FormField("momentum", 0.05, applies=_uses("optimizer", "momentum", "nesterov", "rmsprop")),
        FormField("beta1", 0.01, applies=_uses("optimizer", "adam", "adamw")),
        FormField("beta2", 0.001, applies=_uses("optimizer", "adam", "adamw")),
        FormField("weight_decay", 0.01, applies=_uses("optimizer", "adamw")),
    ),
    "schedule": (
        FormField("schedule"),
        FormField("step_epochs", 1, applies=_uses("schedule", "step")),
        FormField("gamma", 0.05, applies=_uses("schedule", "step", "exponential")),
        FormField("plateau_patience", 1, applies=_uses("schedule", "halve_on_plateau")),
    ),
    "regularization": (FormField("l2", 0.1), FormField("l1", 0.1)),
    "augmentation": (
        FormField("shift_pixels", 1),
        FormField("rotation_degrees", 1.0),
        FormField("scale", 0.05),
        FormField("skew", 0.05),
        FormField("elastic_alpha", 1.0),
        FormField("elastic_sigma", 0.5, applies=lambda values: values.get("elastic_alpha", 0) > 0),
    ),
    # The switches come first: a field's `applies` reads the values of the widgets drawn above it in the same rerun.
    "adversarial": (
        FormField("adversarial"),
        FormField("robust_eval_images", 100),
        FormField("adversarial_epsilon", 0.05, applies=_attacks),
        FormField("adversarial_steps", 1, applies=_uses("adversarial", "pgd")),
        FormField("adversarial_step_size", 0.01, applies=_uses("adversarial", "fgsm", "pgd")),
        FormField("adversarial_warmup_epochs", 0.5, applies=_uses("adversarial", "fgsm", "pgd")),
        FormField("robust_eval_steps", 1, applies=lambda values: values.get("robust_eval_images", 0) > 0),
    ),
    "stopping": (FormField("early_stopping_patience", 1),),
    "advanced": (
        FormField("seed", 1),
        FormField("max_steps", 10),
        FormField("train_subset", 1000),
        FormField("device"),
        FormField("eval_batch_size", 100),
        FormField("mixed_precision"),
        FormField("checkpoint_every_epoch"),
    ),
}
FIELDS = {form_field.name: form_field for section in SECTIONS.values() for form_field in section}


def preset_in_use(network: dict | None, preset_name: str | None) -> str | None:
    """The preset the Train page trains: the session's when Build holds a network, else the default one."""
    return preset_name if network else DEFAULT_PRESET


def default_settings(preset_name: str | None) -> dict[str, Any]:
    """The settings a preset trains with (TrainSettings defaults for anything it leaves out)."""
    if preset_name:
        try:
            return get_preset(preset_name).train_settings().to_dict()
        except ValueError:
            pass  # A preset renamed since the session chose it: fall back to the defaults.
    return TrainSettings().to_dict()


def book_figure(preset_name: str | None) -> tuple[float, int] | None:
    """(test accuracy in percent, epochs) that the preset's source reports, when it reports one."""
    try:
        preset = get_preset(preset_name) if preset_name else None
    except ValueError:
        return None
    if preset is None or preset.book_accuracy is None:
        return None
    return preset.book_accuracy, preset.book_epochs


def parse(values: dict[str, Any]) -> tuple[TrainSettings | None, SettingsError | None]:
    """Settings from the form's values, or the error naming the field that must change."""
    try:
        return TrainSettings.from_dict(values), None
    except SettingsError as error:
        return None, error


def check_network(spec: dict, dataset: str, language: str = DEFAULT_LANGUAGE) -> tuple[int, str]:
    """(parameter count, '') when the network fits the dataset, else (0, the reason it does not, in `language`)."""
    parameters, problem = _check_network(json.dumps(spec, sort_keys=True), dataset)
    return parameters, problem.render(language) if problem else ""


@lru_cache(maxsize=64)
def _check_network(spec_json: str, dataset: str) -> tuple[int, Message | None]:
    # Validation runs a dummy forward pass; the page asks on every rerun, so remember the answer.
    try:
        return networks.validate(json.loads(spec_json), dataset).total_parameters, None
    except vocabulary.SpecError as error:
        return 0, error.message


def dropout_layers(spec: dict) -> list[tuple[int, float]]:
    """(0-based layer index, p) of every dropout layer in the spec, in order."""
    default_p = vocabulary.LAYER_FIELDS["dropout"]["p"].default
    layers = spec.get("layers", []) if isinstance(spec, dict) else spec
    return [(index, float(layer.get("p", default_p))) for index, layer in enumerate(layers) if layer.get("kind") == "dropout"]


def with_dropout(spec: dict, probabilities: dict[int, float]) -> dict:
    """A copy of the spec whose dropout layers at the given indices have the given p."""
    changed = copy.deepcopy(spec)
    for index, p in probabilities.items():
        if changed["layers"][index].get("kind") != "dropout":
            raise ValueError(f"Layer {index + 1} is a {changed['layers'][index].get('kind')} layer, not dropout.")
        changed["layers"][index]["p"] = float(p)
    return changed


@dataclass(frozen=True)
class MyDigitsOffer:
    """Whether a new run can add its owner's "my digits" to its training data, and how many there are."""

    count: int
    reason: str | None  # why it cannot (catalog "train.my_digits_hint.<reason>"), None when it can

    @property
    def usable(self) -> bool:
        return self.reason is None


def my_digits_offer(runs_directory: Any, owner: str, dataset: str) -> MyDigitsOffer:
    """What the Train page offers: the owner's digit count, or why the set cannot be added (no name, empty, damaged, not MNIST).

    The runner reads the set again when the run starts (`core.jobs.runner.with_my_digits`),
    so digits saved meanwhile are trained on too.
    """
    if not owner.strip():
        return MyDigitsOffer(0, "no_owner")
    try:
        count = len(digits.DigitSet(runs_directory, owner))
    except digits.DigitSetError:
        return MyDigitsOffer(0, "unreadable")
    if not count:
        return MyDigitsOffer(0, "empty")
    if dataset != "mnist":
        return MyDigitsOffer(count, "not_mnist")
    return MyDigitsOffer(count, None)


def augmentation_of(values: dict[str, Any]) -> augment.Augmentation:
    """The Augmentation the settings ask for."""
    return augment.Augmentation(
        int(values["shift_pixels"]),
        float(values["rotation_degrees"]),
        float(values["scale"]),
        float(values["skew"]),
        float(values["elastic_alpha"]),
        float(values["elastic_sigma"]),
    )


def augmentation_preview(dataset: str, values: dict[str, Any], rows: int = 4, copies: int = 8, seed: int = 0, zoom: int = 3) -> np.ndarray:
    """A mosaic of augmented validation digits: one row per digit, the original in column 1.

    Returns a (rows · (28 + 2) · zoom, copies · (28 + 2) · zoom) uint8 greyscale image with a
    grey 2-pixel gutter between digits. Raises ValueError for augmentation values out of range.
    """
    augmentation = augmentation_of(values)
    augmentation.validate()
    images = datasets.load(dataset).validation_images[:rows].float() / 255.0  # (rows, 28, 28)
    grid = augment.preview(images, augmentation, copies=copies, seed=seed)  # (rows, copies, 28, 28)
    padded = torch.nn.functional.pad(grid, (1, 1, 1, 1), value=0.5)  # (rows, copies, 30, 30)
    mosaic = padded.permute(0, 2, 1, 3).reshape(rows * padded.shape[2], copies * padded.shape[3])
    mosaic = mosaic.repeat_interleave(zoom, dim=0).repeat_interleave(zoom, dim=1)
    return (mosaic * 255).round().to(torch.uint8).numpy()


# ----------------------------------------------------------------------------- how long a run will take

# Above this estimate the page warns and offers SHORT_SETTINGS, so nobody starts an hour-long run by accident in class.
LONG_RUN_SECONDS = 300.0
# A few minutes on a classroom CPU for most networks, and still well above chance.
SHORT_SETTINGS = {"epochs": 2, "batch_size": 64, "train_subset": 10_000, "max_steps": 0}
EVALUATION_IMAGES = 2 * datasets.VALIDATION_COUNT  # each epoch ends by measuring validation and test accuracy
# Without a finished run to learn from: small networks reach about a quarter of a large matmul's rate,
# and every step pays a fixed cost (Python, the optimiser, moving the batch) on top of its arithmetic.
MATMUL_EFFICIENCY = 0.25
STEP_OVERHEAD_SECONDS = 0.002
SIMILAR_COST = 4.0  # runs within this factor of FLOPs per image, and of batch size, count as similar


def flops_per_image(summary: networks.Summary) -> int:
    """Multiply-adds ×2 of one forward pass, from the validated rows: conv 2·k²·C_in·C_out·H_out·W_out, dense 2·in·out.

    Pooling, activations, dropout and batch norm cost a few operations per value, negligible
    beside the weighted layers, and are left out.
    """
    total, input_shape = 0, summary.input_shape
    for row in summary.rows:
        layer = summary.spec["layers"][row.index]
        if row.kind == "conv":
            channels_out, height, width = row.output_shape
            total += 2 * layer["kernel_size"] ** 2 * input_shape[0] * channels_out * height * width
        elif row.kind in ("dense", "output"):
            total += 2 * math.prod(input_shape) * math.prod(row.output_shape)
        input_shape = row.output_shape
    return total


@dataclass(frozen=True)
class SpeedSample:
    """How fast one finished run trained: its cost per image, batch size and measured training images per second."""

    flops_per_image: int
    batch_size: int
    images_per_second: float


@dataclass(frozen=True)
class Estimate:
    seconds: float
    source: str  # "runs" (from finished runs of similar cost) or "matmul" (from a measured matrix-multiply rate)

    @property
    def long(self) -> bool:
        return self.seconds > LONG_RUN_SECONDS


def training_images(values: dict[str, Any]) -> int:
    """Images one epoch trains on: the subset when set, else 50,000 (60,000 with full_train)."""
    available = datasets.TRAIN_COUNT if values.get("full_train") else datasets.TRAIN_COUNT - datasets.VALIDATION_COUNT
    subset = int(values.get("train_subset") or 0)
    return min(subset, available) if subset else available


def estimate_seconds(flops: int, values: dict[str, Any], samples: list[SpeedSample], matmul_rate: float) -> Estimate:
    """Seconds a run of these settings takes for a network of `flops` per image (forward), evaluation included.

    Training costs three forward passes per image (forward and backward); each epoch then
    evaluates EVALUATION_IMAGES with a forward pass alone. The speed is the median training rate
    (FLOPs per second) of finished runs of similar cost and batch size; without any, the
    measured matmul rate scaled by MATMUL_EFFICIENCY, plus STEP_OVERHEAD_SECONDS per step.
    """
    batch_size = max(1, int(values.get("batch_size") or 1))
    epochs = max(1, int(values.get("epochs") or 1))
    images = training_images(values)
    steps = epochs * math.ceil(images / batch_size)
    if values.get("max_steps"):
        steps = min(steps, int(values["max_steps"]))
        epochs = min(epochs, math.ceil(steps / math.ceil(images / batch_size)))
    similar = [
        sample.images_per_second * 3 * max(sample.flops_per_image, 1) for sample in samples
        if _within(sample.flops_per_image, flops) and _within(sample.batch_size, batch_size) and sample.images_per_second > 0
    ]  # fmt: skip
    flops = max(flops, 1)
    if similar:
        rate = sorted(similar)[len(similar) // 2]
        training = steps * batch_size * 3 * flops / rate
        return Estimate(training + epochs * EVALUATION_IMAGES * flops / rate, "runs")
    rate = max(matmul_rate, 1.0) * MATMUL_EFFICIENCY
    training = steps * (batch_size * 3 * flops / rate + STEP_OVERHEAD_SECONDS)
    return Estimate(training + epochs * EVALUATION_IMAGES * flops / rate, "matmul")


def _within(first: float, second: float) -> bool:
    low, high = sorted((max(first, 1), max(second, 1)))
    return high / low <= SIMILAR_COST


def speed_samples(runs: list) -> list[SpeedSample]:
    """One sample per finished run with measured epochs: its network's cost and its mean training speed."""
    samples = []
    for run in runs:
        speeds = [row["images_per_second"] for row in run.metrics if row.get("images_per_second")]
        flops = network_flops(run.spec, run.dataset)
        if speeds and flops:
            samples.append(SpeedSample(flops, int(run.settings.get("batch_size", 64)), sum(speeds) / len(speeds)))
    return samples


def network_flops(spec: dict, dataset: str = "mnist") -> int:
    """`flops_per_image` of a spec; 0 when it does not validate."""
    return _network_flops(json.dumps(spec, sort_keys=True), dataset)


@lru_cache(maxsize=256)
def _network_flops(spec_json: str, dataset: str) -> int:
    try:
        return flops_per_image(networks.validate(json.loads(spec_json), dataset))
    except vocabulary.SpecError:
        return 0


def matmul_rate(size: int = 256, repeats: int = 5, trials: int = 5) -> float:
    """FLOPs per second of a float32 `size`×`size` matrix multiply on the CPU, measured now (a few milliseconds).

    The best of several short trials: on a shared server a trial that another process
    interrupted measures the interruption, not the machine.
    """
    import time

    left, right = torch.rand(size, size), torch.rand(size, size)
    torch.mm(left, right)  # the first call allocates and warms the kernels
    best = 0.0
    for _ in range(trials):
        started = time.perf_counter()
        for _ in range(repeats):
            torch.mm(left, right)
        best = max(best, 2 * size**3 * repeats / max(time.perf_counter() - started, 1e-9))
    return best
