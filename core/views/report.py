"""The printable run report: one self-contained HTML file that tells a finished run's story.

It holds the run's facts, the network table, the training curves, the first layer's filters,
the confusion matrix, accuracy per class and the most confident mistakes, in the chosen
language. Plotly's JavaScript is inlined once, so the file opens with no network at all and
every chart keeps its "download as PNG" button; everything the learner typed (the run's
name, its owner) is HTML-escaped. The charts are the app's own (`core.views.plots`,
`core.views.inspect_plots`), so the report shows what the pages show.
"""

from __future__ import annotations

import base64
import datetime
import html
import io

import numpy as np

import plotly.graph_objects as go
from PIL import Image
from plotly.offline import get_plotlyjs

from core.data import datasets
from core.drawing import classify
from core.export.files import exportable
from core.jobs.store import RunStore
from core.model import network as networks
from core.probes import filters as filter_probes
from core.probes import mistakes
from core.training import checkpoint
from core.training.settings import TrainSettings
from core.views import builder_state, inspect_plots, plots, run_views
from core.views.i18n import catalog, translate

MISTAKES_SHOWN = 40
STYLE = """
body { font-family: "Noto Sans", "Noto Sans CJK KR", "Apple SD Gothic Neo", "Malgun Gothic", sans-serif; max-width: 1000px;
       margin: 2em auto; padding: 0 1em; color: #111827; word-break: keep-all; }
h1 { font-size: 1.8em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #e5e7eb; }
table { border-collapse: collapse; width: 100%; } td, th { border-bottom: 1px solid #e5e7eb; padding: 4px 8px; text-align: left; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
.caption { color: #6b7280; font-size: 0.9em; }
.figure { break-inside: avoid; page-break-inside: avoid; }
.mistakes { display: flex; flex-wrap: wrap; gap: 6px; } .mistakes figure { margin: 0; text-align: center; font-size: 0.8em; width: 96px; }
@media print { .modebar { display: none !important; } }
"""


def _figure(figure: go.Figure, name: str) -> str:
    figure.update_layout(template="plotly_white")
    body = figure.to_html(full_html=False, include_plotlyjs=False, config=plots.CHART_CONFIG, div_id=f"figure-{name}")
    return f'<div class="figure" data-figure="{name}">{body}</div>'


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    def cell(tag: str, index: int, value: str) -> str:
        kind = ' class="number"' if index in numeric else ""
        return f"<{tag}{kind}>{html.escape(value)}</{tag}>"

    head = "".join(cell("th", index, value) for index, value in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", index, value) for index, value in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


ALWAYS_SHOWN = ("dataset", "optimizer", "learning_rate", "batch_size", "epochs")


def _setting_rows(settings: dict, language: str) -> list[list[str]]:
    """The main settings and every one that differs from LayerLab's defaults, in the Train form's order and words."""
    defaults, labels = TrainSettings().to_dict(), catalog(language)
    rows = []
    for name, value in settings.items():
        if name not in ALWAYS_SHOWN and defaults.get(name) == value or f"train.field.{name}" not in labels:
            continue
        if isinstance(value, bool):
            shown = translate(language, "report.yes" if value else "report.no")
        elif isinstance(value, str) and f"train.choice.{value}" in labels:
            shown = translate(language, f"train.choice.{value}")
        else:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
        rows.append([translate(language, f"train.field.{name}"), shown])
    return rows


def _layer_text(kind: str, layer: dict, language: str) -> str:
    """A layer as the Build page's table names it, e.g. 'conv 16 × 5×5, ReLU'; the output layer is just 'softmax 10'."""
    label = builder_state.layer_label(layer, language)
    return label if kind == "output" else f"{translate(language, f'build.kind_short.{kind}')} {label}".strip()


def _mistake_tile(image: np.ndarray, caption: str) -> str:
    """One test image (28, 28) uint8, dark on light and enlarged, as an inline PNG with its caption under it."""
    picture = Image.fromarray(255 - image).resize((84, 84), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    source = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{source}" width="84" height="84" alt=""><figcaption>{html.escape(caption)}</figcaption></figure>'


def run_report(store: RunStore, run_id: int, language: str = "en", now: datetime.datetime | None = None) -> str:
    """The report of run `run_id` as HTML text; `ExportError` when the run has no weights to report on."""
    run, path = exportable(store, run_id)
    run = store.get(run_id)
    model, spec, settings = checkpoint.load(path)
    splits = datasets.load(settings.dataset)

    def t(key: str, **values) -> str:
        return translate(language, key, **values)

    title = t("runs.run_title", id=run.id, name=run.name or run_views.network_summary(spec, language))
    when = (now or datetime.datetime.now()).strftime("%Y-%m-%d %H:%M")
    parts = [
        f'<!DOCTYPE html><html lang="{html.escape(language)}"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>',
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="caption">{html.escape(t("report.generated", when=when))}</p>',
    ]

    facts = [
        (t("runs.column.status"), t(f"common.status.{run.status}")),
        (t("runs.column.owner"), run.owner or "–"),
        (t("runs.column.dataset"), t(f"train.choice.{settings.dataset}")),
        (t("common.best_validation_accuracy"), run_views.percent(run.best_validation_accuracy)),
        (t("common.test_accuracy"), run_views.percent(run.test_accuracy)),
        (t("report.best_epoch"), str(run.best_epoch)),
        (t("common.epochs"), f"{run.epochs_done}/{run.settings.get('epochs', run.epochs_done)}"),
        (t("common.time"), run_views.format_duration(run_views.run_seconds(run))),
        (t("runs.column.device"), run_views.device_text(run.device, language) if run.device else "–"),
    ]
    parts += [f"<h2>{html.escape(t('report.facts'))}</h2>", _table([t("report.what"), t("report.value")], [list(fact) for fact in facts])]
    if run.message:
        parts.append(f"<p>{html.escape(run_views.message(run, language))}</p>")
    parts += [
        f"<h2>{html.escape(t('report.settings'))}</h2>", f'<p class="caption">{html.escape(t("report.settings_caption"))}</p>',
        _table([t("report.setting"), t("report.value")], _setting_rows(run.settings, language)),
    ]  # fmt: skip

    summary = networks.validate(spec, settings.dataset)
    layer_rows = [
        [str(row.index + 1), _layer_text(row.kind, spec["layers"][row.index], language),
         builder_state.format_shape(row.output_shape), f"{row.parameters:,}"]
        for row in summary.rows
    ]  # fmt: skip
    layer_rows.append(["", t("report.total"), "", f"{summary.total_parameters:,}"])
    headers = ["#", t("report.layer"), t("report.output_shape"), t("report.parameters")]
    parts += [f"<h2>{html.escape(t('report.network'))}</h2>", _table(headers, layer_rows, numeric={3})]

    if run.metrics:
        parts += [f"<h2>{html.escape(t('report.curves'))}</h2>", _figure(plots.training_curves(run.metrics, language), "curves")]

    layers = filter_probes.filter_layers(model, spec)
    if layers:
        grid = filter_probes.filter_grid(model, layers[0])
        caption = t("report.filters_caption", count=len(grid.weights), layer=layers[0].index + 1)
        parts += [f"<h2>{html.escape(t('report.filters'))}</h2>", f'<p class="caption">{html.escape(caption)}</p>']
        parts.append(_figure(inspect_plots.filter_grid(grid, language), "filters"))

    predictions = mistakes.predict(model, splits.test_images, splits.test_labels)
    names = classify.class_names(settings.dataset)
    matrix = mistakes.confusion(predictions)
    wrong = mistakes.misclassified(predictions)
    parts += [
        f"<h2>{html.escape(t('inspect.mistakes.confusion'))}</h2>",
        f'<p class="caption">{html.escape(t("inspect.mistakes.summary", count=len(wrong), total=len(predictions.labels), accuracy=run_views.percent(predictions.accuracy)))}</p>',
        _figure(inspect_plots.confusion(matrix, names, language), "confusion"),
        f"<h2>{html.escape(t('inspect.mistakes.per_class'))}</h2>",
        _figure(inspect_plots.per_class_accuracy(mistakes.per_class_accuracy(matrix), names, language), "per-class"),
    ]
    if len(wrong):
        shown = wrong[:MISTAKES_SHOWN]
        caption = t("report.mistakes_caption", shown=len(shown), count=len(wrong))
        tiles = [
            _mistake_tile(splits.test_images[index].numpy(), t("report.mistake", label=names[predictions.labels[index]],
                          prediction=names[predictions.predicted[index]], confidence=f"{predictions.confidence[index]:.0%}"))
            for index in shown
        ]  # fmt: skip
        parts += [
            f"<h2>{html.escape(t('report.mistakes'))}</h2>", f'<p class="caption">{html.escape(caption)}</p>',
            f'<div class="figure mistakes" data-figure="mistakes">{"".join(tiles)}</div>',
        ]  # fmt: skip
    parts.append("</body></html>")
    return "\n".join(parts)


def report_bytes(store: RunStore, run_id: int, language: str = "en") -> bytes:
    return run_report(store, run_id, language).encode("utf-8")
