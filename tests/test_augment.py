"""Tests for core.augment: each perturbation is checked against an exact reference
(slicing, torch.rot90, the Gaussian formula) or an invariant (identity, ink, repeatability)."""

import math
import re

import pytest
import torch

from core.data.augment import (
    Augmentation,
    AugmentationError,
    affine,
    augment,
    displace,
    gaussian_kernel,
    gaussian_smooth,
    preview,
    random_displacement,
    shift,
)
from core.errors import translate


def ring_digit(count: int = 1, size: int = 28) -> torch.Tensor:
    """A thick ring with a vertical bar, like a handwritten 0 crossed by a 1: (count, 1, size, size)."""
    coordinates = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    y, x = torch.meshgrid(coordinates, coordinates, indexing="ij")
    radius = torch.sqrt(x**2 + y**2)
    ring = ((radius > 6) & (radius < 10)).float()
    bar = ((x.abs() < 1.5) & (y.abs() < 9)).float()
    return torch.clamp(ring + bar, 0, 1).expand(count, 1, size, size).clone()


def reference_shift(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move a (C, H, W) image by (dy, dx) with torch.roll and zero the wrapped-around border."""
    moved = torch.roll(image, shifts=(dy, dx), dims=(-2, -1))
    if dy > 0:
        moved[..., :dy, :] = 0
    elif dy < 0:
        moved[..., dy:, :] = 0
    if dx > 0:
        moved[..., :, :dx] = 0
    elif dx < 0:
        moved[..., :, dx:] = 0
    return moved


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_inactive_augmentation_is_exact_identity_and_a_new_tensor():
    images = torch.rand(5, 1, 28, 28)
    result = augment(images, Augmentation(elastic_sigma=2.0), seeded(0))
    assert not Augmentation().active
    assert torch.equal(result, images)
    assert result.data_ptr() != images.data_ptr()


def test_output_keeps_shape_dtype_range_and_leaves_input_untouched():
    images = torch.rand(6, 1, 20, 24, dtype=torch.float64)
    original = images.clone()
    everything = Augmentation(2, 20.0, 0.2, 0.2, 30.0, 4.0)
    result = augment(images, everything, seeded(0))
    assert result.shape == images.shape and result.dtype == images.dtype
    assert result.min() >= 0 and result.max() <= 1
    assert torch.equal(images, original)


def test_shift_moves_every_image_by_a_whole_number_of_pixels_within_the_limit():
    limit = 2
    images = torch.rand(64, 1, 12, 10)
    result = augment(images, Augmentation(shift_pixels=limit), seeded(1))
    candidates = [(dy, dx) for dy in range(-limit, limit + 1) for dx in range(-limit, limit + 1)]
    found = set()
    for image, moved in zip(images, result):
        matches = [c for c in candidates if torch.equal(moved, reference_shift(image, *c))]
        assert len(matches) == 1, "each output must be an exact, zero-filled integer shift of its input"
        found.add(matches[0])
    assert len(found) >= 10, f"expected many distinct shifts over 64 images, saw {sorted(found)}"


def test_shift_direction_follows_the_documented_convention():
    image = torch.zeros(1, 1, 5, 5)
    image[0, 0, 2, 2] = 1
    moved = shift(image, torch.tensor([[1, -2]]))  # One down, two left.
    assert moved[0, 0, 3, 0] == 1 and moved.sum() == 1


def test_rotation_by_90_degrees_matches_torch_rot90_counter_clockwise():
    images = torch.rand(3, 2, 28, 28)
    ones = torch.ones(3)
    rotated = affine(images, torch.full((3,), 90.0), ones, torch.zeros(3))
    torch.testing.assert_close(rotated, torch.rot90(images, 1, dims=(-2, -1)), atol=1e-5, rtol=0)
    clockwise = affine(images, torch.full((3,), -90.0), ones, torch.zeros(3))
    torch.testing.assert_close(clockwise, torch.rot90(images, -1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_rotation_by_180_degrees_matches_rot90_twice_on_a_non_square_image():
    images = torch.rand(2, 1, 15, 22)
    rotated = affine(images, torch.full((2,), 180.0), torch.ones(2), torch.zeros(2))
    torch.testing.assert_close(rotated, torch.rot90(images, 2, dims=(-2, -1)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
def test_zero_angle_unit_scale_and_zero_skew_is_the_identity(dtype, tolerance):
    # In float32, affine_grid's normalised coordinates carry rounding errors of about 1e-7,
    # which bilinear weights turn into differences of a few 1e-6 on a 28-pixel image.
    images = torch.rand(4, 1, 28, 28, dtype=dtype)
    same = affine(images, torch.zeros(4), torch.ones(4), torch.zeros(4))
    torch.testing.assert_close(same, images, atol=tolerance, rtol=0)


def test_skew_of_one_slides_each_row_by_its_distance_from_the_centre():
    # On an odd-sized image every row centre lies a whole number of pixels from the middle,
    # so a shear of 1 is an exact per-row shift; the image is not square, which also checks
    # the conversion between pixel and normalised grid units on both axes.
    height, width = 9, 16
    images = torch.rand(1, 1, height, width)
    skewed = affine(images, torch.zeros(1), torch.ones(1), torch.ones(1))
    expected = torch.zeros_like(images)
    for row in range(height):
        offset = (height - 1) // 2 - row  # Rows above the centre move right.
        expected[0, 0, row] = reference_shift(images[0, 0, row : row + 1], 0, offset)[0]
    torch.testing.assert_close(skewed, expected, atol=1e-5, rtol=0)


def test_zoom_of_one_half_reads_every_second_pixel_from_the_centre():
    size, centre = 21, 10
    images = torch.rand(1, 1, size, size)
    shrunk = affine(images, torch.zeros(1), torch.full((1,), 0.5), torch.zeros(1))
    inner = slice(centre - 5, centre + 6)
    torch.testing.assert_close(shrunk[0, 0, inner, inner], images[0, 0, ::2, ::2], atol=1e-5, rtol=0)


def central_moments(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Second central moments (mu20, mu02, mu11) of (N, 1, H, W) ink, with x right and y down."""
    height, width = images.shape[-2:]
    rows = torch.arange(height, dtype=images.dtype)
    columns = torch.arange(width, dtype=images.dtype)
    y, x = torch.meshgrid(rows, columns, indexing="ij")
    ink = images[:, 0]
    total = ink.sum(dim=(1, 2))
    x_mean = (ink * x).sum(dim=(1, 2)) / total
    y_mean = (ink * y).sum(dim=(1, 2)) / total
    dx, dy = x - x_mean[:, None, None], y - y_mean[:, None, None]
    moment = lambda weights: (ink * weights).sum(dim=(1, 2)) / total
    return moment(dx * dx), moment(dy * dy), moment(dx * dy)


def bar(count: int, horizontal: bool, size: int = 41) -> torch.Tensor:
    """A centred bar 21 pixels long and 3 wide, (count, 1, size, size)."""
    image = torch.zeros(size, size, dtype=torch.float64)
    middle = size // 2
    image[middle - 1 : middle + 2, middle - 10 : middle + 11] = 1
    image = image if horizontal else image.T
    return image.expand(count, 1, size, size).clone()


def test_random_rotation_angles_stay_within_the_limit_and_use_its_range():
    # The orientation of a thin bar follows from its image moments (Hu 1962): it turns by
    # the random angle, so the angles must cover most of [-30, 30] degrees but never exceed it.
    rotated = augment(bar(64, horizontal=True), Augmentation(rotation_degrees=30.0), seeded(9))
    mu20, mu02, mu11 = central_moments(rotated)
    angles = torch.rad2deg(0.5 * torch.atan2(-2 * mu11, mu20 - mu02))  # Minus: y runs down.
    assert angles.abs().max() < 30.5
    assert angles.min() < -20 and angles.max() > 20


def test_random_zoom_scales_ink_area_by_the_square_of_a_factor_in_range():
    disk = ring_digit(64, size=41).double()
    zoomed = augment(disk, Augmentation(scale=0.3), seeded(10))
    factors = torch.sqrt(zoomed.sum(dim=(1, 2, 3)) / disk.sum(dim=(1, 2, 3)))
    assert factors.min() > 0.68 and factors.max() < 1.32
    assert factors.min() < 0.8 and factors.max() > 1.2


def test_random_skew_slants_a_vertical_bar_by_a_factor_in_range():
    # A shear x' = x - skew * y gives covariance(x', y) = -skew * variance(y).
    skewed = augment(bar(64, horizontal=False), Augmentation(skew=0.4), seeded(11))
    _, mu02, mu11 = central_moments(skewed)
    factors = -mu11 / mu02
    assert factors.abs().max() < 0.42
    assert factors.min() < -0.3 and factors.max() > 0.3


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
def test_zero_displacement_field_is_the_identity(dtype, tolerance):
    images = torch.rand(3, 1, 28, 28, dtype=dtype)
    warped = displace(images, torch.zeros(3, 2, 28, 28, dtype=dtype))
    torch.testing.assert_close(warped, images, atol=tolerance, rtol=0)


def test_constant_displacement_of_whole_pixels_equals_a_shift_on_a_non_square_image():
    images = torch.rand(2, 1, 12, 20)
    field = torch.zeros(2, 2, 12, 20)
    field[:, 0] = 3  # Read 3 pixels to the right: the content moves left.
    field[:, 1] = -1  # Read 1 pixel above: the content moves down.
    warped = displace(images, field)
    expected = torch.stack([reference_shift(image, 1, -3) for image in images])
    torch.testing.assert_close(warped, expected, atol=1e-5, rtol=0)


def test_gaussian_smoothing_of_an_impulse_reproduces_the_gaussian():
    sigma, size = 2.5, 41
    impulse = torch.zeros(1, 1, size, size, dtype=torch.float64)
    impulse[0, 0, size // 2, size // 2] = 1
    smoothed = gaussian_smooth(impulse, sigma)[0, 0]
    radius = int(3 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    one_dimensional = torch.exp(-(offsets**2) / (2 * sigma**2))
    one_dimensional /= one_dimensional.sum()
    window = slice(size // 2 - radius, size // 2 + radius + 1)
    torch.testing.assert_close(smoothed[window, window], torch.outer(one_dimensional, one_dimensional))
    assert math.isclose(smoothed.sum().item(), 1.0, rel_tol=1e-12)
    assert gaussian_kernel(4.0, torch.float32, torch.device("cpu")).shape == (25,)


def test_elastic_displacement_field_is_smooth_compared_with_raw_noise():
    field = random_displacement(8, 28, 28, alpha=1.0, sigma=4.0, generator=seeded(2), like=torch.zeros(1))
    noise = torch.rand(8, 2, 28, 28, generator=seeded(2)) * 2 - 1
    field_step = (field[..., 1:] - field[..., :-1]).abs().mean()
    noise_step = (noise[..., 1:] - noise[..., :-1]).abs().mean()
    assert field_step < 0.05 * noise_step
    assert field.abs().max() > 0


def test_elastic_field_strength_matches_the_smoothed_uniform_noise_it_comes_from():
    # Uniform(-1, 1) noise has variance 1/3; a normalised Gaussian of std sigma scales the
    # variance by (sum of squared kernel weights)^2 in 2-D, which is about (1 / (2 sqrt(pi) sigma))^2.
    # Away from the zero-padded border, the field's std must therefore be alpha * that.
    alpha, sigma = 34.0, 4.0
    field = random_displacement(64, 64, 64, alpha, sigma, generator=seeded(5), like=torch.zeros(1))
    interior = field[..., 16:48, 16:48]
    expected_std = alpha * math.sqrt(1 / 3) / (2 * math.sqrt(math.pi) * sigma)
    assert abs(interior.std().item() / expected_std - 1) < 0.05
    assert abs(interior.mean().item()) < 0.05 * expected_std


def test_elastic_distortion_changes_digits_but_keeps_their_ink():
    # Simard's alpha=34, sigma=4 stretches and squeezes strokes locally (about 10% ink
    # change per digit, measured over 1000 ring digits), but on average moves ink around
    # rather than creating or destroying it.
    digits = ring_digit(64)
    distorted = augment(digits, Augmentation(elastic_alpha=34.0, elastic_sigma=4.0), seeded(3))
    changed = (distorted - digits).abs().amax(dim=(1, 2, 3))
    assert (changed > 0.1).all(), "every digit should be visibly distorted at Simard's alpha=34"
    ink_ratio = distorted.sum(dim=(1, 2, 3)) / digits.sum(dim=(1, 2, 3))
    assert abs(ink_ratio.mean().item() - 1) < 0.05, ink_ratio
    assert ((ink_ratio > 0.6) & (ink_ratio < 1.4)).all(), ink_ratio


def test_same_seed_repeats_and_different_seed_differs():
    images = ring_digit(8)
    everything = Augmentation(1, 15.0, 0.1, 0.2, 34.0, 4.0)
    first = augment(images, everything, seeded(7))
    again = augment(images, everything, seeded(7))
    other = augment(images, everything, seeded(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"shift_pixels": -1}, "shift_pixels"),
        ({"shift_pixels": 28}, "shift_pixels"),
        ({"shift_pixels": 1.5}, "shift_pixels"),
        ({"rotation_degrees": -5.0}, "rotation_degrees"),
        ({"rotation_degrees": 181.0}, "rotation_degrees"),
        ({"scale": 1.0}, "scale"),
        ({"scale": -0.1}, "scale"),
        ({"skew": -0.2}, "skew"),
        ({"skew": 2.0}, "skew"),
        ({"elastic_alpha": -1.0}, "elastic_alpha"),
        ({"elastic_alpha": float("nan")}, "elastic_alpha"),
        ({"elastic_sigma": 0.0}, "elastic_sigma"),
    ],
)
def test_validate_rejects_bad_values_naming_the_field(settings, field):
    # The message names the field by its label on the Train page ("Zoom ±"), in either language.
    for language in ("en", "ko"):
        label = re.escape(translate(language, f"train.field.{field}"))
        with pytest.raises(AugmentationError) as caught:
            Augmentation(**settings).validate()
        assert re.search(label, caught.value.render(language))
    with pytest.raises(ValueError, match=re.escape(translate("en", f"train.field.{field}"))):
        augment(torch.rand(1, 1, 28, 28), Augmentation(**settings))


def test_validate_accepts_the_published_settings():
    Augmentation(shift_pixels=1).validate()  # Nielsen's expand_mnist.py.
    Augmentation(elastic_alpha=34.0, elastic_sigma=4.0).validate()  # Simard 2003.
    Augmentation(27, 180.0, 0.99, 1.0, 100.0, 0.5).validate()


def test_augment_rejects_batches_of_the_wrong_shape_or_dtype():
    with pytest.raises(ValueError, match="N, C, H, W"):
        augment(torch.rand(28, 28), Augmentation(shift_pixels=1))
    with pytest.raises(ValueError, match="floating point"):
        augment(torch.zeros(1, 1, 28, 28, dtype=torch.uint8), Augmentation(shift_pixels=1))


def test_preview_puts_the_original_first_and_is_deterministic():
    digits = ring_digit(3)
    settings = Augmentation(shift_pixels=2, rotation_degrees=20.0, elastic_alpha=34.0)
    grid = preview(digits, settings, copies=5, seed=4)
    assert grid.shape == (3, 5, 28, 28)
    assert grid.min() >= 0 and grid.max() <= 1
    assert torch.equal(grid[:, 0], digits[:, 0])
    assert not torch.equal(grid[:, 1], grid[:, 2])
    assert torch.equal(grid, preview(digits, settings, copies=5, seed=4))
    assert not torch.equal(grid, preview(digits, settings, copies=5, seed=5))
    assert preview(digits[:, 0], settings, copies=1).shape == (3, 1, 28, 28)


def test_preview_rejects_bad_arguments():
    with pytest.raises(ValueError, match="copies"):
        preview(ring_digit(1), Augmentation(shift_pixels=1), copies=0)
    with pytest.raises(ValueError, match="shape"):
        preview(torch.rand(2, 3, 28, 28), Augmentation(shift_pixels=1))
