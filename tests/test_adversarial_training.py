"""Tests for adversarial training (core/training/adversarial.py and its use by the engine, the store and the runner).

Each checks an invariant of the perturb hook (ε-ball, [0, 1], ε = 0 at the start of the
warm-up), the mode decision it documents (the attack's forward passes run in eval mode, so
batch-norm statistics and parameter gradients stay as they were, and dropout adds no noise),
or the record a run keeps (robust accuracy per epoch, in the engine's history and the store).
The last test would fail if adversarial training did nothing: from the same start, a short
FGSM-RS run withstands PGD better than its clean-trained twin.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn
from torch.nn import functional

from core.attacks import methods
from core.errors import render
from core.jobs import runner
from core.training import adversarial, presets
from core.training.loop import Callbacks, train
from core.training.settings import SettingsError, TrainSettings, bound_of, choices_of, parse_assignment

FAST = presets.get("fast")
DENSE_NET = {"layers": [{"kind": "dense", "units": 128, "activation": "relu", "init": "he"}, {"kind": "output"}], "normalize": True}


@pytest.fixture(scope="module")
def tiny_mnist(mnist):
    """Real MNIST with 1,000 validation and 1,000 test images, so each short run's epoch-end evaluation is quick."""
    return dataclasses.replace(
        mnist,
        validation_images=mnist.validation_images[:1000],
        validation_labels=mnist.validation_labels[:1000],
        test_images=mnist.test_images[:1000],
        test_labels=mnist.test_labels[:1000],
    )


@pytest.fixture(scope="module")
def batch(mnist):
    """64 test images as float (64, 1, 28, 28) in [0, 1], with their labels."""
    return mnist.test_images[:64].unsqueeze(1).float() / 255.0, mnist.test_labels[:64].long()


def fgsm_settings(**values) -> TrainSettings:
    return TrainSettings(device="cpu", adversarial="fgsm", adversarial_epsilon=0.3, **values)


# ----------------------------------------------------------------------------- settings


def test_the_defaults_train_as_before():
    settings = TrainSettings()
    assert settings.adversarial == "none" and settings.robust_eval_images == 0
    assert adversarial.make_perturb(settings) is None
    assert choices_of("adversarial") == ("none", "fgsm", "pgd")
    assert bound_of("adversarial_epsilon").contains(1.0) and not bound_of("adversarial_epsilon").contains(1.01)


@pytest.mark.parametrize("epsilon", [-0.1, 1.5])
def test_an_epsilon_outside_0_to_1_is_refused_in_both_languages(epsilon):
    with pytest.raises(SettingsError) as caught:
        TrainSettings.from_dict({"adversarial": "fgsm", "adversarial_epsilon": epsilon})
    error = caught.value
    assert error.code == "settings.out_of_range" and error.field_name == "adversarial_epsilon"
    english, korean = render(error.code, error.params, "en"), render(error.code, error.params, "ko")
    assert "Attack size ε" in english and "공격 크기 ε" in korean  # the form's name for the field, not its code name


def test_an_attack_of_size_0_is_refused_with_its_own_message():
    for values in ({"adversarial": "pgd", "adversarial_epsilon": 0.0}, {"robust_eval_images": 100, "adversarial_epsilon": 0}):
        with pytest.raises(SettingsError) as caught:
            TrainSettings.from_dict(values)
        assert caught.value.code == "settings.adversarial_without_epsilon" and caught.value.field_name == "adversarial_epsilon"
        for language in ("en", "ko"):
            text = render(caught.value.code, caught.value.params, language)
            assert "{" not in text and "adversarial_without_epsilon" not in text
    assert TrainSettings.from_dict({"adversarial": "none", "adversarial_epsilon": 0.0}).adversarial_epsilon == 0.0


def test_the_command_line_sets_the_adversarial_settings():
    values = dict(parse_assignment(text) for text in ("adversarial=pgd", "adversarial_epsilon=0.1", "adversarial_steps=7"))
    assert values == {"adversarial": "pgd", "adversarial_epsilon": 0.1, "adversarial_steps": 7}
    assert TrainSettings().with_values(**values).adversarial_steps == 7
    with pytest.raises(SettingsError) as caught:
        TrainSettings.from_dict({"adversarial": "fgsm-rs"})
    assert caught.value.code == "settings.not_choice"


def test_the_robust_preset_loads_and_validates():
    preset = presets.get("robust")
    settings = preset.train_settings()
    assert settings.adversarial == "fgsm" and settings.adversarial_epsilon == pytest.approx(0.3)
    assert settings.robust_eval_images > 0 and settings.adversarial_warmup_epochs > 0
    assert "%" in preset.description and "min" in preset.description  # it states what it reaches and how long it takes


# ----------------------------------------------------------------------------- the hook


def test_epsilon_ramps_over_the_warm_up_and_step_sizes_follow_their_papers():
    settings = fgsm_settings(adversarial_warmup_epochs=2.0)
    assert [adversarial.epsilon_at(settings, done) for done in (0.0, 1.0, 2.0, 5.0)] == pytest.approx([0.0, 0.15, 0.3, 0.3])
    assert adversarial.step_size(settings, 0.2) == pytest.approx(1.25 * 0.2)  # Wong et al. 2020
    pgd = fgsm_settings().with_values(adversarial="pgd", adversarial_steps=10)
    assert adversarial.step_size(pgd, 0.3) == pytest.approx(methods.default_step_size(0.3, 10))
    assert adversarial.step_size(pgd.with_values(adversarial_step_size=0.01), 0.3) == 0.01


@pytest.mark.parametrize("kind", ["fgsm", "pgd"])
def test_the_hook_stays_in_the_epsilon_ball_and_in_0_1_and_raises_the_loss(trained_conv, batch, kind):
    images, labels = batch
    model = copy.deepcopy(trained_conv).train()
    settings = fgsm_settings(adversarial_steps=3).with_values(adversarial=kind, adversarial_epsilon=0.2)
    perturb = adversarial.make_perturb(settings, torch.Generator().manual_seed(0))
    attacked = perturb(model, images, labels, 1.0)
    assert attacked.shape == images.shape
    assert (attacked - images).abs().max() <= 0.2 + 1e-6
    assert attacked.min() >= 0 and attacked.max() <= 1
    assert (attacked - images).abs().max() > 0.1  # it did move pixels
    with methods.evaluating(model), torch.no_grad():
        assert functional.cross_entropy(model(attacked), labels) > functional.cross_entropy(model(images), labels) + 0.5
    assert model.training  # the train mode is given back for the training step


def test_at_the_start_of_the_warm_up_the_hook_changes_nothing(trained_conv, batch):
    images, labels = batch
    perturb = adversarial.make_perturb(fgsm_settings(adversarial_warmup_epochs=1.0))
    assert torch.equal(perturb(trained_conv, images, labels, 0.0), images)
    assert not torch.equal(perturb(trained_conv, images, labels, 0.5), images)


def batch_norm_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 26 * 26, 10)
    ).train()


def test_the_attack_leaves_batch_norm_statistics_and_parameter_gradients_alone(batch):
    images, labels = batch
    model = batch_norm_net()
    functional.cross_entropy(model(images), labels).backward()  # some gradients, as between two steps
    gradients = [parameter.grad.clone() for parameter in model.parameters()]
    statistics = {name: value.clone() for name, value in model.state_dict().items() if "running" in name or "num_batches" in name}
    perturb = adversarial.make_perturb(fgsm_settings(adversarial_steps=5).with_values(adversarial="pgd"), torch.Generator().manual_seed(0))
    perturb(model, images, labels, 1.0)
    assert all(torch.equal(model.state_dict()[name], value) for name, value in statistics.items())
    assert all(torch.equal(parameter.grad, before) for parameter, before in zip(model.parameters(), gradients))
    assert model.training
    model(images)  # while one forward pass in train mode does move them: the check above can fail
    assert not torch.equal(model.state_dict()["1.running_mean"], statistics["1.running_mean"])


def test_dropout_is_off_while_the_attack_is_crafted(batch):
    images, labels = batch
    model = batch_norm_net()
    settings = fgsm_settings(adversarial_steps=3).with_values(adversarial="pgd")
    first = adversarial.make_perturb(settings, torch.Generator().manual_seed(1))(model, images, labels, 1.0)
    second = adversarial.make_perturb(settings, torch.Generator().manual_seed(1))(model, images, labels, 1.0)
    assert torch.equal(first, second)  # the same random start gives the same attack: no dropout mask drawn in between


class ModeRecorder(Callbacks):
    """Records the model's mode at every forward pass of the first two training steps."""

    def __init__(self):
        self.modes: list[bool] = []

    def on_train_start(self, state) -> None:
        self.hook = state.model.register_forward_pre_hook(lambda module, inputs: self.modes.append(module.training))

    def on_step(self, progress) -> None:
        if progress.global_step == 2:
            self.hook.remove()


def test_the_engine_attacks_in_eval_mode_and_trains_in_train_mode(tiny_mnist):
    recorder = ModeRecorder()
    train(FAST.network, fgsm_settings(epochs=1, max_steps=2, train_subset=256, batch_size=64), tiny_mnist, recorder)
    assert recorder.modes == [False, True, False, True]  # per step: FGSM's forward pass (eval), then the training one (train)


# ----------------------------------------------------------------------------- what a run records


def test_a_short_adversarial_run_records_robust_accuracy(tiny_mnist):
    settings = fgsm_settings(epochs=2, max_steps=6, train_subset=192, batch_size=64, robust_eval_images=100, robust_eval_steps=2)
    result = train(FAST.network, settings, tiny_mnist)
    assert result.status == "succeeded", result.message
    assert len(result.history) == 2 and all(0.0 <= metrics.robust_accuracy <= 1.0 for metrics in result.history)
    # The figure is the network's own: measured again on the returned (best-validation) weights, it is
    # their epoch's, give or take an image whose attack a different memory layout rounds differently.
    best = result.history[result.best_epoch - 1]
    again = adversarial.robust_accuracy(result.model, _test_data(tiny_mnist), settings)
    assert best.robust_accuracy == pytest.approx(again, abs=0.03)
    plain = train(FAST.network, TrainSettings(device="cpu", epochs=1, max_steps=2, train_subset=128), tiny_mnist)
    assert plain.history[0].robust_accuracy is None


def _test_data(splits):
    from core.training.device import to_device

    return to_device(splits.test_images, splits.test_labels, torch.device("cpu"))


def test_the_runner_stores_robust_accuracy_per_epoch(store):
    settings = fgsm_settings(epochs=1, max_steps=3, train_subset=192, batch_size=64, robust_eval_images=50, robust_eval_steps=2)
    run_id = store.create(FAST.network, settings.to_dict())
    assert runner.execute(store, run_id) == "succeeded"
    run = store.get(run_id)
    assert run.settings["adversarial"] == "fgsm"
    assert [row["epoch"] for row in run.metrics] == [1]
    assert 0.0 <= run.metrics[0]["robust_accuracy"] <= 1.0


def test_fgsm_training_withstands_pgd_better_than_its_clean_twin(tiny_mnist):
    """Same network, seed and steps; only the perturb hook differs. A dense net and a small ε, so 60 steps tell them apart.

    Measured: PGD-5 accuracy at ε = 0.1 on 200 test images about 10% for the clean twin and about 50%
    for the FGSM-RS one, both reading 78-88% of the clean test images.
    """
    common = dict(
        device="cpu", epochs=1, max_steps=60, batch_size=64, optimizer="adam", learning_rate=0.003,
        adversarial_epsilon=0.1, robust_eval_images=200, robust_eval_steps=5, eval_batch_size=1000,
    )  # fmt: skip
    clean = train(DENSE_NET, TrainSettings(**common), tiny_mnist).history[-1]
    robust = train(DENSE_NET, TrainSettings(adversarial="fgsm", **common), tiny_mnist).history[-1]
    assert robust.robust_accuracy > clean.robust_accuracy + 0.2, (robust.robust_accuracy, clean.robust_accuracy)
    assert robust.test_accuracy > 0.7  # and it still reads digits
