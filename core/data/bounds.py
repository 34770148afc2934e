"""Ranges for values a person types, and the augmentation's ranges, declared once for every layer above.

Owns `Bound` (a numeric range whose ends are included or not, and the phrase that explains a
value outside it), `shown` (a short, always printable form of any value for an error message)
and `AUGMENTATION_BOUNDS`, the one source of the augmentation limits: `core.data.augment`
checks with them and `core.training.settings` declares its augmentation fields with them. It
imports no torch, so the settings (which the CLI reads instantly) can import it.
"""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass

from core.errors import Message

# A shift of 28 pixels moves a 28x28 MNIST digit entirely out of its frame.
MNIST_SIDE = 28
# A skew (shear) factor of 1 already slants vertical strokes by 45 degrees.
MAX_SKEW = 1.0

# Error messages quote the value they refuse; a value from a crafted file can be a list nested
# a thousand deep, text of a million characters or an integer of thousands of digits (whose
# repr raises ValueError past 4,300 digits), so it is shown shortened.
_LARGEST_SHOWN_INTEGER = 10**30


class _ShortRepr(reprlib.Repr):
    def repr_int(self, value: int, level: int) -> str:
        if abs(value) < _LARGEST_SHOWN_INTEGER:
            return repr(value)
        # In scientific notation, which reads the same in every language (Python refuses str()
        # past 4,300 digits): 10**5000 + 7 is 1.000e5000.
        size = abs(value)
        digits = int(size.bit_length() * math.log10(2)) + 1
        while 10 ** (digits - 1) > size:
            digits -= 1
        head = str(size // 10 ** (digits - 4))
        return f"{'-' if value < 0 else ''}{head[0]}.{head[1:]}e{digits - 1}"


_REPR = _ShortRepr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 3, 40, 40, 4, 4


def shown(value: object) -> str:
    """`repr(value)`, cut short for long text, huge integers and deep or long containers; never raises."""
    try:
        return _REPR.repr(value)
    except Exception:  # A value whose own __repr__ fails (never one from JSON) is named by its type.
        return f"<{type(value).__name__}>"


def number_text(value: float) -> str:
    """A bound as a learner reads it: 60000 for an integer, 0.5 or 1e-06 for a float."""
    return shown(value) if isinstance(value, int) else f"{value:g}"


@dataclass(frozen=True)
class Bound:
    """The values a numeric field accepts: minimum..maximum, each end included unless marked open."""

    minimum: float
    maximum: float
    above_minimum: bool = False  # True when the minimum itself is refused (a learning rate of 0).
    below_maximum: bool = False  # True when the maximum itself is refused (momentum 1).

    def contains(self, value: float) -> bool:
        return self.problem(value) is None

    def problem(self, value: float) -> Message | None:
        """None when `value` lies inside, else a sentence saying what it must be ("It must be at least 1.").

        `value` must be a real number (an int or a float; NaN lies outside every bound).
        """
        if isinstance(value, float) and math.isnan(value):
            return Message("bound.not_finite")
        if (value <= self.minimum) if self.above_minimum else (value < self.minimum):
            return Message("bound.above" if self.above_minimum else "bound.at_least", {"limit": number_text(self.minimum)})
        if (value >= self.maximum) if self.below_maximum else (value > self.maximum):
            return Message("bound.below" if self.below_maximum else "bound.at_most", {"limit": number_text(self.maximum)})
        return None

    def interval_text(self) -> str:
        """The range in interval notation, e.g. '[0, 1)'."""
        opening, closing = "(" if self.above_minimum else "[", ")" if self.below_maximum else "]"
        return f"{opening}{number_text(self.minimum)}, {number_text(self.maximum)}{closing}"


# Each augmentation field's range. The upper ends are where the perturbation stops making sense
# for a 28x28 digit: a full frame's shift, a half turn, a zoom down to nothing (1 - scale > 0),
# a 45-degree slant, an elastic displacement of 1000 pixels, a smoothing wider than the image.
AUGMENTATION_BOUNDS: dict[str, Bound] = {
    "shift_pixels": Bound(0, MNIST_SIDE - 1),
    "rotation_degrees": Bound(0.0, 180.0),
    "scale": Bound(0.0, 1.0, below_maximum=True),
    "skew": Bound(0.0, MAX_SKEW),
    "elastic_alpha": Bound(0.0, 1000.0),
    "elastic_sigma": Bound(0.0, float(MNIST_SIDE), above_minimum=True),
}
