"""LayerLab's entry point: page config, initial state, the sidebar and navigation. Nothing else."""

from pathlib import Path

import streamlit as st

from pages.common import init_state, save_draft, sidebar, t

st.set_page_config(page_title="LayerLab", page_icon="🧠", layout="wide")
# Layout rules for projector-sized windows (1024×768): labels that break only between words, wider selects.
st.html(f"<style>{(Path(__file__).parent / 'assets' / 'style.css').read_text(encoding='utf-8')}</style>")
init_state()  # every page then keeps language, name and draft in the address (pages.common.require_frame)
navigation = st.navigation(
    [
        st.Page("pages/build.py", title=t("nav.build"), icon="🧱", default=True),
        st.Page("pages/train.py", title=t("nav.train"), icon="📈"),
        st.Page("pages/runs.py", title=t("nav.runs"), icon="🗂️"),
        st.Page("pages/inspect.py", title=t("nav.inspect"), icon="🔬"),
        st.Page("pages/draw.py", title=t("nav.draw"), icon="✏️"),
        st.Page("pages/attack.py", title=t("nav.attack"), icon="🎯"),
        st.Page("pages/lessons.py", title=t("nav.lessons"), icon="🎓"),
        st.Page("pages/present.py", title=t("nav.present"), icon="📽️"),
    ]
)
sidebar()
try:
    navigation.run()
finally:
    # Also after st.stop() or a rerun a page asked for: whatever was edited up to there is kept.
    save_draft()
