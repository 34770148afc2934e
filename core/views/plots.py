"""Plotly figures: turns the numbers that core computes into pictures.

Owns every chart's look. It receives plain data (summaries, metric lists, arrays) and
returns `plotly.graph_objects.Figure`s; it computes nothing about networks or training.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.views.i18n import translate

# ----------------------------------------------------------------------------- network diagram (Build page)

# One colour per layer kind, grouped by role: convolution blues, pooling greens, dense oranges.
# Every chart keeps Plotly's "download as PNG" button (and only that one), at twice the screen size for print.
CHART_CONFIG = {"displaylogo": False, "modeBarButtons": [["toImage"]], "toImageButtonOptions": {"format": "png", "scale": 2}}

LAYER_COLOURS = {
    "input": "#6b7280",
    "conv": "#2563eb",
    "maxpool": "#059669",
    "avgpool": "#10b981",
    "l2pool": "#34d399",
    "dense": "#ea580c",
    "output": "#dc2626",
    "dropout": "#9ca3af",
    "batchnorm": "#7c3aed",
    "activation": "#ca8a04",
    "flatten": "#d1d5db",
}


def _box_height(shape: tuple[int, ...]) -> float:
    """Height grows with the log of the number of values a layer outputs (10 → 1.2, 15,680 → 2.9)."""
    size = 1
    for side in shape:
        size *= side
    return 0.4 + 0.6 * math.log10(max(size, 1))


def network_diagram(
    summary,
    names: list[str] | None = None,
    input_name: str = "input",
    parameters_text: str = "{count} parameters",
    failed_name: str | None = None,
) -> go.Figure:
    """Boxes left to right, one per layer of a `core.spec.Summary`, labelled with output shape and parameters.

    `names` are the layers' display names and `parameters_text` a template with `{count}`, both
    translated by the page; `failed_name`, when given, adds a dashed red box after the valid
    layers for the layer that does not fit.
    """
    rows = list(summary.rows)
    names = names or [row.description for row in rows]
    boxes = [("input", input_name, tuple(summary.input_shape), None)]
    boxes += [(row.kind, name, tuple(row.output_shape), row.parameters) for row, name in zip(rows, names)]
    figure = go.Figure()
    count = len(boxes) + (failed_name is not None)
    stagger = count > 6  # Beyond six boxes, neighbouring labels alternate in height so they never overlap.
    for position, (kind, name, shape, parameters) in enumerate(boxes):
        _draw_box(figure, position, kind, name, shape, parameters, parameters_text, stagger)
        if position:
            figure.add_annotation(x=position - 0.34, y=0, ax=position - 0.66, ay=0, xref="x", yref="y", axref="x", ayref="y",
                                  showarrow=True, arrowhead=2, arrowsize=1, arrowwidth=1.2, arrowcolor="#9ca3af", text="")
    if failed_name is not None:
        _draw_failed_box(figure, len(boxes), failed_name, stagger)
    figure.update_layout(
        height=300, margin=dict(l=10, r=10, t=10, b=10), showlegend=False, plot_bgcolor="rgba(0,0,0,0)",
        xaxis=dict(visible=False, range=[-0.6, max(count, 4) - 0.4], fixedrange=True),
        yaxis=dict(visible=False, range=[-4.0 if stagger else -2.9, 1.8], fixedrange=True),
    )
    return figure


def _draw_box(figure: go.Figure, position: int, kind: str, name: str, shape: tuple[int, ...], parameters: int | None,
              parameters_text: str, stagger: bool) -> None:
    height = _box_height(shape)
    colour = LAYER_COLOURS.get(kind, "#6b7280")
    # Image-shaped outputs get a second, offset box behind them: a stack of feature maps.
    if len(shape) == 3 and shape[0] > 1:
        figure.add_shape(type="rect", x0=position - 0.22, x1=position + 0.34, y0=-height / 2 + 0.12, y1=height / 2 + 0.12,
                         line=dict(color=colour, width=1), fillcolor=colour, opacity=0.35, layer="below")
    figure.add_shape(type="rect", x0=position - 0.3, x1=position + 0.26, y0=-height / 2, y1=height / 2,
                     line=dict(color=colour, width=1), fillcolor=colour, opacity=0.85)
    shape_text = " × ".join(str(side) for side in shape)
    # The label holds the bare count; the hover spells it out.
    count = f"{parameters:,}" if parameters is not None else ""
    label = "<br>".join(line for line in (f"<b>{name}</b>", shape_text, count) if line)
    figure.add_annotation(x=position, y=_label_height(position, stagger), text=label, showarrow=False, yanchor="top", font=dict(size=10))
    hover = "<br>".join(line for line in (f"<b>{name}</b>", shape_text, parameters_text.format(count=count) if count else "") if line)
    figure.add_trace(go.Scatter(x=[position], y=[0], mode="markers", marker=dict(size=24, opacity=0), hovertemplate=hover + "<extra></extra>"))


def _label_height(position: int, stagger: bool) -> float:
    return -1.7 - 1.1 * (position % 2) if stagger else -1.7


def _draw_failed_box(figure: go.Figure, position: int, name: str, stagger: bool) -> None:
    figure.add_shape(type="rect", x0=position - 0.3, x1=position + 0.26, y0=-0.7, y1=0.7,
                     line=dict(color="#dc2626", width=2, dash="dash"), fillcolor="rgba(220,38,38,0.08)")
    figure.add_annotation(x=position, y=0, text="✕", showarrow=False, font=dict(size=22, color="#dc2626"))
    figure.add_annotation(x=position, y=_label_height(position, stagger), text=f"<b>{name}</b>", showarrow=False, yanchor="top",
                          font=dict(size=10, color="#dc2626"))


# ----------------------------------------------------------------------------- training curves (Train and Runs pages)

TRAIN_COLOR, VALIDATION_COLOR, ROBUST_COLOR = "#1f77b4", "#d62728", "#2ca02c"
RUN_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")


def _curve_layout(figure: go.Figure, language: str, epochs: int) -> go.Figure:
    """The shared look of the two-panel loss/accuracy figures: epochs across, legend below."""
    # Whole-epoch ticks while there are few epochs; Plotly's own spacing after that.
    figure.update_xaxes(title_text=translate(language, "train.plot.epoch"), dtick=1 if epochs <= 12 else None)
    figure.update_yaxes(title_text=translate(language, "train.plot.loss"), row=1, col=1, rangemode="tozero")
    figure.update_yaxes(title_text=translate(language, "train.plot.accuracy_percent"), row=1, col=2)
    figure.update_layout(
        template="plotly_white", height=340, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25)
    )
    if not epochs:  # Fixed, sensible axes instead of Plotly's -1..6 for a plot with no points yet.
        figure.update_xaxes(range=[0.5, 3.5])
        figure.update_yaxes(range=[0, 2.5], row=1, col=1)
        figure.update_yaxes(range=[0, 100], row=1, col=2)
    return figure


def _trace(metrics: list[dict], name: str, label: str, color: str, dash: str, group: str, legend: bool, scale: float = 1.0):
    return go.Scatter(
        x=[row["epoch"] for row in metrics],
        y=[None if row.get(name) is None else row[name] * scale for row in metrics],
        name=label,
        mode="lines+markers",
        line=dict(color=color, dash=dash),
        legendgroup=group,
        showlegend=legend,
    )


def training_curves(metrics: list[dict], language: str = "en") -> go.Figure:
    """Loss (left) and accuracy in percent (right) per epoch, training dashed and validation solid.

    `metrics` is the run store's list of per-epoch dicts (epoch, train_loss, validation_loss,
    train_accuracy, validation_accuracy in [0, 1], ...). A run that measured robust accuracy
    (`robust_accuracy`, adversarial training's PGD figure) gets it as a third, dotted curve
    beside the accuracies, so clean and robust accuracy read off one panel.
    """
    panels = (translate(language, "train.plot.loss"), translate(language, "train.plot.accuracy"))
    figure = make_subplots(rows=1, cols=2, subplot_titles=panels, horizontal_spacing=0.16)  # room for the right panel's axis title
    train_label, validation_label = translate(language, "train.plot.train"), translate(language, "train.plot.validation")
    for column, (quantity, scale) in enumerate((("loss", 1.0), ("accuracy", 100.0)), start=1):
        legend = column == 1
        figure.add_trace(_trace(metrics, f"train_{quantity}", train_label, TRAIN_COLOR, "dash", "train", legend, scale), 1, column)
        figure.add_trace(
            _trace(metrics, f"validation_{quantity}", validation_label, VALIDATION_COLOR, "solid", "validation", legend, scale), 1, column
        )
    if any(row.get("robust_accuracy") is not None for row in metrics):
        robust_label = translate(language, "train.plot.robust")
        figure.add_trace(_trace(metrics, "robust_accuracy", robust_label, ROBUST_COLOR, "dot", "robust", True, 100.0), 1, 2)
    figure = _curve_layout(figure, language, len(metrics))
    if not metrics:
        figure.add_annotation(text=translate(language, "train.plot.waiting"), showarrow=False, xref="paper", yref="paper", x=0.5, y=1.12)
    return figure


def overlay_curves(series: list[tuple[str, list[dict]]], language: str = "en") -> go.Figure:
    """Validation loss (left) and validation accuracy in percent (right) of several runs, one colour per run.

    `series` holds (legend label, per-epoch metrics) pairs, e.g. [("#3 conv", metrics), ...].
    """
    panels = (translate(language, "runs.plot.validation_loss"), translate(language, "runs.plot.validation_accuracy"))
    figure = make_subplots(rows=1, cols=2, subplot_titles=panels, horizontal_spacing=0.16)  # room for the right panel's axis title
    for index, (label, metrics) in enumerate(series):
        color = RUN_COLORS[index % len(RUN_COLORS)]
        figure.add_trace(_trace(metrics, "validation_loss", label, color, "solid", label, True), 1, 1)
        figure.add_trace(_trace(metrics, "validation_accuracy", label, color, "solid", label, False, 100.0), 1, 2)
    return _curve_layout(figure, language, max((len(metrics) for _, metrics in series), default=0))


def search_scatter(points: list[dict], names: list[str], labels: dict[str, str], language: str = "en") -> go.Figure:
    """Validation accuracy (percent) against each searched setting on a log axis, one panel a setting (random search)."""
    figure = make_subplots(rows=1, cols=len(names), subplot_titles=[labels[name] for name in names], horizontal_spacing=0.12)
    for column, name in enumerate(names, start=1):
        figure.add_trace(
            go.Scatter(
                x=[point[name] for point in points], y=[point["accuracy"] * 100 for point in points], mode="markers",
                marker={"size": 10, "color": "#2563eb"}, text=[f"#{point['id']}" for point in points], showlegend=False,
                hovertemplate="%{text}: %{x:.3g} → %{y:.2f}%<extra></extra>",
            ),
            row=1, col=column,
        )  # fmt: skip
        figure.update_xaxes(type="log", title_text=labels[name], row=1, col=column)
        figure.update_yaxes(title_text=translate(language, "runs.plot.validation_accuracy"), row=1, col=column)
    figure.update_layout(height=320, margin={"l": 60, "r": 20, "t": 40, "b": 50})
    return figure


def activation_curves(z: float, language: str = "en") -> go.Figure:
    """Sigmoid, tanh and ReLU over [-4, 4], with each one's output at the neuron's weighted sum `z` marked."""
    xs = [x / 20 for x in range(-80, 81)]
    functions = {
        "sigmoid": (lambda v: 1 / (1 + math.exp(-v)), "#2563eb"),
        "tanh": (math.tanh, "#059669"),
        "relu": (lambda v: max(0.0, v), "#ea580c"),
    }
    figure = go.Figure()
    shown = max(-4.0, min(4.0, z))
    for name, (function, colour) in functions.items():
        label = translate(language, f"lessons.neuron.{name}")
        figure.add_trace(go.Scatter(x=xs, y=[function(x) for x in xs], mode="lines", name=label, line={"color": colour}))
        figure.add_trace(go.Scatter(x=[shown], y=[function(shown)], mode="markers", marker={"size": 11, "color": colour}, showlegend=False))
    figure.add_vline(x=shown, line={"dash": "dot", "color": "#9ca3af"})
    figure.update_layout(height=300, margin={"l": 50, "r": 20, "t": 20, "b": 40}, xaxis_title="z", yaxis_range=[-1.2, 4.2])
    return figure


def blank() -> go.Figure:
    """An empty, transparent figure a few pixels high (see pages/common.py, which uses it to load Plotly early)."""
    figure = go.Figure()
    figure.update_layout(
        height=10, margin=dict(l=0, r=0, t=0, b=0), paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
        xaxis=dict(visible=False), yaxis=dict(visible=False), showlegend=False,
    )
    return figure
