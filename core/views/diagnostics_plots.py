"""Plotly figures of a run's training diagnostics: gradient norms, histograms, dead units and the fit.

Owns the Diagnostics view's charts. It receives what `core.probes.recording` read back (plain
lists and dicts) and the layers' display names, and computes nothing about training.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.views.i18n import translate
from core.views.plots import RUN_COLORS, TRAIN_COLOR, VALIDATION_COLOR

HISTOGRAMS_PER_ROW = 5  # Deep Learning from Scratch fig. 6-10 shows five layers side by side


def _layout(figure: go.Figure, height: int = 340) -> go.Figure:
    figure.update_layout(template="plotly_white", height=height, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return figure


def gradient_norms(positions: list[float], norms: list[list[float]], names: list[str], language: str = "en") -> go.Figure:
    """The L2 norm of each layer's weight gradient over training, on a log scale (Nielsen ch. 5).

    `positions` are in epochs (1.5 = halfway through epoch 2); `norms` holds one list per layer.
    """
    figure = go.Figure()
    for layer, (name, values) in enumerate(zip(names, norms)):
        figure.add_trace(go.Scatter(x=positions, y=values, name=name, mode="lines", line=dict(color=RUN_COLORS[layer % len(RUN_COLORS)])))
    figure.update_xaxes(title_text=translate(language, "train.plot.epoch"), rangemode="tozero")
    figure.update_yaxes(title_text=translate(language, "diagnostics.plot.gradient_norm"), type="log")
    return _layout(figure)


def _histogram_grid(entries: list[dict], names: list[str], color: str, y_title: str, x_title: str) -> go.Figure:
    """One bar chart per entry ({"edges": [low, high], "counts": […]}), HISTOGRAMS_PER_ROW to a row."""
    columns = min(HISTOGRAMS_PER_ROW, max(len(entries), 1))
    rows = max(1, -(-len(entries) // columns))
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=names or None, horizontal_spacing=0.04, vertical_spacing=0.18)
    for number, entry in enumerate(entries):
        low, high = entry["edges"]
        bins = len(entry["counts"])
        width = (high - low) / max(bins, 1)
        total = max(sum(entry["counts"]), 1)
        centres = [low + (position + 0.5) * width for position in range(bins)]
        shares = [count / total * 100 for count in entry["counts"]]
        figure.add_trace(
            go.Bar(x=centres, y=shares, width=width, marker_color=color, showlegend=False, name=names[number]),
            row=number // columns + 1, col=number % columns + 1,
        )
    figure.update_yaxes(title_text=y_title, col=1)
    figure.update_xaxes(title_text=x_title, row=rows)
    return _layout(figure, height=260 * rows + 40)


def activation_histograms(entries: list[dict], names: list[str], language: str = "en") -> go.Figure:
    """Each layer's activations on the probe batch at one epoch (Deep Learning from Scratch §6.2)."""
    return _histogram_grid(
        entries, names, TRAIN_COLOR, translate(language, "diagnostics.plot.share_percent"), translate(language, "diagnostics.plot.activation")
    )


def weight_histograms(entries: list[dict], names: list[str], language: str = "en") -> go.Figure:
    """Each weight layer's weights at one epoch."""
    return _histogram_grid(
        entries, names, VALIDATION_COLOR, translate(language, "diagnostics.plot.share_percent"), translate(language, "diagnostics.plot.weight")
    )


def unit_fractions(dead: dict, saturated: dict, names: dict[int, str], language: str = "en") -> go.Figure:
    """Dead ReLU units (solid) and saturated sigmoid/tanh units (dashed) in percent, per layer and epoch.

    `dead` and `saturated` map a spec layer index to (epochs, fractions); `names` maps it to its label.
    """
    series = [(index, epochs, values, True) for index, (epochs, values) in sorted(dead.items())]
    series += [(index, epochs, values, False) for index, (epochs, values) in sorted(saturated.items())]
    figure = go.Figure()
    for colour_index, (index, epochs, values, is_dead) in enumerate(series):
        label = translate(language, "diagnostics.plot.dead" if is_dead else "diagnostics.plot.saturated", layer=names.get(index, str(index + 1)))
        figure.add_trace(
            go.Scatter(
                x=epochs, y=[value * 100 for value in values], name=label, mode="lines+markers",
                line=dict(color=RUN_COLORS[colour_index % len(RUN_COLORS)], dash="solid" if is_dead else "dash"),
            )
        )
    figure.update_xaxes(title_text=translate(language, "train.plot.epoch"), dtick=1)
    figure.update_yaxes(title_text=translate(language, "diagnostics.plot.units_percent"), range=[0, 100])
    return _layout(figure)


def generalization_gap(metrics: list[dict], language: str = "en") -> go.Figure:
    """Training and validation accuracy in percent per epoch, the gap between them shaded."""
    epochs = [row["epoch"] for row in metrics]
    training = [row["train_accuracy"] * 100 for row in metrics]
    validation = [row["validation_accuracy"] * 100 for row in metrics]
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=epochs, y=validation, name=translate(language, "train.plot.validation"), mode="lines+markers", line=dict(color=VALIDATION_COLOR)))
    figure.add_trace(
        go.Scatter(
            x=epochs, y=training, name=translate(language, "train.plot.train"), mode="lines+markers",
            line=dict(color=TRAIN_COLOR, dash="dash"), fill="tonexty", fillcolor="rgba(31, 119, 180, 0.12)",
        )
    )
    figure.update_xaxes(title_text=translate(language, "train.plot.epoch"), dtick=1 if len(epochs) <= 12 else None)
    figure.update_yaxes(title_text=translate(language, "train.plot.accuracy_percent"))
    return _layout(figure)
