"""Plotly figures for the Draw page: the ten class probabilities of one drawing, and how runs do on "my digits".

Owns those two charts' look. It receives plain numbers (probabilities, per-label counts) and
translated labels from the page, and computes nothing about images or models.
"""

from __future__ import annotations

import plotly.graph_objects as go

PREDICTED_COLOUR = "#dc2626"
OTHER_COLOUR = "#93c5fd"


def probability_bars(probabilities: list[float], class_names: list[str], axis_title: str = "probability") -> go.Figure:
    """One bar per class, the predicted one highlighted, each labelled with its percentage."""
    predicted = max(range(len(probabilities)), key=probabilities.__getitem__)
    figure = go.Figure(
        go.Bar(
            x=[str(name) for name in class_names],
            y=[100 * value for value in probabilities],
            marker_color=[PREDICTED_COLOUR if index == predicted else OTHER_COLOUR for index in range(len(probabilities))],
            text=[f"{100 * value:.1f}%" for value in probabilities],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{x}: %{y:.2f}%<extra></extra>",
        )
    )
    figure.update_layout(height=260, margin=dict(l=10, r=10, t=24, b=10), showlegend=False)
    figure.update_yaxes(range=[0, 100], title=axis_title, ticksuffix="%")
    figure.update_xaxes(type="category")
    return figure


def confusion_strip(rows: list[tuple[str, list[int], list[int]]], label_title: str = "true digit") -> go.Figure:
    """One row per run, one cell per true digit 0–9, coloured by the share the run got right and labelled "right/total".

    `rows` holds (run name, per-label correct counts, per-label totals); a label with no
    digits is left blank.
    """
    names = [name for name, _, _ in rows]
    shares = [[(right / total if total else None) for right, total in zip(correct, totals)] for _, correct, totals in rows]
    labels = [[(f"{right}/{total}" if total else "") for right, total in zip(correct, totals)] for _, correct, totals in rows]
    figure = go.Figure(
        go.Heatmap(
            z=shares,
            x=[str(digit) for digit in range(10)],
            y=names,
            text=labels,
            texttemplate="%{text}",
            colorscale="RdYlGn",
            zmin=0,
            zmax=1,
            showscale=False,
            hovertemplate="%{y}, %{x}: %{text}<extra></extra>",
        )
    )
    figure.update_layout(height=80 + 36 * len(rows), margin=dict(l=10, r=10, t=10, b=30))
    figure.update_xaxes(title=label_title, type="category", side="bottom")
    figure.update_yaxes(type="category", autorange="reversed")
    return figure
