"""Random, batch-wise data augmentation for images in [0, 1]: integer shifts, rotation,
zoom, skew and Simard's elastic distortion, all computed on the batch's own device.

This module owns the augmentation settings and the tensor maths that applies them; each
setting's range is declared once, in `core.data.bounds.AUGMENTATION_BOUNDS` (torch-free, so
the training settings declare their augmentation fields with the same ranges). It does not
know about datasets, the training loop or how a preview is drawn; it takes a batch of
shape (N, C, H, W) and returns a new one of the same shape, dtype and device.

Geometry conventions, used throughout: x runs to the right and y runs down the image;
a positive angle rotates the content counter-clockwise as seen on screen (the direction of
`torch.rot90(images, 1, dims=(-2, -1))`); a zoom factor above 1 enlarges the content; a
positive skew leans the top of the content to the right, like italic type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.data.bounds import AUGMENTATION_BOUNDS, MNIST_SIDE, shown
from core.errors import LayerLabError, Message

# The Gaussian kernel is cut off at three standard deviations, like scipy.ndimage's
# gaussian_filter(truncate=3.0), which the common Simard 2003 re-implementations call.
GAUSSIAN_TRUNCATE = 3.0


class AugmentationError(LayerLabError, ValueError):
    """An augmentation setting outside its range; the message names the field and the range."""


@dataclass(frozen=True)
class Augmentation:
    """How strongly to perturb each training image; every field at its default is off."""

    shift_pixels: int = 0  # Integer shift in [-k, k] per axis, zero fill (expand_mnist.py: 1).
    rotation_degrees: float = 0.0  # Rotation angle drawn uniformly from [-d, d].
    scale: float = 0.0  # Zoom factor drawn uniformly from [1 - s, 1 + s].
    skew: float = 0.0  # Horizontal shear factor drawn uniformly from [-s, s].
    elastic_alpha: float = 0.0  # Elastic strength in pixels, 0 is off (Simard 2003: 34).
    elastic_sigma: float = 4.0  # Smoothing of the elastic field in pixels (Simard 2003: 4).

    @property
    def active(self) -> bool:
        """True when at least one perturbation would change an image."""
        return self.shift_pixels > 0 or self.uses_affine or self.elastic_alpha > 0

    @property
    def uses_affine(self) -> bool:
        """True when rotation, zoom or skew is switched on."""
        return self.rotation_degrees > 0 or self.scale > 0 or self.skew > 0

    def validate(self) -> None:
        """Raise AugmentationError, naming the field and its valid range, for any setting out of range."""
        if isinstance(self.shift_pixels, bool) or not isinstance(self.shift_pixels, int):
            raise AugmentationError("augment.shift_not_whole", setting="shift_pixels", value=shown(self.shift_pixels))
        for name in AUGMENTATION_BOUNDS:
            _check_range(name, getattr(self, name))


# What to try instead, per field, after the range an out-of-range value missed: the catalogs'
# "message.augment.advice.<field>" sentences (a shift of MNIST_SIDE pixels moves a digit out of its frame).
ADVICE = {name: f"augment.advice.{name}" for name in AUGMENTATION_BOUNDS}


def _check_range(name: str, value: object) -> None:
    """Reject a value that is not a finite real number inside the field's AUGMENTATION_BOUNDS range."""
    bound = AUGMENTATION_BOUNDS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
        raise AugmentationError("augment.not_finite", setting=name, value=shown(value))
    if not bound.contains(value):
        advice = Message(ADVICE[name], {"side": MNIST_SIDE})
        raise AugmentationError("augment.out_of_range", setting=name, value=shown(value), interval=bound.interval_text(), advice=advice)


def augment(
    images: torch.Tensor, augmentation: Augmentation, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Return a randomly perturbed copy of a batch of images in [0, 1].

    images: (N, C, H, W) floating point, on any device. The result has the same shape, dtype
    and device, lies in [0, 1], and equals the input exactly when the augmentation is not
    active. Random numbers come from `generator` (on the CPU or any device) and are moved to
    the images' device, so a CPU generator seeded the same way gives the same perturbations
    for a CPU or a CUDA batch. Without a generator, the default generator of the images'
    device is used.

    Example: augment(images, Augmentation(shift_pixels=1, rotation_degrees=10.0))
    """
    _check_images(images)
    augmentation.validate()
    if not augmentation.active or len(images) == 0:
        return images.clone()
    result = images
    if augmentation.shift_pixels > 0:
        offsets = _random_integers(len(images), augmentation.shift_pixels, generator, images.device)
        result = shift(result, offsets)
    if augmentation.uses_affine or augmentation.elastic_alpha > 0:
        result = _resample_randomly(result, augmentation, generator)
    return result.clamp(0.0, 1.0)


def _resample_randomly(
    images: torch.Tensor, augmentation: Augmentation, generator: torch.Generator | None
) -> torch.Tensor:
    """Apply the random affine and elastic parts with a single bilinear resampling.

    Each bilinear pass blurs thin strokes a little, so the affine grid and the elastic
    offsets are added into one sampling grid and the image is interpolated only once.
    """
    count, _, height, width = images.shape
    if augmentation.uses_affine:
        angles = _random_symmetric(count, augmentation.rotation_degrees, generator, images)
        scales = 1.0 + _random_symmetric(count, augmentation.scale, generator, images)
        skews = _random_symmetric(count, augmentation.skew, generator, images)
        grid = _affine_grid(angles, scales, skews, height, width)
    else:
        grid = _identity_grid(count, height, width, images)
    if augmentation.elastic_alpha > 0:
        displacement = random_displacement(
            count, height, width, augmentation.elastic_alpha, augmentation.elastic_sigma, generator, images
        )
        grid = grid + _pixels_to_grid_units(displacement)
    return _sample(images, grid)


def shift(images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Move each image by a whole number of pixels, filling the uncovered border with zeros.

    images: (N, C, H, W). offsets: (N, 2) integers (dy, dx); positive dy moves the content
    down and positive dx moves it right. Pixels are copied exactly, never interpolated.
    """
    count, channels, height, width = images.shape
    margin = int(offsets.abs().max().item()) if offsets.numel() else 0
    padded = F.pad(images, (margin, margin, margin, margin))  # (N, C, H + 2m, W + 2m)
    offsets = offsets.to(images.device, torch.long)
    # Output pixel (i, j) reads padded pixel (i + m - dy, j + m - dx).
    rows = torch.arange(height, device=images.device) + margin - offsets[:, 0:1]  # (N, H)
    columns = torch.arange(width, device=images.device) + margin - offsets[:, 1:2]  # (N, W)
    batch_index = torch.arange(count, device=images.device)[:, None, None, None]
    channel_index = torch.arange(channels, device=images.device)[None, :, None, None]
    return padded[batch_index, channel_index, rows[:, None, :, None], columns[:, None, None, :]]


def affine(
    images: torch.Tensor, angles_degrees: torch.Tensor, scales: torch.Tensor, skews: torch.Tensor
) -> torch.Tensor:
    """Rotate, zoom and skew each image about its centre with bilinear interpolation.

    images: (N, C, H, W). angles_degrees, scales, skews: (N,) per-image values; a positive
    angle turns the content counter-clockwise on screen, a scale above 1 enlarges it, and a
    positive skew leans its top to the right. Pixels that come from outside the frame are 0.
    """
    count, _, height, width = images.shape
    per_image = [
        torch.as_tensor(values, dtype=images.dtype, device=images.device).expand(count)
        for values in (angles_degrees, scales, skews)
    ]
    return _sample(images, _affine_grid(*per_image, height, width))


def displace(images: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Warp each image by a per-pixel displacement field measured in pixels.

    images: (N, C, H, W). displacement: (N, 2, H, W), channel 0 horizontal (x, right) and
    channel 1 vertical (y, down). Output pixel p takes the input value at p + displacement(p),
    read with bilinear interpolation, which is Simard 2003's formulation of elastic distortion.
    """
    count, _, height, width = images.shape
    grid = _identity_grid(count, height, width, images) + _pixels_to_grid_units(displacement)
    return _sample(images, grid)


def random_displacement(
    count: int,
    height: int,
    width: int,
    alpha: float,
    sigma: float,
    generator: torch.Generator | None,
    like: torch.Tensor,
) -> torch.Tensor:
    """Draw Simard 2003 elastic displacement fields, shape (count, 2, height, width), in pixels.

    Every pixel gets an independent displacement uniform in (-1, 1) on each axis; the field
    is smoothed by a Gaussian of standard deviation `sigma` pixels and multiplied by `alpha`
    (Simard, Steinkraus & Platt 2003, section 2). The result has `like`'s dtype and device.
    """
    noise = _random_uniform((count, 2, height, width), generator, like) * 2.0 - 1.0
    return gaussian_smooth(noise, sigma) * alpha


def gaussian_smooth(fields: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each channel of (N, C, H, W) by a Gaussian of std `sigma` pixels, zero outside.

    The 2-D Gaussian is separable, so one horizontal and one vertical 1-D convolution give
    the same result as the full 2-D kernel at a fraction of the cost.
    """
    count, channels, height, width = fields.shape
    kernel = gaussian_kernel(sigma, fields.dtype, fields.device)
    radius = len(kernel) // 2
    flat = fields.reshape(count * channels, 1, height, width)
    flat = F.conv2d(flat, kernel.view(1, 1, 1, -1), padding=(0, radius))
    flat = F.conv2d(flat, kernel.view(1, 1, -1, 1), padding=(radius, 0))
    return flat.reshape(count, channels, height, width)


def gaussian_kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A normalised 1-D Gaussian of std `sigma`, cut at scipy's radius int(3 * sigma + 0.5)."""
    radius = max(1, int(GAUSSIAN_TRUNCATE * sigma + 0.5))
    positions = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (positions / sigma) ** 2)
    return kernel / kernel.sum()


def preview(images: torch.Tensor, augmentation: Augmentation, copies: int = 8, seed: int = 0) -> torch.Tensor:
    """Show what the augmentation does: (len(images), copies, H, W) in [0, 1].

    images: (N, 1, H, W) or (N, H, W). Column 0 of each row is the original image and the
    other copies - 1 columns are independent augmented variants of it. The same seed always
    gives the same grid; a seeded CPU generator draws the random numbers, so a CUDA batch
    gets the same perturbations too (up to floating point rounding in grid_sample).
    """
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(
            f"preview expects images of shape (N, 1, H, W) or (N, H, W), got {tuple(images.shape)}."
        )
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"copies must be a whole number of at least 1, got {copies!r}.")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        repeated = images.repeat_interleave(copies - 1, dim=0)  # (N * (copies - 1), 1, H, W)
        variants = augment(repeated, augmentation, generator)
    count, _, height, width = images.shape
    variants = variants.reshape(count, copies - 1, height, width)
    return torch.cat([images.reshape(count, 1, height, width), variants], dim=1).clamp(0.0, 1.0)


def _affine_grid(
    angles_degrees: torch.Tensor, scales: torch.Tensor, skews: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Sampling grid (N, H, W, 2) for grid_sample that rotates, zooms and skews about the centre.

    The forward map of the content, in pixel units with y down, is rotation @ shear @ zoom.
    grid_sample needs the inverse (where each output pixel reads from), expressed in the
    normalised coordinates of align_corners=False, where x_normalised = x_pixels / (W / 2).
    """
    radians = torch.deg2rad(angles_degrees)
    cos, sin = torch.cos(radians), torch.sin(radians)
    ones, zeros = torch.ones_like(radians), torch.zeros_like(radians)
    # The inverse of a counter-clockwise (on screen) rotation, in y-down pixel coordinates.
    inverse_rotation = _matrices(cos, -sin, sin, cos)
    # The forward shear x' = x - skew * y leans the top right; its inverse adds skew * y.
    inverse_shear = _matrices(ones, skews, zeros, ones)
    inverse = inverse_shear @ inverse_rotation / scales[:, None, None]  # (N, 2, 2)
    half_size = torch.tensor([width / 2, height / 2], dtype=inverse.dtype, device=inverse.device)
    # theta = D^-1 @ inverse @ D with D = diag(W / 2, H / 2), so entry (i, j) scales by D_j / D_i.
    inverse = inverse * half_size[None, None, :] / half_size[None, :, None]
    theta = torch.cat([inverse, torch.zeros_like(inverse[:, :, :1])], dim=2)  # (N, 2, 3)
    return F.affine_grid(theta, [len(theta), 1, height, width], align_corners=False)


def _matrices(top_left, top_right, bottom_left, bottom_right) -> torch.Tensor:
    """Stack four (N,) tensors into N 2x2 matrices."""
    return torch.stack([top_left, top_right, bottom_left, bottom_right], dim=1).reshape(-1, 2, 2)


def _identity_grid(count: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """The grid (N, H, W, 2) on which grid_sample reads every pixel at its own centre."""
    theta = torch.eye(2, 3, dtype=like.dtype, device=like.device).expand(count, 2, 3)
    return F.affine_grid(theta, [count, 1, height, width], align_corners=False)


def _pixels_to_grid_units(displacement: torch.Tensor) -> torch.Tensor:
    """Convert (N, 2, H, W) pixel displacements (x, y) to grid_sample's (N, H, W, 2) units.

    With align_corners=False the normalised range [-1, 1] spans W pixels horizontally and
    H vertically, so one pixel is 2 / W units in x and 2 / H units in y.
    """
    height, width = displacement.shape[-2:]
    pixel_size = displacement.new_tensor([2.0 / width, 2.0 / height])
    return displacement.permute(0, 2, 3, 1) * pixel_size


def _sample(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Read images at grid positions with bilinear interpolation, zero outside the frame."""
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _random_uniform(
    shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn on the generator's device, then moved to `like`'s device.

    Drawing where the generator lives lets a CPU generator drive a CUDA batch, and makes a
    seeded CPU generator give the same numbers whatever device the images are on.
    """
    device = generator.device if generator is not None else like.device
    values = torch.rand(shape, generator=generator, device=device, dtype=like.dtype)
    return values.to(like.device)


def _random_symmetric(
    count: int, limit: float, generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """(count,) values uniform in [-limit, limit]; zeros, drawing nothing, when limit is 0."""
    if limit == 0:
        return torch.zeros(count, dtype=like.dtype, device=like.device)
    return (_random_uniform((count,), generator, like) * 2.0 - 1.0) * limit


def _random_integers(
    count: int, limit: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """(count, 2) integer offsets (dy, dx), each uniform in [-limit, limit]."""
    source = generator.device if generator is not None else device
    # The offsets stay where they were drawn: shift() reads their largest value on the host,
    # which for offsets drawn by a CPU generator costs no device synchronisation.
    return torch.randint(-limit, limit + 1, (count, 2), generator=generator, device=source)


def _check_images(images: torch.Tensor) -> None:
    """Reject anything that is not a floating point batch of shape (N, C, H, W)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"augment expects a batch of images shaped (N, C, H, W), got {shape}.")
    if not images.is_floating_point():
        raise ValueError(
            f"augment expects floating point images in [0, 1], got dtype {images.dtype}. "
            "Convert with images.float() / 255 first."
        )
