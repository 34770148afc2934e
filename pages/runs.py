"""Runs: every run in one table with its disk use; overlay curves, reopen a run's network or settings,
resume, free disk space, delete, download."""

import zlib

import streamlit as st

from core.jobs import disk
from core.views import exports, plots, run_views, train_form
from core.views.i18n import render_any
from pages import run_widgets
from pages.common import actor, language, plain, require_frame, select_run, service, t

require_frame()


def column_config() -> dict:
    labels = {name: t(f"runs.column.{name}") for name in run_views.TABLE_COLUMNS}
    return {
        **labels,
        "id": st.column_config.NumberColumn(labels["id"], format="%d", width="small"),
        "parameters": st.column_config.NumberColumn(labels["parameters"], format="localized"),
        "best_validation_accuracy": st.column_config.NumberColumn(labels["best_validation_accuracy"], format="%.2f%%"),
        "test_accuracy": st.column_config.NumberColumn(labels["test_accuracy"], format="%.2f%%"),
    }


def open_network(run) -> None:
    """Hand the run's network to Build; Train keeps its current settings."""
    st.session_state.network, st.session_state.preset, st.session_state.settings_preset = dict(run.spec), None, None
    st.switch_page("pages/build.py")


def open_settings(run) -> None:
    """Hand the run's settings to Train, for the network Build holds now."""
    st.session_state.settings = dict(run.settings)
    st.session_state.settings_preset = train_form.preset_in_use(st.session_state.get("network"), st.session_state.get("preset"))
    st.switch_page("pages/train.py")


def watch(run) -> None:
    select_run(run.id)
    st.switch_page("pages/train.py")


def free_disk_space(run, column) -> None:
    """A confirm popover that prunes the run's checkpoints (see `disk.prune`) and says what it freed.

    Only those who may act on the run (its owner, the teacher) see it, and the service checks again.
    """
    if not actor().may_act_on(run):
        return
    with column.popover(t("runs.prune"), icon="🧹", width="stretch", disabled=not run_views.prunable(run)):
        kept = disk.epochs_to_keep(run.epochs_done, run.best_epoch, disk.PRUNE_BUDGET)
        st.write(t("runs.prune_confirm", id=run.id, epochs=", ".join(map(str, kept)) or "–"))
        if run.status in disk.FINISHED_FOR_GOOD:
            st.write(t("runs.prune_state"))
        if st.button(t("runs.prune_for_good"), key="runs.prune_confirm", type="primary"):
            try:
                freed = service().free_disk(run.id, actor=actor(), keep="views")
            except ValueError as error:  # resumed since the table was drawn, or not this browser's (AccessDenied)
                st.error(render_any(error, language()))
                return
            st.session_state["runs.pruned"] = {"id": run.id, "freed": freed}
            st.rerun()


def pruned_message(run) -> None:
    """After a prune's rerun: what it freed and what the run takes now."""
    pruned = st.session_state.pop("runs.pruned", None)
    if pruned and pruned["id"] == run.id:
        left = run_views.format_bytes(disk.run_disk_use(service().store, run.id))
        st.success(t("runs.pruned", id=run.id, freed=run_views.format_bytes(pruned["freed"]), left=left))


def export_row(run) -> None:
    """One download per export format; each file is made only when its button is pressed."""
    st.markdown(f"**{t('runs.export')}**", help=t("runs.export_help"))
    refused = exports.refusal(service().store, run.id)
    if refused is not None:
        st.caption(t("runs.export_refused", reason=refused.render(language())))
        return
    columns = st.columns(len(exports.MIME))
    for column, format in zip(columns, exports.MIME):
        column.download_button(
            t(f"runs.export.{format}"), lambda format=format: exports.download(service().store, run.id, format, language()).data,
            exports.file_name(run, format), exports.MIME[format], key=f"runs.export.{format}", on_click="ignore", icon="📦", width="stretch",
        )  # fmt: skip


def details(run) -> None:
    """One run: its outcome and figures, buttons to reuse it, downloads, freeing disk space and delete."""
    st.subheader(t("runs.run_title", id=run.id, name=plain(run.name) if run.name else run_views.network_summary(run.spec, language())))
    pruned_message(run)
    run_widgets.outcome(run)
    if my_digits := run_views.my_digits_text(service().store, run, language()):
        st.caption(my_digits)
    if run.epochs_done:
        run_widgets.figures(run)
    actions = st.columns(4)
    if actions[0].button(t("runs.open_network"), key="runs.open_network", icon="🧱", width="stretch"):
        open_network(run)
    if actions[1].button(t("runs.open_settings"), key="runs.open_settings", icon="⚙️", width="stretch"):
        open_settings(run)
    if actions[2].button(t("runs.watch"), key="runs.watch", icon="📈", width="stretch"):
        watch(run)
    allowed = actor().may_act_on(run)  # the owner and the teacher; the service refuses anyone else anyway
    if allowed and run_views.resumable(run) and actions[3].button(t("common.resume"), key="runs.resume", icon="▶️", width="stretch"):
        if not run_widgets.resume(run):
            return
        watch(run)
    if allowed and run.status in ("queued", "running") and actions[3].button(t("train.cancel"), key="runs.cancel", icon="⏹️", width="stretch"):
        if run_widgets.cancel(run):
            st.rerun()
    downloads = st.columns(4)
    downloads[0].download_button(
        t("runs.download_metrics"), run_views.metrics_csv(service().store.metrics(run.id)), run_views.download_name(run, "metrics", "csv"),
        "text/csv", key="runs.download_metrics", on_click="ignore", icon="⬇️", width="stretch",
    )  # fmt: skip
    downloads[1].download_button(
        t("runs.download_network"), run_views.network_json(run), run_views.download_name(run, "network", "json"),
        "application/json", key="runs.download_network", on_click="ignore", icon="⬇️", width="stretch",
    )  # fmt: skip
    free_disk_space(run, downloads[2])
    if allowed:
        delete_button(run, downloads[3])
    export_row(run)


def delete_button(run, column) -> None:
    """A confirm popover that deletes the run; the service refuses it for anyone but its owner and the teacher."""
    with column.popover(t("runs.delete"), icon="🗑️", width="stretch", disabled=run.status == "running"):
        st.write(t("runs.delete_confirm", id=run.id))
        if st.button(t("runs.delete_for_good"), key="runs.delete_confirm", type="primary"):
            try:
                service().delete(run.id, actor=actor())
            except ValueError as error:  # it started running since the table was drawn, or it is not this browser's
                st.error(render_any(error, language()))
                return
            if st.session_state.selected_run == run.id:
                select_run(None)
            st.rerun()


title_column, refresh_column = st.columns([5, 1], vertical_alignment="bottom")
title_column.title(t("runs.title"))
refresh_column.button(t("runs.refresh"), key="runs.refresh", icon="🔄", width="stretch")
scopes = ("mine", "everyone")
# "Mine" first for a student who has runs; everyone's for the teacher, and for a new browser that has none yet.
has_own = bool(run_views.owned_by(service().store.list(limit=500), actor().key_hash))
scope = st.radio(
    t("runs.show"), scopes, index=0 if has_own and not actor().teacher else 1, format_func={s: t(f"runs.scope.{s}") for s in scopes}.get,
    horizontal=True, key="runs.scope",
)  # fmt: skip
ACTIVE = ("queued", "running")


def runs_body(scope: str, polling: bool) -> None:
    """The table and what the selection shows; while runs are active it redraws itself every two seconds."""
    runs = service().runs()
    active = any(run.status in ACTIVE for run in runs)
    if polling and not active:
        st.rerun()  # Once, so the page redraws without the timer.
    if scope == "mine":
        runs = run_views.owned_by(runs, actor().key_hash)
    if not runs:
        st.info(t("runs.empty"))
        st.page_link("pages/train.py", label=t("runs.go_train"), icon="📈")
        return
    # The key changes with the set of runs, so a selection never silently moves to another run.
    table_key = f"runs.table.{zlib.crc32(','.join(str(run.id) for run in runs).encode()):08x}"
    disk_bytes = run_views.disk_use(service().store, runs)
    event = st.dataframe(
        run_views.table_rows(runs, language(), disk_bytes=disk_bytes), key=table_key, on_select="rerun", selection_mode="multi-row",
        hide_index=True, column_order=run_views.TABLE_COLUMNS, column_config=column_config(), placeholder="–",
    )  # fmt: skip
    st.caption(t("runs.disk_total", count=len(runs), size=run_views.format_bytes(sum(disk_bytes.values()))))
    selected = [runs[row] for row in event.selection.rows if row < len(runs)]
    if not selected:
        st.caption(t("runs.select_hint"))
        return
    series = [(run_views.legend_text(f"#{run.id} {run.name}".strip()), service().store.metrics(run.id)) for run in selected]
    if any(metrics for _, metrics in series):
        st.plotly_chart(plots.overlay_curves([item for item in series if item[1]], language()), key="runs.overlay")
    if len(selected) == 1:
        details(selected[0])
    else:
        st.caption(t("runs.one_to_open"))


polling = any(run.status in ACTIVE for run in service().store.list(limit=100))
st.fragment(run_every=2.0 if polling else None)(runs_body)(scope, polling)
