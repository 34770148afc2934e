"""The training engine: a hand-written mini-batch loop over data that stays on the device.

Owns the loop itself: the step, augmentation calls, per-epoch evaluation, early stopping,
divergence detection and resumable state; optimisers and penalties come from
`core.training.optim`, losses from `core.training.losses`. It reports through callbacks and
never prints, sleeps, stores files or touches a UI (minGPT's trainer is the model): the
runner decides what to keep, the pages decide how to show it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from core.data.augment import Augmentation, augment
from core.data.datasets import Splits
from core.errors import Message, counted
from core.model import network as networks
from core.training import adversarial
from core.training.device import pick_device, to_device, training_data
from core.training.evaluation import evaluate
from core.training.losses import DIVERGED_LOSS, LOSSES
from core.training.optim import make_optimizer, make_scheduler, penalty
from core.training.settings import TrainSettings


@dataclass
class EpochMetrics:
    """What one epoch measured; the store keeps one row of these per epoch."""

    epoch: int  # 1-based
    train_loss: float  # mean loss over the epoch's mini-batches (dropout on, penalties off; attacked ones in adversarial training)
    train_accuracy: float  # running accuracy over those same mini-batches
    validation_loss: float
    validation_accuracy: float
    test_accuracy: float
    learning_rate: float  # the rate in force at the end of the epoch
    seconds: float  # wall time of the epoch, evaluation included
    images_per_second: float  # training images per second (evaluation excluded)
    ended_at: float = 0.0  # wall-clock time (Unix seconds) when the epoch's evaluation finished
    robust_accuracy: float | None = None  # PGD accuracy on the first `robust_eval_images` test images (None when not measured)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class Progress:
    """Where the run is inside an epoch, reported after every step."""

    epoch: int  # 1-based epoch in progress
    epochs: int
    step: int  # steps done in this epoch
    steps_per_epoch: int
    global_step: int
    loss: float
    images_per_second: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class TrainResult:
    status: str  # "succeeded", "diverged" or "cancelled"
    message: str  # a sentence for the learner ("" when nothing needs saying)
    history: list[EpochMetrics]
    best_epoch: int  # 0 when no epoch finished
    best_validation_accuracy: float
    test_accuracy: float  # the test accuracy at the best-validation epoch (Nielsen's protocol)
    seconds: float
    model: nn.Module  # holds the best-validation weights when an epoch finished


class Callbacks:
    """Hooks the loop calls; override what you need. The defaults do nothing."""

    def on_train_start(self, state: "TrainingState") -> None:
        """Called once before the first step, after a resume state is loaded (`state.history` is then not empty).

        `state.model` is the very module the loop trains, so a callback may keep it and read its
        gradients in `on_step`: they still hold the step's gradients then (the next step clears them).
        """

    def on_step(self, progress: Progress) -> None:
        pass

    def on_epoch_end(self, metrics: EpochMetrics, state: "TrainingState", improved: bool) -> None:
        pass

    def should_stop(self) -> bool:
        """Return True to cancel the run; checked after every step."""
        return False


@dataclass
class TrainingState:
    """Everything needed to continue a run exactly where it stopped."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    history: list[EpochMetrics] = field(default_factory=list)
    global_step: int = 0
    best_epoch: int = 0
    best_validation_accuracy: float = -1.0
    epochs_without_improvement: int = 0
    best_weights: dict[str, torch.Tensor] | None = None  # CPU copy of the weights at `best_epoch`
    generator: torch.Generator | None = None  # the CPU generator that shuffles and augments the training images

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only, so `torch.load(weights_only=True)` can read it back."""
        return {
            "model": {name: tensor.detach().cpu() for name, tensor in self.model.state_dict().items()},
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "scheduler": _to_cpu(self.scheduler.state_dict()) if self.scheduler is not None else None,
            "history": [metrics.to_dict() for metrics in self.history],
            "global_step": self.global_step,
            "best_epoch": self.best_epoch,
            "best_validation_accuracy": self.best_validation_accuracy,
            "epochs_without_improvement": self.epochs_without_improvement,
            "best_weights": self.best_weights,
            "cpu_rng": torch.get_rng_state(),
            # Without it a resumed run would shuffle its next epoch differently from an uninterrupted one.
            "generator_rng": self.generator.get_state() if self.generator is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.history = [EpochMetrics(**metrics) for metrics in state["history"]]
        self.global_step = state["global_step"]
        self.best_epoch = state["best_epoch"]
        self.best_validation_accuracy = state["best_validation_accuracy"]
        self.epochs_without_improvement = state["epochs_without_improvement"]
        self.best_weights = state["best_weights"]
        torch.set_rng_state(state["cpu_rng"])
        if self.generator is not None and state.get("generator_rng") is not None:
            self.generator.set_state(state["generator_rng"])


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value


# ----------------------------------------------------------------------------- the loop


def train(
    network: dict | list | networks.Summary,
    settings: TrainSettings,
    splits: Splits,
    callbacks: Callbacks | None = None,
    resume_state: dict[str, Any] | None = None,
) -> TrainResult:
    """Train `network` on `splits` with `settings`; returns when done, diverged or cancelled.

    `network` is a spec (checked here) or the `Summary` that `networks.validate` already
    returned for it, which is trusted as it is. With `resume_state` (a
    `TrainingState.state_dict()`), continues after its last finished epoch with the same
    weights, optimiser moments and schedule.
    """
    settings.validate()
    callbacks = callbacks or Callbacks()
    device = pick_device(settings.device)
    torch.manual_seed(settings.seed)
    model = networks.build(network, settings.dataset).to(device)
    use_cuda = device.type == "cuda"
    # Channels-last lets oneDNN (CPU) and cuDNN (GPU) run convolutions without layout
    # conversions: 1.1-1.6x more images/s for the book's conv nets on a 2-core CPU.
    channels_last = any(isinstance(module, nn.Conv2d) for module in model.modules())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_data = training_data(splits, settings, device)
    validation_data = to_device(splits.validation_images, splits.validation_labels, device)
    test_data = to_device(splits.test_images, splits.test_labels, device)
    batch_size = min(settings.batch_size, len(train_data))
    # Like network3.py, drop the last incomplete batch so every step sees `batch_size` images.
    steps_per_epoch = max(1, len(train_data) // batch_size)
    total_steps = settings.epochs * steps_per_epoch
    if settings.max_steps:
        total_steps = min(total_steps, settings.max_steps)
    optimizer = make_optimizer(model, settings)
    scheduler = make_scheduler(optimizer, settings, total_steps)
    # The permutation generator lives on the CPU so a seed gives the same order on any device.
    generator = torch.Generator().manual_seed(settings.seed)
    state = TrainingState(model, optimizer, scheduler, generator=generator)
    if resume_state is not None:
        state.load_state_dict(resume_state)
    callbacks.on_train_start(state)
    augmentation = Augmentation(
        settings.shift_pixels, settings.rotation_degrees, settings.scale, settings.skew, settings.elastic_alpha, settings.elastic_sigma
    )
    augmentation.validate()
    loss_function = LOSSES[settings.loss]
    autocast_dtype = torch.bfloat16 if use_cuda and torch.cuda.is_bf16_supported() else torch.float16
    use_autocast = use_cuda and settings.mixed_precision
    grad_scaler = torch.amp.GradScaler("cuda", enabled=use_autocast and autocast_dtype == torch.float16)
    regularized = settings.l2 > 0 or settings.l1 > 0
    # The perturb hook (None for ordinary training) attacks each batch before the loss; see core.training.adversarial.
    perturb = adversarial.make_perturb(settings, generator)
    started = time.perf_counter()
    status, message = "succeeded", ""

    for epoch in range(len(state.history) + 1, settings.epochs + 1):
        if settings.max_steps and state.global_step >= settings.max_steps:
            break
        epoch_started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_data), generator=generator).to(device)
        loss_sum = 0.0
        correct_sum = torch.zeros((), device=device, dtype=torch.long)
        seen, steps_done, stop_requested = 0, 0, False
        for step in range(steps_per_epoch):
            indices = order[step * batch_size : (step + 1) * batch_size]
            images, labels = train_data.batch(indices)
            if augmentation.active:
                images = augment(images, augmentation, generator)
            if perturb is not None:
                # Crafted in eval mode, then trained on in train mode (the hook's module says why).
                with torch.autocast(device.type, dtype=autocast_dtype, enabled=use_autocast):
                    images = perturb(model, images, labels, epoch - 1 + step / steps_per_epoch)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            # The plain path has no autocast or scaler wrappers: at Nielsen's mini-batch of 10 the
            # per-step overhead, not the arithmetic, decides the speed on a CPU.
            if use_autocast:
                with torch.autocast(device.type, dtype=autocast_dtype):
                    logits = model(images)  # (B, 10)
                    loss = loss_function(logits.float(), labels)
            else:
                logits = model(images)  # (B, 10)
                loss = loss_function(logits, labels)
            total = loss + penalty(model, settings, steps_per_epoch) if regularized else loss
            optimizer.zero_grad(set_to_none=True)
            if grad_scaler.is_enabled():
                grad_scaler.scale(total).backward()
                grad_scaler.step(optimizer)
                grad_scaler.update()
            else:
                total.backward()
                optimizer.step()
            if scheduler is not None and settings.schedule == "onecycle" and state.global_step + 1 < total_steps:
                scheduler.step()
            state.global_step += 1
            steps_done += 1
            seen += len(labels)
            # One host sync per step: the check that stops a diverging run at once.
            loss_value = loss.item()
            loss_sum += loss_value * len(labels)
            correct_sum += (logits.argmax(dim=1) == labels).sum()
            if not math.isfinite(loss_value) or loss_value > DIVERGED_LOSS:
                status = "diverged"
                # Name the rate the learner chose, not the one a schedule had reached (one-cycle
                # warms up from a twenty-fifth of it), since that is the number they can change.
                rate = settings.learning_rate
                message = Message(
                    "run.diverged", {"loss": f"{loss_value:.4g}", "epoch": epoch, "step": step + 1, "rate": f"{rate:g}", "suggested": f"{rate / 10:g}"}
                )
                break
            elapsed = time.perf_counter() - epoch_started
            callbacks.on_step(
                Progress(epoch, settings.epochs, step + 1, steps_per_epoch, state.global_step, loss_value, seen / max(elapsed, 1e-9))
            )
            if callbacks.should_stop():
                stop_requested = True
                break
            if settings.max_steps and state.global_step >= settings.max_steps:
                break
        if status == "diverged":
            break
        if stop_requested:
            status, message = "cancelled", counted("run.cancelled_during", len(state.history), epoch=epoch)
            break
        if use_cuda:
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - epoch_started
        validation_loss, validation_accuracy = evaluate(model, validation_data, settings.eval_batch_size, settings.loss)
        _, test_accuracy = evaluate(model, test_data, settings.eval_batch_size, settings.loss)
        robust_accuracy = adversarial.robust_accuracy(model, test_data, settings)
        if scheduler is not None and settings.schedule == "halve_on_plateau":
            scheduler.step(validation_accuracy)
        elif scheduler is not None and settings.schedule != "onecycle":
            scheduler.step()
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=loss_sum / max(seen, 1),
            train_accuracy=correct_sum.item() / max(seen, 1),
            validation_loss=validation_loss,
            validation_accuracy=validation_accuracy,
            test_accuracy=test_accuracy,
            learning_rate=optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - epoch_started,
            images_per_second=seen / max(train_seconds, 1e-9),
            ended_at=time.time(),
            robust_accuracy=robust_accuracy,
        )
        state.history.append(metrics)
        improved = validation_accuracy > state.best_validation_accuracy
        if improved:
            state.best_validation_accuracy = validation_accuracy
            state.best_epoch = epoch
            state.epochs_without_improvement = 0
            state.best_weights = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
        else:
            state.epochs_without_improvement += 1
        callbacks.on_epoch_end(metrics, state, improved)
        if settings.early_stopping_patience and state.epochs_without_improvement >= settings.early_stopping_patience:
            message = counted("run.stopped_early", settings.early_stopping_patience)
            break

    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    # Hand back the ordinary layout, the one a checkpoint loads into.
    model = model.to(memory_format=torch.contiguous_format)
    best = state.history[state.best_epoch - 1] if state.best_epoch else None
    return TrainResult(
        status=status,
        message=message,
        history=state.history,
        best_epoch=state.best_epoch,
        best_validation_accuracy=best.validation_accuracy if best else 0.0,
        test_accuracy=best.test_accuracy if best else 0.0,
        seconds=time.perf_counter() - started,
        model=model,
    )
