"""The Adversarial lab's logic: what is attacked (a run, or several averaged), which image, and what an attack did.

Owns the lab's choices as data — the methods it offers, the bounds of every slider (declared
once here and read by the page and by the checks), the network under attack (one run's best
weights, or an `AveragedProbabilities` ensemble of several), the image (a test image, or the
user's drawing) — and the results it shows: one image attacked (`attack_image`), a fooling
image grown (`grow_fooling_image`), and the background work of robustness curves and transfer
(`curve_work`, `transfer_work`, run by `core.views.tasks`). The attacks are `core.attacks`;
the pictures are `core.views.attack_plots`; the widgets are the page's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from core.attacks import ChangeSize, change_size, fooling_image
from core.attacks import robustness
from core.attacks.robustness import AttackError, CurvePoint, TransferReport
from core.data import datasets
from core.jobs.store import RunStore
from core.probes import mistakes
from core.probes.ensembles import AveragedProbabilities
from core.probes.loading import ProbeError, as_inputs, checked_index
from core.views import inspection

METHODS = robustness.METHODS  # fgsm, pgd, pgd_l2, deepfool
TARGETABLE = ("fgsm", "pgd", "pgd_l2")  # DeepFool crosses the nearest boundary, whichever class lies behind it
NORMS = {"fgsm": "linf", "pgd": "linf", "pgd_l2": "l2", "deepfool": "l2"}
CURVE_METHODS = ("fgsm", "pgd")
IMAGE_SOURCES = ("index", "mistake", "drawing")
FOOLING_STARTS = ("noise", "blank")


@dataclass(frozen=True)
class Bound:
    """A slider's range, step and starting value; the page draws it and `check` refuses anything outside it."""

    name: str  # the message "attack.out_of_range.<name>" names the quantity in the reader's language
    minimum: float
    maximum: float
    step: float
    default: float

    def check(self, value: float) -> float:
        if not self.minimum <= value <= self.maximum:
            code = "attack.out_of_range." + self.name  # a message code, not a sentence
            raise AttackError(code, value=str(value), minimum=str(self.minimum), maximum=str(self.maximum))
        return value


# ε per norm: under L∞ a pixel moves by at most ε (MNIST's usual 0.1–0.3, Madry et al. 2018, up to
# 0.5, where a grey image sits within reach of every digit); under L2 the whole change has length
# at most ε (Madry et al.'s MNIST L2 attacks go to about 4; 28 is the length of a change of 1 in every pixel).
EPSILON = {"linf": Bound("epsilon", 0.0, 0.5, 0.01, 0.1), "l2": Bound("epsilon", 0.0, 6.0, 0.1, 1.5)}
STEPS = Bound("steps", 1, 100, 1, 40)  # PGD's iterations (Madry et al. use 40 on MNIST) and DeepFool's limit
CURVE_STEPS = Bound("steps", 1, 100, 1, 10)  # fewer by default: a curve attacks every image at every ε
CURVE_IMAGES = Bound("images", 50, 10_000, 50, 500)  # the first N test images
CURVE_MAX_EPSILON = Bound("epsilon", 0.05, 0.5, 0.05, 0.3)  # the curve's ε run 0, 0.05, …, up to this
CURVE_EPSILON_STEP = 0.05
FOOLING_STEPS = Bound("steps", 10, 500, 10, 200)
FOOLING_STEP_SIZE = 0.01  # per signed step, so 100 steps can move a pixel all the way from 0 to 1
FOOLING_CONFIDENCE = 0.99  # Nguyen et al. 2015 report images classified with ≥ 99.6% confidence
FOOLING_FRAMES = 40  # at most this many snapshots are kept for the animation
# What the lab can fail with, each with a sentence a learner can act on.
ERRORS = inspection.ERRORS + (AttackError,)
SEED = 0  # the random start of PGD and the noise of a fooling image, so the same choices show the same result


def epsilon_bound(method: str) -> Bound:
    return EPSILON[NORMS[method]]


def curve_epsilons(maximum: float) -> list[float]:
    """0, 0.05, …, `maximum` (rounded, so 0.15 stays 0.15 and not 0.15000000000000002)."""
    count = int(round(maximum / CURVE_EPSILON_STEP))
    return [round(step * CURVE_EPSILON_STEP, 4) for step in range(count + 1)]


def generator(seed: int = SEED) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- what is attacked


@dataclass(frozen=True)
class Attacked:
    """The network under attack: one run's best weights, or several runs' averaged probabilities."""

    run_ids: tuple[int, ...]
    model: nn.Module  # eval mode, on the CPU; logits (N, 10)
    splits: datasets.Splits

    @property
    def class_names(self) -> list[str]:
        return self.splits.class_names

    @property
    def is_ensemble(self) -> bool:
        return len(self.run_ids) > 1


def load_attacked(store: RunStore, run_ids: list[int] | tuple[int, ...]) -> Attacked:
    """The runs' best checkpoints as one network; `inspection.ERRORS` for a missing run, no weights or a damaged file."""
    if not run_ids:
        raise ProbeError("probe.ensemble_empty")
    loaded = [inspection.load_run(store, run_id) for run_id in run_ids]
    if len({run.splits.dataset for run in loaded}) > 1:
        raise ProbeError("probe.ensemble_different_images")
    if len(loaded) == 1:
        model = loaded[0].model
    else:
        model = AveragedProbabilities([run.model for run in loaded]).eval()
    return Attacked(tuple(run_ids), model, loaded[0].splits)


def test_predictions(attacked: Attacked) -> mistakes.Predictions:
    """The attacked network's answers on the test set (the ensemble's averaged ones for several runs)."""
    return mistakes.predict(attacked.model, attacked.splits.test_images, attacked.splits.test_labels)


# ----------------------------------------------------------------------------- one image


@dataclass(frozen=True)
class Subject:
    """The image attacked: a test image (with its index and true class) or the user's drawing (neither)."""

    image: np.ndarray  # (28, 28) uint8, white ink on black
    index: int | None
    label: int | None


def test_subject(attacked: Attacked, index: int) -> Subject:
    checked_index(index, len(attacked.splits.test_images))
    return Subject(attacked.splits.test_images[index].numpy(), index, int(attacked.splits.test_labels[index]))


def drawing_subject(drawing) -> Subject:
    image = np.asarray(drawing, dtype=np.uint8)
    if image.shape != (28, 28):
        raise ProbeError("probe.drawing_shape", shape="×".join(str(side) for side in image.shape))
    return Subject(image, None, None)


@dataclass(frozen=True)
class Outcome:
    """One image before and after an attack, as the page shows it."""

    method: str
    epsilon: float
    steps: int
    target: int | None
    original: np.ndarray  # (28, 28) float in [0, 1]
    adversarial: np.ndarray  # (28, 28) float in [0, 1]
    saved: np.ndarray  # (28, 28) uint8: the adversarial image as a PNG keeps it
    before: np.ndarray  # (10,) probabilities of the original
    after: np.ndarray  # (10,) probabilities of the adversarial image
    saved_after: np.ndarray  # (10,) probabilities of the saved (rounded) image
    change: ChangeSize

    @property
    def perturbation(self) -> np.ndarray:
        return self.adversarial - self.original

    @property
    def predicted_before(self) -> int:
        return int(self.before.argmax())

    @property
    def predicted_after(self) -> int:
        return int(self.after.argmax())

    @property
    def predicted_saved(self) -> int:
        return int(self.saved_after.argmax())


@torch.no_grad()
def probabilities(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    """Softmax (N, 10) of float images (N, 1, 28, 28) in [0, 1]."""
    return torch.softmax(model(images).float(), dim=1).numpy()


def quantised(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] rounded to the 256 grey levels of a uint8 PNG."""
    return images.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def attack_image(
    attacked: Attacked,
    subject: Subject,
    method: str,
    epsilon: float,
    steps: int = 40,
    target: int | None = None,
    seed: int = SEED,
) -> Outcome:
    """Attack one image with `method` and report its probabilities before and after, and the size of the change.

    A test image is attacked away from its true class; a drawing, which has none, away from
    the class the network gives it. With `target` the attack walks towards that class instead
    (not DeepFool, which has no target). ε and steps are checked against the lab's bounds.
    """
    if method not in METHODS:
        raise AttackError("attack.unknown_method", method=str(method), choices=list(METHODS))
    epsilon_bound(method).check(float(epsilon))
    STEPS.check(int(steps))
    model = attacked.model
    images = as_inputs(torch.tensor(subject.image).unsqueeze(0))  # (1, 1, 28, 28), a copy of the (possibly read-only) array
    before = probabilities(model, images)[0]
    label = subject.label if subject.label is not None else int(before.argmax())
    labels = torch.tensor([label])
    wanted = torch.tensor([target]) if target is not None and method in TARGETABLE else None
    adversarial = robustness.attack(
        model, images, labels, method, float(epsilon), steps=int(steps), target=wanted, generator=generator(seed)
    )
    saved = quantised(adversarial)
    return Outcome(
        method, float(epsilon), int(steps), None if wanted is None else int(target),
        images[0, 0].numpy(), adversarial[0, 0].detach().numpy(), saved[0, 0].numpy(),
        before, probabilities(model, adversarial)[0], probabilities(model, saved.float().div(255.0))[0],
        change_size(images[0], adversarial[0]),
    )  # fmt: skip


def png_bytes(image: np.ndarray) -> bytes:
    """A (28, 28) uint8 image as PNG file contents (the download's bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- fooling images


@dataclass(frozen=True)
class Fooling:
    """A fooling image and the snapshots of it forming, for the animation."""

    target: int
    start: str
    image: np.ndarray  # (28, 28) float in [0, 1]
    confidence: float  # the network's probability for `target` at the end
    steps: int  # gradient steps taken
    frames: np.ndarray  # (F, 28, 28) float in [0, 1], the first being the start
    frame_steps: list[int]  # the step of each frame
    confidences: list[float]  # the target's probability at each frame
    probabilities: np.ndarray  # (10,) of the final image

    @property
    def reached(self) -> bool:
        return self.confidence >= FOOLING_CONFIDENCE


def grow_fooling_image(attacked: Attacked, target: int, start: str = "noise", steps: int = 200, seed: int = SEED) -> Fooling:
    """Climb the network's probability of `target` from noise or a blank until ≥ 99% (Nguyen et al. 2015)."""
    if start not in FOOLING_STARTS:
        raise AttackError("attack.unknown_method", method=str(start), choices=list(FOOLING_STARTS))
    FOOLING_STEPS.check(int(steps))
    frame_every = max(1, int(steps) // FOOLING_FRAMES)
    steps_of_frames: list[int] = []
    result = fooling_image(
        attacked.model, int(target), start=start, steps=int(steps), step_size=FOOLING_STEP_SIZE, confidence=FOOLING_CONFIDENCE,
        frame_every=frame_every, generator=generator(seed), on_frame=lambda _image, _probability, step: steps_of_frames.append(step),
    )  # fmt: skip
    image = result.image.unsqueeze(0)  # (1, 1, 28, 28)
    frames = torch.stack(result.frames)[:, 0].numpy()  # (F, 28, 28)
    return Fooling(
        int(target), start, result.image[0].numpy(), result.confidence, result.steps, frames, steps_of_frames, list(result.confidences),
        probabilities(attacked.model, image)[0],
    )  # fmt: skip


# ----------------------------------------------------------------------------- robustness and transfer, in the background


def run_name(run_id: int, name: str | None) -> str:
    return f"#{run_id} {name}" if name else f"#{run_id}"


def curve_work(
    directory: Path,
    run_ids: list[int],
    methods: list[str],
    epsilons: list[float],
    steps: int,
    count: int,
) -> Callable[[Callable[[int, int], None]], list[CurvePoint]]:
    """The work of a robustness curve, for `core.views.tasks.start`: each run's accuracy against ε on the first `count` test images.

    The thread loads its own copies of the models, so it shares nothing with the page's.
    """
    STEPS.check(int(steps))
    CURVE_IMAGES.check(int(count))
    for epsilon in epsilons:
        EPSILON["linf"].check(float(epsilon))

    def work(on_progress: Callable[[int, int], None]) -> list[CurvePoint]:
        store = RunStore(directory)
        models, splits = {}, None
        for run_id in run_ids:
            loaded = inspection.load_run(store, run_id)
            models[run_name(run_id, store.get(run_id, with_metrics=False).name)] = loaded.model
            splits = loaded.splits
        images, labels = splits.test_images[:count], splits.test_labels[:count]
        return robustness.robustness_curve(
            models, images, labels, epsilons, methods=tuple(methods), steps=int(steps), on_progress=on_progress, generator=generator(),
        )  # fmt: skip

    return work


def transfer_work(
    directory: Path,
    source_id: int,
    target_id: int,
    method: str,
    epsilon: float,
    steps: int,
    count: int,
) -> Callable[[Callable[[int, int], None]], TransferReport]:
    """The work of a transfer test: adversarial images made on the source run, shown to the target run."""
    epsilon_bound(method).check(float(epsilon))
    STEPS.check(int(steps))
    CURVE_IMAGES.check(int(count))

    def work(on_progress: Callable[[int, int], None]) -> TransferReport:
        store = RunStore(directory)
        source, target = inspection.load_run(store, source_id), inspection.load_run(store, target_id)
        if source.splits.dataset != target.splits.dataset:
            raise ProbeError("probe.ensemble_different_images")
        images, labels = source.splits.test_images[:count], source.splits.test_labels[:count]
        return robustness.transfer(
            source.model, target.model, images, labels, method, float(epsilon), steps=int(steps), on_progress=on_progress, generator=generator(),
        )  # fmt: skip

    return work


@dataclass(frozen=True)
class TransferRow:
    """One row of the transfer table: a network's accuracy on the clean and on the attacked images."""

    network: str  # "source" or "target"
    run_id: int
    clean_accuracy: float
    adversarial_accuracy: float


def transfer_rows(report: TransferReport, source_id: int, target_id: int) -> list[TransferRow]:
    return [
        TransferRow("source", source_id, report.source_clean_accuracy, report.source_adversarial_accuracy),
        TransferRow("target", target_id, report.target_clean_accuracy, report.target_adversarial_accuracy),
    ]
