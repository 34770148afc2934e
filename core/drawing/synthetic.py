"""MNIST digits re-drawn as if on the canvas: the stand-in for many people's handwriting in tests and benchmarks.

Owns one rendering: a 28×28 MNIST digit cropped to its ink, enlarged ten times (the canvas
has ten screen pixels per MNIST pixel), its strokes thickened as a felt pen thickens them,
and placed at a random offset with a margin on a white 280×280 canvas in black, as the Draw
page's canvas returns it (RGBA). Preprocessing must undo all of that: the crop, the scale,
the position and the inversion.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

CANVAS_SIDE = 280
SCALE = 10
# Thicker strokes: a disc-shaped maximum filter of this radius in canvas pixels (0.2 MNIST
# pixels on each side), so strokes are about 15 % thicker than the MNIST digit's.
PEN_RADIUS = 2


def as_drawn(digit: np.ndarray, random: np.random.Generator, pen_radius: int = PEN_RADIUS, side: int = CANVAS_SIDE) -> np.ndarray:
    """(side, side, 4) uint8 RGBA: `digit` (28×28 uint8, white on black) drawn black on white at a random place."""
    rows, columns = np.nonzero(digit)
    crop = digit[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    large = np.asarray(Image.fromarray(crop).resize((crop.shape[1] * SCALE, crop.shape[0] * SCALE), Image.Resampling.BILINEAR))
    large = thicken(np.pad(large, pen_radius), pen_radius)
    height, width = large.shape
    if height > side or width > side:
        raise ValueError(f"A {height}×{width} digit does not fit a {side}-px canvas.")
    top, left = int(random.integers(0, side - height + 1)), int(random.integers(0, side - width + 1))
    ink = np.zeros((side, side), dtype=np.uint8)
    ink[top : top + height, left : left + width] = large
    canvas = np.full((side, side, 4), 255, dtype=np.uint8)
    canvas[:, :, :3] = 255 - ink[:, :, None]
    return canvas


def thicken(image: np.ndarray, radius: int) -> np.ndarray:
    """Grey-level dilation with a disc of `radius` pixels (a maximum filter)."""
    result = image.copy()
    for row_shift in range(-radius, radius + 1):
        for column_shift in range(-radius, radius + 1):
            if row_shift * row_shift + column_shift * column_shift <= radius * radius:
                result = np.maximum(result, np.roll(image, (row_shift, column_shift), axis=(0, 1)))
    return result
