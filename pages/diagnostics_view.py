"""Diagnostics tab of the Inspect page: a placeholder until the engine records training diagnostics.

`render(run)` is the whole interface; the version that draws gradient norms, activation
histograms and the overfitting verdict replaces this file.
"""

import streamlit as st

from pages.common import t


def render(run) -> None:
    st.info(t("inspect.diagnostics.pending"))
