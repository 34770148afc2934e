"""Adversarial lab: fool the network you trained — one image, a fooling image, robustness curves, transfer.

The runs to attack come first (several make an ensemble of averaged probabilities); the views
are a segmented control, so only the chosen one computes. The work is `core.views.attack_view`.
"""

import streamlit as st

from core.views import attack_view
from pages import attack_widgets
from pages.common import language, require_frame, t

require_frame()

st.title(t("attack.title"))
st.caption(t("attack.intro"))
runs = attack_widgets.usable_runs()
if not runs:
    st.info(t("attack.no_runs"))
    st.page_link("pages/train.py", label=t("runs.go_train"), icon="📈")
    st.stop()
by_id = {run.id: run for run in runs}
selected = st.session_state.get("selected_run")
st.session_state["attack.runs"] = [
    run_id for run_id in st.session_state.get("attack.runs", [selected if selected in by_id else runs[0].id]) if run_id in by_id
]
chosen = st.multiselect(t("attack.runs"), list(by_id), format_func=lambda run_id: attack_widgets.run_label(by_id[run_id]), key="attack.runs",
                        help=t("attack.runs_help"))  # fmt: skip
if not chosen:
    st.info(t("attack.pick_run"))
    st.stop()
try:
    network = attack_widgets.attacked(chosen)
except attack_view.ERRORS as error:
    st.warning(error.render(language()))
    st.stop()
if network.is_ensemble:
    st.caption(t("attack.ensemble_caption", count=len(chosen)))
st.session_state.setdefault("attack.view", attack_widgets.VIEWS[0])
view = st.segmented_control(
    t("attack.view"), attack_widgets.VIEWS, format_func=lambda name: t(f"attack.view.{name}"), key="attack.view", required=True,
)  # fmt: skip
try:
    attack_widgets.RENDERERS[view](network, runs)
except attack_view.ERRORS as error:
    st.warning(error.render(language()))
