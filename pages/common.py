"""What every page shares: translated text, the sidebar, the job service and session state.

Pages stay thin: they read widgets, call `core`, and render what comes back. This module
holds the few Streamlit-specific helpers they all need.

Session-state keys (one place to look them up):
- "language": "en" or "ko" (also in the URL as ?lang=)
- "owner": the name runs are started under (also in the URL as ?owner=), sanitised by `access.display_name`
- "owner_key": this browser's owner key (also in the URL as ?key=; runs store its hash, see core/jobs/access.py);
  made on the first visit, when "owner_key_new" asks the sidebar to show the "keep this link" notice until it is closed
- "teacher": True once this session gave the teacher passcode (LAYERLAB_TEACHER_PASSCODE)
- "selected_run": id of the run the sidebar shows, or None (also in the URL as ?run=)
- "network": the spec being built on the Build page (a dict, see core/spec.py); on a session's
  first run it comes from a shared link (?net=, see core/builder_state.py) or DEFAULT_PRESET
- "preset": the name of the preset "network" was loaded from, or None
- "link_error": a `builder_state.LoadError` for a broken ?net= link, until the Build page shows it
- "settings": the Train page's TrainSettings as a dict
- "settings_preset": the preset "settings" were filled from; when "preset" changes, Train refills them
- "drawing": the latest 28×28 uint8 image (white ink on black, MNIST's format) the Draw page
  classified, set on every prediction, for the pages that inspect or attack a drawing
- "draw.canvas…": the Draw page's canvas (the component's own value, its strokes, and the
  initial drawing that clear and undo reload; see pages/canvas_widget.py)
- "draft_key": this browser's draft (also in the URL as ?draft=); "network", "preset", "settings",
  "settings_preset", "guide_dismissed", "language" and "owner" are saved under it (core/views/drafts.py)
  after every run, so a refresh or a server restart brings them back
- "guide_dismissed": True once the first-visit guide was closed
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import streamlit as st

from core.jobs import access, lesson_links
from core.jobs.service import JobService
from core.jobs.store import RunStore
from core.training import device as devices
from core.training import presets
from core.training.presets import DEFAULT_PRESET
from core.views import builder_state, drafts, i18n, plots

# What a draft keeps of a session, by session-state key.
DRAFT_KEYS = ("language", "owner", "network", "preset", "settings", "settings_preset", "guide_dismissed")


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
        keep_in_url()
        return
    folder = Path(__file__).resolve().parent
    # The default page is served at "/" and not under its own name, so it must be app.py's default
    # (Build): were it the first file in sorted order (attack.py), a first visit to /attack would not be found.
    pages = [st.Page(path, default=path.name == "build.py") for path in sorted(folder.glob("*.py")) if path.name != "__init__.py"]
    st.navigation(pages, position="hidden")
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
def teacher_gate() -> access.TeacherGate:
    """The teacher passcode check, one per server process, so its rate limit holds across every browser."""
    return access.TeacherGate(access.configured_passcode())


def actor() -> access.Actor:
    """Who this browser is to the job service: its owner key, and whether it gave the teacher passcode."""
    return access.Actor.for_key(st.session_state.owner_key, teacher=bool(st.session_state.get("teacher")) and teacher_gate().enabled)


def digits_owner() -> str:
    """Whose "my digits" this browser reads and writes: its owner key's hash, never the name typed in the sidebar."""
    return actor().key_hash or ""


def lesson_link() -> lesson_links.LessonLink | None:
    """The lesson link this browser opened (?lesson=…), or None; an unknown or crafted one is said once and dropped."""
    from_url = st.query_params.get("lesson")
    if from_url and from_url != st.session_state.get("lesson_link"):
        st.session_state.lesson_link = from_url  # a link followed inside the app (the presenter view's, say) replaces the session's
    link_id = st.session_state.get("lesson_link")
    if not link_id:
        return None
    try:
        return service().lesson_link(link_id)
    except lesson_links.LessonLinkError as error:
        st.error(error.render(language()))
        st.session_state.lesson_link = None
        return None


def plain(text: str) -> str:
    """A name someone typed, escaped for st.markdown, st.caption and st.subheader: it shows as typed, never as Markdown or HTML."""
    return access.markdown_literal(text)


@st.cache_resource
def device_label() -> i18n.Message:
    return devices.describe_message(devices.pick_device())


def init_state() -> None:
    """Fill session state on a session's first run: from the URL, then from this browser's draft."""
    if "draft_key" not in st.session_state:
        key = st.query_params.get("draft", "")
        st.session_state.draft_key = key if drafts.valid_key(key) else drafts.new_key()
        draft = drafts.load(st.session_state.draft_key, service().store.directory)
        for name in ("settings", "settings_preset", "guide_dismissed"):
            if name in draft:
                st.session_state[name] = draft[name]
    else:
        draft = {}
    if "language" not in st.session_state:
        from_url = st.query_params.get("lang") or draft.get("language")
        locale = (getattr(st.context, "locale", None) or "").lower()
        st.session_state.language = from_url if from_url in i18n.LANGUAGES else ("ko" if locale.startswith("ko") else "en")
    if "owner" not in st.session_state:
        st.session_state.owner = access.display_name(st.query_params.get("owner", draft.get("owner", "")))
    if "owner_key" not in st.session_state:
        key = st.query_params.get("key", "")
        st.session_state.owner_key = key if access.valid_key(key) else access.new_key()
        st.session_state.owner_key_new = not access.valid_key(key)
    if "selected_run" not in st.session_state:
        st.session_state.selected_run = run_from_url(st.query_params.get("run", ""))
    if "lesson_link" not in st.session_state:
        st.session_state.lesson_link = st.query_params.get("lesson", "") or None
    if "network" not in st.session_state:
        init_network(draft)


def keep_in_url() -> None:
    """Put language, name, owner key, draft key and selected run in the address on every page.

    Streamlit drops the query string when the navigation switches pages, so a refresh on the
    second page would otherwise start a new session in the browser's language with no name
    and no draft. Each value is written only when it differs, since every write goes to the browser.
    """
    if (followed := st.query_params.get("lesson")) and followed != st.session_state.get("lesson_link"):
        st.session_state.lesson_link = followed  # a lesson link followed inside the app (st.page_link to the presenter view)
    wanted = {"lang": language(), "draft": st.session_state.draft_key, "owner": st.session_state.owner, "key": st.session_state.owner_key}
    if st.session_state.get("selected_run"):
        wanted["run"] = str(st.session_state.selected_run)
    wanted["lesson"] = st.session_state.get("lesson_link") or ""
    for name, value in wanted.items():
        if not value:
            st.query_params.pop(name, None)
        elif st.query_params.get(name) != value:
            st.query_params[name] = value


def save_draft() -> None:
    """Save what this session edits under its draft key, when it changed since the last save.

    app.py calls it after every page; the pages that edit call it at their end too, so that a
    page run on its own (as AppTest runs every rerun after a session's first) saves as well.
    """
    draft = {name: st.session_state[name] for name in DRAFT_KEYS if name in st.session_state}
    try:
        text = json.dumps(draft, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):  # something not JSON crept in; the last good draft stays
        return
    if st.session_state.get("draft_saved") == text:
        return
    try:
        if drafts.save(st.session_state.draft_key, draft, service().store.directory):
            st.session_state.draft_saved = text
    except OSError:  # a full or read-only runs folder: the session goes on, only a refresh forgets
        pass


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


def init_network(draft: dict) -> None:
    """The network a session starts with: a shared link's (?net=), else the draft's, else DEFAULT_PRESET."""
    link = st.query_params.get("net")
    saved = draft.get("network")
    if link:
        try:
            network = builder_state.to_spec(builder_state.decode_link(link))
            st.session_state.network = network
            # The Build page keeps ?net= in the address: after a refresh it is the draft's own network and preset.
            st.session_state.preset = draft.get("preset") if isinstance(saved, dict) and network == saved else None
            return
        except builder_state.LoadError as error:
            st.session_state.link_error = error
    if isinstance(saved, dict):
        try:
            st.session_state.network = builder_state.to_spec(builder_state.check_editable(saved))
            st.session_state.preset = draft.get("preset") if draft.get("preset") in presets.all_presets() else None
            return
        except builder_state.LoadError:
            pass  # A draft from an older version that no longer loads: start over.
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


def _dismiss_guide() -> None:
    st.session_state.guide_dismissed = True


def guide() -> None:
    """The first-visit guide (Build → Train → look inside) until it is closed; the draft remembers that it was."""
    if st.session_state.get("guide_dismissed"):
        return
    with st.container(border=True, key="guide"):
        st.markdown(f"**{t('guide.title')}**\n\n{t('guide.steps')}")
        st.button(t("guide.dismiss"), key="guide_dismiss", on_click=_dismiss_guide, icon=":material/check:")


def sidebar() -> None:
    """Language switch, owner name, selected run and device; both choices are kept in the URL."""
    with st.sidebar:
        codes = list(i18n.LANGUAGES)
        # A callback, not st.rerun(): it runs before the script, so the whole page is drawn once, in the new language.
        st.radio(
            t("sidebar.language"),
            codes,
            index=codes.index(language()),
            format_func=i18n.LANGUAGES.get,
            horizontal=True,
            key="language_choice",
            on_change=_choose_language,
        )
        owner = st.text_input(
            t("sidebar.owner"),
            value=st.session_state.owner,
            help=t("sidebar.owner_help"),
            max_chars=40,
            placeholder=t("sidebar.owner_placeholder"),
        )
        if not owner.strip():
            st.caption(t("sidebar.owner_prompt"))
        if access.display_name(owner) != st.session_state.owner:
            # The page's keep_in_url puts it in the address: a query-string write made here, between
            # st.navigation and the page, does not reach the browser's address bar.
            st.session_state.owner = access.display_name(owner)
        if st.session_state.get("owner_key_new"):  # until closed: a first visit's first click must not hide it
            st.info(t("sidebar.key_notice"), icon=":material/bookmark:")
            st.button(t("sidebar.key_notice_ok"), key="key_notice_ok", on_click=_keep_link_noted)
        teacher_box()
        run_id = st.session_state.selected_run
        st.caption(f"{t('sidebar.selected_run')}: #{run_id}" if run_id else t("sidebar.no_run"))
        st.caption(t("sidebar.device", device=device_label().render(language())))
        # An invisible chart: the browser loads Plotly's JavaScript (~3.5 MB, about 2 s to parse on a
        # slow classroom machine) while the first page is read, so the charts on the next page draw at once.
        st.plotly_chart(plots.blank(), config={"staticPlot": True, "displayModeBar": False}, key="plotly_preload")


def _keep_link_noted() -> None:
    st.session_state.owner_key_new = False


def _enter_teacher() -> None:
    """Button callback: the passcode typed, checked by the server's rate-limited gate."""
    guess = st.session_state.pop("teacher_passcode", "")
    try:
        st.session_state.teacher = teacher_gate().check(guess)
        st.session_state.teacher_error = None if st.session_state.teacher else "sidebar.teacher_wrong"
    except access.TeacherLocked as error:
        st.session_state.teacher_error = error


def _leave_teacher() -> None:
    st.session_state.teacher = False


def teacher_box() -> None:
    """The sidebar's Teacher box: a passcode that lets this session see and act on every run. Absent without a passcode."""
    if not teacher_gate().enabled:
        return
    with st.expander(t("sidebar.teacher"), icon=":material/school:", expanded=bool(st.session_state.get("teacher"))):
        if st.session_state.get("teacher"):
            st.caption(t("sidebar.teacher_on"))
            st.button(t("sidebar.teacher_leave"), key="teacher_leave", on_click=_leave_teacher)
            return
        st.text_input(t("sidebar.teacher_passcode"), type="password", key="teacher_passcode")
        st.button(t("sidebar.teacher_enter"), key="teacher_enter", on_click=_enter_teacher)
        problem = st.session_state.get("teacher_error")
        if isinstance(problem, access.TeacherLocked):
            st.error(problem.render(language()))
        elif problem:
            st.error(t(problem))
