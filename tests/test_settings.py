"""Tests for core.settings: every field rejects impossible values with an error naming it, settings
round-trip through JSON, command-line assignments get their field's type, every preset validates,
each bound is declared once (the augmentation's shared with core.data.augment), and junk of any
shape gives a SettingsError."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest

from core.data.augment import Augmentation, AugmentationError
from core.data.bounds import AUGMENTATION_BOUNDS, shown
from core.training.presets import all_presets
from core.views import i18n
from core.training.settings import (
    MAX_SEED,
    OPTIMIZERS,
    SCHEDULES,
    SettingsError,
    TrainSettings,
    bound_of,
    choices_of,
    parse_assignment,
)

# (field, bad value as it could arrive from JSON or Python, words the message must contain)
INVALID_VALUES = [
    ("dataset", "cifar10", ["mnist, fashion-mnist"]),
    ("dataset", 5, ["text"]),
    ("epochs", 0, ["at least 1"]),
    ("epochs", -3, ["at least 1"]),
    ("epochs", 2.5, ["whole number"]),
    ("epochs", True, ["whole number"]),
    ("epochs", "ten", ["whole number", "'ten'"]),
    ("batch_size", 0, ["at least 1"]),
    ("batch_size", 60_001, ["at most 60000"]),
    ("optimizer", "adma", ["Did you mean 'adam'"]),
    ("optimizer", "lbfgs", ["Choose one of", "sgd"]),
    ("learning_rate", -1, ["above 0"]),
    ("learning_rate", 0, ["above 0"]),
    ("learning_rate", 1000, ["at most 100"]),
    ("learning_rate", "abc", ["number", "'abc'"]),
    ("learning_rate", False, ["number"]),
    ("learning_rate", None, ["number"]),
    ("learning_rate", float("nan"), ["finite"]),
    ("momentum", 1, ["below 1"]),
    ("momentum", -0.1, ["at least 0"]),
    ("beta1", 1.0, ["below 1"]),
    ("beta2", 1.5, ["below 1"]),
    ("schedule", "cosin", ["Did you mean 'cosine'"]),
    ("step_epochs", 0, ["at least 1"]),
    ("gamma", 0, ["above 0"]),
    ("gamma", 1.5, ["at most 1"]),
    ("plateau_patience", 0, ["at least 1"]),
    ("l2", -0.1, ["at least 0"]),
    ("l1", -1, ["at least 0"]),
    ("weight_decay", -0.01, ["at least 0"]),
    ("shift_pixels", -1, ["at least 0"]),
    ("shift_pixels", 28, ["at most 27"]),
    ("rotation_degrees", 181, ["at most 180"]),
    ("rotation_degrees", -5, ["at least 0"]),
    ("scale", 1, ["below 1"]),
    ("scale", -0.1, ["at least 0"]),
    ("skew", -0.5, ["at least 0"]),
    ("elastic_alpha", -1, ["at least 0"]),
    ("elastic_sigma", 0, ["above 0"]),
    ("early_stopping_patience", -1, ["at least 0"]),
    ("max_steps", -1, ["at least 0"]),
    ("train_subset", -5, ["at least 0"]),
    ("full_train", "maybe", ["true or false", "'maybe'"]),
    ("full_train", 1, ["true or false"]),
    ("include_my_digits", "maybe", ["true or false", "'maybe'"]),
    ("seed", -1, ["at least 0"]),
    ("device", "gpu", ["cuda"]),
    ("device", "tpu", ["Choose auto, cpu"]),
    ("mixed_precision", "sometimes", ["true or false"]),
    ("eval_batch_size", 0, ["at least 1"]),
    ("checkpoint_every_epoch", 3, ["true or false"]),
    ("loss", "mse", ["log_likelihood"]),
    ("adversarial", "fgsm-rs", ["Choose one of", "none, fgsm, pgd"]),
    ("adversarial_epsilon", 1.5, ["at most 1"]),
    ("adversarial_epsilon", -0.1, ["at least 0"]),
    ("adversarial_steps", 0, ["at least 1"]),
    ("adversarial_step_size", -0.01, ["at least 0"]),
    ("adversarial_warmup_epochs", -1, ["at least 0"]),
    ("robust_eval_images", 10_001, ["at most 10000"]),
    ("robust_eval_steps", 0, ["at least 1"]),
]


def label(name: str) -> str:
    """How messages name setting `name`: its label on the Train page, or the name where it has none."""
    text = i18n.catalog("en").get(f"train.field.{name}")
    return text if text and not i18n.placeholders(text) else name


def _id(case) -> str:
    return f"{case[0]}={case[1]!r}"


def test_every_field_has_invalid_values_under_test():
    tested = {name for name, _, _ in INVALID_VALUES}
    assert tested == {spec_field.name for spec_field in dataclasses.fields(TrainSettings)}


@pytest.mark.parametrize("name, value, words", INVALID_VALUES, ids=[_id(case) for case in INVALID_VALUES])
def test_invalid_value_gives_settings_error_naming_the_field(name, value, words):
    with pytest.raises(ValueError) as caught:
        TrainSettings.from_dict({name: value})
    error = caught.value
    message = str(error)
    assert isinstance(error, SettingsError)
    assert error.field_name == name
    assert label(name) in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert "\n" not in message and message.endswith((".", "?")) and "Traceback" not in message


def _right_type(name, value) -> bool:
    default = getattr(TrainSettings(), name)
    if isinstance(default, bool) or isinstance(value, bool):
        return type(value) is type(default)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


IN_RANGE_CASES = [case for case in INVALID_VALUES if _right_type(case[0], case[1])]


@pytest.mark.parametrize("name, value, words", IN_RANGE_CASES, ids=[_id(case) for case in IN_RANGE_CASES])
def test_validate_catches_values_set_directly(name, value, words):
    # A Python caller can skip from_dict; the range and choice checks in validate() still hold.
    settings = TrainSettings()
    setattr(settings, name, value)
    with pytest.raises(SettingsError) as caught:
        settings.validate()
    assert caught.value.field_name == name


BOUNDARY_VALUES = [("learning_rate", 100.0), ("momentum", 0.0), ("scale", 0.99), ("shift_pixels", 27), ("device", "cuda:1"), ("gamma", 1.0)]


@pytest.mark.parametrize("name, value", BOUNDARY_VALUES)
def test_boundary_values_are_accepted(name, value):
    assert getattr(TrainSettings.from_dict({name: value}), name) == value


def test_unknown_setting_suggests_the_nearest_name():
    with pytest.raises(SettingsError) as caught:
        TrainSettings.from_dict({"learning_rat": 0.1})
    assert caught.value.field_name == "learning_rat"
    assert "There is no setting 'learning_rat'. Did you mean 'learning_rate'?" in str(caught.value)


@pytest.mark.parametrize("values", [[("epochs", 3)], "epochs=3", 7, None])
def test_settings_must_be_an_object(values):
    with pytest.raises(SettingsError, match="JSON object"):
        TrainSettings.from_dict(values)


def test_defaults_are_valid_and_documented_choices_all_work():
    assert TrainSettings().validate() == TrainSettings()
    for optimizer in OPTIMIZERS:
        assert TrainSettings.from_dict({"optimizer": optimizer}).optimizer == optimizer
    for schedule in SCHEDULES:
        assert TrainSettings.from_dict({"schedule": schedule}).schedule == schedule


def test_json_round_trip_keeps_every_value():
    changed = {
        "dataset": "fashion-mnist", "epochs": 3, "batch_size": 10, "optimizer": "adamw", "learning_rate": 0.003,
        "momentum": 0.5, "schedule": "halve_on_plateau", "l2": 0.1, "shift_pixels": 1, "scale": 0.1,
        "full_train": True, "seed": 12345, "device": "cpu", "mixed_precision": False,
    }
    for settings in (TrainSettings(), TrainSettings.from_dict(changed)):
        text = json.dumps(settings.to_dict())
        again = TrainSettings.from_dict(json.loads(text))
        assert again == settings
        assert again.to_dict() == settings.to_dict()
        assert all(type(getattr(again, name)) is type(getattr(settings, name)) for name in settings.to_dict())
    assert {name: TrainSettings.from_dict(changed).to_dict()[name] for name in changed} == changed


def test_json_integers_become_floats_and_whole_floats_become_integers():
    settings = TrainSettings.from_dict({"learning_rate": 1, "epochs": 3.0, "rotation_degrees": 5})
    assert settings.learning_rate == 1.0 and type(settings.learning_rate) is float
    assert settings.epochs == 3 and type(settings.epochs) is int
    assert type(settings.rotation_degrees) is float


def test_with_values_checks_the_new_values():
    settings = TrainSettings(epochs=5)
    assert settings.with_values(learning_rate=0.03) == TrainSettings(epochs=5, learning_rate=0.03)
    assert settings.epochs == 5 and settings.learning_rate == 0.1  # The original is untouched.
    with pytest.raises(SettingsError):
        settings.with_values(batch_size=0)


@pytest.mark.parametrize(
    "text, name, value",
    [
        ("learning_rate=0.03", "learning_rate", 0.03),
        ("learning_rate=1e-3", "learning_rate", 0.001),
        ("learning_rate=1", "learning_rate", 1.0),
        ("epochs=5", "epochs", 5),
        ("epochs=5.0", "epochs", 5),
        (" batch_size = 10 ", "batch_size", 10),
        ("full_train=true", "full_train", True),
        ("full_train=False", "full_train", False),
        ("mixed_precision=0", "mixed_precision", False),
        ("checkpoint_every_epoch=yes", "checkpoint_every_epoch", True),
        ("optimizer=adam", "optimizer", "adam"),
        ("device=cuda:0", "device", "cuda:0"),
        ("device=a=b", "device", "a=b"),
    ],
)
def test_parse_assignment_gives_the_fields_type(text, name, value):
    parsed_name, parsed_value = parse_assignment(text)
    assert parsed_name == name
    assert parsed_value == value
    assert type(parsed_value) is type(getattr(TrainSettings(), name))


@pytest.mark.parametrize(
    "text, field_name, words",
    [
        ("learning_rate", None, ["name=value"]),
        ("epoch=3", "epoch", ["no setting 'epoch'", "Did you mean 'epochs'"]),
        ("validate=1", "validate", ["no setting 'validate'"]),
        ("to_dict=x", "to_dict", ["no setting 'to_dict'"]),
        ("epochs=abc", "epochs", ["whole number", "'abc'"]),
        ("epochs=2.5", "epochs", ["whole number"]),
        ("learning_rate=fast", "learning_rate", ["number", "'fast'"]),
        ("full_train=maybe", "full_train", ["true or false"]),
    ],
)
def test_parse_assignment_rejects_bad_text(text, field_name, words):
    with pytest.raises(SettingsError) as caught:
        parse_assignment(text)
    assert caught.value.field_name == field_name
    for word in words:
        assert word in str(caught.value)


def test_parse_assignment_then_from_dict_checks_ranges():
    name, value = parse_assignment("learning_rate=-1")
    assert value == -1.0
    with pytest.raises(SettingsError, match="Learning rate η is -1.0. It must be above 0"):
        TrainSettings.from_dict({name: value})


@pytest.mark.parametrize("name", list(all_presets()))
def test_every_preset_has_valid_settings(name):
    preset = all_presets()[name]
    settings = preset.train_settings()
    assert settings == TrainSettings.from_dict(preset.settings).validate()
    for key, value in preset.settings.items():
        assert getattr(settings, key) == value
    assert preset.train_settings(epochs=1).epochs == 1


# ----------------------------------------------------------------------------- bounds, declared once

BOUNDED = [spec_field.name for spec_field in dataclasses.fields(TrainSettings) if bound_of(spec_field.name) is not None]


def _just_outside(bound, value, left_out, direction):
    """The nearest value past a bound's end: the end itself when left out, else one step beyond."""
    if left_out:
        return value
    if isinstance(value, int):
        return value + direction
    return math.nextafter(value, direction * math.inf)


def test_every_number_setting_has_a_bound_and_every_text_setting_choices():
    for spec_field in dataclasses.fields(TrainSettings):
        kind = type(spec_field.default)
        if kind in (int, float):
            assert bound_of(spec_field.name) is not None, spec_field.name
            assert bound_of(spec_field.name).contains(spec_field.default), spec_field.name
        elif kind is str:
            assert spec_field.default in choices_of(spec_field.name), spec_field.name


@pytest.mark.parametrize("name", BOUNDED)
def test_a_value_just_outside_each_bound_is_refused_naming_the_field(name):
    bound = bound_of(name)
    below = _just_outside(bound, bound.minimum, bound.above_minimum, -1)
    above = _just_outside(bound, bound.maximum, bound.below_maximum, +1)
    for value in (below, above):
        with pytest.raises(SettingsError) as caught:
            TrainSettings.from_dict({name: value})
        assert caught.value.field_name == name and label(name) in str(caught.value)
        assert bound.interval_text() and not bound.contains(value)


def test_augmentation_settings_use_the_augmentation_bounds():
    for name, bound in AUGMENTATION_BOUNDS.items():
        assert bound_of(name) is bound


@pytest.mark.parametrize("name", list(AUGMENTATION_BOUNDS))
def test_the_ends_of_each_augmentation_bound_agree_with_augmentation(name):
    bound = AUGMENTATION_BOUNDS[name]
    inside = [bound.minimum if not bound.above_minimum else math.nextafter(bound.minimum, math.inf),
              bound.maximum if not bound.below_maximum else math.nextafter(bound.maximum, -math.inf)]
    if name == "shift_pixels":
        inside = [int(bound.minimum), int(bound.maximum)]
    for value in inside:
        settings = TrainSettings.from_dict({name: value})
        Augmentation(**{field: getattr(settings, field) for field in AUGMENTATION_BOUNDS}).validate()
    outside = [_just_outside(bound, bound.minimum, bound.above_minimum, -1), _just_outside(bound, bound.maximum, bound.below_maximum, +1)]
    for value in outside:
        with pytest.raises(SettingsError):
            TrainSettings.from_dict({name: value})
        with pytest.raises(AugmentationError, match=re.escape(label(name))):
            Augmentation(**{name: value}).validate()


def test_a_skew_of_two_is_refused_before_any_run_starts():
    # `--set skew=2` used to pass these checks and then crash inside the run's augmentation.
    with pytest.raises(SettingsError, match="Skew ± is 2.0. It can be at most 1"):
        TrainSettings.from_dict({"skew": 2})
    name, value = parse_assignment("skew=2")
    with pytest.raises(SettingsError) as caught:
        TrainSettings.from_dict({name: value})
    assert caught.value.field_name == "skew"


def test_the_seed_range_is_one_torch_takes():
    import torch

    for seed in (0, MAX_SEED):
        torch.Generator().manual_seed(TrainSettings.from_dict({"seed": seed}).seed)
    with pytest.raises(SettingsError, match="Random seed"):
        TrainSettings.from_dict({"seed": MAX_SEED + 1})


@pytest.mark.parametrize(
    "values, field_name",
    [
        ({1: 3}, None),
        ({("epochs",): 3}, None),
        ({None: 3}, None),
        ({"epochs": [3]}, "epochs"),
        ({"epochs": {"value": 3}}, "epochs"),
        ({"learning_rate": [[[[0.1]]]]}, "learning_rate"),
        ({"dataset": ["mnist"]}, "dataset"),
        ({"full_train": None}, "full_train"),
        ({"epochs": 10**5000}, "epochs"),
        ({"learning_rate": 10**5000}, "learning_rate"),
        ({"epochs": "9" * 5000}, "epochs"),
        ({"learning_rate": "9" * 5000}, "learning_rate"),
        ({"epochs": float("inf")}, "epochs"),
        ({"epochs": "nan"}, "epochs"),
        ({"device": "cuda:x"}, "device"),
        ({"x" * 100_000: 1}, "x" * 100_000),
    ],
    ids=lambda case: shown(case)[:40],
)
def test_junk_gives_a_settings_error_not_a_traceback(values, field_name):
    with pytest.raises(SettingsError) as caught:
        TrainSettings.from_dict(values)
    assert caught.value.field_name == field_name
    assert len(str(caught.value)) < 300, "the message quotes a shortened value"


@pytest.mark.parametrize("name, value", [("epochs", "3"), ("device", 3), ("full_train", 1), ("learning_rate", None)])
def test_validate_refuses_wrong_types_set_directly(name, value):
    settings = TrainSettings()
    setattr(settings, name, value)
    with pytest.raises(SettingsError) as caught:
        settings.validate()
    assert caught.value.field_name == name
