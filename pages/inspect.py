"""Inspect: what the run selected in the sidebar learned and where it fails, one view at a time.

The views are a segmented control rather than st.tabs, so only the chosen view computes, and
a mistake's button can switch to Activations.
"""

import streamlit as st

from core.views import inspection, run_views
from pages import diagnostics_view, inspect_widgets
from pages.common import language, plain, require_frame, service, t

require_frame()

st.title(t("inspect.title"))
run_id = st.session_state.selected_run
if run_id is None:
    st.info(t("inspect.no_run"))
    st.page_link("pages/runs.py", label=t("inspect.go_runs"), icon="🗂️")
    st.stop()
try:
    run = service().store.get(run_id, with_metrics=False)
    loaded = inspect_widgets.loaded_run(run_id)
except inspection.ERRORS as error:
    st.warning(error.render(language()))
    st.stop()
accuracy = run_views.percent(run.test_accuracy) if run.test_accuracy is not None else "–"
st.caption(t("inspect.run_caption", id=run.id, name=plain(run.name), network=run_views.network_summary(run.spec), accuracy=accuracy))
st.session_state.setdefault("inspect.view", inspect_widgets.VIEWS[0])
view = st.segmented_control(
    t("inspect.view"), inspect_widgets.VIEWS, format_func=lambda name: t(f"inspect.view.{name}"), key="inspect.view", required=True,
)  # fmt: skip
if view == "diagnostics":
    diagnostics_view.render(run)
else:
    inspect_widgets.RENDERERS[view](loaded)
