"""Training settings: one dataclass with a commented default per field, round-tripping through JSON.

Owns what a training run is asked to do (optimiser, schedule, regularisation, augmentation,
stopping), each field's range or choices (declared once, next to the field, and read by
`validate`, the Train form and the CLI alike), and the checks that reject impossible values
with a message a learner can act on. The augmentation fields take their ranges from
`core.data.bounds`, where `core.data.augment` reads them too. It knows nothing about models
or data, and imports no torch.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from typing import Any

from core.data.bounds import AUGMENTATION_BOUNDS, Bound, shown
from core.errors import LayerLabError, did_you_mean

DATASETS = ("mnist", "fashion-mnist")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "adadelta")
SCHEDULES = ("constant", "step", "exponential", "cosine", "onecycle", "halve_on_plateau")
DEVICES = ("auto", "cpu", "cuda", "mps")
LOSSES = ("log_likelihood",)
# Adversarial training (core.training.adversarial): none, FGSM with a random start (Wong, Rice &
# Kolter 2020, "Fast is better than free") or PGD (Madry et al. 2018).
ADVERSARIAL = ("none", "fgsm", "pgd")
# The test set has 10,000 images; robust accuracy is measured on at most all of them.
TEST_IMAGES = 10_000
# torch.Generator().manual_seed takes any integer in [-2**63, 2**64 - 1] and the form's number
# widget holds integers up to 2**53 - 1 (JavaScript's safe range); 2**31 - 1 fits both, and a
# signed 32-bit integer anywhere else a learner may copy the seed to (numpy.random.seed < 2**32).
MAX_SEED = 2**31 - 1
# The training set has 60,000 images (50,000 unless full_train); a larger subset is all of them.
TRAIN_IMAGES = 60_000
# Besides DEVICES, a device may name one of its kind by number, as torch.device does: "cuda:1".
_DEVICE_INDEX = re.compile(r"(cuda|cpu|mps):[0-9]{1,3}")


class SettingsError(LayerLabError, ValueError):
    """An impossible training setting; `field_name` names it."""

    def __init__(self, code: str, field_name: str | None = None, **params: Any):
        super().__init__(code, **params)
        self.field_name = field_name


def setting(default: Any, bound: Bound | None = None, choices: tuple[str, ...] | None = None) -> Any:
    """A settings field: its default, and the range or choices every check and form reads."""
    return dataclasses.field(default=default, metadata={"bound": bound, "choices": choices})


@dataclass
class TrainSettings:
    dataset: str = setting("mnist", choices=DATASETS)  # "mnist" or "fashion-mnist"
    epochs: int = setting(10, Bound(1, 10_000))  # passes over the training set
    batch_size: int = setting(64, Bound(1, TRAIN_IMAGES))  # images per gradient step (Nielsen uses 10)
    optimizer: str = setting("sgd", choices=OPTIMIZERS)  # "momentum" and "nesterov" are SGD variants
    learning_rate: float = setting(0.1, Bound(0.0, 100.0, above_minimum=True))  # η; Nielsen: 0.1 for sigmoid nets, 0.03 for ReLU nets
    momentum: float = setting(0.9, Bound(0.0, 1.0, below_maximum=True))  # for momentum, nesterov and rmsprop
    beta1: float = setting(0.9, Bound(0.0, 1.0, below_maximum=True))  # Adam/AdamW first-moment decay
    beta2: float = setting(0.999, Bound(0.0, 1.0, below_maximum=True))  # Adam/AdamW second-moment decay
    schedule: str = setting("constant", choices=SCHEDULES)
    step_epochs: int = setting(10, Bound(1, 10_000))  # "step": multiply the rate by `gamma` every this many epochs
    gamma: float = setting(0.5, Bound(0.0, 1.0, above_minimum=True))  # decay factor for "step" and per epoch for "exponential"
    plateau_patience: int = setting(3, Bound(1, 1000))  # "halve_on_plateau": epochs without a better validation accuracy before halving
    l2: float = setting(0.0, Bound(0.0, 1000.0))  # λ in network3.py's cost: C + 0.5·λ·Σw² / (batches per epoch); weights only, not biases
    l1: float = setting(0.0, Bound(0.0, 1000.0))  # λ₁ likewise: C + λ₁·Σ|w| / (batches per epoch)
    weight_decay: float = setting(0.01, Bound(0.0, 1000.0))  # AdamW's decoupled weight decay (ignored by other optimisers)
    shift_pixels: int = setting(0, AUGMENTATION_BOUNDS["shift_pixels"])  # augmentation: random shifts of up to this many pixels (the book's expansion uses 1)
    rotation_degrees: float = setting(0.0, AUGMENTATION_BOUNDS["rotation_degrees"])  # augmentation: random rotation in [-d, d] degrees
    scale: float = setting(0.0, AUGMENTATION_BOUNDS["scale"])  # augmentation: random zoom in [1 - s, 1 + s]
    skew: float = setting(0.0, AUGMENTATION_BOUNDS["skew"])  # augmentation: random shear in [-s, s]
    elastic_alpha: float = setting(0.0, AUGMENTATION_BOUNDS["elastic_alpha"])  # augmentation: Simard 2003 elastic distortion strength in pixels (0 = off)
    elastic_sigma: float = setting(4.0, AUGMENTATION_BOUNDS["elastic_sigma"])  # augmentation: smoothness of the elastic field in pixels
    early_stopping_patience: int = setting(0, Bound(0, 1000))  # stop after this many epochs without a better validation accuracy (0 = off)
    max_steps: int = setting(0, Bound(0, 10**9))  # stop after this many gradient steps in all (0 = no limit); for dry runs and tests
    train_subset: int = setting(0, Bound(0, TRAIN_IMAGES))  # use only the first N training images (0 = all); for quick experiments
    full_train: bool = setting(False)  # train on all 60,000 images (validation still uses the last 10,000)
    include_my_digits: bool = setting(False)  # put the run owner's "my digits" (Draw page) in front of the training images
    seed: int = setting(0, Bound(0, MAX_SEED))  # makes a run repeatable on the same device
    device: str = setting("auto", choices=DEVICES)  # "auto" picks CUDA, then MPS, then the CPU; "cuda:N" names one GPU
    mixed_precision: bool = setting(True)  # bfloat16/float16 autocast on CUDA only
    eval_batch_size: int = setting(2000, Bound(1, TRAIN_IMAGES))  # images per batch when measuring accuracy (no gradients)
    checkpoint_every_epoch: bool = setting(True)  # keep one checkpoint per epoch when the net is small (≤ 2M parameters)
    loss: str = setting("log_likelihood", choices=LOSSES)  # the output layer's cost: softmax + log-likelihood, as in the book
    adversarial: str = setting("none", choices=ADVERSARIAL)  # train on attacked images: "fgsm" (random start, Wong 2020) or "pgd" (Madry 2018)
    adversarial_epsilon: float = setting(0.3, Bound(0.0, 1.0))  # L∞ size of the attack trained against (and measured); Madry's MNIST: 0.3
    adversarial_steps: int = setting(10, Bound(1, 1000))  # "pgd": gradient steps per training batch (Madry's MNIST: 40)
    adversarial_step_size: float = setting(0.0, Bound(0.0, 1.0))  # 0 = automatic: 1.25 ε for fgsm (Wong 2020), 2.5 ε / steps for pgd (Madry)
    adversarial_warmup_epochs: float = setting(0.0, Bound(0.0, 10_000.0))  # ε ramps linearly from 0 over these epochs (0 = full ε at once)
    robust_eval_images: int = setting(0, Bound(0, TEST_IMAGES))  # after each epoch, PGD accuracy on the first N test images (0 = none)
    robust_eval_steps: int = setting(10, Bound(1, 1000))  # PGD steps of that measurement (step 2.5 ε / steps, random start)

    def validate(self) -> "TrainSettings":
        """Raise SettingsError for a value of the wrong type or outside its field's bound or choices; return self."""
        for spec_field in fields(self):
            name, value = spec_field.name, getattr(self, spec_field.name)
            _check_type(name, value, type(spec_field.default))
            choices, bound = spec_field.metadata["choices"], spec_field.metadata["bound"]
            if name == "device":
                _check_device(value)
            elif choices is not None:
                _check_choice(name, value, choices)
            if bound is not None and (problem := bound.problem(value)) is not None:
                raise SettingsError("settings.out_of_range", name, setting=name, value=shown(value), problem=problem)
        # An attack of size 0 changes nothing: training against it, or measuring it, would only cost time.
        if (self.adversarial != "none" or self.robust_eval_images) and self.adversarial_epsilon == 0:
            raise SettingsError("settings.adversarial_without_epsilon", "adversarial_epsilon", setting="adversarial_epsilon")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainSettings":
        """Build settings from JSON-like values, checking names and types; unknown names are errors."""
        if not isinstance(values, dict):
            raise SettingsError("settings.not_object")
        converted: dict[str, Any] = {}
        for name, value in values.items():
            converted[name] = _convert(name, value, _field_type(name))
        return cls(**converted).validate()

    def with_values(self, **values: Any) -> "TrainSettings":
        return TrainSettings.from_dict({**self.to_dict(), **values})


def bound_of(name: str) -> Bound | None:
    """The range the numeric setting `name` accepts (None for text and switches)."""
    return _FIELDS[name].metadata["bound"]


def choices_of(name: str) -> tuple[str, ...] | None:
    """The values the text setting `name` accepts (None for numbers and switches)."""
    return _FIELDS[name].metadata["choices"]


_FIELDS = {spec_field.name: spec_field for spec_field in fields(TrainSettings)}


def _field_type(name: Any) -> type:
    """The type of the setting `name`; SettingsError, with the nearest name, when there is none.

    The fields are looked up, not the attributes, so "validate" or "to_dict" are not settings.
    """
    if not isinstance(name, str):
        raise SettingsError("settings.name_not_text", value=shown(name))
    if name not in _FIELDS:
        raise SettingsError("settings.unknown", name, value=shown(name), hint=did_you_mean(name, _FIELDS))
    return type(_FIELDS[name].default)


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse a command-line `key=value` into a name and a typed value."""
    if "=" not in text:
        raise SettingsError("settings.not_assignment", text=shown(text))
    name, raw = (part.strip() for part in text.split("=", 1))
    return name, _convert(name, raw, _field_type(name))


def _convert(name: str, value: Any, wanted: type) -> Any:
    """Accept the JSON or command-line spelling of a value of type `wanted`."""
    if wanted is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise SettingsError("settings.not_switch", name, setting=name, value=shown(value))
    if wanted is int:
        return _whole_number(name, value)
    if wanted is float:
        return _real_number(name, value)
    if not isinstance(value, str):
        raise SettingsError("settings.not_text", name, setting=name, value=shown(value))
    return value


def _whole_number(name: str, value: Any) -> int:
    """An int from an int, a whole float, or text such as "5", "5.0" or "1e3"."""
    refused = SettingsError("settings.not_whole", name, setting=name, value=shown(value))
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:  # "5.0", "1e3", words, or more digits than Python converts (4,300).
            value = _parse_float(value, refused)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise refused
    if isinstance(value, float) and not value.is_integer():  # NaN and infinity are not whole either.
        raise refused
    return int(value)


def _real_number(name: str, value: Any) -> float:
    """A finite float from an int, a float or text such as "0.03"."""
    if isinstance(value, str):
        value = _parse_float(value, SettingsError("settings.not_number", name, setting=name, value=shown(value)))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingsError("settings.not_number", name, setting=name, value=shown(value))
    try:
        number = float(value)
    except OverflowError:  # An integer too large for a float.
        number = math.inf
    if not math.isfinite(number):
        raise SettingsError("settings.not_finite", name, setting=name, value=shown(value))
    return number


def _parse_float(text: str, refused: SettingsError) -> float:
    try:
        return float(text)
    except ValueError:
        raise refused from None


def _check_type(name: str, value: Any, wanted: type) -> None:
    """Refuse a value of the wrong type set directly on the dataclass (from_dict converts first)."""
    if wanted is bool:
        right = isinstance(value, bool)
    elif wanted is int:
        right = isinstance(value, int) and not isinstance(value, bool)
    elif wanted is float:
        right = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        right = isinstance(value, str)
    if not right:
        code = {bool: "settings.not_switch", int: "settings.not_whole", float: "settings.not_number"}.get(wanted, "settings.not_text")
        raise SettingsError(code, name, setting=name, value=shown(value))


def _check_device(value: str) -> None:
    if value not in DEVICES and not _DEVICE_INDEX.fullmatch(value):
        raise SettingsError("settings.device", "device", setting="device", value=shown(value))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SettingsError(
            "settings.not_choice", name, setting=name, value=shown(value), hint=did_you_mean(value, choices), choices=list(choices)
        )
