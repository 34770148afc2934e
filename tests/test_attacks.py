"""The attacks against their invariants and against a reference library.

Invariants (issue 10): ε = 0 returns the input; pixels stay in [0, 1] and move by at most ε
(L∞), or the change has L2 norm at most ε; the parameters' `.grad` and the model's mode are as
they were; targeted attacks reach their target; fooling images reach 99%; DeepFool's change is
near-minimal. Reference: torchattacks 3.5.1 (Kim 2020) on the same trained network and images —
FGSM gives exactly the same robust accuracy, PGD within one point (its start is random).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torchattacks
from torch import nn

from core.attacks import methods, robustness
from core.attacks.robustness import METHODS, AttackError, attack, attacked_accuracy, robustness_curve, transfer
from core.errors import render


@pytest.fixture(scope="module")
def test_images(mnist) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 200 test images as float inputs (200, 1, 28, 28) in [0, 1], and their labels."""
    return mnist.test_images[:200].unsqueeze(1).float() / 255, mnist.test_labels[:200]


def robust_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return int((model(images).argmax(dim=1) == labels).sum()) / len(labels)


# ----------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("method", ["fgsm", "pgd", "pgd_l2"])
def test_epsilon_zero_returns_the_input(trained_conv, test_images, method):
    images, labels = test_images[0][:32], test_images[1][:32]
    assert torch.equal(attack(trained_conv, images, labels, method, 0.0, steps=5), images)


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_linf_attacks_keep_pixels_in_range_and_move_none_by_more_than_epsilon(trained_conv, test_images, method):
    images, labels = test_images[0][:64], test_images[1][:64]
    adversarial = attack(trained_conv, images, labels, method, 0.2, steps=10)
    assert adversarial.shape == images.shape
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    change = (adversarial - images).abs().amax(dim=(1, 2, 3))
    assert change.max() <= 0.2 + 1e-6
    assert change.min() > 0.19  # It does move: every image has a pixel pushed (nearly) the whole way.
    assert robust_accuracy(trained_conv, adversarial, labels) < robust_accuracy(trained_conv, images, labels) - 0.3


def test_l2_pgd_keeps_pixels_in_range_and_the_change_within_epsilon(trained_conv, test_images):
    images, labels = test_images[0][:64], test_images[1][:64]
    adversarial = attack(trained_conv, images, labels, "pgd_l2", 2.0, steps=10)
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    norms = (adversarial - images).flatten(1).norm(dim=1)
    assert norms.max() <= 2.0 + 1e-4
    assert norms.median() > 1.5  # The attack uses its budget, so the bound is not met by doing nothing.
    assert robust_accuracy(trained_conv, adversarial, labels) < robust_accuracy(trained_conv, images, labels) - 0.3


def with_known_gradients(model: nn.Module) -> tuple[nn.Module, dict[str, torch.Tensor | None]]:
    """A copy of `model` whose parameters carry known `.grad`s, the first left as None, and those gradients."""
    model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    known = {}
    for index, (name, parameter) in enumerate(model.named_parameters()):
        parameter.grad = None if index == 0 else torch.randn(parameter.shape, generator=generator)
        known[name] = None if parameter.grad is None else parameter.grad.clone()
    return model, known


def every_attack(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    for method in METHODS:
        attack(model, images, labels, method, 0.1, steps=3)
    attack(model, images, labels, "pgd", 0.1, steps=3, target=(labels + 1) % 10)
    methods.fooling_image(model, 3, steps=3)


def test_attacks_leave_the_parameters_gradients_as_they_were(trained_conv, test_images):
    model, known = with_known_gradients(trained_conv)
    every_attack(model, test_images[0][:8], test_images[1][:8])
    for name, parameter in model.named_parameters():
        if known[name] is None:
            assert parameter.grad is None, name
        else:
            assert torch.equal(parameter.grad, known[name]), name


def test_attacks_give_the_model_back_in_the_mode_it_had(trained_conv, test_images):
    model = copy.deepcopy(trained_conv).train()
    every_attack(model, test_images[0][:8], test_images[1][:8])
    assert all(module.training for module in model.modules())
    model.eval()
    every_attack(model, test_images[0][:8], test_images[1][:8])
    assert not any(module.training for module in model.modules())


def test_attacks_run_the_network_in_eval_mode_so_dropout_does_not_change_the_gradient(test_images):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))
    images, labels = test_images[0][:32], test_images[1][:32]
    in_eval = attack(model.eval(), images, labels, "fgsm", 0.1)
    model.train()
    # With dropout on, two gradients would differ from each other and from the eval-mode one.
    assert torch.equal(attack(model, images, labels, "fgsm", 0.1), in_eval)
    assert torch.equal(attack(model, images, labels, "fgsm", 0.1), in_eval)


def test_targeted_pgd_makes_most_images_read_as_the_target(trained_conv, test_images):
    images, labels = test_images[0][:100], test_images[1][:100]
    target = (labels + 1) % 10
    adversarial = attack(trained_conv, images, labels, "pgd", 0.3, steps=20, step_size=0.03, target=target)
    with torch.no_grad():
        predicted = trained_conv(adversarial).argmax(dim=1)
    assert (predicted == target).float().mean() >= 0.9


@pytest.mark.parametrize("start", ["noise", "blank"])
def test_fooling_images_reach_99_percent_for_every_digit(trained_conv, start):
    for digit in range(10):
        result = methods.fooling_image(trained_conv, digit, start=start, steps=200, generator=torch.Generator().manual_seed(digit))
        with torch.no_grad():
            probability = torch.softmax(trained_conv(result.image.unsqueeze(0)), dim=1)[0, digit]
        assert probability >= 0.99, (start, digit, result.steps)
        assert result.image.min() >= 0 and result.image.max() <= 1


def test_deepfool_flips_nearly_every_image_with_a_near_minimal_change(trained_conv, test_images):
    images = test_images[0][:100]
    with torch.no_grad():
        original = trained_conv(images).argmax(dim=1)
    adversarial = attack(trained_conv, images, original, "deepfool", 0.0, steps=50)
    change = adversarial - images
    with torch.no_grad():
        flipped = trained_conv(adversarial).argmax(dim=1) != original
        # Half of DeepFool's change, or random noise of the same L2 length, should flip almost nothing.
        halfway = trained_conv(images + change / 2).argmax(dim=1) != original
        noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
        noise = noise * (change.flatten(1).norm(dim=1) / noise.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
        by_noise = trained_conv((images + noise).clamp(0, 1)).argmax(dim=1) != original
    assert flipped.float().mean() >= 0.97
    assert halfway.float().mean() <= 0.1
    assert by_noise.float().mean() <= 0.1
    # PGD under L2 with DeepFool's median length as its budget flips a large share too: that length is the scale of the boundary.
    median = float(change.flatten(1).norm(dim=1).median())
    pgd_l2 = attack(trained_conv, images, original, "pgd_l2", median, steps=20)
    assert robust_accuracy(trained_conv, pgd_l2, original) <= 0.7


# ----------------------------------------------------------------------------- against torchattacks


@pytest.mark.parametrize("epsilon", [0.05, 0.1, 0.2, 0.3])
def test_fgsm_gives_exactly_the_robust_accuracy_of_torchattacks(trained_conv, test_images, epsilon):
    images, labels = test_images
    ours = attacked_accuracy(trained_conv, images, labels, "fgsm", epsilon, batch_size=100)
    reference = torchattacks.FGSM(trained_conv, eps=epsilon)(images, labels)
    assert ours.n == len(images)
    assert ours.adversarial_accuracy == robust_accuracy(trained_conv, reference, labels)
    assert ours.clean_accuracy == robust_accuracy(trained_conv, images, labels)
    # The images themselves agree, but for pixels whose gradient is ~0 (their sign may round either way).
    assert (attack(trained_conv, images, labels, "fgsm", epsilon) == reference).float().mean() > 0.999


def test_pgd_is_within_one_point_of_torchattacks(trained_conv, test_images):
    images, labels = test_images
    epsilon, steps, step_size = 0.1, 10, 0.025
    ours = attacked_accuracy(trained_conv, images, labels, "pgd", epsilon, steps, step_size, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)  # torchattacks draws its random start from the global generator.
    reference = torchattacks.PGD(trained_conv, eps=epsilon, alpha=step_size, steps=steps, random_start=True)(images, labels)
    theirs = robust_accuracy(trained_conv, reference, labels)
    assert 0.05 < theirs < ours.clean_accuracy - 0.2  # A point where the attack half works, so agreement means something.
    assert abs(ours.adversarial_accuracy - theirs) <= 0.01


def test_deepfool_changes_are_about_as_small_as_torchattacks(trained_conv, test_images):
    images, labels = test_images[0][:20], test_images[1][:20]
    with torch.no_grad():
        correct = trained_conv(images).argmax(dim=1) == labels
    images, labels = images[correct], labels[correct]  # torchattacks leaves images it already gets wrong alone.
    ours = attack(trained_conv, images, labels, "deepfool", 0.0, steps=50)
    reference = torchattacks.DeepFool(copy.deepcopy(trained_conv), steps=50, overshoot=0.02)(images, labels)
    our_median = float((ours - images).flatten(1).norm(dim=1).median())
    their_median = float((reference - images).flatten(1).norm(dim=1).median())
    assert 0.8 < our_median / their_median < 1.25
    assert robust_accuracy(trained_conv, ours, labels) <= robust_accuracy(trained_conv, reference, labels) + 0.05


# ----------------------------------------------------------------------------- measuring


def test_attacked_accuracy_takes_the_datasets_uint8_images_and_reports_progress(trained_conv, mnist):
    raw, labels = mnist.test_images[:250], mnist.test_labels[:250]
    seen = []
    report = attacked_accuracy(
        trained_conv, raw, labels, "fgsm", 0.1, batch_size=100, on_progress=lambda done, total: seen.append((done, total))
    )
    as_floats = attacked_accuracy(trained_conv, raw.unsqueeze(1).float() / 255, labels, "fgsm", 0.1, batch_size=250)
    assert seen == [(100, 250), (200, 250), (250, 250)]
    assert (report.n, report.clean_accuracy, report.adversarial_accuracy) == (250, as_floats.clean_accuracy, as_floats.adversarial_accuracy)
    assert report.adversarial_accuracy < report.clean_accuracy
    assert report.seconds > 0


def test_a_robustness_curve_starts_at_clean_accuracy_and_falls_for_every_network(trained_conv, test_images):
    images, labels = test_images[0][:100], test_images[1][:100]
    untrained = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    seen = []
    points = robustness_curve(
        {"trained": trained_conv, "untrained": untrained},
        images,
        labels,
        [0.0, 0.1, 0.3],
        steps=5,
        batch_size=50,
        on_progress=lambda done, total: seen.append((done, total)),
    )
    # Per network: clean once (2 batches) and 2 methods × 2 attacked ε (8 batches).
    assert seen == [(done, 20) for done in range(1, 21)]
    assert [(point.name, point.method, point.epsilon) for point in points] == [
        (name, method, epsilon) for name in ("trained", "untrained") for method in ("fgsm", "pgd") for epsilon in (0.0, 0.1, 0.3)
    ]
    curve = {(point.name, point.method, point.epsilon): point.accuracy for point in points}
    assert curve["trained", "fgsm", 0.0] == curve["trained", "pgd", 0.0] == robust_accuracy(trained_conv, images, labels)
    for method in ("fgsm", "pgd"):
        assert curve["trained", method, 0.0] > curve["trained", method, 0.1] > curve["trained", method, 0.3] - 1e-9
    assert curve["trained", "pgd", 0.1] <= curve["trained", "fgsm", 0.1]  # PGD is the stronger attack (Madry et al. 2018).


def test_transfer_evaluates_the_source_networks_adversarial_images_on_the_target(trained_conv, test_images):
    images, labels = test_images[0][:100], test_images[1][:100]
    other = copy.deepcopy(trained_conv)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    report = transfer(trained_conv, other, images, labels, "fgsm", 0.2, batch_size=40)
    adversarial = attack(trained_conv, images, labels, "fgsm", 0.2)
    assert report.n == 100
    assert report.source_clean_accuracy == robust_accuracy(trained_conv, images, labels)
    assert report.source_adversarial_accuracy == robust_accuracy(trained_conv, adversarial, labels)
    assert report.target_clean_accuracy == robust_accuracy(other, images, labels)
    assert report.target_adversarial_accuracy == robust_accuracy(other, adversarial, labels)


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"method": "jsma", "epsilon": 0.1}, "attack.unknown_method"),
        ({"method": "fgsm", "epsilon": -0.1}, "attack.bad_epsilon"),
        ({"method": "pgd", "epsilon": float("nan")}, "attack.bad_epsilon"),
        ({"method": "pgd", "epsilon": 0.1, "steps": -1}, "attack.bad_steps"),
    ],
)
def test_a_bad_request_is_an_attack_error_in_both_languages(trained_conv, test_images, arguments, code):
    with pytest.raises(AttackError) as raised:
        attack(trained_conv, test_images[0][:2], test_images[1][:2], **arguments)
    assert raised.value.code == code
    assert isinstance(raised.value, ValueError)
    assert render(code, raised.value.params, "ko") != render(code, raised.value.params, "en")
    assert robustness.METHODS == ("fgsm", "pgd", "pgd_l2", "deepfool")
