"""The Inspect page's Diagnostics tab: how the selected run trained, from its recorded diagnostics.

`render(run)` draws the fit verdict and the train–validation gap, the gradient norms per layer,
the activation and weight histograms at a chosen epoch, and the dead or saturated units over
training. The numbers come from `core.views.diagnostics`, the figures from `diagnostics_plots`.
"""

from __future__ import annotations

import streamlit as st

from core.jobs.store import Run
from core.views import diagnostics, diagnostics_plots
from pages.common import language, service, t


@st.cache_data(max_entries=20, show_spinner=False)
def _recording(run_id: int, size: int, modified: float):
    """The run's recording, read again only when its file changed (size and time are the cache key)."""
    return diagnostics.load(service().store, run_id)


def _file_key(run_id: int) -> tuple[int, float]:
    path = diagnostics.recording_path(service().store, run_id)
    try:
        status = path.stat()
        return status.st_size, status.st_mtime
    except FileNotFoundError:
        return 0, 0.0


def _fit(run: Run) -> None:
    metrics = run.metrics or service().store.metrics(run.id)
    st.subheader(t("diagnostics.fit_heading"))
    code, values = diagnostics.verdict(metrics, run.dataset)
    st.markdown(diagnostics.verdict_text(language(), code, values))
    if metrics:
        st.plotly_chart(diagnostics_plots.generalization_gap(metrics, language()), key="diagnostics.gap")


def _histograms(recording, names: dict[int, str]) -> None:
    st.subheader(t("diagnostics.histograms_heading"))
    st.caption(t("diagnostics.histograms_caption"))
    epochs = recording.epochs
    epoch = st.select_slider(t("diagnostics.epoch"), epochs, value=epochs[-1], key="diagnostics.epoch") if len(epochs) > 1 else epochs[0]
    record = recording.records[epoch]
    activations = record["activations"]
    st.plotly_chart(
        diagnostics_plots.activation_histograms(activations, [names[entry["index"]] for entry in activations], language()),
        key="diagnostics.activations",
    )
    st.markdown(f"**{t('diagnostics.weights_heading')}**")
    weights = record["weights"]
    st.plotly_chart(
        diagnostics_plots.weight_histograms(weights, [names[entry["index"]] for entry in weights], language()), key="diagnostics.weights"
    )


def render(run: Run) -> None:
    _fit(run)
    recording = _recording(run.id, *_file_key(run.id))
    if recording is None:
        st.info(t("diagnostics.no_recording"))
        return
    if not recording.records:
        st.warning(t("diagnostics.unreadable", lines=recording.damaged_lines))
        return
    if recording.damaged_lines:
        st.caption(t("diagnostics.damaged", lines=recording.damaged_lines))
    layers = {entry["index"]: entry["kind"] for record in recording.records.values() for entry in record["activations"] + record["weights"]}
    names = {index: diagnostics.layer_name(language(), index, kind) for index, kind in layers.items()}

    st.subheader(t("diagnostics.gradients_heading"))
    st.caption(t("diagnostics.gradients_caption"))
    positions, norms = recording.gradient_series()
    if positions:
        gradient_names = [names[entry["index"]] for entry in recording.weight_layers()]
        st.plotly_chart(diagnostics_plots.gradient_norms(positions, norms, gradient_names, language()), key="diagnostics.gradients")
    else:
        st.info(t("diagnostics.no_gradients"))

    _histograms(recording, names)

    st.subheader(t("diagnostics.units_heading"))
    st.caption(t("diagnostics.units_caption"))
    dead, saturated = recording.unit_fractions("dead_fraction"), recording.unit_fractions("saturated_fraction")
    if dead or saturated:
        st.plotly_chart(diagnostics_plots.unit_fractions(dead, saturated, names, language()), key="diagnostics.units")
    else:
        st.info(t("diagnostics.no_units"))
