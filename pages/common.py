"""What every page shares: translated text, the sidebar, the job service and session state.

Pages stay thin: they read widgets, call `core`, and render what comes back. This module
holds the few Streamlit-specific helpers they all need.

Session-state keys (one place to look them up):
- "language": "en" or "ko" (also in the URL as ?lang=)
- "owner": the name runs are started under (also in the URL as ?owner=)
- "selected_run": id of the run the sidebar shows, or None (also in the URL as ?run=)
- "network": the spec being built on the Build page (a dict, see core/spec.py); on a session's
  first run it comes from a shared link (?net=, see core/builder_state.py) or DEFAULT_PRESET
- "preset": the name of the preset "network" was loaded from, or None
- "link_error": a `builder_state.LoadError` for a broken ?net= link, until the Build page shows it
- "settings": the Train page's TrainSettings as a dict
- "settings_preset": the preset "settings" were filled from; when "preset" changes, Train refills them
"""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from core.jobs.service import JobService
from core.jobs.store import RunStore
from core.training import device as devices
from core.training import presets
from core.training.presets import DEFAULT_PRESET
from core.views import builder_state, i18n, plots


def require_frame() -> None:
    """Make sure this page runs inside app.py's frame; call it first in every page script.

    Streamlit treats a `pages/` folder as its legacy multipage mode until `st.navigation` has
    run once in the server process. So on a freshly started server, a browser that opens (or
    refreshes) /train directly gets pages/train.py without app.py's state and sidebar. A fresh
    session is the only one that can land there: app.py's `init_state` fills "language" on a
    session's first run through the frame, and once any session has been through the frame,
    the legacy mode is off for all of them. Streamlit documents that calling `st.navigation`
    makes the app ignore `pages/` in every session, so the page calls it, with the folder's own
    scripts (this page among them, so the URL still names a page), and reruns: the rerun goes
    through app.py. (AppTest starts each run in the legacy mode again, but its sessions always
    went through the frame first, so there the page goes on with the state they made.)
    """
    if "language" in st.session_state:
        return
    folder = Path(__file__).resolve().parent
    st.navigation([st.Page(path) for path in sorted(folder.glob("*.py")) if path.name != "__init__.py"], position="hidden")
    st.rerun()


def language() -> str:
    return st.session_state.get("language", i18n.DEFAULT_LANGUAGE)


def t(key: str, **values: object) -> str:
    """Translated text for the current language."""
    return i18n.translate(language(), key, **values)


@st.cache_resource
def service() -> JobService:
    """One job service (and run store) shared by every browser session of this server."""
    return JobService(RunStore())


@st.cache_resource
def device_label() -> i18n.Message:
    return devices.describe_message(devices.pick_device())


def init_state() -> None:
    """Fill session state from the URL on a session's first run."""
    if "language" not in st.session_state:
        from_url = st.query_params.get("lang")
        locale = (getattr(st.context, "locale", None) or "").lower()
        st.session_state.language = from_url if from_url in i18n.LANGUAGES else ("ko" if locale.startswith("ko") else "en")
    if "owner" not in st.session_state:
        st.session_state.owner = st.query_params.get("owner", "")
    if "selected_run" not in st.session_state:
        st.session_state.selected_run = run_from_url(st.query_params.get("run", ""))
    if "network" not in st.session_state:
        init_network()


# A run id in the URL: ASCII digits only (str.isdigit() also takes "²"), and no more than the
# largest id SQLite stores (2**63 - 1, 19 digits); anything else is ignored.
RUN_ID_TEXT = re.compile(r"[0-9]{1,19}")
MAX_RUN_ID = 2**63 - 1


def run_from_url(text: str) -> int | None:
    """The run id a ?run= value names, or None when it names none."""
    if not RUN_ID_TEXT.fullmatch(text):
        return None
    run_id = int(text)
    return run_id if 1 <= run_id <= MAX_RUN_ID else None


def init_network() -> None:
    """The network a session starts with: the one in a shared link (?net=), else DEFAULT_PRESET."""
    link = st.query_params.get("net")
    if link:
        try:
            st.session_state.network = builder_state.to_spec(builder_state.decode_link(link))
            st.session_state.preset = None
            return
        except builder_state.LoadError as error:
            st.session_state.link_error = error
    st.session_state.network = builder_state.to_spec(builder_state.check_editable(presets.get(DEFAULT_PRESET).network))
    st.session_state.preset = DEFAULT_PRESET


def select_run(run_id: int | None) -> None:
    """Make `run_id` the session's selected run and keep it in the URL (?run=), so a refresh brings it back."""
    st.session_state.selected_run = run_id
    if run_id is None:
        st.query_params.pop("run", None)
    elif st.query_params.get("run") != str(run_id):
        st.query_params["run"] = str(run_id)


def _choose_language() -> None:
    st.session_state.language = st.session_state.language_choice
    st.query_params["lang"] = st.session_state.language
    # A keyed selectbox or radio keeps showing the label it last showed (e.g. "MNIST digits" on the
    # Korean page) until Python sets its value again: set every text value to itself, so each such
    # widget is sent its value, and so its label in the new language, on the rerun this change starts.
    for key in list(st.session_state):
        if key not in ("language", "language_choice") and isinstance(st.session_state[key], str):
            st.session_state[key] = st.session_state[key]


def sidebar() -> None:
    """Language switch, owner name, selected run and device; both choices are kept in the URL."""
    with st.sidebar:
        codes = list(i18n.LANGUAGES)
        # A callback, not st.rerun(): it runs before the script, so the whole page is drawn once, in the new language.
        st.radio(
            t("sidebar.language"), codes, index=codes.index(language()), format_func=i18n.LANGUAGES.get, horizontal=True,
            key="language_choice", on_change=_choose_language,
        )
        owner = st.text_input(t("sidebar.owner"), value=st.session_state.owner, help=t("sidebar.owner_help"), max_chars=40)
        if owner != st.session_state.owner:
            st.session_state.owner = owner.strip()
            st.query_params["owner"] = st.session_state.owner
        run_id = st.session_state.selected_run
        st.caption(f"{t('sidebar.selected_run')}: #{run_id}" if run_id else t("sidebar.no_run"))
        st.caption(t("sidebar.device", device=device_label().render(language())))
        # An invisible chart: the browser loads Plotly's JavaScript (~3.5 MB, about 2 s to parse on a
        # slow classroom machine) while the first page is read, so the charts on the next page draw at once.
        st.plotly_chart(plots.blank(), config={"staticPlot": True, "displayModeBar": False}, key="plotly_preload")
