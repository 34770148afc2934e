"""The Train page's settings form as data: sections, widget bounds, and when a field applies.

Owns the form's layout facts (which setting sits in which section, its bounds and step,
which optimiser or schedule it belongs to), the defaults a preset gives, the dropout layers
of a spec, and the augmentation preview mosaic. Labels and hints live in the catalogs as
`train.field.<name>` and `train.hint.<name>`; drawing widgets is the page's job, and
checking values is `TrainSettings.validate`'s.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import torch

from core.data import augment, datasets
from core.model import network as networks
from core.model import vocabulary
from core.training.presets import DEFAULT_PRESET
from core.training.presets import get as get_preset
from core.training.settings import DEVICES, OPTIMIZERS, SCHEDULES, SettingsError, TrainSettings

AUGMENTATION_FIELDS = ("shift_pixels", "rotation_degrees", "scale", "skew", "elastic_alpha", "elastic_sigma")


def _always(values: dict) -> bool:
    return True


@dataclass(frozen=True)
class FormField:
    """One setting's widget: its kind ("int", "float", "bool" or "choice"), bounds and when it applies."""

    name: str
    kind: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    applies: Callable[[dict], bool] = _always

    def coerce(self, value: Any) -> Any:
        """`value` as this widget holds it: the right type, inside the bounds, one of the choices."""
        if self.kind == "bool":
            return bool(value)
        if self.kind == "choice":
            return value if value in self.choices else self.choices[0]
        number = int(value) if self.kind == "int" else float(value)
        if self.minimum is not None:
            number = max(number, type(number)(self.minimum))
        if self.maximum is not None:
            number = min(number, type(number)(self.maximum))
        return number


def _uses(field_name: str, *choices: str) -> Callable[[dict], bool]:
    return lambda values: values.get(field_name) in choices


# Bounds match `TrainSettings.validate` (and `Augmentation.validate` for skew), so a value the
# form accepts is one training accepts, apart from the few the error message then explains.
SECTIONS: dict[str, tuple[FormField, ...]] = {
    "data": (
        FormField("dataset", "choice", choices=("mnist", "fashion-mnist")),
        FormField("full_train", "bool"),
        FormField("epochs", "int", 1, 10_000, 1),
        FormField("batch_size", "int", 1, 60_000, 1),
    ),
    "optimizer": (
        FormField("optimizer", "choice", choices=OPTIMIZERS),
        FormField("learning_rate", "float", 0.0, 100.0, 0.01),
        FormField("momentum", "float", 0.0, 0.999, 0.05, applies=_uses("optimizer", "momentum", "nesterov", "rmsprop")),
        FormField("beta1", "float", 0.0, 0.999, 0.01, applies=_uses("optimizer", "adam", "adamw")),
        FormField("beta2", "float", 0.0, 0.9999, 0.001, applies=_uses("optimizer", "adam", "adamw")),
        FormField("weight_decay", "float", 0.0, 1000.0, 0.01, applies=_uses("optimizer", "adamw")),
    ),
    "schedule": (
        FormField("schedule", "choice", choices=SCHEDULES),
        FormField("step_epochs", "int", 1, 10_000, 1, applies=_uses("schedule", "step")),
        FormField("gamma", "float", 0.0, 1.0, 0.05, applies=_uses("schedule", "step", "exponential")),
        FormField("plateau_patience", "int", 1, 1000, 1, applies=_uses("schedule", "halve_on_plateau")),
    ),
    "regularization": (
        FormField("l2", "float", 0.0, 1000.0, 0.1),
        FormField("l1", "float", 0.0, 1000.0, 0.1),
    ),
    "augmentation": (
        FormField("shift_pixels", "int", 0, 27, 1),
        FormField("rotation_degrees", "float", 0.0, 180.0, 1.0),
        FormField("scale", "float", 0.0, 0.95, 0.05),
        FormField("skew", "float", 0.0, augment.MAX_SKEW, 0.05),
        FormField("elastic_alpha", "float", 0.0, 1000.0, 1.0),
        FormField("elastic_sigma", "float", 0.5, 28.0, 0.5, applies=lambda values: values.get("elastic_alpha", 0) > 0),
    ),
    "stopping": (FormField("early_stopping_patience", "int", 0, 1000, 1),),
    "advanced": (
        FormField("seed", "int", 0, 2**31 - 1, 1),
        FormField("max_steps", "int", 0, 10**9, 10),
        FormField("train_subset", "int", 0, 60_000, 1000),
        FormField("device", "choice", choices=DEVICES),
        FormField("eval_batch_size", "int", 1, 60_000, 100),
        FormField("mixed_precision", "bool"),
        FormField("checkpoint_every_epoch", "bool"),
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


def check_network(spec: dict, dataset: str) -> tuple[int, str]:
    """(parameter count, '') when the network fits the dataset, else (0, the reason it does not)."""
    return _check_network(json.dumps(spec, sort_keys=True), dataset)


@lru_cache(maxsize=64)
def _check_network(spec_json: str, dataset: str) -> tuple[int, str]:
    # Validation runs a dummy forward pass; the page asks on every rerun, so remember the answer.
    try:
        return networks.validate(json.loads(spec_json), dataset).total_parameters, ""
    except vocabulary.SpecError as error:
        return 0, str(error)


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
