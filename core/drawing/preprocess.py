"""MNIST-style preprocessing: a drawing, a scan or a photo in, the 28×28 image a network sees out.

Owns the steps LeCun, Cortes and Burges describe for making MNIST ("The MNIST database",
1998): the digit is cropped to its ink, scaled so its longer side is 20 px keeping the aspect
ratio (anti-aliased, hence the grey levels), and placed in a 28×28 field so its centre of
mass sits at the centre. Before that it finds the ink: the alpha channel of a drawing, or
the darker or lighter minority of a grey image (so dark-on-light and light-on-dark both
work), thresholded with Otsu's method, keeping the digit's large connected parts and
dropping specks and paper edges. It also owns reading uploaded files safely (PNG and JPEG
only, size-capped, decompression bombs refused from the header). It knows nothing of
models or of the UI; pure numpy and Pillow, no torch.
"""

from __future__ import annotations

import io
import warnings
from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from core.errors import LayerLabError

FIELD_SIDE = 28  # MNIST's image side
BOX_SIDE = 20  # the longer side of the digit inside the field (LeCun et al.)
# Below this spread between the darkest and the lightest pixel there is no drawing at all.
MIN_CONTRAST = 0.15
# Fewer ink pixels than this fraction of the image (or than MIN_INK_PIXELS) is "nearly empty":
# a stray click or a speck on a scan, not a digit to guess at.
MIN_INK_FRACTION = 0.0005
MIN_INK_PIXELS = 6
# Larger images are reduced to this longer side before the work (a phone photo is 4000 px;
# a digit needs far fewer, and the canvas is 280).
WORKING_SIDE = 560
# Connected parts are found on a grid of at most this many cells a side (each cell is the
# maximum of its pixels, so strokes stay connected); a part smaller than KEEP_FRACTION of
# the largest is a speck. The bar of a 5 or the second stroke of a 4 is far larger.
COMPONENT_GRID = 32
KEEP_FRACTION = 0.10
# Ink less than this above the ground's level is ground.
RIM_LEVEL = 0.04

# Uploads: PNG and JPEG only, at most this many bytes and this many pixels (a 40-megapixel
# phone photo fits; a decompression bomb, whose header claims billions, does not).
UPLOAD_FORMATS = ("PNG", "JPEG")
MAX_UPLOAD_BYTES = 15 * 1024 * 1024
MAX_UPLOAD_PIXELS = 50_000_000
_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


class DrawingError(LayerLabError, ValueError):
    """A drawing or an image that cannot become a digit: empty, unreadable, too large or not PNG/JPEG."""


class EmptyDrawing(DrawingError):
    """There is no digit to classify (a blank canvas, or only a speck of ink)."""


@dataclass(frozen=True)
class Prepared:
    """The result of `prepare`: the image the network sees and what was found on the way."""

    image: np.ndarray  # (28, 28) uint8, white ink on black as in MNIST
    dark_on_light: bool  # the source had dark ink on a light ground, so it was inverted
    from_alpha: bool  # the ink came from the alpha channel (a drawing on a transparent canvas)
    kept_parts: int  # connected parts of ink kept (specks and paper edges dropped)


def prepare(picture: np.ndarray | Image.Image) -> Prepared:
    """Turn a drawing, scan or photo into MNIST's 28×28 format; raises EmptyDrawing when there is no digit.

    `picture` is an array (H, W), (H, W, 3) or (H, W, 4) of uint8, or a Pillow image. The
    output is uint8, white ink on black, the digit's longer side 20 px and its centre of
    mass at pixel (14, 14) as in MNIST (within half a pixel, unless that would push ink off the field).
    """
    ink, dark_on_light, from_alpha = _ink(picture)
    ink = _reduce(ink)
    ink = np.clip(ink - _uneven_ground(ink), 0.0, 1.0)
    if float(ink.max() - ink.min()) < MIN_CONTRAST:
        raise EmptyDrawing("drawing.empty")
    mask = ink > _otsu_threshold(ink)
    if int(mask.sum()) < max(MIN_INK_PIXELS, MIN_INK_FRACTION * ink.size):
        raise EmptyDrawing("drawing.faint")
    ground = _ground_level(ink[~mask])
    # The digit's extent includes its faint anti-aliased rim (as MNIST's 20-px box does), so the
    # parts are found just above the ground, not at Otsu's threshold, which would crop the rim
    # and so enlarge the digit.
    keep, kept_parts = _digit_parts(ink > ground + RIM_LEVEL, touching_border_allowed=from_alpha)
    full = float(np.percentile(ink[keep & mask], 90)) if (keep & mask).any() else float(ink[keep].max())
    # The ground becomes 0 and the ink 1: a photo's grey paper and grey pencil become black and white.
    ink = np.clip((ink - ground) / max(full - ground, 1e-3), 0.0, 1.0) * keep
    rows, columns = np.nonzero(keep)
    crop = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    return Prepared(_center_in_field(_scale_to_box(crop)), dark_on_light, from_alpha, kept_parts)


def read_upload(data: bytes) -> Image.Image:
    """Open an uploaded PNG or JPEG safely: format and size checked from the header before any pixel is decoded.

    Raises DrawingError for anything else (another format, too many bytes, a header claiming
    more than MAX_UPLOAD_PIXELS pixels, a damaged file). The image comes back decoded, turned
    upright by its EXIF orientation (phone photos) and reduced to at most WORKING_SIDE a side.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        raise DrawingError("drawing.file_too_large", size=f"{len(data) / 2**20:.1f}", limit=MAX_UPLOAD_BYTES // 2**20)
    if not any(data.startswith(signature) for signature in _SIGNATURES):
        raise DrawingError("drawing.not_png_or_jpeg")
    with warnings.catch_warnings():
        # Pillow warns (DecompressionBombWarning) before decoding an image past its own limit; refuse instead.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)  # Reads the header only.
            width, height = image.size
            if width * height > MAX_UPLOAD_PIXELS:
                raise DrawingError("drawing.too_many_pixels", width=width, height=height, limit=MAX_UPLOAD_PIXELS // 1_000_000)
            if image.format == "JPEG":
                image.draft("L", (WORKING_SIDE, WORKING_SIDE))  # Let libjpeg decode at 1/2, 1/4 or 1/8 scale.
            image.load()
            image = ImageOps.exif_transpose(image)
        except DrawingError:
            raise
        except Image.UnidentifiedImageError:
            raise DrawingError("drawing.unidentified") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise DrawingError("drawing.decompression_bomb", detail=str(error)) from None
        except (OSError, SyntaxError, ValueError) as error:
            raise DrawingError("drawing.unreadable", detail=str(error)) from None
    image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.BOX)
    return image


def prepare_upload(data: bytes) -> Prepared:
    """`read_upload` then `prepare`: the path for a file from the uploader or the CLI."""
    return prepare(read_upload(data))


# ----------------------------------------------------------------------------- finding the ink


def _ink(picture: np.ndarray | Image.Image) -> tuple[np.ndarray, bool, bool]:
    """Ink strength in [0, 1] (1 = full ink) as float32, whether it was dark on light, and whether it came from alpha."""
    if isinstance(picture, Image.Image):
        picture = np.asarray(picture.convert("RGBA") if picture.mode in ("RGBA", "LA", "PA", "P") else picture.convert("L"))
    array = np.asarray(picture)
    if array.ndim == 3 and array.shape[2] == 4:
        alpha = array[:, :, 3]
        if alpha.min() < 250:  # A transparent ground: whatever was painted is ink, whatever its colour.
            return alpha.astype(np.float32) / 255.0, False, True
        array = array[:, :, :3]
    if array.ndim == 3:
        # ITU-R 601 luma, as Pillow's convert("L") computes it.
        array = array[:, :, 0] * 0.299 + array[:, :, 1] * 0.587 + array[:, :, 2] * 0.114
    if array.ndim != 2 or min(array.shape) < 1:
        raise DrawingError("drawing.bad_shape", shape=str(np.shape(picture)))
    # uint8 pictures run 0–255; float ones are taken to run 0–1 unless they exceed it.
    scale = 255.0 if np.asarray(picture).dtype == np.uint8 or float(array.max()) > 1.0 else 1.0
    grey = array.astype(np.float32) / scale
    # A digit covers less than half of its picture: the minority side of the threshold is the ink.
    dark_on_light = bool((grey < _otsu_threshold(grey)).mean() < 0.5)
    return (1.0 - grey if dark_on_light else grey), dark_on_light, False


def _reduce(ink: np.ndarray) -> np.ndarray:
    if max(ink.shape) <= WORKING_SIDE:
        return ink
    image = Image.fromarray(ink, mode="F")
    image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32)


def _uneven_ground(ink: np.ndarray, blocks: int = 8) -> np.ndarray:
    """The ground's level at each pixel, for paper lit unevenly: 0 everywhere on a clean canvas.

    The picture is cut into blocks×blocks tiles; a tile's level is its 25th percentile (a
    stroke covers far less than three quarters of a tile), lowered to the least of its
    neighbours' (so a tile inside a thick stroke takes the paper's level beside it), then
    spread smoothly over the pixels.
    """
    height, width = ink.shape
    tile_height, tile_width = -(-height // blocks), -(-width // blocks)
    padded = np.pad(ink, ((0, tile_height * blocks - height), (0, tile_width * blocks - width)), mode="edge")
    tiles = padded.reshape(blocks, tile_height, blocks, tile_width).transpose(0, 2, 1, 3).reshape(blocks, blocks, -1)
    levels = np.percentile(tiles, 25, axis=2)
    if not levels.any():
        return np.zeros_like(ink)
    around = np.pad(levels, 1, mode="edge")
    lowest = np.min([around[row : row + blocks, column : column + blocks] for row in range(3) for column in range(3)], axis=0)
    smooth = Image.fromarray(lowest.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(smooth, dtype=np.float32)


def _otsu_threshold(values: np.ndarray, bins: int = 64) -> float:
    """Otsu's threshold (1979): the level that maximises the between-class variance of the histogram."""
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-6:
        return high
    # A histogram by bincount of the quantised values: several times faster than np.histogram.
    bin_width = (high - low) / bins
    counts = np.bincount(np.minimum(((values - low) / bin_width).astype(np.int32), bins - 1).ravel(), minlength=bins)
    centres = low + (np.arange(bins) + 0.5) * bin_width
    weight_below = np.cumsum(counts)
    weight_above = weight_below[-1] - weight_below
    sum_below = np.cumsum(counts * centres)
    mean_below = sum_below / np.maximum(weight_below, 1)
    mean_above = (sum_below[-1] - sum_below) / np.maximum(weight_above, 1)
    between = weight_below * weight_above * (mean_below - mean_above) ** 2
    return low + (int(np.argmax(between[:-1])) + 1) * bin_width


def _digit_parts(mask: np.ndarray, touching_border_allowed: bool) -> tuple[np.ndarray, int]:
    """The pixels of the digit's connected parts (8-connected), and how many parts were kept.

    Parts smaller than KEEP_FRACTION of the largest are specks. On a photo or scan, parts that
    touch the picture's edge (the paper's edge, a shadow, the desk) are dropped as long as a
    part that does not touch it remains; a drawing may touch its canvas's edge.
    """
    cell = max(1, -(-max(mask.shape) // COMPONENT_GRID))
    height, width = -(-mask.shape[0] // cell), -(-mask.shape[1] // cell)
    padded = np.zeros((height * cell, width * cell), dtype=bool)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    grid = padded.reshape(height, cell, width, cell).any(axis=(1, 3))
    labels = _label(grid)
    # Each part's size in full-resolution ink pixels, so a thin stroke does not count as big as a blob.
    pixel_labels = np.repeat(np.repeat(labels, cell, axis=0), cell, axis=1)[: mask.shape[0], : mask.shape[1]]
    sizes = np.bincount(pixel_labels[mask], minlength=int(labels.max()) + 1)
    sizes[0] = 0
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))) - {0}
    candidates = [part for part in range(1, len(sizes)) if sizes[part] > 0]
    if not touching_border_allowed and any(part not in border for part in candidates):
        candidates = [part for part in candidates if part not in border]
    largest = max(sizes[part] for part in candidates)
    kept = [part for part in candidates if sizes[part] >= KEEP_FRACTION * largest]
    kept_label = np.zeros(len(sizes), dtype=bool)
    kept_label[kept] = True
    return mask & kept_label[pixel_labels], len(kept)


def _label(grid: np.ndarray) -> np.ndarray:
    """Connected-component labels (8-connectivity, 0 = background) of a small boolean grid, by breadth-first search."""
    labels = np.zeros(grid.shape, dtype=np.int32)
    height, width = grid.shape
    cells = grid.tolist()
    found = labels.tolist()
    next_label = 0
    for start_row, start_column in zip(*np.nonzero(grid)):
        if found[start_row][start_column]:
            continue
        next_label += 1
        found[start_row][start_column] = next_label
        queue = deque([(start_row, start_column)])
        while queue:
            row, column = queue.popleft()
            for neighbour_row in (row - 1, row, row + 1):
                if 0 <= neighbour_row < height:
                    for neighbour_column in (column - 1, column, column + 1):
                        if 0 <= neighbour_column < width and cells[neighbour_row][neighbour_column] and not found[neighbour_row][neighbour_column]:
                            found[neighbour_row][neighbour_column] = next_label
                            queue.append((neighbour_row, neighbour_column))
    return np.array(found, dtype=np.int32)


def _ground_level(ground: np.ndarray) -> float:
    """The brightest the ground gets: Tukey's upper fence (third quartile + 1.5 × interquartile range) of the non-ink pixels.

    A clean canvas's ground is 0. Paper lit unevenly, with sensor noise, spreads; the fence
    lies above nearly all of it but below the ink.
    """
    if ground.size == 0:
        return 0.0
    first, third = np.percentile(ground, [25, 75])
    return float(third + 1.5 * (third - first))


# ----------------------------------------------------------------------------- MNIST's normalisation


def _scale_to_box(crop: np.ndarray) -> np.ndarray:
    """Scale so the longer side is BOX_SIDE px, keeping the aspect ratio, anti-aliased."""
    height, width = crop.shape
    scale = BOX_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Shrinking averages each output pixel's area (a box filter: anti-aliased, and no blurrier
    # than it must be); enlarging a tiny drawing interpolates linearly.
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    resized = Image.fromarray(crop.astype(np.float32), mode="F").resize(size, method)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _center_in_field(digit: np.ndarray) -> np.ndarray:
    """Place `digit` in a 28×28 field with its centre of mass at the field's centre, kept inside the field.

    "The centre" is pixel (14, 14), counting pixels from 0: that is where MNIST's digits have
    theirs (the test set's mean centre of mass is row 13.99, column 14.01). A network trained
    on MNIST is not indifferent to the half pixel between that and the geometric 13.5.
    """
    total = float(digit.sum())
    rows, columns = np.indices(digit.shape)
    centre_row = float((rows * digit).sum()) / total
    centre_column = float((columns * digit).sum()) / total
    middle = FIELD_SIDE / 2
    top = min(max(round(middle - centre_row), 0), FIELD_SIDE - digit.shape[0])
    left = min(max(round(middle - centre_column), 0), FIELD_SIDE - digit.shape[1])
    field = np.zeros((FIELD_SIDE, FIELD_SIDE), dtype=np.float32)
    field[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return np.round(field * 255.0).astype(np.uint8)
