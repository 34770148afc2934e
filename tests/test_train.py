"""Tests for core/train.py on real MNIST, on the CPU.

Each test checks the engine against an authority (network3.py's cost and update rule, the
documented schedule formulas, an uninterrupted run) or an invariant (a fixed batch can be
fitted, a seed repeats a run, finished epochs survive a stop). Runs are kept small, with
`train_subset` and `max_steps`, except the one-epoch accuracy check, which is an
acceptance criterion and uses the whole 50,000-image training set.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from core.jobs import runner
from core.model import network as networks
from core.training import checkpoint
from core.training.device import to_device
from core.training.evaluation import evaluate
from core.training.loop import Callbacks, TrainResult, train
from core.training.losses import DIVERGED_LOSS
from core.training.optim import penalty
from core.training.settings import OPTIMIZERS, SCHEDULES, TrainSettings

SMALL_NET = [{"kind": "dense", "units": 30, "activation": "relu"}, {"kind": "output"}]
# Leaky ReLU keeps every unit alive, so a huge learning rate grows the weights geometrically
# until the loss overflows to inf. (Plain ReLU units die instead and the loss, though huge,
# stays finite.)
BLOWUP_NET = [{"kind": "dense", "units": 30, "activation": "leaky_relu", "init": "he"}, {"kind": "output", "init": "he"}]
TIMING_FIELDS = ("seconds", "images_per_second", "ended_at")


def cpu_settings(**values) -> TrainSettings:
    return TrainSettings(device="cpu", **values)


def comparable(history) -> list[dict]:
    """Epoch metrics without the wall-clock fields, which differ between identical runs."""
    return [{name: value for name, value in metrics.to_dict().items() if name not in TIMING_FIELDS} for metrics in history]


class StepRecorder(Callbacks):
    """Keeps every step's loss and every epoch's end."""

    def __init__(self):
        self.losses: list[float] = []
        self.epochs_ended: list[int] = []

    def on_step(self, progress) -> None:
        self.losses.append(progress.loss)

    def on_epoch_end(self, metrics, state, improved) -> None:
        self.epochs_ended.append(metrics.epoch)


def assert_finished(result: TrainResult) -> None:
    assert result.status == "succeeded", result.message
    assert all(math.isfinite(metrics.train_loss) for metrics in result.history)


@pytest.fixture(scope="module")
def small_mnist(mnist):
    """Real MNIST with 2,000 validation and 2,000 test images, so the many short runs here
    spend their time training rather than evaluating after every epoch."""
    return dataclasses.replace(
        mnist,
        validation_images=mnist.validation_images[:2000],
        validation_labels=mnist.validation_labels[:2000],
        test_images=mnist.test_images[:2000],
        test_labels=mnist.test_labels[:2000],
    )


# ----------------------------------------------------------------------------- learning


def test_one_epoch_on_the_full_training_set_reaches_97_percent(mnist):
    # Acceptance criterion. A 300-unit ReLU layer with SGD + momentum and a one-cycle schedule
    # reached 97.2-97.5% validation accuracy after one epoch for seeds 0-5 on this machine.
    network = [{"kind": "dense", "units": 300, "activation": "relu"}, {"kind": "output"}]
    settings = cpu_settings(epochs=1, batch_size=32, optimizer="momentum", learning_rate=0.05, schedule="onecycle")
    result = train(network, settings, mnist)
    assert_finished(result)
    assert len(result.history) == 1
    assert result.history[0].validation_accuracy >= 0.97
    assert result.history[0].test_accuracy >= 0.96


def test_loss_falls_on_a_fixed_batch(small_mnist):
    # One batch of 256 images, 50 steps: a net that can learn must nearly memorise it.
    settings = cpu_settings(epochs=50, batch_size=256, train_subset=256, optimizer="adam", learning_rate=0.003)
    recorder = StepRecorder()
    result = train(SMALL_NET, settings, small_mnist, recorder)
    assert_finished(result)
    assert len(recorder.losses) == 50
    assert recorder.losses[0] > 1.5  # about ln 10 at the start
    assert recorder.losses[-1] < 0.1 * recorder.losses[0]
    assert result.history[-1].train_accuracy > 0.95


# ----------------------------------------------------------------------------- divergence


class RaiseRateAfterFirstEpoch(Callbacks):
    """Sets the learning rate to 100 once epoch 1 has finished, so epoch 2 blows up."""

    def on_epoch_end(self, metrics, state, improved) -> None:
        super().on_epoch_end(metrics, state, improved)
        if metrics.epoch == 1:
            for group in state.optimizer.param_groups:
                group["lr"] = 100.0


def test_learning_rate_100_diverges_with_a_message(small_mnist):
    settings = cpu_settings(epochs=3, batch_size=64, train_subset=2048, optimizer="sgd", learning_rate=100.0)
    recorder = StepRecorder()
    result = train(BLOWUP_NET, settings, small_mnist, recorder)
    assert result.status == "diverged"
    assert "lower the learning rate" in result.message.lower()
    assert "e.g. to 10" in result.message  # a tenth of the rate in force
    assert result.history == [] and result.best_epoch == 0
    # It stopped at the first blown-up loss instead of finishing the epoch, and says how big it got.
    assert len(recorder.losses) < 2048 // 64
    reported = float(result.message.split("The loss became ")[1].split(" at epoch")[0])
    assert not math.isfinite(reported) or reported > DIVERGED_LOSS


def test_a_diverged_one_cycle_run_names_the_rate_the_learner_set(small_mnist):
    # One-cycle starts at a twenty-fifth of the chosen rate (4 for 100): the advice must name 100.
    settings = cpu_settings(epochs=2, batch_size=64, train_subset=2048, optimizer="sgd", learning_rate=100.0, schedule="onecycle")
    result = train(BLOWUP_NET, settings, small_mnist)
    assert result.status == "diverged"
    assert "Lower the learning rate (you set 100), e.g. to 10." in result.message


def test_a_run_that_diverges_in_epoch_2_keeps_epoch_1(small_mnist):
    settings = cpu_settings(epochs=3, batch_size=64, train_subset=2048, optimizer="sgd", learning_rate=0.1)
    result = train(BLOWUP_NET, settings, small_mnist, RaiseRateAfterFirstEpoch())
    assert result.status == "diverged"
    assert "lower the learning rate" in result.message.lower()
    assert "epoch 2" in result.message
    assert [metrics.epoch for metrics in result.history] == [1]
    assert result.best_epoch == 1
    assert result.history[0].validation_accuracy > 0.7  # a sane epoch, not a blown-up one
    assert result.test_accuracy == result.history[0].test_accuracy
    # The returned model is epoch 1's, not the blown-up one.
    _, accuracy = evaluate(result.model, to_device(small_mnist.test_images, small_mnist.test_labels, torch.device("cpu")))
    assert accuracy == result.history[0].test_accuracy


def test_runner_marks_a_diverged_run_and_keeps_its_metrics(store, monkeypatch):
    class DivergingStoreCallbacks(RaiseRateAfterFirstEpoch, runner.StoreCallbacks):
        pass

    monkeypatch.setattr(runner, "StoreCallbacks", DivergingStoreCallbacks)
    settings = cpu_settings(epochs=3, batch_size=64, train_subset=2048, optimizer="sgd", learning_rate=0.1)
    run_id = store.create(BLOWUP_NET, settings.to_dict())
    assert runner.execute(store, run_id) == "diverged"
    run = store.get(run_id)
    assert run.status == "diverged"
    assert "lower the learning rate" in run.message.lower()
    assert [row["epoch"] for row in run.metrics] == [1]
    assert run.epochs_done == 1 and run.best_epoch == 1
    assert run.test_accuracy == run.metrics[0]["test_accuracy"]
    assert run.finished_at is not None and run.worker_pid is None
    assert store.best_checkpoint_path(run_id).is_file()


# ----------------------------------------------------------------------------- optimisers and schedules


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_moves_the_weights(small_mnist, optimizer):
    settings = cpu_settings(epochs=1, batch_size=100, train_subset=500, max_steps=3, optimizer=optimizer, learning_rate=0.01, seed=1)
    recorder = StepRecorder()
    result = train(SMALL_NET, settings, small_mnist, recorder)
    assert_finished(result)
    assert len(recorder.losses) == 3 and all(math.isfinite(loss) for loss in recorder.losses)
    initial = networks.build(SMALL_NET, seed=1)  # train() seeds the same way before building
    trained = result.model.state_dict()
    for name, tensor in initial.state_dict().items():
        if name.endswith("weight"):
            assert not torch.equal(tensor, trained[name]), f"{optimizer} did not change {name}"


def test_every_optimizer_takes_its_own_path(small_mnist):
    # From the same start on the same batches, no two optimisers may end on the same weights:
    # a name wired to another optimiser (nesterov to plain momentum, adamw to adam) shows here.
    final_weights = {}
    for optimizer in OPTIMIZERS:
        settings = cpu_settings(epochs=1, batch_size=100, train_subset=500, max_steps=3, optimizer=optimizer, learning_rate=0.01, seed=1)
        result = train(SMALL_NET, settings, small_mnist)
        final_weights[optimizer] = torch.cat([parameter.detach().flatten() for parameter in result.model.parameters()])
    for index, first in enumerate(OPTIMIZERS):
        for second in OPTIMIZERS[index + 1 :]:
            assert not torch.equal(final_weights[first], final_weights[second]), f"{first} and {second} took the same steps"


def expected_rates(settings: TrainSettings, validation_accuracies: list[float]) -> list[float]:
    """The rate recorded after each epoch (the rate in force for the next one), from the schedule's definition."""
    rate, epochs = settings.learning_rate, len(validation_accuracies)
    if settings.schedule == "constant":
        return [rate] * epochs
    if settings.schedule == "step":
        return [rate * settings.gamma ** (epoch // settings.step_epochs) for epoch in range(1, epochs + 1)]
    if settings.schedule == "exponential":
        return [rate * settings.gamma**epoch for epoch in range(1, epochs + 1)]
    if settings.schedule == "cosine":
        return [rate * (1 + math.cos(math.pi * epoch / settings.epochs)) / 2 for epoch in range(1, epochs + 1)]
    if settings.schedule == "halve_on_plateau":
        # Nielsen ch. 3: halve η once `plateau_patience` epochs in a row brought no better
        # validation accuracy; the count starts again after each halving.
        rates, best, without_improvement = [], -1.0, 0
        for accuracy in validation_accuracies:
            if accuracy > best:
                best, without_improvement = accuracy, 0
            else:
                without_improvement += 1
            if without_improvement == settings.plateau_patience:
                rate, without_improvement = rate / 2, 0
            rates.append(rate)
        return rates
    raise AssertionError(f"no expectation for {settings.schedule}")


PER_EPOCH_SCHEDULES = {
    "constant": dict(),
    "step": dict(step_epochs=2, gamma=0.5),
    "exponential": dict(gamma=0.7),
    "cosine": dict(),
    "halve_on_plateau": dict(plateau_patience=2),
}


@pytest.mark.parametrize("schedule", [name for name in SCHEDULES if name != "onecycle"])
def test_per_epoch_schedules_follow_their_formula(small_mnist, schedule):
    # SGD at 0.5 on 500 images makes validation accuracy go up and down, so the plateau
    # rule both halves (twice) and sees improvements in between.
    settings = cpu_settings(
        epochs=10, batch_size=100, train_subset=500, optimizer="sgd", learning_rate=0.5, schedule=schedule, **PER_EPOCH_SCHEDULES[schedule]
    )
    result = train(SMALL_NET, settings, small_mnist)
    assert_finished(result)
    assert len(result.history) == 10
    expected = expected_rates(settings, [metrics.validation_accuracy for metrics in result.history])
    assert [metrics.learning_rate for metrics in result.history] == pytest.approx(expected, rel=1e-9)
    if schedule == "halve_on_plateau":
        assert len(set(expected)) >= 3, "the run must halve at least twice for this check to mean something"


def test_onecycle_steps_once_per_batch(small_mnist):
    # The authority is PyTorch's OneCycleLR (Smith & Topin 2018) stepped once per batch: after
    # the last batch the rate sits at its floor, max / 25 / 10^4.
    settings = cpu_settings(epochs=3, batch_size=100, train_subset=500, optimizer="adam", learning_rate=0.01, schedule="onecycle")
    result = train(SMALL_NET, settings, small_mnist)
    assert_finished(result)
    total_steps = 3 * 5
    reference_optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.01)
    reference = torch.optim.lr_scheduler.OneCycleLR(reference_optimizer, max_lr=0.01, total_steps=total_steps)
    expected = []
    for step in range(1, total_steps):
        reference_optimizer.step()
        reference.step()
        if step % 5 == 0:
            expected.append(reference_optimizer.param_groups[0]["lr"])
    expected.append(reference_optimizer.param_groups[0]["lr"])  # no step after the last batch
    assert [metrics.learning_rate for metrics in result.history] == pytest.approx(expected, rel=1e-9)
    assert expected[-1] == pytest.approx(0.01 / 25 / 1e4, rel=1e-9)


# ----------------------------------------------------------------------------- regularisation


REGULARISED_NET = {
    "layers": [
        {"kind": "conv", "filters": 2, "kernel_size": 3, "activation": "relu"},
        {"kind": "batchnorm"},
        {"kind": "maxpool", "size": 2},
        {"kind": "dense", "units": 5, "activation": "relu"},
        {"kind": "output"},
    ]
}


def weights_by_hand(model: torch.nn.Module) -> list[torch.Tensor]:
    """network3.py's `layer.w` of every layer: the 2-D and 4-D weight tensors (no biases, no batch-norm scales)."""
    return [parameter for name, parameter in model.named_parameters() if name.endswith("weight") and parameter.dim() >= 2]


def test_l2_and_l1_penalties_match_network3():
    model = networks.build(REGULARISED_NET, seed=0)
    weights = weights_by_hand(model)
    assert len(weights) == 3  # conv, dense and output; the batch-norm scale is not a weight here
    squares = sum(float((weight.detach().double() ** 2).sum()) for weight in weights)
    absolutes = sum(float(weight.detach().double().abs().sum()) for weight in weights)
    batches = 7
    # network3.py: cost + 0.5*lmbda*l2_norm_squared/num_training_batches
    l2_only = penalty(model, TrainSettings(l2=0.3), batches)
    assert float(l2_only.detach()) == pytest.approx(0.5 * 0.3 * squares / batches, rel=1e-6)
    l1_only = penalty(model, TrainSettings(l1=0.2), batches)
    assert float(l1_only.detach()) == pytest.approx(0.2 * absolutes / batches, rel=1e-6)
    both = penalty(model, TrainSettings(l2=0.3, l1=0.2), batches)
    assert float(both.detach()) == pytest.approx(float(l2_only.detach()) + float(l1_only.detach()), rel=1e-6)
    assert penalty(model, TrainSettings(), batches) == 0.0
    # Biases and batch-norm parameters get no gradient from the penalty.
    l2_only.backward()
    for name, parameter in model.named_parameters():
        if not any(parameter is weight for weight in weights):
            assert parameter.grad is None or torch.count_nonzero(parameter.grad) == 0, name


def test_one_sgd_step_with_l2_matches_the_update_rule(small_mnist):
    # Eight copies of one image: whatever order the loop draws, its first batch of four is the
    # same, and an epoch has two batches, so the penalty is divided by 2.
    image, label = small_mnist.train_images[:1], small_mnist.train_labels[:1]
    splits = dataclasses.replace(small_mnist, train_images=image.repeat(8, 1, 1), train_labels=label.repeat(8))
    network = [{"kind": "dense", "units": 10, "activation": "sigmoid"}, {"kind": "output"}]
    rate, l2, batches = 0.5, 4.0, 2
    settings = cpu_settings(epochs=1, batch_size=4, max_steps=1, optimizer="sgd", learning_rate=rate, l2=l2, seed=5)
    result = train(network, settings, splits)
    assert_finished(result)

    model = networks.build(network, seed=5)  # the weights train() starts from
    images = image.repeat(4, 1, 1).unsqueeze(1).float() / 255.0
    loss = torch.nn.functional.cross_entropy(model(images), label.repeat(4))
    parameters = dict(model.named_parameters())
    gradients = dict(zip(parameters, torch.autograd.grad(loss, list(parameters.values()))))
    trained = dict(result.model.named_parameters())
    for name, parameter in parameters.items():
        decay = l2 * parameter / batches if name.endswith("weight") else 0.0  # w − η(∂C/∂w + λw/n)
        expected = parameter - rate * (gradients[name] + decay)
        assert not torch.allclose(expected, parameter), f"{name} should move in this step"
        torch.testing.assert_close(trained[name], expected, rtol=1e-5, atol=1e-6, msg=name)


# ----------------------------------------------------------------------------- repeatability and stopping


def test_same_seed_same_history_and_a_different_seed_differs(small_mnist):
    network = [{"kind": "dense", "units": 30, "activation": "relu"}, {"kind": "dropout", "p": 0.3}, {"kind": "output"}]
    settings = cpu_settings(epochs=2, batch_size=100, train_subset=1000, optimizer="adam", learning_rate=0.003, seed=7)
    first = train(network, settings, small_mnist)
    second = train(network, settings, small_mnist)
    other = train(network, settings.with_values(seed=8), small_mnist)
    assert comparable(first.history) == comparable(second.history)
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name])
    assert other.history[0].train_loss != first.history[0].train_loss
    assert comparable(other.history) != comparable(first.history)


def test_max_steps_stops_after_exactly_that_many_steps(small_mnist):
    settings = cpu_settings(epochs=5, batch_size=100, train_subset=2000, max_steps=7)  # 20 steps an epoch
    recorder = StepRecorder()
    result = train(SMALL_NET, settings, small_mnist, recorder)
    assert_finished(result)
    assert len(recorder.losses) == 7
    assert recorder.epochs_ended == [1]
    assert len(result.history) == 1 and result.best_epoch == 1


def test_should_stop_cancels_and_keeps_finished_epochs(small_mnist):
    class StopAfter(StepRecorder):
        def should_stop(self) -> bool:
            return len(self.losses) >= 13

    settings = cpu_settings(epochs=5, batch_size=100, train_subset=1000)  # 10 steps an epoch
    callbacks = StopAfter()
    result = train(SMALL_NET, settings, small_mnist, callbacks)
    assert result.status == "cancelled"
    assert len(callbacks.losses) == 13
    assert [metrics.epoch for metrics in result.history] == [1]
    assert "1 finished epoch" in result.message
    assert result.best_epoch == 1


def test_early_stopping_stops_after_patience_epochs_without_improvement(small_mnist):
    patience = 2
    settings = cpu_settings(
        epochs=20, batch_size=100, train_subset=500, optimizer="momentum", learning_rate=0.2, early_stopping_patience=patience
    )
    result = train(SMALL_NET, settings, small_mnist)
    assert_finished(result)
    accuracies = [metrics.validation_accuracy for metrics in result.history]
    assert len(accuracies) < 20
    assert "stopped early" in result.message.lower()
    # The last `patience` epochs brought nothing better, and no earlier stretch was that long.
    assert result.best_epoch == len(accuracies) - patience
    assert max(accuracies[-patience:]) <= accuracies[result.best_epoch - 1]
    best_so_far, without_improvement = -1.0, 0
    for accuracy in accuracies[:-1]:
        without_improvement = 0 if accuracy > best_so_far else without_improvement + 1
        best_so_far = max(best_so_far, accuracy)
        assert without_improvement < patience


def test_test_accuracy_is_taken_at_the_best_validation_epoch(small_mnist):
    settings = cpu_settings(epochs=10, batch_size=100, train_subset=500, optimizer="momentum", learning_rate=0.2)
    result = train(SMALL_NET, settings, small_mnist)
    assert_finished(result)
    accuracies = [metrics.validation_accuracy for metrics in result.history]
    best_epoch = accuracies.index(max(accuracies)) + 1
    assert best_epoch < len(accuracies), "the best epoch must not be the last for this check to mean something"
    best = result.history[best_epoch - 1]
    assert result.best_epoch == best_epoch
    assert result.best_validation_accuracy == best.validation_accuracy
    assert result.test_accuracy == best.test_accuracy
    assert result.test_accuracy != result.history[-1].test_accuracy
    # The returned model holds the best epoch's weights.
    _, accuracy = evaluate(result.model, to_device(small_mnist.test_images, small_mnist.test_labels, torch.device("cpu")))
    assert accuracy == best.test_accuracy


# ----------------------------------------------------------------------------- resume and augmentation


def test_resuming_after_epoch_1_reproduces_the_uninterrupted_run(small_mnist, tmp_path):
    # Dropout draws from the global RNG, augmentation and shuffling from the loop's generator,
    # Adam keeps moments and one-cycle counts steps: the resume state must carry them all.
    network = [{"kind": "dense", "units": 30, "activation": "relu"}, {"kind": "dropout", "p": 0.3}, {"kind": "output"}]
    settings = cpu_settings(
        epochs=2, batch_size=100, train_subset=1000, optimizer="adam", learning_rate=0.003, schedule="onecycle", shift_pixels=1, seed=3
    )
    state_path = tmp_path / "state.pt"

    class SaveAfterEpoch1(Callbacks):
        def on_epoch_end(self, metrics, state, improved) -> None:
            if metrics.epoch == 1:  # written to disk at once, as the runner does
                checkpoint.save_resume_state(state_path, state.state_dict())

    uninterrupted = train(network, settings, small_mnist, SaveAfterEpoch1())
    resumed_state = checkpoint.load_resume_state(state_path)
    recorder = StepRecorder()
    resumed = train(network, settings, small_mnist, recorder, resume_state=resumed_state)
    assert_finished(resumed)
    assert len(recorder.losses) == 10  # only epoch 2 ran again
    assert comparable(resumed.history) == comparable(uninterrupted.history)
    for name, tensor in uninterrupted.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_shift_augmentation_runs_and_changes_the_trajectory(small_mnist):
    settings = cpu_settings(epochs=1, batch_size=100, train_subset=1000, optimizer="adam", learning_rate=0.003, seed=2)
    plain, shifted = StepRecorder(), StepRecorder()
    assert_finished(train(SMALL_NET, settings, small_mnist, plain))
    assert_finished(train(SMALL_NET, settings.with_values(shift_pixels=1), small_mnist, shifted))
    assert len(plain.losses) == len(shifted.losses) == 10
    # Same seed, same order, same first weights: only the shifted pixels can tell them apart.
    assert plain.losses != shifted.losses
    assert all(math.isfinite(loss) for loss in shifted.losses)


def test_a_huge_but_finite_loss_counts_as_diverged(small_mnist):
    # A plain ReLU net at η = 100 reaches losses around 1e14 long before they overflow.
    relu_net = {"layers": [{"kind": "dense", "units": 100, "activation": "relu", "init": "he"}, {"kind": "output"}]}
    recorder = StepRecorder()
    settings = cpu_settings(epochs=2, batch_size=64, train_subset=2048, optimizer="sgd", learning_rate=100.0)
    result = train(relu_net, settings, small_mnist, recorder)
    assert result.status == "diverged"
    assert all(math.isfinite(loss) for loss in recorder.losses)
    assert "e.g. to 10" in result.message
