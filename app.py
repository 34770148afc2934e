"""LayerLab's entry point: page config, initial state, the sidebar and navigation. Nothing else."""

import streamlit as st

from pages.common import init_state, sidebar, t

st.set_page_config(page_title="LayerLab", page_icon="🧠", layout="wide")
init_state()
navigation = st.navigation(
    [
        st.Page("pages/build.py", title=t("nav.build"), icon="🧱", default=True),
        st.Page("pages/train.py", title=t("nav.train"), icon="📈"),
        st.Page("pages/runs.py", title=t("nav.runs"), icon="🗂️"),
        st.Page("pages/inspect.py", title=t("nav.inspect"), icon="🔬"),
        st.Page("pages/draw.py", title=t("nav.draw"), icon="✏️"),
    ]
)
sidebar()
navigation.run()
