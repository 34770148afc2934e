"""Plotly figures for the Inspect page: filters, top patches, activations, confusion, attribution.

Owns how probe results look. Grids of small images are one heatmap trace per tile, laid out
on a single pair of axes (cheaper than a subplot per tile, and each tile's numbers stay
reachable as `figure.data[f].z`); tiles of one grid share one colour axis, so there is one
colour bar, centred on zero for weights. It receives probe dataclasses and arrays and
computes nothing about networks.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from core.views.i18n import translate

DIVERGING = "RdBu_r"  # negative blue, zero white, positive red
GAP = 1  # empty pixels between tiles
TILE_PIXELS = 64  # drawn size of a tile's side, in screen pixels


def _columns(count: int, most: int = 10) -> int:
    return min(most, max(1, math.ceil(math.sqrt(count))))


def _tiled(
    tiles: np.ndarray, titles: list[str], colorscale: str, zmid: float | None, hover: str, columns: int | None = None,
    reversed_grey: bool = False,
) -> go.Figure:
    """Tiles (n, h, w) on one axis, row by row from the top left, sharing one colour axis."""
    count, height, width = tiles.shape
    columns = columns or _columns(count)
    rows = math.ceil(count / columns)
    figure = go.Figure()
    for position, tile in enumerate(tiles):
        row, column = divmod(position, columns)
        figure.add_trace(
            go.Heatmap(
                z=tile, x0=column * (width + GAP), y0=row * (height + GAP), coloraxis="coloraxis", name=titles[position],
                hovertemplate=f"{titles[position]}<br>{hover}: %{{z:.4f}}<extra></extra>",
            )
        )
    limit = float(np.abs(tiles).max()) if tiles.size else 1.0
    coloraxis = {"colorscale": colorscale, "colorbar": {"thickness": 12}}
    if zmid is not None:
        coloraxis |= {"cmin": -limit or -1.0, "cmax": limit or 1.0, "cmid": zmid}
    if reversed_grey:
        coloraxis |= {"showscale": False, "reversescale": True, "cmin": 0, "cmax": 255}
    figure.update_layout(
        coloraxis=coloraxis, margin={"l": 10, "r": 10, "t": 10, "b": 10}, plot_bgcolor="white",
        height=max(160, min(900, rows * TILE_PIXELS + 40)),
    )  # fmt: skip
    figure.update_xaxes(visible=False, constrain="domain")
    figure.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    return figure


def filter_grid(grid, language: str = "en") -> go.Figure:
    """A layer's filters (a `core.probes.filters.FilterGrid`), one tile each, diverging colours centred on zero."""
    label = translate(language, "inspect.plot.filter")
    titles = [f"{label} {number + 1}" for number in range(len(grid.weights))]
    return _tiled(grid.weights, titles, DIVERGING, 0.0, translate(language, "inspect.plot.weight"))


def top_patches(images: np.ndarray, boxes: np.ndarray, activations: np.ndarray, language: str = "en") -> go.Figure:
    """The images (9, 28, 28) that excite one filter most, each with its receptive field outlined."""
    label = translate(language, "inspect.plot.response")
    titles = [f"{label} {value:.3f}" for value in activations]
    figure = _tiled(images.astype(np.float32), titles, "gray", None, translate(language, "inspect.plot.pixel"), columns=9, reversed_grey=True)
    height, width = images.shape[1:]
    for position, (top, left, bottom, right) in enumerate(boxes):
        x, y = position * (width + GAP), 0
        figure.add_shape(
            type="rect", x0=x + left - 0.5, x1=x + right - 0.5, y0=y + top - 0.5, y1=y + bottom - 0.5, line={"color": "#dc2626", "width": 2},
        )  # fmt: skip
    figure.update_layout(height=150)
    return figure


def feature_maps(layer, language: str = "en") -> go.Figure:
    """A layer's output maps (channels, h, w) as a grid, or a vector as bars; hover shows each value."""
    if layer.is_maps:
        label = translate(language, "inspect.plot.map")
        titles = [f"{label} {number + 1}" for number in range(len(layer.values))]
        return _tiled(layer.values, titles, "Viridis", None, translate(language, "inspect.plot.value"), columns=_columns(len(layer.values), 16))
    figure = go.Figure(go.Bar(x=list(range(1, len(layer.values) + 1)), y=layer.values, marker_color="#ea580c", hovertemplate="%{x}: %{y:.4f}<extra></extra>"))
    figure.update_layout(height=220, margin={"l": 10, "r": 10, "t": 10, "b": 30}, xaxis_title=translate(language, "inspect.plot.unit"))
    return figure


def probabilities(values: np.ndarray, class_names: list[str], label: int | None = None, language: str = "en") -> go.Figure:
    """The ten class probabilities; the true class in green when known."""
    colours = ["#16a34a" if digit == label else "#2563eb" for digit in range(len(values))]
    figure = go.Figure(go.Bar(x=class_names, y=values, marker_color=colours, hovertemplate="%{x}: %{y:.4f}<extra></extra>"))
    figure.update_layout(height=240, margin={"l": 10, "r": 10, "t": 10, "b": 30}, yaxis={"range": [0, 1], "title": translate(language, "inspect.plot.probability")})
    figure.update_xaxes(type="category")
    return figure


def confusion(matrix: np.ndarray, class_names: list[str], language: str = "en") -> go.Figure:
    """The confusion matrix as a heat map (rows true, columns predicted), with one clickable point per cell.

    Plotly cannot select heat-map cells, so an invisible marker sits on each cell: clicking it
    selects that point, and the page reads its `customdata` (true class, prediction). The
    customdata goes as plain lists: a NumPy array would travel as a typed array, whose rows
    reach the page's selection as {"0": …, "1": …} objects instead of lists.
    """
    true_label, predicted_label = translate(language, "inspect.plot.true"), translate(language, "inspect.plot.predicted")
    size = len(class_names)
    # A log colour scale: the diagonal's ~1,000s would otherwise wash out the few mistakes in each cell.
    figure = go.Figure(
        go.Heatmap(
            z=np.log10(matrix + 1), x=class_names, y=class_names, text=matrix, texttemplate="%{text}", colorscale="Blues", showscale=False,
            hoverinfo="skip",
        )
    )  # fmt: skip
    trues, predictions = np.divmod(np.arange(size * size), size)
    figure.add_trace(
        go.Scatter(
            x=[class_names[column] for column in predictions], y=[class_names[row] for row in trues], mode="markers",
            customdata=np.stack([trues, predictions, matrix.reshape(-1)], axis=1).tolist(),
            marker={"symbol": "square", "size": 30, "color": "rgba(0,0,0,0)"}, selected={"marker": {"color": "rgba(220,38,38,0.25)"}},
            unselected={"marker": {"opacity": 1}}, showlegend=False,
            hovertemplate=f"{true_label} %{{y}}, {predicted_label} %{{x}}: %{{customdata[2]}}<extra></extra>",
        )
    )  # fmt: skip
    figure.update_layout(
        height=480, margin={"l": 10, "r": 10, "t": 10, "b": 10}, clickmode="event+select", dragmode=False,
        # The square cells shrink the axes' domain rather than pad their range, so no grid line sticks out.
        xaxis={"title": predicted_label, "type": "category", "side": "top", "constrain": "domain", "showgrid": False},
        yaxis={"title": true_label, "type": "category", "autorange": "reversed", "scaleanchor": "x", "constrain": "domain", "showgrid": False},
    )  # fmt: skip
    return figure


def per_class_accuracy(accuracies: np.ndarray, class_names: list[str], language: str = "en") -> go.Figure:
    figure = go.Figure(go.Bar(x=class_names, y=accuracies * 100, marker_color="#059669", hovertemplate="%{x}: %{y:.2f}%<extra></extra>"))
    low = max(0.0, float(accuracies.min()) * 100 - 5) if len(accuracies) else 0.0
    figure.update_layout(height=240, margin={"l": 10, "r": 10, "t": 10, "b": 30}, yaxis={"range": [low, 100], "title": translate(language, "inspect.plot.accuracy_percent")})
    figure.update_xaxes(type="category")
    return figure


def attribution(image: np.ndarray, attributions: np.ndarray, method: str, language: str = "en") -> go.Figure:
    """The image in grey with the attribution map over it: diverging for integrated gradients (signed), hot for the others."""
    figure = go.Figure(go.Heatmap(z=image, colorscale="gray", reversescale=True, showscale=False, hoverinfo="skip", zmin=0, zmax=255))
    signed = method == "integrated_gradients"
    limit = float(np.abs(attributions).max()) or 1.0
    figure.add_trace(
        go.Heatmap(
            z=attributions, colorscale=DIVERGING if signed else "Hot", reversescale=not signed, opacity=0.6, zmid=0.0 if signed else None,
            zmin=-limit if signed else 0.0, zmax=limit, name=translate(language, f"inspect.attribution.{method}"),
            hovertemplate=f"{translate(language, 'inspect.plot.attribution')}: %{{z:.4f}}<extra></extra>", colorbar={"thickness": 12},
        )
    )  # fmt: skip
    figure.update_layout(height=360, width=420, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    figure.update_xaxes(visible=False, constrain="domain")
    figure.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    return figure


def member_accuracies(names: list[str], accuracies: list[float], ensemble_name: str, ensemble_accuracy: float, language: str = "en") -> go.Figure:
    """Each member's test accuracy, and the ensemble's beside them."""
    values = [value * 100 for value in [*accuracies, ensemble_accuracy]]
    colours = ["#2563eb"] * len(accuracies) + ["#dc2626"]
    figure = go.Figure(go.Bar(x=[*names, ensemble_name], y=values, marker_color=colours, text=[f"{value:.2f}%" for value in values], textposition="outside"))
    low = max(0.0, min(values) - 2)
    figure.update_layout(height=300, margin={"l": 10, "r": 10, "t": 30, "b": 30}, yaxis={"range": [low, 100.5], "title": translate(language, "inspect.plot.accuracy_percent")})
    figure.update_xaxes(type="category")
    return figure

