"""Training settings: one dataclass with a commented default per field, round-tripping through JSON.

Owns what a training run is asked to do (optimiser, schedule, regularisation, augmentation,
stopping) and the checks that reject impossible values with a message a learner can act on.
It knows nothing about models or data.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, fields
from typing import Any

from core.errors import LayerLabError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "adadelta")
SCHEDULES = ("constant", "step", "exponential", "cosine", "onecycle", "halve_on_plateau")
DEVICES = ("auto", "cpu", "cuda", "mps")


class SettingsError(LayerLabError, ValueError):
    """An impossible training setting; `field_name` names it."""

    def __init__(self, message: str, field_name: str | None = None):
        super().__init__(message)
        self.field_name = field_name


@dataclass
class TrainSettings:
    dataset: str = "mnist"  # "mnist" or "fashion-mnist"
    epochs: int = 10  # passes over the training set
    batch_size: int = 64  # images per gradient step (Nielsen uses 10)
    optimizer: str = "sgd"  # one of OPTIMIZERS; "momentum" and "nesterov" are SGD variants
    learning_rate: float = 0.1  # η; Nielsen: 0.1 for sigmoid nets, 0.03 for ReLU nets
    momentum: float = 0.9  # for momentum, nesterov and rmsprop
    beta1: float = 0.9  # Adam/AdamW first-moment decay
    beta2: float = 0.999  # Adam/AdamW second-moment decay
    schedule: str = "constant"  # one of SCHEDULES
    step_epochs: int = 10  # "step": multiply the rate by `gamma` every this many epochs
    gamma: float = 0.5  # decay factor for "step" and per epoch for "exponential"
    plateau_patience: int = 3  # "halve_on_plateau": epochs without a better validation accuracy before halving
    l2: float = 0.0  # λ in network3.py's cost: C + 0.5·λ·Σw² / (batches per epoch); weights only, not biases
    l1: float = 0.0  # λ₁ likewise: C + λ₁·Σ|w| / (batches per epoch)
    weight_decay: float = 0.01  # AdamW's decoupled weight decay (ignored by other optimisers)
    shift_pixels: int = 0  # augmentation: random shifts of up to this many pixels (the book's expansion uses 1)
    rotation_degrees: float = 0.0  # augmentation: random rotation in [-d, d] degrees
    scale: float = 0.0  # augmentation: random zoom in [1 - s, 1 + s]
    skew: float = 0.0  # augmentation: random shear in [-s, s]
    elastic_alpha: float = 0.0  # augmentation: Simard 2003 elastic distortion strength in pixels (0 = off)
    elastic_sigma: float = 4.0  # augmentation: smoothness of the elastic field in pixels
    early_stopping_patience: int = 0  # stop after this many epochs without a better validation accuracy (0 = off)
    max_steps: int = 0  # stop after this many gradient steps in all (0 = no limit); for dry runs and tests
    train_subset: int = 0  # use only the first N training images (0 = all); for quick experiments
    full_train: bool = False  # train on all 60,000 images (validation still uses the last 10,000)
    seed: int = 0  # makes a run repeatable on the same device
    device: str = "auto"  # "auto" picks CUDA, then MPS, then the CPU
    mixed_precision: bool = True  # bfloat16/float16 autocast on CUDA only
    eval_batch_size: int = 2000  # images per batch when measuring accuracy (no gradients)
    checkpoint_every_epoch: bool = True  # keep one checkpoint per epoch when the net is small (≤ 2M parameters)
    loss: str = "log_likelihood"  # the output layer's cost: softmax + log-likelihood, as in the book

    def validate(self) -> "TrainSettings":
        """Raise SettingsError for an impossible value; return self so calls chain."""
        _check_choice("dataset", self.dataset, ("mnist", "fashion-mnist"))
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("loss", self.loss, ("log_likelihood",))
        if not any(self.device == name or self.device.startswith(name + ":") for name in DEVICES):
            raise SettingsError(f"'device' is {self.device!r}. Choose auto, cpu, cuda (or cuda:N) or mps.", "device")
        _check_range("epochs", self.epochs, 1, 10_000)
        _check_range("batch_size", self.batch_size, 1, 60_000)
        _check_range("learning_rate", self.learning_rate, 0.0, 100.0, above_minimum=True)
        _check_range("momentum", self.momentum, 0.0, 1.0, below_maximum=True)
        _check_range("beta1", self.beta1, 0.0, 1.0, below_maximum=True)
        _check_range("beta2", self.beta2, 0.0, 1.0, below_maximum=True)
        _check_range("step_epochs", self.step_epochs, 1, 10_000)
        _check_range("gamma", self.gamma, 0.0, 1.0, above_minimum=True)
        _check_range("plateau_patience", self.plateau_patience, 1, 1000)
        for name in ("l2", "l1", "weight_decay", "scale", "skew", "elastic_alpha"):
            _check_range(name, getattr(self, name), 0.0, 1000.0)
        _check_range("shift_pixels", self.shift_pixels, 0, 27)
        _check_range("rotation_degrees", self.rotation_degrees, 0.0, 180.0)
        _check_range("elastic_sigma", self.elastic_sigma, 0.0, 28.0, above_minimum=True)
        if self.scale >= 1:
            raise SettingsError(f"'scale' is {self.scale}; it must be below 1 (a zoom of 1 − scale must stay positive).", "scale")
        for name in ("early_stopping_patience", "max_steps", "train_subset"):
            _check_range(name, getattr(self, name), 0, 10**9)
        _check_range("seed", self.seed, 0, 2**63 - 1)
        _check_range("eval_batch_size", self.eval_batch_size, 1, 60_000)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainSettings":
        """Build settings from JSON-like values, checking names and types; unknown names are errors."""
        if not isinstance(values, dict):
            raise SettingsError(f"Settings must be a JSON object, not {type(values).__name__}.")
        known = {spec_field.name: spec_field for spec_field in fields(cls)}
        converted: dict[str, Any] = {}
        for name, value in values.items():
            if name not in known:
                hint = difflib.get_close_matches(name, known, n=1)
                suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
                raise SettingsError(f"Unknown setting '{name}'.{suggestion}", name)
            converted[name] = _convert(name, value, type(getattr(cls(), name)))
        return cls(**converted).validate()

    def with_values(self, **values: Any) -> "TrainSettings":
        return TrainSettings.from_dict({**self.to_dict(), **values})


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse a command-line `key=value` into a name and a typed value."""
    if "=" not in text:
        raise SettingsError(f"'{text}' is not of the form key=value, e.g. learning_rate=0.03.")
    name, raw = (part.strip() for part in text.split("=", 1))
    # Look the name up among the fields, not the attributes, so "validate=1" is not a setting.
    known = [spec_field.name for spec_field in fields(TrainSettings)]
    if name not in known:
        hint = difflib.get_close_matches(name, known, n=1)
        raise SettingsError(f"Unknown setting '{name}'." + (f" Did you mean '{hint[0]}'?" if hint else ""), name)
    return name, _convert(name, raw, type(getattr(TrainSettings(), name)))


def _convert(name: str, value: Any, wanted: type) -> Any:
    """Accept the JSON or command-line spelling of a value of type `wanted`."""
    if wanted is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise SettingsError(f"'{name}' must be true or false, not {value!r}.", name)
    if wanted is int:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise SettingsError(f"'{name}' must be a whole number, not {value!r}.", name) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise SettingsError(f"'{name}' must be a whole number, not {value!r}.", name)
        return int(value)
    if wanted is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise SettingsError(f"'{name}' must be a number, not {value!r}.", name) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SettingsError(f"'{name}' must be a finite number, not {value!r}.", name)
        return float(value)
    if not isinstance(value, str):
        raise SettingsError(f"'{name}' must be text, not {value!r}.", name)
    return value


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        hint = difflib.get_close_matches(str(value), choices, n=1)
        suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
        raise SettingsError(f"'{name}' is {value!r}.{suggestion} Choose one of: {', '.join(choices)}.", name)


def _check_range(name, value, minimum, maximum, above_minimum=False, below_maximum=False) -> None:
    if isinstance(value, float) and math.isnan(value):  # NaN fails no comparison below, so it needs its own check.
        raise SettingsError(f"'{name}' must be a finite number, not nan.", name)
    if (value <= minimum) if above_minimum else (value < minimum):
        relation = "above" if above_minimum else "at least"
        raise SettingsError(f"'{name}' is {value}, but it must be {relation} {minimum:g}.", name)
    if (value >= maximum) if below_maximum else (value > maximum):
        relation = "below" if below_maximum else "at most"
        raise SettingsError(f"'{name}' is {value}, but it must be {relation} {maximum:g}.", name)
