"""The one error type every part of LayerLab raises for input or state a learner can fix.

Each layer subclasses `LayerLabError` (a bad spec, impossible settings, a damaged checkpoint,
a missing run, unreadable data, a storage problem), so the CLI and the pages can catch "our"
errors in one place and show their message, while anything else is a bug with a traceback.
It imports nothing from the rest of `core`.
"""


class LayerLabError(Exception):
    """A problem with what the user gave or asked for; the message says what to change."""
