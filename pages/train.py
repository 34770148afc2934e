"""Train: choose how to train the network from Build, start a background run and watch it live."""

import time

import streamlit as st

from core.jobs import access, lesson_links
from core.jobs.store import QueueFull, RunNotFound
from core.model.vocabulary import SpecError
from core.training.presets import DEFAULT_PRESET
from core.training.presets import get as get_preset
from core.training.settings import SettingsError
from core.views.i18n import render_any
from core.views import builder_state, leaderboard, plots, run_views, train_form
from pages import run_widgets
from pages.common import actor, device_label, digits_owner, language, lesson_link, require_frame, save_draft, select_run, service, t

require_frame()

OPEN_SECTIONS = ("data", "optimizer")


@st.cache_data(max_entries=32, show_spinner=False)
def preview(dataset: str, augmentation: tuple) -> object:
    return train_form.augmentation_preview(dataset, dict(zip(train_form.AUGMENTATION_FIELDS, augmentation)))


def reset_settings(preset: str | None, link: lesson_links.LessonLink | None = None) -> None:
    """Button callback: back to the lesson link's or the preset's settings (widget keys go, so widgets take the new values)."""
    for key in [key for key in st.session_state if str(key).startswith("train.")]:
        del st.session_state[key]
    st.session_state.settings = dict(link.settings) if link else train_form.default_settings(preset)


def apply_lesson_link(link: lesson_links.LessonLink) -> None:
    """A lesson link opened for the first time in this session: its network and settings replace the session's."""
    if st.session_state.get("lesson_link_applied") == link.id:
        return
    st.session_state.network, st.session_state.preset = dict(link.network), None
    st.session_state.settings_preset = None
    reset_settings(None, link)
    st.session_state.lesson_link_applied = link.id


def locked(name: str) -> bool:
    return LINK is not None and LINK.locks(name)


def field_widget(form_field: train_form.FormField, value: object) -> object:
    name, key = form_field.name, f"train.{form_field.name}"
    label, hint, value = t(f"train.field.{name}"), t(f"train.hint.{name}"), form_field.coerce(value)
    disabled = locked(name)
    if disabled:  # the lesson link's value, whatever the widget held; the service refuses any other anyway
        value = form_field.coerce(LINK.settings.get(name, value))
        st.session_state[key] = value
        hint = f"{t('lesson_link.locked_hint')} {hint}"
    if form_field.kind == "bool":
        return st.toggle(label, value=value, help=hint, key=key, disabled=disabled)
    if form_field.kind == "choice":
        choices = form_field.choices
        names = {choice: t(f"train.choice.{choice}") for choice in choices}  # AppTest calls format_func outside the run
        return st.selectbox(label, choices, choices.index(value), format_func=names.get, help=hint, key=key, disabled=disabled)
    number_format = "%d" if form_field.kind == "int" else "%g"
    return st.number_input(
        label, form_field.minimum, form_field.maximum, value, form_field.step, number_format, help=hint, key=key, disabled=disabled
    )


def my_digits_widget(values: dict) -> bool:
    """The checkbox that adds the owner's "my digits" (saved on the Draw page) to the run's training data, with their count."""
    offer = train_form.my_digits_offer(service().store.directory, digits_owner(), values["dataset"])
    label, hint = t("train.my_digits_checkbox", count=offer.count), t("train.hint.include_my_digits")
    if not offer.usable:
        # A widget of its own, unticked: a set that became unusable is never asked for by a box still ticked from before.
        st.checkbox(label, value=False, disabled=True, help=hint, key="train.include_my_digits.unavailable")
        st.caption(t(f"train.my_digits_hint.{offer.reason}"))
        return False
    return st.checkbox(label, value=bool(values.get("include_my_digits")), help=hint, key="train.include_my_digits")


def dropout_widgets(network: dict) -> None:
    """The network's dropout layers, whose p is edited here and written back to the session's network."""
    layers = train_form.dropout_layers(network)
    if locked(lesson_links.NETWORK):
        st.caption(t("lesson_link.network_locked"))
        return
    if not layers:
        st.caption(t("train.no_dropout"))
        st.page_link("pages/build.py", label=t("train.edit_on_build"), icon="🧱")
        return
    chosen = {
        index: st.number_input(
            t("train.field.dropout", layer=index + 1), 0.0, 0.95, p, 0.05, "%g", help=t("train.hint.dropout"), key=f"train.dropout.{index}"
        )
        for index, p in layers
    }
    if chosen != dict(layers):
        if not st.session_state.get("network"):
            st.session_state.preset = DEFAULT_PRESET  # keep the preset's settings for its network
        st.session_state.network = train_form.with_dropout(network, chosen)


def settings_form(values: dict, network: dict) -> tuple[dict, dict]:
    """All settings widgets by section; returns the values and an error slot per shown field."""
    slots = {}
    for section, form_fields in train_form.SECTIONS.items():
        with st.expander(t(f"train.section.{section}"), expanded=section in OPEN_SECTIONS):
            for form_field in form_fields:
                if form_field.applies(values):
                    values[form_field.name] = field_widget(form_field, values[form_field.name])
                    slots[form_field.name] = st.empty()
            if section == "data":
                values["include_my_digits"] = my_digits_widget(values)
            if section == "regularization":
                dropout_widgets(network)
            if section == "augmentation":
                augmentation_preview(values)
    return values, slots


def augmentation_preview(values: dict) -> None:
    augmentation = tuple(values[name] for name in train_form.AUGMENTATION_FIELDS)
    if not train_form.augmentation_of(values).active:
        st.caption(t("train.augmentation_off"))
        return
    try:
        st.image(preview(values["dataset"], augmentation), caption=t("train.preview_caption"))
    except ValueError as error:
        st.error(render_any(error, language()))


def live_view(run_id: int, polling: bool) -> None:
    """The selected run: progress, cancel, outcome, final figures and curves; polls while it trains."""
    try:
        run = service().run(run_id)
    except RunNotFound:
        select_run(None)
        st.info(t("train.run_gone", id=run_id))
        return
    if polling and run.finished:
        st.rerun()  # Once, so the page redraws without the one-second timer.
    st.subheader(t("train.run_title", id=run.id, status=t(f"common.status.{run.status}")))
    if run.status == "queued":
        position = service().queue_position(run.id) or 1
        st.info(t("train.queued", position=position))
        running = [service().store.get(other.id) for other in service().store.list(status="running")]
        if (wait := run_views.estimated_wait(running, position)) is not None:
            st.caption(t("train.queued_start", wait=run_views.format_duration(wait)))
    view = run_views.progress_view(run)
    if run.status == "running":
        # The time left is smoothed across the fragment's polls (see run_views.smooth_eta); the state lives in the session.
        eta = run_views.smooth_eta(st.session_state.get("eta_state"), run.id, view and view.eta_seconds, time.time())
        st.session_state.eta_state = eta
        text = t("train.starting") if view is None else t(
            "train.progress", epoch=view.epoch, epochs=view.epochs, step=view.step, steps=view.steps_per_epoch,
            speed=f"{view.images_per_second:,.0f}", eta=run_views.format_duration(eta and eta["eta"]),
        )  # fmt: skip
        st.progress(view.fraction if view else 0.0, text=text)
    # Cancel and resume only for the run's owner and the teacher; the service refuses anyone else anyway.
    allowed = actor().may_act_on(run)
    if run.status in ("queued", "running"):
        if run.cancel_requested:
            st.caption(t("train.cancelling"))
        elif allowed and st.button(t("train.cancel"), key="train.cancel", icon="⏹️"):
            run_widgets.cancel(run)
    run_widgets.outcome(run)
    if allowed:
        resume_button(run)
    if run.epochs_done:
        run_widgets.figures(run, per_row=2)
    if run.metrics:
        st.plotly_chart(plots.training_curves(run.metrics, language()), key="train.curves")
    elif not run.finished:
        st.caption(t("train.plot.waiting"))


def resume_button(run) -> None:
    if run_views.resumable(run) and st.button(t("common.resume"), key="train.resume", icon="▶️") and run_widgets.resume(run):
        st.rerun()


def start(network: dict, values: dict, name: str) -> None:
    settings, _ = train_form.parse(values)
    try:
        run_id = service().submit(
            network, settings, owner=st.session_state.owner, name=name, actor=actor(), lesson_link=LINK.id if LINK else None
        )
    except (SpecError, SettingsError, QueueFull, lesson_links.LessonLinkError) as error:  # QueueFull: this browser already has its share
        st.error(error.render(language()))
        return
    service().ensure_scheduler()
    select_run(run_id)
    st.rerun()  # The sidebar and the live view show the new run, which the fragment now polls.


@st.cache_resource(show_spinner=False)
def matmul_rate() -> float:
    """This server's matrix-multiply speed, measured once: the estimate's fallback before any run has finished."""
    return train_form.matmul_rate()


@st.cache_data(ttl=30, show_spinner=False)
def speed_samples(device: str) -> list:
    """How fast finished runs on this server's device trained (refreshed every 30 s)."""
    finished = [run for run in service().store.list(status="succeeded", limit=100) if run.device == device]
    return train_form.speed_samples([service().store.get(run.id) for run in finished[:30]])


def use_short_settings() -> None:
    """Button callback: the short settings, written into the widgets' own state so they show at once."""
    for name, value in train_form.SHORT_SETTINGS.items():
        st.session_state[f"train.{name}"] = value
        st.session_state.settings[name] = value


def time_estimate(network: dict, values: dict) -> None:
    """How long this run would take here, with a warning and the short settings when that is long."""
    flops = train_form.network_flops(network, values["dataset"])
    if not flops:
        return
    estimate = train_form.estimate_seconds(flops, values, speed_samples(device_label()), matmul_rate())
    minutes = max(1, round(estimate.seconds / 60))
    duration = t("train.minutes", count=minutes) if minutes < 90 else t("train.hours", hours=minutes // 60, minutes=minutes % 60)
    if not estimate.long:
        st.caption(t("train.estimate", time=duration, source=t(f"train.estimate_source.{estimate.source}")))
        return
    short = train_form.SHORT_SETTINGS
    st.warning(t("train.estimate_long", time=duration, epochs=short["epochs"], batch_size=short["batch_size"],
                 train_subset=f"{short['train_subset']:,}"), icon=":material/schedule:")
    st.caption(t(f"train.estimate_source.{estimate.source}"))
    st.button(t("train.use_short"), key="train_use_short", on_click=use_short_settings, icon=":material/bolt:")


def default_name(preset: str | None) -> str:
    """A name no earlier run has: the preset's (or "network") and the next free number, e.g. "fast #3"."""
    base = preset or t("train.default_name_network")
    return run_views.next_run_name(base, [run.name for run in service().store.list(limit=500)])


def current_network() -> dict:
    """The plain spec to train: the lesson link's when it locks the network, else Build's (with dropout edits), else the default preset's."""
    if locked(lesson_links.NETWORK):
        return builder_state.to_spec(LINK.network)
    return builder_state.to_spec(st.session_state.get("network") or get_preset(DEFAULT_PRESET).network)


def lesson_link_banner(link: lesson_links.LessonLink) -> None:
    names = [t("lesson_link.lock.network") if name == lesson_links.NETWORK else t(f"train.field.{name}") for name in link.locked]
    title = access.markdown_literal(link.title or link.id)
    st.info(t("lesson_link.banner", title=title, locked=", ".join(names)) if names else t("lesson_link.banner_unlocked", title=title), icon="🔒")


def lesson_link_maker(network: dict, values: dict) -> None:
    """The teacher's form: this network and these settings as a lesson link, with the chosen settings locked."""
    with st.expander(t("lesson_link.make"), icon="🔗"):
        title = st.text_input(t("lesson_link.title"), key="lesson_link.title", placeholder=t("lesson_link.title_placeholder"), max_chars=80)
        labels = {name: t("lesson_link.lock.network") if name == lesson_links.NETWORK else t(f"train.field.{name}") for name in lesson_links.LOCK_CHOICES}
        chosen = st.multiselect(t("lesson_link.locks"), lesson_links.LOCK_CHOICES, format_func=labels.get, key="lesson_link.locks")
        if st.button(t("lesson_link.create"), key="lesson_link.create", icon="🔗"):
            settings, error = train_form.parse(values)
            try:
                if error is not None:
                    raise error
                st.session_state.lesson_link_made = service().create_lesson_link(network, settings, chosen, title.strip(), actor())
            except ValueError as problem:
                st.error(render_any(problem, language()))
        if made := st.session_state.get("lesson_link_made"):
            base = (getattr(st.context, "url", "") or "").split("?")[0].rsplit("/", 1)[0]
            st.write(t("lesson_link.made"))
            st.code(f"{base}/train?lesson={made}&lang={language()}", language=None)
            st.page_link("pages/present.py", label=t("lesson_link.present"), icon="📽️",
                         query_params={"lesson": made, "key": st.session_state.owner_key, "lang": language()})  # fmt: skip


def leaderboard_view(link_id: str) -> None:
    """The lesson link's leaderboard, redrawn every two seconds while any of its runs is active."""
    try:
        link = service().lesson_link(link_id)
    except lesson_links.LessonLinkError:
        return
    runs = service().store.lesson_link_runs(link.id)
    st.subheader(t("leaderboard.title"), help=t("leaderboard.help"))
    table(leaderboard.rows(runs, link.hide_names, language()))


def table(rows: list) -> None:
    if not rows:
        st.caption(t("leaderboard.empty"))
        return
    st.dataframe(
        [{"rank": row.rank, "name": row.name, "test_accuracy": run_views.percent(row.test_accuracy) if row.test_accuracy is not None else None,
          "epochs": row.epochs, "time": run_views.format_duration(row.seconds), "status": t(f"common.status.{row.status}")} for row in rows],
        hide_index=True, placeholder="–", key="train.leaderboard",
        column_config={name: t(f"leaderboard.column.{name}") for name in ("rank", "name", "test_accuracy", "epochs", "time", "status")},
    )  # fmt: skip


st.title(t("train.title"))
LINK = lesson_link()
if LINK is not None:
    apply_lesson_link(LINK)
    lesson_link_banner(LINK)
preset = train_form.preset_in_use(st.session_state.get("network"), st.session_state.get("preset"))
if st.session_state.get("settings") is None or st.session_state.get("settings_preset") != preset:
    st.session_state.settings, st.session_state.settings_preset = train_form.default_settings(preset), preset
values = {**train_form.default_settings(None), **st.session_state.settings}

# The keyed container lets style.css stack the form above the live view when the window is narrow.
with st.container(key="train_panels"):
    form_column, live_column = st.columns([2, 3], gap="large")
with form_column:
    summary = st.empty()  # filled once the dataset is known, like the actions below the network line
    if not st.session_state.get("network"):
        st.caption(t("train.default_network"))
        st.page_link("pages/build.py", label=t("train.edit_on_build"), icon="🧱")
    # The book's figure is for the book's network: not for one edited on Build.
    unedited = builder_state.unedited_preset(current_network(), preset)
    if figure := train_form.book_figure(unedited):
        st.caption(t("train.book_figure", accuracy=f"{figure[0]:.2f}", epochs=figure[1]))
    actions = st.container()  # Train sits above the long form, next to the live view it starts.
    values, slots = settings_form(values, current_network())
    st.session_state.settings = values
    settings, error = train_form.parse(values)
    if error is not None:
        slots.get(error.field_name, st).error(error.render(language()))
    network = current_network()
    parameters, problem = train_form.check_network(network, values["dataset"], language())
    summary.markdown(t("train.network", summary=run_views.network_summary(network, language()), parameters=f"{parameters:,}"))
    with actions:
        if problem or error:
            st.error(problem or error.render(language()))
        else:
            time_estimate(network, values)
        suggested = default_name(unedited)
        name = st.text_input(t("train.run_name"), key="train.name", placeholder=suggested, max_chars=80)
        start_column, reset_column = st.columns(2)
        blocked = bool(error or problem)
        if start_column.button(t("train.start"), type="primary", key="train.submit", disabled=blocked, icon="🚀", width="stretch"):
            start(network, values, name.strip() or suggested)
        reset_column.button(t("train.reset"), key="train.reset", on_click=reset_settings, args=(preset, LINK), width="stretch")
    if actor().teacher:
        lesson_link_maker(network, values)

with live_column:
    run_id = st.session_state.selected_run
    if run_id is None:
        st.info(t("train.no_run"))
    else:
        select_run(run_id)
        try:
            polling = not service().store.get(run_id, with_metrics=False).finished
        except RunNotFound:
            polling = False
        st.fragment(run_every=1.0 if polling else None)(live_view)(run_id, polling)
    if LINK is not None:
        active = any(run.status in ("queued", "running") for run in service().store.lesson_link_runs(LINK.id))
        st.fragment(run_every=2.0 if active else None)(leaderboard_view)(LINK.id)
save_draft()
