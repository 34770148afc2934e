"""The drawing canvas, behind one small function so that the component can be replaced.

Wraps `streamlit-drawable-canvas` 0.13 (it renders in the page; pass `return_image_data`
or its image cannot be read). The component is imported inside `drawing_canvas`, because
importing it outside a running app raises. Clear and undo are ours (translated buttons that
reload the canvas with fewer strokes); the component's own toolbar offers undo, redo and
reset as well. Free drawing works with a mouse, a pen or a finger (Fabric.js handles touch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

CANVAS_SIDE = 280  # ten screen pixels per MNIST pixel
DEFAULT_PEN_WIDTH = 20  # a stroke of about 2 px once a 200-px digit is scaled to MNIST's 20-px box
PEN_WIDTHS = (8, 40)


@dataclass(frozen=True)
class Drawing:
    image: np.ndarray | None  # (H, W, 4) uint8 RGBA of the canvas, or None before the first stroke
    strokes: int  # how many strokes the canvas holds


def _initial_key(key: str) -> str:
    return f"{key}.initial"


def drawing_canvas(key: str, pen_width: int = DEFAULT_PEN_WIDTH, side: int = CANVAS_SIDE) -> Drawing:
    """A square canvas for black strokes on white; returns what it holds after the latest stroke."""
    from streamlit_drawable_canvas import st_canvas  # Raises outside a running app: import it here.

    initial = st.session_state.setdefault(_initial_key(key), {"objects": [], "revision": 0})
    result = st_canvas(
        stroke_width=int(pen_width),
        stroke_color="#000000",
        background_color="#FFFFFF",
        height=side,
        width=side,
        drawing_mode="freedraw",
        initial_drawing=initial,
        return_image_data=True,
        key=key,
    )
    strokes = len((result.json_data or {}).get("objects") or [])
    image = result.image_data if strokes else None
    st.session_state[f"{key}.objects"] = list((result.json_data or {}).get("objects") or [])
    return Drawing(None if image is None else np.asarray(image, dtype=np.uint8), strokes)


def clear(key: str) -> None:
    """Empty the canvas (a button callback: it runs before the page draws the canvas again)."""
    _reload(key, [])


def undo(key: str) -> None:
    """Take back the last stroke."""
    _reload(key, st.session_state.get(f"{key}.objects", [])[:-1])


def _reload(key: str, objects: list) -> None:
    # A new revision makes the initial drawing differ from the one the canvas last loaded, so
    # it loads these strokes and sends the resulting image back, which reruns the page.
    revision = st.session_state.get(_initial_key(key), {}).get("revision", 0) + 1
    st.session_state[_initial_key(key)] = {"objects": list(objects), "revision": revision}
    st.session_state[f"{key}.objects"] = list(objects)
