"""Lessons: the source texts' experiments, one click a step, the source's figure beside LayerLab's and the learner's own."""

import streamlit as st

from core.views import inspection, plots, run_views, syllabus
from core.views.i18n import render_any
from pages import inspect_widgets
from pages.common import actor, language, require_frame, select_run, service, t

require_frame()
VIEW_PAGES = {
    "train": "pages/train.py", "runs": "pages/runs.py", "inspect": "pages/inspect.py", "attack": "pages/attack.py",
    "draw": "pages/draw.py",
}  # fmt: skip


def open_in_train(step: syllabus.Step) -> None:
    """Hand the step's network to Build and its settings to Train, to change something before training."""
    st.session_state.network, st.session_state.preset = dict(step.network), step.preset
    st.session_state.settings = step.train_settings().to_dict()
    st.session_state.settings_preset = step.preset
    st.switch_page("pages/train.py")


def train_step(step: syllabus.Step, epochs: int, seed: int) -> None:
    try:
        run_id = service().submit(
            step.network, step.train_settings(epochs=epochs, seed=seed), owner=st.session_state.owner, name=step.title[language()][:80],
            actor=actor(),
        )  # fmt: skip
    except ValueError as error:  # bad settings, or this browser already has its share of the queue (QueueFull)
        st.error(render_any(error, language()))
        return
    service().ensure_scheduler()
    select_run(run_id)
    st.session_state.lessons_queued = run_id  # the toast shows after the rerun below
    st.rerun(scope="app")  # the whole page, so the steps start polling the new run


def queue_search(step: syllabus.Step, result: syllabus.StepResult, epochs: int) -> None:
    """Queue the learner's next sampled points of a random search, as many as the queue takes (each browser may queue only a few)."""
    queued = []
    for index in range(len(result.runs), step.search_runs):
        overrides = syllabus.sample(step, actor().key_hash, index)
        try:
            queued.append(service().submit(
                step.network, step.train_settings(**overrides, epochs=epochs, seed=index), owner=st.session_state.owner,
                name=f"{step.title[language()][:60]} {index + 1}/{step.search_runs}", actor=actor(),
            ))  # fmt: skip
        except ValueError as error:  # QueueFull once this browser's share of the queue is used
            if not queued:
                st.error(render_any(error, language()))
                return
            break
    service().ensure_scheduler()
    st.session_state.lessons_queued = queued[-1]
    st.rerun(scope="app")


def state_line(result: syllabus.StepResult) -> str:
    """Where the learner stands on one step, in a sentence."""
    active = [run for run in result.runs if run.status in ("queued", "running")]
    if active:
        run = active[-1]
        return t("lessons.state.active", id=run.id, status=t(f"common.status.{run.status}"), epochs=run.epochs_done,
                 total=run.settings.get("epochs", 0))  # fmt: skip
    if result.best is not None:
        return t("lessons.state.done", accuracy=run_views.percent(result.best.test_accuracy), epochs=result.best.epochs_done,
                 id=result.best.id)  # fmt: skip
    if result.runs:
        return t("lessons.state.no_result", count=len(result.runs))
    return t("lessons.state.not_started")


def step_box(index: int, result: syllabus.StepResult) -> None:
    step = result.step
    with st.container(border=True, key=f"lesson_step_{step.id}"):
        st.markdown(f"**{step.title[language()]}**")
        st.write(step.text[language()])
        claim = t("lessons.claim", accuracy=f"{step.claim:.2f}%", epochs=step.claim_epochs or "–") if step.claim is not None else ""
        if step.search:
            points = syllabus.search_points(result)
            st.caption(t("lessons.search_progress", done=len(points), queued=len(result.runs), needed=step.search_runs))
            if points:
                names = sorted(step.search)
                labels = {name: t(f"train.field.{name}") for name in names}
                st.plotly_chart(plots.search_scatter(points, names, labels, language()), key=f"lessons.search.{step.id}",
                                config=plots.CHART_CONFIG)  # fmt: skip
        elif step.ensemble:
            finished = sum(1 for run in result.runs if run.test_accuracy is not None)
            st.caption(t("lessons.ensemble_progress", done=finished, needed=step.ensemble) + (f" · {claim}" if claim else ""))
        else:
            st.caption(state_line(result) + (f" · {claim}" if claim else ""))
        epochs_column, train_column, open_column, view_column = st.columns([1, 1, 1, 1], vertical_alignment="bottom")
        epochs = epochs_column.number_input(
            t("lessons.epochs"), min_value=1, max_value=max(1, int(step.settings.get("epochs", 1))), value=int(step.settings.get("epochs", 1)),
            key=f"lessons.epochs.{step.id}", help=t("lessons.epochs_help"),
        )  # fmt: skip
        # Each new run of a step takes the next seed, so the ensemble's five nets differ.
        seed = len(result.runs)
        if step.search:
            left = len(result.runs) < step.search_runs
            if train_column.button(t("lessons.search"), key=f"lessons.train.{step.id}", type="primary", icon="🎲", width="stretch",
                                   disabled=not left, help=t("lessons.search_help", runs=step.search_runs)):  # fmt: skip
                queue_search(step, result, int(epochs))
        elif train_column.button(t("lessons.train"), key=f"lessons.train.{step.id}", type="primary", icon="🚀", width="stretch"):
            train_step(step, int(epochs), seed)
        if open_column.button(t("lessons.open_in_train"), key=f"lessons.open.{step.id}", icon="✏️", width="stretch"):
            open_in_train(step)
        view_column.page_link(VIEW_PAGES[step.view], label=t(f"lessons.view.{step.view}"), icon="🔎")


def lesson_body(lesson: syllabus.Lesson, polling: bool) -> None:
    """The table, the curves and the steps; redraws itself every two seconds while one of the learner's runs is active."""
    results = syllabus.progress(lesson, service().store.list(limit=500), actor().key_hash)
    # Runs come from `list` without their metrics; the table needs only the headline figures, the curves load them below.
    if polling and not any(result.active for result in results):
        st.rerun()  # Once, so the page redraws without the timer.
    rows = syllabus.table_rows(results, language(), syllabus.published_figures())

    def cell(accuracy: float | None, epochs: int | None) -> str | None:
        return None if accuracy is None else t("lessons.cell", accuracy=run_views.percent(accuracy), epochs=epochs or "–")

    shown = [
        {"step": row["step"], "source": cell(row["source"], row["source_epochs"]), "layerlab": cell(row["layerlab"], row["layerlab_epochs"]),
         "yours": cell(row["yours"], row["your_epochs"]), "runs": row["runs"]}
        for row in rows
    ]  # fmt: skip
    # A lesson whose source reports no figures (it shows curves instead) has no source or LayerLab columns.
    columns = ("step", "source", "layerlab", "yours", "runs")
    if all(result.step.claim is None for result in results):
        columns = ("step", "yours", "runs")
    st.dataframe(
        shown, hide_index=True, placeholder="–", key=f"lessons.table.{lesson.id}", column_order=columns,
        column_config={
            "step": t("lessons.column.step"),
            "source": t("lessons.column.source"),
            "layerlab": st.column_config.TextColumn(t("lessons.column.layerlab"), help=t("lessons.layerlab_help")),
            "yours": st.column_config.TextColumn(t("lessons.column.yours"), help=t("lessons.yours_help")),
            "runs": st.column_config.NumberColumn(t("lessons.column.runs"), format="%d"),
        },
    )  # fmt: skip
    series = [
        (run_views.legend_text(result.step.title[language()]), service().store.metrics(result.runs[0].id))
        for result in results if result.runs
    ]  # fmt: skip
    series = [item for item in series if item[1]]
    if series:
        st.caption(t("lessons.curves"))
        st.plotly_chart(plots.overlay_curves(series, language()), key=f"lessons.curves.{lesson.id}", config=plots.CHART_CONFIG)
    for index, result in enumerate(results):
        step_box(index, result)


def neuron_demo(step: syllabus.Step) -> None:
    """ml4a's neuron: two inputs, their weights and a bias on sliders; the weighted sum and each activation's output."""
    st.markdown(f"**{step.title[language()]}**")
    st.write(step.text[language()])
    columns = st.columns(5)
    names = ("x1", "x2", "w1", "w2", "b")
    defaults = (0.5, -1.0, 1.5, 0.8, 0.2)
    values = [
        column.slider(t(f"lessons.neuron.{name}"), -3.0, 3.0, default, 0.1, key=f"lessons.neuron.{step.id}.{name}")
        for column, name, default in zip(columns, names, defaults, strict=True)
    ]
    x1, x2, w1, w2, b = values
    out = syllabus.neuron([x1, x2], [w1, w2], b)
    def term(value: float) -> str:
        return f"({value:g})" if value < 0 else f"{value:g}"

    st.markdown(t("lessons.neuron.sum", z=f"{out['z']:.2f}", w1=term(w1), x1=term(x1), w2=term(w2), x2=term(x2), b=term(b)))
    shown = st.columns(3)
    for column, name in zip(shown, syllabus.ACTIVATIONS, strict=True):
        column.metric(t(f"lessons.neuron.{name}"), f"{out[name]:.3f}")
    st.plotly_chart(plots.activation_curves(out["z"], language()), key=f"lessons.neuron.{step.id}.plot", config=plots.CHART_CONFIG)


def _advance(key: str) -> None:
    st.session_state[key] = st.session_state.get(key, 0) + 1


def next_sample_demo(step: syllabus.Step, results: dict[str, syllabus.StepResult]) -> None:
    """ml4a's "next sample": the learner's run of the step it uses classifies test digit after test digit."""
    st.markdown(f"**{step.title[language()]}**")
    st.write(step.text[language()])
    used = results.get(step.uses)
    if used is None or used.best is None:
        st.info(t("lessons.needs_run", step=lesson.step(step.uses).title[language()]))
        return
    index_key, play_key = f"lessons.sample.{step.id}", f"lessons.sample.{step.id}.play"
    playing = st.toggle(t("lessons.sample.play"), key=play_key)

    def body() -> None:
        try:
            predicted = inspect_widgets.predictions(used.best.id)
            loaded = inspect_widgets.loaded_run(used.best.id)
        except inspection.ERRORS as error:
            st.error(render_any(error, language()))
            return
        if playing:
            _advance(index_key)
        shown = syllabus.next_sample(predicted.labels, predicted.probabilities, st.session_state.get(index_key, 0))
        image, words = st.columns([1, 3], vertical_alignment="center")
        image.image(loaded.splits.test_images[shown["index"]].numpy(), width=140)
        verdict = "lessons.sample.right" if shown["guess"] == shown["label"] else "lessons.sample.wrong"
        words.markdown(t("lessons.sample.guess", guess=shown["guess"], confidence=run_views.percent(shown["confidence"]),
                         index=shown["index"], label=shown["label"]) + "  \n" + t(verdict))  # fmt: skip
        words.caption(t("lessons.sample.score", right=shown["right"], seen=shown["seen"], id=used.best.id))
        words.button(t("lessons.sample.next"), key=f"{index_key}.next", on_click=_advance, args=(index_key,), icon="⏭️")

    st.fragment(run_every=1.5 if playing else None)(body)()


def demo_box(step: syllabus.Step, results: dict[str, syllabus.StepResult]) -> None:
    with st.container(border=True, key=f"lesson_step_{step.id}"):
        if step.demo == "neuron":
            neuron_demo(step)
        elif step.demo == "next-sample":
            next_sample_demo(step, results)
        else:  # "forward-pass": where to look, with the run it needs
            st.markdown(f"**{step.title[language()]}**")
            st.write(step.text[language()])
            used = results.get(step.uses)
            if used is None or used.best is None:
                st.info(t("lessons.needs_run", step=lesson.step(step.uses).title[language()]))
            else:
                st.page_link(VIEW_PAGES[step.view], label=t(f"lessons.view.{step.view}"), icon="🔎")


st.title(t("lessons.title"))
if (queued := st.session_state.pop("lessons_queued", None)) is not None:
    st.toast(t("lessons.queued", id=queued), icon="🚀")
lessons = syllabus.all_lessons()
titles = {lesson_id: lesson.title[language()] for lesson_id, lesson in lessons.items()}  # bound now: the label's language is this rerun's
choice = st.selectbox(t("lessons.choose"), list(lessons), format_func=titles.get, key="lessons.choice")
lesson = lessons[choice]
st.caption(t("lessons.source", source=lesson.source[language()]))
st.write(lesson.intro[language()])
if actor().key_hash is None:
    st.info(t("lessons.no_key"))
results = syllabus.progress(lesson, service().store.list(limit=500), actor().key_hash)
active = any(result.active for result in results)
by_step = {result.step.id: result for result in results}
# Demos train nothing: those before the first training step come first, the rest after the steps (outside the polling part).
first = next((index for index, step in enumerate(lesson.steps) if not step.demo), len(lesson.steps))
for step in lesson.steps[:first]:
    demo_box(step, by_step)
if results:
    st.fragment(run_every=2.0 if active else None)(lesson_body)(lesson, active)
for step in lesson.steps[first:]:
    if step.demo:
        demo_box(step, by_step)
