"""Adversarial attacks: small changes to images in [0, 1] that change what a trained network says.

Owns the attacks themselves, each a short pure function: FGSM (Goodfellow et al. 2015),
iterative FGSM / PGD under L∞ and L2 with a random start (Kurakin et al. 2017; Madry et al.
2018), their targeted versions, DeepFool (Moosavi-Dezfooli et al. 2016) and fooling images
grown from noise or a blank (Nguyen et al. 2015, by gradient ascent as in their §3.2 variant).

Every attack:
- takes float images (N, 1, 28, 28) in [0, 1] and int64 labels (N,) on the model's device,
  and returns new images of the same shape, still in [0, 1];
- asks for gradients with `torch.autograd.grad`, so the parameters' `.grad` stays as it was;
- runs the model in eval mode (dropout off, batch-norm on its running statistics, so the
  gradient is the one of the network people look at) and gives the mode back afterwards.
It knows nothing of runs, checkpoints or pages; `core.attacks.robustness` measures with them.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional

NORMS = ("linf", "l2")
FOOLING_STARTS = ("noise", "blank")


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with `model` in eval mode, then give it back the mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """d loss / d images, where the loss rises as the attack succeeds: the label's loss, or minus the target's."""
    images = images.detach().requires_grad_(True)
    logits = model(images).float()  # (N, 10)
    if target is None:
        loss = functional.cross_entropy(logits, labels, reduction="sum")
    else:
        loss = -functional.cross_entropy(logits, target, reduction="sum")
    (gradient,) = torch.autograd.grad(loss, images)
    return gradient


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epsilon: float, target: torch.Tensor | None = None) -> torch.Tensor:
    """Fast gradient sign method: one step of size `epsilon` along the sign of the loss gradient.

    Goodfellow, Shlens & Szegedy 2015, "Explaining and harnessing adversarial examples".
    Untargeted, it raises the loss of the true `labels`; with `target` (N,) it lowers the
    loss of those classes instead. Every pixel moves by at most `epsilon` (L∞).

    >>> adversarial = fgsm(model, images, labels, epsilon=0.1)  # (N, 1, 28, 28) in [0, 1]
    """
    if epsilon == 0:
        return images.detach().clone()
    with evaluating(model):
        gradient = _gradient(model, images, labels, target)
    return (images.detach() + epsilon * gradient.sign()).clamp_(0.0, 1.0)


def _l2_norms(tensor: torch.Tensor) -> torch.Tensor:
    """Per-image L2 norm, shaped (N, 1, 1, 1) to scale the image it belongs to."""
    return tensor.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (tensor.dim() - 1)))


def _project(images: torch.Tensor, adversarial: torch.Tensor, epsilon: float, norm: str) -> torch.Tensor:
    """The closest image to `adversarial` within `epsilon` of `images` (in `norm`) and inside [0, 1]."""
    delta = adversarial - images
    if norm == "linf":
        delta = delta.clamp(-epsilon, epsilon)
    else:
        delta = delta * (epsilon / _l2_norms(delta)).clamp(max=1.0)
    # Clamping to [0, 1] only moves pixels back towards the original, so the norm bound still holds.
    return (images + delta).clamp_(0.0, 1.0)


def _random(kind: str, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) or standard normal values drawn where `generator` lives, then moved to `device`."""
    where = generator.device if generator is not None else device
    draw = torch.rand if kind == "uniform" else torch.randn
    return draw(shape, generator=generator, device=where).to(device)


def _random_start(images: torch.Tensor, epsilon: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A random point of the ε-ball around `images`: uniform per pixel (L∞) or uniform in the ball (L2)."""
    if norm == "linf":
        noise = _random("uniform", images.shape, generator, images.device) * 2 - 1
        return _project(images, images + epsilon * noise, epsilon, norm)
    direction = _random("normal", images.shape, generator, images.device)
    direction = direction / _l2_norms(direction)
    # A radius drawn as u^(1/d) spreads the points evenly through the d-dimensional ball.
    radius = _random("uniform", (len(images),), generator, images.device).pow(1.0 / images[0].numel())
    return _project(images, images + epsilon * radius.view(-1, *([1] * (images.dim() - 1))) * direction, epsilon, norm)


def default_step_size(epsilon: float, steps: int) -> float:
    """2.5 ε / steps: enough to cross the ball and come back (Madry et al.'s rule of thumb)."""
    return 2.5 * epsilon / max(steps, 1)


def pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    epsilon: float,
    steps: int = 40,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = True,
    target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent: `steps` gradient steps, each projected back onto the ε-ball.

    Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks";
    without `random_start` and with L∞ it is Kurakin et al.'s iterative FGSM. Under "linf"
    each step moves every pixel by `step_size` along the gradient's sign and no pixel ends
    more than `epsilon` from the original; under "l2" each step has L2 length `step_size`
    and the whole change has L2 norm at most `epsilon`. `step_size` defaults to 2.5 ε / steps.
    With `target` (N,) it walks towards those classes. `generator` seeds the random start.

    >>> adversarial = pgd(model, images, labels, epsilon=0.3, steps=40, step_size=0.01)
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
    images = images.detach()
    if epsilon == 0 or steps == 0:
        return images.clone()
    step_size = default_step_size(epsilon, steps) if step_size is None else step_size
    adversarial = _random_start(images, epsilon, norm, generator) if random_start else images.clone()
    with evaluating(model):
        for _ in range(steps):
            gradient = _gradient(model, adversarial, labels, target)
            if norm == "linf":
                adversarial = adversarial + step_size * gradient.sign()
            else:
                adversarial = adversarial + step_size * gradient / _l2_norms(gradient)
            adversarial = _project(images, adversarial, epsilon, norm)
    return adversarial


def deepfool(model: nn.Module, images: torch.Tensor, steps: int = 50, overshoot: float = 0.02) -> torch.Tensor:
    """DeepFool: the smallest L2 step across the nearest decision boundary, linearised and repeated.

    Moosavi-Dezfooli, Fawzi & Frossard 2016. For each image, at each step the network is
    treated as linear around the current point; the image moves onto the closest of the
    other classes' boundaries, and a little past it (`overshoot`), until the predicted class
    changes or `steps` run out. Images the network already gets wrong are moved all the same.
    Returns images (N, 1, 28, 28) in [0, 1]; the change is as small as the method finds.
    """
    images = images.detach()
    with evaluating(model):
        with torch.no_grad():
            original = model(images).argmax(dim=1)  # (N,)
        total = torch.zeros_like(images)
        adversarial = images.clone()
        active = torch.ones(len(images), dtype=torch.bool, device=images.device)
        rows = torch.arange(len(images), device=images.device)
        for _ in range(steps):
            if not active.any():
                break
            point = adversarial[active].detach().requires_grad_(True)
            logits = model(point).float()  # (A, C)
            classes = logits.shape[1]
            # One backward pass per class gives every image's gradient of that class's logit.
            gradients = torch.stack(
                [torch.autograd.grad(logits[:, k].sum(), point, retain_graph=k < classes - 1)[0] for k in range(classes)], dim=1
            )  # (A, C, 1, 28, 28)
            mine = original[active]
            index = rows[: len(mine)]
            logit_gap = logits.detach() - logits.detach()[index, mine].unsqueeze(1)  # (A, C)
            gradient_gap = gradients - gradients[index, mine].unsqueeze(1)  # (A, C, 1, 28, 28)
            gap_norms = gradient_gap.flatten(2).norm(dim=2)  # (A, C)
            distance = logit_gap.abs() / gap_norms.clamp_min(1e-8)
            distance[index, mine] = float("inf")
            nearest = distance.argmin(dim=1)  # (A,)
            w = gradient_gap[index, nearest]  # (A, 1, 28, 28)
            step = ((logit_gap[index, nearest].abs() + 1e-4) / gap_norms[index, nearest].clamp_min(1e-8).pow(2)).view(-1, 1, 1, 1) * w
            total[active] += step
            adversarial[active] = (images[active] + (1 + overshoot) * total[active]).clamp(0.0, 1.0)
            with torch.no_grad():
                still = model(adversarial[active]).argmax(dim=1) == mine
            active_indices = active.nonzero().squeeze(1)
            active[active_indices[~still]] = False
    return adversarial.detach()


@dataclass
class FoolingResult:
    """A fooling image and how it formed."""

    image: torch.Tensor  # (1, 28, 28) in [0, 1]
    target: int
    confidence: float  # the network's probability for `target` at the end
    steps: int  # gradient steps taken
    frames: list[torch.Tensor] = field(default_factory=list)  # (1, 28, 28) snapshots, the first being the start
    confidences: list[float] = field(default_factory=list)  # the target's probability at each frame


def fooling_image(
    model: nn.Module,
    target: int,
    start: str = "noise",
    steps: int = 200,
    step_size: float = 0.01,
    confidence: float = 0.99,
    frame_every: int = 5,
    generator: torch.Generator | None = None,
    on_frame: Callable[[torch.Tensor, float, int], None] | None = None,
) -> FoolingResult:
    """An image no person would call `target` that the network calls `target` with ≥ `confidence`.

    Nguyen, Yosinski & Clune 2015, "Deep neural networks are easily fooled". Starts from
    uniform noise or a blank (black) image and climbs the log-probability of `target` by
    signed gradient steps of `step_size`, kept in [0, 1], until the softmax probability
    reaches `confidence` or `steps` run out. A snapshot is kept every `frame_every` steps
    (and `on_frame(image, probability, step)` called) so a page can show the image forming.
    """
    if start not in FOOLING_STARTS:
        raise ValueError(f"start must be one of {FOOLING_STARTS}, not {start!r}")
    device = next(model.parameters()).device
    shape = (1, 1, 28, 28)
    if start == "noise":
        image = _random("uniform", shape, generator, device)
    else:
        image = torch.zeros(shape, device=device)
    wanted = torch.tensor([target], device=device)
    result = FoolingResult(image[0].detach().cpu(), target, 0.0, 0)
    with evaluating(model):
        for step in range(steps + 1):
            point = image.detach().requires_grad_(True)
            log_probabilities = functional.log_softmax(model(point).float(), dim=1)
            probability = float(log_probabilities.detach()[0, target].exp())
            done = probability >= confidence or step == steps
            if step % frame_every == 0 or done:
                result.frames.append(point.detach()[0].cpu().clone())
                result.confidences.append(probability)
                if on_frame is not None:
                    on_frame(result.frames[-1], probability, step)
            if done:
                break
            (gradient,) = torch.autograd.grad(-functional.nll_loss(log_probabilities, wanted), point)
            image = (point.detach() + step_size * gradient.sign()).clamp_(0.0, 1.0)
    result.image, result.confidence, result.steps = image.detach()[0].cpu(), probability, step
    return result


@dataclass(frozen=True)
class ChangeSize:
    """How big a change is, per image, in the three norms the page shows."""

    linf: float  # the largest change of any one pixel
    l2: float  # the Euclidean length of the whole change
    l0: int  # how many pixels changed at all (by more than 1/255 / 2, a change a PNG would keep)


def change_size(original: torch.Tensor, adversarial: torch.Tensor) -> ChangeSize:
    """The L∞, L2 and L0 size of the change from one image (C, H, W) to another."""
    delta = (adversarial - original).detach().flatten().float()
    return ChangeSize(float(delta.abs().max()) if delta.numel() else 0.0, float(delta.norm()), int((delta.abs() > 0.5 / 255).sum()))
