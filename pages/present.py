"""Presenter view for the projector: a lesson link's leaderboard and every run's validation curve, large and live."""

import streamlit as st

from core.jobs import access, lesson_links
from core.views import leaderboard, plots, run_views
from core.views.i18n import render_any
from pages.common import actor, language, lesson_link, require_frame, service, t

require_frame()
# Projector type: everything on this page a size up, the table's cells most of all.
st.html(
    "<style>.st-key-present h1 {font-size: 3.4rem;} .st-key-present p, .st-key-present li {font-size: 1.35rem;}"
    " .st-key-present [data-testid=stTable] td, .st-key-present [data-testid=stTable] th {font-size: 1.6rem; padding: 0.5rem 1rem;}</style>"
)


def hide_names(link_id: str) -> None:
    try:
        service().hide_names(link_id, st.session_state["present.hide"], actor())
    except ValueError as error:  # not the teacher: the service refuses whatever the page shows
        st.session_state.present_error = render_any(error, language())


def board(link_id: str) -> None:
    """The leaderboard and the curves; redraws every three seconds while any of the link's runs is queued or training."""
    try:
        link = service().lesson_link(link_id)
    except lesson_links.LessonLinkError as error:
        st.error(error.render(language()))
        return
    runs = service().store.lesson_link_runs(link.id)
    rows = leaderboard.rows(runs, link.hide_names, language())
    training = sum(1 for run in runs if run.status == "running")
    st.write(t("present.runs", count=len(runs), training=training))
    if not rows:
        st.info(t("leaderboard.empty"))
        return
    st.subheader(t("leaderboard.title"))
    st.table(
        [{t("leaderboard.column.rank"): row.rank or "–", t("leaderboard.column.name"): row.name,
          t("leaderboard.column.test_accuracy"): run_views.percent(row.test_accuracy) if row.test_accuracy is not None else "–",
          t("leaderboard.column.epochs"): row.epochs, t("leaderboard.column.time"): run_views.format_duration(row.seconds),
          t("leaderboard.column.status"): t(f"common.status.{row.status}")} for row in rows]
    )  # fmt: skip
    names = {row.key_hash: row.name for row in rows}  # the names the board shows: "Student N" when hidden
    series = [(run_views.legend_text(f"{names.get(run.owner_key_hash, '–')} #{run.id}"), service().store.metrics(run.id)) for run in runs]
    series = [item for item in series if item[1]]
    if series:
        st.subheader(t("present.curves"))
        figure = plots.overlay_curves(series, language())
        figure.update_layout(height=560, font={"size": 18}, legend={"font": {"size": 16}})
        st.plotly_chart(figure, key="present.curves", config=plots.CHART_CONFIG)
    if any(run.status in ("queued", "running") for run in runs) is False and st.session_state.get("present.polling"):
        st.session_state["present.polling"] = False
        st.rerun()


with st.container(key="present"):
    link = lesson_link()
    st.title(access.markdown_literal(link.title) if link and link.title else t("present.title"))
    if link is None:
        st.info(t("present.no_link"))
        st.stop()
    if actor().teacher:
        st.toggle(t("present.hide_names"), value=link.hide_names, key="present.hide", on_change=hide_names, args=(link.id,))
    if error := st.session_state.pop("present_error", None):
        st.error(error)
    active = any(run.status in ("queued", "running") for run in service().store.lesson_link_runs(link.id))
    st.session_state["present.polling"] = active
    st.fragment(run_every=3.0 if active else None)(board)(link.id)
