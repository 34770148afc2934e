"""Tests for core.train_form: the form covers every setting within the bounds training accepts,
presets fill it unchanged, dropout edits touch only dropout layers, the augmentation preview
shows what `core.augment` does, and every catalog key the Train and Runs pages build exists."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch

from core.data import augment
from core.jobs.store import STATUSES
from core.training.presets import all_presets
from core.training.presets import get as get_preset
from core.training import optim
from core.training import settings as settings_module
from core.training.settings import OPTIMIZERS, SettingsError, TrainSettings
from core.views import i18n, run_views, train_form

# "loss" has one choice only, so the form does not show it; "include_my_digits" is the page's own checkbox (it shows the count).
FORM_ONLY_ELSEWHERE = {"loss", "include_my_digits"}


def test_the_form_shows_every_setting():
    names = {spec_field.name for spec_field in dataclasses.fields(TrainSettings)}
    assert set(train_form.FIELDS) == names - FORM_ONLY_ELSEWHERE


@pytest.mark.parametrize("preset", list(all_presets()))
def test_presets_fill_the_form_unchanged(preset):
    values = train_form.default_settings(preset)
    assert values == get_preset(preset).train_settings().to_dict()
    for name, form_field in train_form.FIELDS.items():
        assert form_field.coerce(values[name]) == values[name], name


NUMBER_FIELDS = [name for name, form_field in train_form.FIELDS.items() if form_field.kind in ("int", "float")]


@pytest.mark.parametrize("name", NUMBER_FIELDS)
def test_each_number_widget_spans_exactly_the_settings_bound(name):
    form_field, bound = train_form.FIELDS[name], settings_module.bound_of(name)
    assert bound is not None, f"{name} has a number widget but no bound in TrainSettings"
    assert (form_field.minimum, form_field.maximum) == (bound.minimum, bound.maximum)
    assert type(form_field.minimum) is type(form_field.maximum) is type(getattr(TrainSettings(), name))
    # An included end is a valid setting; an end the bound leaves out (a learning rate of 0,
    # momentum 1) is reachable in the widget, and then refused with an error naming the field.
    for end, left_out in ((bound.minimum, bound.above_minimum), (bound.maximum, bound.below_maximum)):
        if left_out:
            with pytest.raises(SettingsError) as caught:
                TrainSettings().with_values(**{name: end})
            assert caught.value.field_name == name
        else:
            assert getattr(TrainSettings().with_values(**{name: end}), name) == end


def test_each_choice_widget_offers_the_settings_choices():
    for name, form_field in train_form.FIELDS.items():
        if form_field.kind == "choice":
            assert form_field.choices == settings_module.choices_of(name)
            for choice in form_field.choices:
                assert getattr(TrainSettings().with_values(**{name: choice}), name) == choice


@pytest.mark.parametrize("optimizer", [name for name in OPTIMIZERS if train_form.FIELDS["momentum"].applies({"optimizer": name})])
def test_the_momentum_the_form_offers_reaches_the_optimizer(optimizer):
    settings = TrainSettings(optimizer=optimizer, momentum=0.37)
    made = optim.make_optimizer(torch.nn.Linear(3, 2), settings)
    assert made.param_groups[0]["momentum"] == 0.37
    if optimizer == "rmsprop":
        assert isinstance(made, torch.optim.RMSprop)


def test_unknown_preset_falls_back_to_the_defaults():
    assert train_form.default_settings("no-such-preset") == TrainSettings().to_dict()
    assert train_form.default_settings(None) == TrainSettings().to_dict()
    assert train_form.book_figure("nielsen-2-conv-pool") == (98.78, 60)
    assert train_form.book_figure("logistic-regression") is None


def test_check_network_reports_parameters_or_the_reason():
    assert train_form.check_network(get_preset("nielsen-2-conv-pool").network, "mnist") == (289_630, "")
    parameters, problem = train_form.check_network({"layers": [{"kind": "conv", "kernel_size": 29}, {"kind": "output"}]}, "mnist")
    assert parameters == 0 and "29" in problem


def test_parse_names_the_field_to_change():
    settings, error = train_form.parse({**TrainSettings().to_dict(), "learning_rate": 0.0})
    assert settings is None and error.field_name == "learning_rate"
    settings, error = train_form.parse(TrainSettings().to_dict())
    assert error is None and settings == TrainSettings()


def test_coerce_clamps_and_converts():
    assert train_form.FIELDS["momentum"].coerce(1.5) == 1.0  # the bound's end; the page then says "below 1"
    assert train_form.FIELDS["momentum"].coerce(-2) == 0.0 and isinstance(train_form.FIELDS["momentum"].coerce(-2), float)
    assert train_form.FIELDS["epochs"].coerce(3.0) == 3 and isinstance(train_form.FIELDS["epochs"].coerce(3.0), int)
    assert train_form.FIELDS["optimizer"].coerce("nonsense") == "sgd"


def test_fields_apply_to_their_optimizer_and_schedule():
    applies = lambda name, **values: train_form.FIELDS[name].applies(values)  # noqa: E731
    assert applies("momentum", optimizer="nesterov") and not applies("momentum", optimizer="adam")
    assert applies("beta2", optimizer="adamw") and not applies("beta2", optimizer="sgd")
    assert applies("gamma", schedule="exponential") and not applies("gamma", schedule="cosine")
    assert applies("elastic_sigma", elastic_alpha=34.0) and not applies("elastic_sigma", elastic_alpha=0.0)


def test_dropout_edits_change_only_dropout_layers():
    network = get_preset("nielsen-7-dropout").network
    layers = train_form.dropout_layers(network)
    assert [index for index, _ in layers] == [4, 6, 8] and all(p == 0.5 for _, p in layers)
    changed = train_form.with_dropout(network, {6: 0.2})
    assert train_form.dropout_layers(changed) == [(4, 0.5), (6, 0.2), (8, 0.5)]
    assert [layer for i, layer in enumerate(changed["layers"]) if i != 6] == [l for i, l in enumerate(network["layers"]) if i != 6]
    assert network["layers"][6]["p"] == 0.5  # the original is left alone
    with pytest.raises(ValueError):
        train_form.with_dropout(network, {0: 0.3})


def test_preview_first_column_is_the_original_and_no_augmentation_changes_nothing(mnist):
    values = TrainSettings().to_dict()
    mosaic = train_form.augmentation_preview("mnist", values, rows=2, copies=3, zoom=1)
    assert mosaic.shape == (2 * 30, 3 * 30) and mosaic.dtype == np.uint8
    original = mnist.validation_images[:2].numpy()
    for row in range(2):
        for column in range(3):
            tile = mosaic[row * 30 + 1 : row * 30 + 29, column * 30 + 1 : column * 30 + 29]
            assert np.array_equal(tile, original[row])


def test_preview_shows_what_augment_preview_returns(mnist):
    values = {**TrainSettings().to_dict(), "shift_pixels": 2, "rotation_degrees": 15.0}
    mosaic = train_form.augmentation_preview("mnist", values, rows=1, copies=4, seed=3, zoom=2)
    expected = augment.preview(mnist.validation_images[:1].float() / 255, train_form.augmentation_of(values), copies=4, seed=3)
    tile = mosaic[2:58:2, 3 * 60 + 2 : 3 * 60 + 58 : 2]  # the last copy, one pixel of each 2×2 block
    assert np.array_equal(tile, (expected[0, 3] * 255).round().byte().numpy())
    assert not np.array_equal(tile, mnist.validation_images[0].numpy())


def test_preview_rejects_impossible_augmentation():
    with pytest.raises(ValueError):
        train_form.augmentation_preview("mnist", {**TrainSettings().to_dict(), "skew": 2.0})


# ----------------------------------------------------------------------------- catalog keys the pages build


def test_keys_the_train_and_runs_pages_build_exist():
    expected = {f"train.section.{section}" for section in train_form.SECTIONS}
    for name, form_field in train_form.FIELDS.items():
        expected |= {f"train.field.{name}", f"train.hint.{name}"}
        expected |= {f"train.choice.{choice}" for choice in form_field.choices}
    expected |= {f"common.status.{status}" for status in STATUSES}
    expected |= {f"train.outcome.{status}" for status in ("failed", "diverged", "interrupted", "cancelled")}
    expected |= {f"runs.scope.{scope}" for scope in ("mine", "everyone")}
    expected |= {f"runs.column.{column}" for column in run_views.TABLE_COLUMNS}
    for language in i18n.LANGUAGES:
        assert not sorted(expected - set(i18n.catalog(language))), language


def test_train_and_runs_texts_are_translated():
    # A Korean entry without one Hangul letter is an English text left behind; names stay as they are.
    hangul = re.compile("[가-힣]")
    same_in_both = ("train.field.beta", "runs.column.id", "train.choice.", "train.run_title", "train.network")
    untranslated = [
        key
        for key, text in i18n.catalog("ko").items()
        if key.startswith(("train.", "runs.", "common.")) and not key.startswith(same_in_both) and not hangul.search(text)
    ]
    assert not untranslated


def test_without_a_network_the_train_page_uses_the_default_preset():
    from core.training.presets import DEFAULT_PRESET, all_presets

    assert train_form.preset_in_use(None, None) == DEFAULT_PRESET
    assert DEFAULT_PRESET in all_presets()


# ----------------------------------------------------------------------------- how long a run will take (issue 8)


def test_flops_per_image_follow_the_layer_formulas():
    from core.model import network as networks

    # Nielsen 2: conv 20 × 5×5 on 1×28×28 → 20×24×24; max-pool; dense 2,880 → 100; output 100 → 10.
    summary = networks.validate(get_preset("nielsen-2-conv-pool").network)
    conv, dense, output = 2 * 5 * 5 * 1 * 20 * 24 * 24, 2 * 20 * 12 * 12 * 100, 2 * 100 * 10
    assert train_form.flops_per_image(summary) == conv + dense + output
    # A second conv layer reads all the first one's channels.
    two = networks.validate([{"kind": "conv", "filters": 4, "kernel_size": 3}, {"kind": "conv", "filters": 8, "kernel_size": 3}, {"kind": "output"}])
    assert train_form.flops_per_image(two) == 2 * 9 * 1 * 4 * 26 * 26 + 2 * 9 * 4 * 8 * 24 * 24 + 2 * 8 * 24 * 24 * 10
    assert train_form.network_flops({"layers": [{"kind": "conv", "kernel_size": 40}, {"kind": "output"}]}) == 0


def test_the_estimate_uses_finished_runs_of_similar_cost():
    values = {**train_form.default_settings(None), "epochs": 2, "batch_size": 50, "train_subset": 10_000}
    flops = 1_000_000
    # A finished run of the same cost trained 5,000 images/s: 3 GFLOP per 1,000 images → 15 GFLOP/s.
    samples = [train_form.SpeedSample(flops, 64, 5_000.0), train_form.SpeedSample(1_000 * flops, 64, 1.0)]
    estimate = train_form.estimate_seconds(flops, values, samples, matmul_rate=1.0)
    rate = 5_000.0 * 3 * flops
    expected = 2 * 10_000 * 3 * flops / rate + 2 * train_form.EVALUATION_IMAGES * flops / rate
    assert estimate.source == "runs" and estimate.seconds == pytest.approx(expected)
    assert not estimate.long


def test_without_similar_runs_the_estimate_falls_back_on_the_matmul_rate_and_warns_when_long():
    values = train_form.default_settings("nielsen-2-conv-pool")  # 60 epochs of 50,000 images, mini-batch 10
    flops = train_form.network_flops(get_preset("nielsen-2-conv-pool").network)
    far_away = [train_form.SpeedSample(flops * 100, 10, 10.0), train_form.SpeedSample(flops, 1_000, 10.0)]
    estimate = train_form.estimate_seconds(flops, values, far_away, matmul_rate=10e9)
    steps = 60 * 50_000 // 10
    rate = 10e9 * train_form.MATMUL_EFFICIENCY
    expected = steps * (10 * 3 * flops / rate + train_form.STEP_OVERHEAD_SECONDS) + 60 * train_form.EVALUATION_IMAGES * flops / rate
    assert estimate.source == "matmul" and estimate.seconds == pytest.approx(expected)
    assert estimate.long, "a 60-epoch mini-batch-10 run is not for a lesson"
    short = train_form.estimate_seconds(flops, {**values, **train_form.SHORT_SETTINGS}, far_away, matmul_rate=10e9)
    assert not short.long and short.seconds < estimate.seconds / 50


def test_max_steps_caps_the_estimate():
    values = {**train_form.default_settings(None), "epochs": 10, "batch_size": 100, "max_steps": 20}
    full = train_form.estimate_seconds(1_000, {**values, "max_steps": 0}, [], 1e9)
    capped = train_form.estimate_seconds(1_000, values, [], 1e9)
    assert capped.seconds < full.seconds / 10


def test_speed_samples_come_from_the_runs_stored_metrics(store):
    network = get_preset("nielsen-1-shallow").network
    run_id = store.create(network, {"batch_size": 32}, status="succeeded")
    for epoch, speed in ((1, 900.0), (2, 1100.0)):
        row = {name: 0.5 for name in ("train_loss", "train_accuracy", "validation_loss", "validation_accuracy", "test_accuracy", "learning_rate")}
        store.record_epoch(run_id, {**row, "epoch": epoch, "seconds": 5.0, "images_per_second": speed})
    run = store.get(run_id)
    (sample,) = train_form.speed_samples([run])
    assert sample == train_form.SpeedSample(train_form.network_flops(network), 32, 1000.0)
    run.metrics = []
    assert train_form.speed_samples([run]) == []
