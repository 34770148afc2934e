"""Plotly figures for the Adversarial lab: an image before and after an attack, probabilities, fooling images, robustness.

Owns how the lab's results look. It receives arrays and small dataclasses from
`core.views.attack_view` and translated labels from the page, and computes nothing about
networks. Images are drawn as MNIST shows them (white ink on black, 0 to 1); a perturbation
is drawn in diverging colours whose scale runs to its own largest change, so an invisible
change of 0.02 fills the colour range (that is the amplification), and the colour bar gives
the true values.
"""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

DIVERGING = "RdBu_r"  # negative blue, zero white, positive red (as the Inspect page's filters)
BEFORE_COLOUR = "#93c5fd"
AFTER_COLOUR = "#dc2626"
GREY = [[0.0, "black"], [1.0, "white"]]
METHOD_DASHES = {"fgsm": "solid", "pgd": "dash", "pgd_l2": "dot", "deepfool": "dashdot"}


def _square_axes(figure: go.Figure, count: int) -> None:
    for number in range(1, count + 1):
        suffix = "" if number == 1 else str(number)
        figure.update_layout({f"xaxis{suffix}": {"visible": False, "constrain": "domain"}})
        figure.update_layout({f"yaxis{suffix}": {"visible": False, "autorange": "reversed", "scaleanchor": f"x{suffix}"}})


def image_trio(original: np.ndarray, perturbation: np.ndarray, adversarial: np.ndarray, titles: list[str], change_label: str) -> go.Figure:
    """Original, perturbation and adversarial image (each (28, 28) in [0, 1] or [-1, 1]) side by side."""
    figure = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.08)
    limit = float(np.abs(perturbation).max()) or 1.0
    figure.add_trace(
        go.Heatmap(z=original, colorscale=GREY, zmin=0, zmax=1, showscale=False, hovertemplate="%{z:.3f}<extra></extra>"), 1, 1
    )
    figure.add_trace(
        go.Heatmap(
            z=perturbation, colorscale=DIVERGING, zmid=0, zmin=-limit, zmax=limit, hovertemplate=f"{change_label}: %{{z:+.3f}}<extra></extra>",
            colorbar={"thickness": 12, "len": 0.9, "x": 0.655, "tickformat": "+.2f"},
        ),
        1, 2,
    )  # fmt: skip
    figure.add_trace(
        go.Heatmap(z=adversarial, colorscale=GREY, zmin=0, zmax=1, showscale=False, hovertemplate="%{z:.3f}<extra></extra>"), 1, 3
    )
    _square_axes(figure, 3)
    figure.update_layout(height=280, margin={"l": 10, "r": 10, "t": 36, "b": 10}, plot_bgcolor="white")
    return figure


def probabilities_before_after(
    before: np.ndarray, after: np.ndarray, class_names: list[str], names: tuple[str, str], axis_title: str
) -> go.Figure:
    """The ten class probabilities of the original and of the adversarial image, as grouped bars in percent."""
    figure = go.Figure()
    for values, name, colour in ((before, names[0], BEFORE_COLOUR), (after, names[1], AFTER_COLOUR)):
        figure.add_trace(
            go.Bar(
                x=[str(name_) for name_ in class_names], y=[100 * float(value) for value in values], name=name, marker_color=colour,
                hovertemplate=f"{name}, %{{x}}: %{{y:.2f}}%<extra></extra>",
            )
        )  # fmt: skip
    figure.update_layout(barmode="group", height=260, margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend={"orientation": "h", "y": 1.12})
    figure.update_yaxes(range=[0, 100], title=axis_title, ticksuffix="%")
    figure.update_xaxes(type="category")
    return figure


def fooling_animation(frames: np.ndarray, frame_steps: list[int], confidences: list[float], step_label: str, play_label: str) -> go.Figure:
    """The fooling image forming: one frame per snapshot (F, 28, 28), a slider over them and a play button."""
    titles = [f"{step_label} {step} · {100 * confidence:.1f}%" for step, confidence in zip(frame_steps, confidences)]
    last = len(frames) - 1

    def heatmap(index: int) -> go.Heatmap:
        return go.Heatmap(z=frames[index], colorscale=GREY, zmin=0, zmax=1, showscale=False, hovertemplate="%{z:.3f}<extra></extra>")

    figure = go.Figure(data=[heatmap(last)], frames=[go.Frame(data=[heatmap(index)], name=str(index)) for index in range(len(frames))])
    steps = [
        {
            "method": "animate",
            "label": str(frame_steps[index]),
            "args": [[str(index)], {"mode": "immediate", "frame": {"duration": 0, "redraw": True}}],
        }
        for index in range(len(frames))
    ]
    figure.update_layout(
        height=380, margin={"l": 10, "r": 10, "t": 30, "b": 10}, plot_bgcolor="white", title={"text": titles[last], "font": {"size": 13}},
        sliders=[{"active": last, "steps": steps, "currentvalue": {"prefix": f"{step_label} "}, "pad": {"t": 30}, "len": 0.9, "x": 0.1}],
        updatemenus=[{
            "type": "buttons", "showactive": False, "x": 0.0, "y": -0.05, "xanchor": "left", "yanchor": "top",
            "buttons": [{"label": f"▶ {play_label}", "method": "animate", "args": [None, {"frame": {"duration": 120, "redraw": True}, "fromcurrent": False}]}],
        }],
    )  # fmt: skip
    for index, frame in enumerate(figure.frames):
        frame.layout = {"title": {"text": titles[index]}}
    figure.update_xaxes(visible=False, constrain="domain")
    figure.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    return figure


def confidence_curve(frame_steps: list[int], confidences: list[float], step_label: str, confidence_label: str, goal: float) -> go.Figure:
    """The target class's probability at each snapshot, with the goal (99%) as a line."""
    figure = go.Figure(
        go.Scatter(
            x=frame_steps, y=[100 * value for value in confidences], mode="lines+markers", hovertemplate="%{x}: %{y:.2f}%<extra></extra>"
        )
    )
    figure.add_hline(y=100 * goal, line={"dash": "dot", "color": "#16a34a"})
    figure.update_layout(height=260, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False)
    figure.update_xaxes(title=step_label)
    figure.update_yaxes(range=[0, 101], title=confidence_label, ticksuffix="%")
    return figure


def robustness_curve(points: list, method_names: dict[str, str], epsilon_label: str, accuracy_label: str) -> go.Figure:
    """Accuracy against ε: one line per (network, method), a colour per network and a dash per method.

    `points` are `core.attacks.robustness.CurvePoint`s (name, method, epsilon, accuracy).
    """
    figure = go.Figure()
    networks = list(dict.fromkeys(point.name for point in points))
    palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#db2777"]
    for line in dict.fromkeys((point.name, point.method) for point in points):
        chosen = sorted((point for point in points if (point.name, point.method) == line), key=lambda point: point.epsilon)
        name, method = line
        figure.add_trace(
            go.Scatter(
                x=[point.epsilon for point in chosen], y=[100 * point.accuracy for point in chosen], mode="lines+markers",
                name=f"{html.escape(name, quote=False)} · {method_names.get(method, method)}",  # a typed run name shows as text
                line={"color": palette[networks.index(name) % len(palette)], "dash": METHOD_DASHES.get(method, "solid")},
                hovertemplate="ε = %{x:.2f}: %{y:.1f}%<extra></extra>",
            )
        )  # fmt: skip
    figure.update_layout(height=360, margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend={"orientation": "h", "y": -0.2})
    figure.update_xaxes(title=epsilon_label)
    figure.update_yaxes(range=[0, 101], title=accuracy_label, ticksuffix="%")
    return figure
