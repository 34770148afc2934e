"""The Adversarial lab's views: each reads its widgets, calls `core.views.attack_view` and draws what comes back.

Loaded networks and attack results are cached per checkpoint file (path, size, modification
time), so moving a slider back shows the earlier result at once. Session-state keys: "attack.runs"
(the run ids attacked; several make an ensemble), "attack.view", "attack.pick" ("index", "mistake"
or "drawing", which the Draw page sets with "attack.runs" to open a drawing here), "attack.index",
"attack.method", "attack.targeted", "attack.target", "attack.epsilon.linf" / ".l2", "attack.steps",
"attack.fool_…", "attack.curve_…" and "attack.transfer_…". The robustness curve and transfer run
in `core.views.tasks`, owned by this browser's draft key, so a refreshed page finds them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from core.probes import mistakes
from core.views import attack_plots, attack_view, inspection, plots, run_views, tasks
from pages.common import language, select_run, service, t

VIEWS = ("image", "fooling", "robustness", "transfer")
PROGRESS_SECONDS = 1.0  # how often a running task's progress is redrawn


def usable_runs() -> list:
    """Finished runs that saved a best checkpoint, newest first."""
    return inspection.runs_with_weights(service().store)


def run_label(run) -> str:
    accuracy = run_views.percent(run.test_accuracy) if run.test_accuracy is not None else "–"
    return t("attack.run_choice", id=run.id, name=run.name or "–", accuracy=accuracy)


def _stamps(run_ids: tuple[int, ...]) -> tuple:
    store = service().store
    stamps = []
    for run_id in run_ids:
        stat = inspection.best_checkpoint(store, run_id).stat()
        stamps.append((run_id, stat.st_mtime_ns, stat.st_size))
    return str(store.directory), tuple(stamps)


@st.cache_resource(max_entries=8, show_spinner=False)
def _attacked(stamps: tuple, run_ids: tuple[int, ...]) -> attack_view.Attacked:
    return attack_view.load_attacked(service().store, run_ids)


def attacked(run_ids: list[int]) -> attack_view.Attacked:
    """The chosen runs as one network; errors are `inspection.ERRORS`."""
    key = tuple(run_ids)
    return _attacked(_stamps(key), key)


@st.cache_resource(max_entries=8, show_spinner=False)
def _predictions(stamps: tuple, _attacked_network: attack_view.Attacked):
    return attack_view.test_predictions(_attacked_network)


@st.cache_resource(max_entries=64, show_spinner=False)
def _outcome(stamps: tuple, _attacked_network, image: bytes, index, label, method: str, epsilon: float, steps: int, target):
    subject = attack_view.Subject(np.frombuffer(image, dtype=np.uint8).reshape(28, 28), index, label)
    return attack_view.attack_image(_attacked_network, subject, method, epsilon, steps, target)


@st.cache_resource(max_entries=32, show_spinner=False)
def _fooling(stamps: tuple, _attacked_network, target: int, start: str, steps: int):
    return attack_view.grow_fooling_image(_attacked_network, target, start, steps)


def chart(figure, key: str):
    return st.plotly_chart(figure, key=key, config=plots.CHART_CONFIG)


def method_name(method: str) -> str:
    return t(f"attack.method.{method}")


def owner() -> str:
    """Whose background tasks these are: this browser's draft key, which a refresh keeps in the address."""
    return st.session_state.draft_key


# ----------------------------------------------------------------------------- one image


def _subject(network: attack_view.Attacked) -> attack_view.Subject | None:
    """The image to attack: by test index, one of the network's mistakes, or the Draw page's drawing."""
    picks = ("index", "mistake") + (("drawing",) if st.session_state.get("drawing") is not None else ())
    if st.session_state.get("attack.pick") not in picks:
        st.session_state["attack.pick"] = "index"
    pick = st.radio(t("attack.pick"), picks, format_func=lambda name: t(f"attack.pick.{name}"), horizontal=True, key="attack.pick")
    if pick == "drawing":
        return attack_view.drawing_subject(st.session_state["drawing"])
    if pick == "index":
        index = st.number_input(t("attack.index"), 0, len(network.splits.test_images) - 1, 0, key="attack.index")
        return attack_view.test_subject(network, int(index))
    scores = _predictions(_stamps(network.run_ids), network)
    wrong = mistakes.misclassified(scores)
    if not len(wrong):
        st.info(t("attack.no_mistakes"))
        return None
    names = network.class_names
    index = st.selectbox(
        t("attack.mistake"), wrong.tolist(), key="attack.mistake",
        format_func=lambda i: t("attack.mistake_choice", index=i, label=names[scores.labels[i]], prediction=names[scores.predicted[i]]),
    )  # fmt: skip
    return attack_view.test_subject(network, int(index))


def _attack_settings(names: list[str]) -> tuple[str, float, int, int | None]:
    """Method, ε, steps and target class (or None) from the widgets; ε's range follows the method's norm."""
    method_column, size_column, steps_column = st.columns([2, 3, 2])
    method = method_column.selectbox(t("attack.method"), attack_view.METHODS, format_func=method_name, key="attack.method")
    norm = attack_view.NORMS[method]
    if method == "deepfool":
        size_column.caption(t("attack.deepfool_help"))
        epsilon = 0.0
    else:
        bound = attack_view.EPSILON[norm]
        epsilon = size_column.slider(
            t(f"attack.epsilon.{norm}"), bound.minimum, bound.maximum, bound.default, bound.step, key=f"attack.epsilon.{norm}",
            help=t(f"attack.epsilon_help.{norm}"),
        )  # fmt: skip
    steps = attack_view.STEPS.default
    if method != "fgsm":
        bound = attack_view.STEPS
        steps = steps_column.slider(
            t("attack.steps"), int(bound.minimum), int(bound.maximum), int(bound.default), int(bound.step), key="attack.steps"
        )
    target = None
    if method in attack_view.TARGETABLE:
        target_column, class_column = st.columns([1, 1], vertical_alignment="bottom")
        if target_column.toggle(t("attack.targeted"), key="attack.targeted", help=t("attack.targeted_help")):
            target = class_column.selectbox(t("attack.target"), range(len(names)), format_func=names.__getitem__, key="attack.target")
    return method, float(epsilon), int(steps), target


def _open_in_activations(run_id: int, image: np.ndarray) -> None:
    """Show the adversarial image in Inspect's Activations, the way the Draw page shows a drawing there."""
    st.session_state["drawing"] = image
    select_run(run_id)
    st.session_state["inspect.view"], st.session_state["inspect.pick"] = "activations", "drawing"
    st.switch_page("pages/inspect.py")


def image_view(network: attack_view.Attacked, runs: list) -> None:
    subject = _subject(network)
    if subject is None:
        return
    names = network.class_names
    method, epsilon, steps, target = _attack_settings(names)
    outcome = _outcome(
        _stamps(network.run_ids), network, subject.image.tobytes(), subject.index, subject.label, method, epsilon, steps, target
    )
    titles = [t("attack.original"), t("attack.perturbation"), t("attack.adversarial")]
    chart(
        attack_plots.image_trio(outcome.original, outcome.perturbation, outcome.adversarial, titles, t("attack.change")),
        key="attack.images",
    )
    before, after, linf, l2, l0 = st.columns(5)
    before.metric(t("attack.before"), names[outcome.predicted_before])
    before.caption(t("attack.confidence", percent=run_views.percent(float(outcome.before[outcome.predicted_before]))))
    after.metric(t("attack.after"), names[outcome.predicted_after])
    after.caption(t("attack.confidence", percent=run_views.percent(float(outcome.after[outcome.predicted_after]))))
    linf.metric(t("attack.linf"), f"{outcome.change.linf:.3f}", help=t("attack.linf_help"))
    l2.metric(t("attack.l2"), f"{outcome.change.l2:.3f}", help=t("attack.l2_help"))
    l0.metric(t("attack.l0"), f"{outcome.change.l0}", help=t("attack.l0_help"))
    if subject.label is not None:
        st.caption(t("attack.true_class", label=names[subject.label]))
    verdict = "fooled" if outcome.predicted_after != outcome.predicted_before else "held"
    if outcome.target is not None:
        verdict = "reached" if outcome.predicted_after == outcome.target else "missed"
    st.markdown(t(f"attack.verdict.{verdict}", before=names[outcome.predicted_before], after=names[outcome.predicted_after],
                  target=names[outcome.target] if outcome.target is not None else ""))  # fmt: skip
    series = (t("attack.series.before"), t("attack.series.after"))
    chart(
        attack_plots.probabilities_before_after(outcome.before, outcome.after, names, series, t("attack.probability")),
        key="attack.probabilities",
    )
    st.caption(
        t(
            "attack.saved_reads",
            prediction=names[outcome.predicted_saved],
            percent=run_views.percent(float(outcome.saved_after[outcome.predicted_saved])),
        )
    )
    download_column, open_column = st.columns(2)
    download_column.download_button(
        t("attack.download"), attack_view.png_bytes(outcome.saved), file_name=f"adversarial-{method}.png", mime="image/png", icon="💾",
        key="attack.download", width="stretch",
    )  # fmt: skip
    if open_column.button(t("attack.open_activations"), icon="🔬", key="attack.open_activations", width="stretch",
                          help=t("attack.open_activations_help", run=network.run_ids[0])):  # fmt: skip
        _open_in_activations(network.run_ids[0], outcome.saved)


# ----------------------------------------------------------------------------- fooling images


def fooling_view(network: attack_view.Attacked, runs: list) -> None:
    st.caption(t("attack.fooling_intro"))
    names = network.class_names
    target_column, start_column, steps_column = st.columns([1, 1, 2])
    target = target_column.selectbox(t("attack.fool_target"), range(len(names)), format_func=names.__getitem__, key="attack.fool_target")
    start = start_column.radio(t("attack.fool_start"), attack_view.FOOLING_STARTS, format_func=lambda name: t(f"attack.fool_start.{name}"),
                               key="attack.fool_start", horizontal=True)  # fmt: skip
    bound = attack_view.FOOLING_STEPS
    steps = steps_column.slider(
        t("attack.fool_steps"), int(bound.minimum), int(bound.maximum), int(bound.default), int(bound.step), key="attack.fool_steps"
    )
    result = _fooling(_stamps(network.run_ids), network, int(target), start, int(steps))
    picture, numbers = st.columns([3, 2])
    with picture:
        chart(
            attack_plots.fooling_animation(result.frames, result.frame_steps, result.confidences, t("attack.step"), t("attack.play")),
            key="attack.fooling",
        )
    with numbers:
        numbers.metric(t("attack.fool_confidence", target=names[result.target]), run_views.percent(result.confidence))
        numbers.caption(t("attack.fool_steps_taken", steps=result.steps))
        numbers.markdown(t("attack.fool_reached" if result.reached else "attack.fool_missed", target=names[result.target]))
        chart(attack_plots.confidence_curve(result.frame_steps, result.confidences, t("attack.step"), t("attack.probability"),
                                            attack_view.FOOLING_CONFIDENCE), key="attack.fooling_curve")  # fmt: skip


# ----------------------------------------------------------------------------- background tasks


def _task_state(kind: str) -> tasks.Task | None:
    """The latest task of `kind`: while it runs, a progress bar redrawn every second; once done, the task (or None)."""
    task = tasks.latest(owner(), kind)
    if task is None:
        return None
    if task.running:
        _progress(kind)
        return None
    if task.error is not None:
        st.warning(task.error.render(language()))
        return None
    if task.failure is not None:
        raise task.failure
    return task


@st.fragment(run_every=PROGRESS_SECONDS)
def _progress(kind: str) -> None:
    task = tasks.latest(owner(), kind)
    if task is None or not task.running:
        st.rerun(scope="app")  # done: the whole page draws the result
    text = t("attack.progress", done=task.done, total=task.total or "…", seconds=f"{task.seconds:.0f}")
    st.progress(task.fraction, text=text)
    st.button(t("attack.cancel"), key=f"attack.cancel.{kind}", on_click=tasks.cancel, args=(task,), icon="⏹️")


def _run_multiselect(key: str, runs: list, default: list[int]) -> list[int]:
    ids = [run.id for run in runs]
    by_id = {run.id: run for run in runs}
    kept = [run_id for run_id in st.session_state.get(key, default) if run_id in by_id]
    st.session_state[key] = kept
    return st.multiselect(t(key), ids, format_func=lambda run_id: run_label(by_id[run_id]), key=key)


def robustness_view(network: attack_view.Attacked, runs: list) -> None:
    st.caption(t("attack.curve_intro"))
    chosen = _run_multiselect("attack.curve_runs", runs, list(network.run_ids))
    methods_column, images_column, epsilon_column, steps_column = st.columns([3, 2, 2, 2])  # two method chips side by side
    methods = methods_column.multiselect(t("attack.curve_methods"), attack_view.CURVE_METHODS, default=list(attack_view.CURVE_METHODS),
                                         format_func=method_name, key="attack.curve_methods")  # fmt: skip
    bound = attack_view.CURVE_IMAGES
    count = images_column.number_input(
        t("attack.curve_images"), int(bound.minimum), int(bound.maximum), int(bound.default), int(bound.step), key="attack.curve_images"
    )
    bound = attack_view.CURVE_MAX_EPSILON
    maximum = epsilon_column.slider(
        t("attack.curve_max_epsilon"), bound.minimum, bound.maximum, bound.default, bound.step, key="attack.curve_max_epsilon"
    )
    bound = attack_view.CURVE_STEPS
    steps = steps_column.number_input(t("attack.curve_steps"), int(bound.minimum), int(bound.maximum), int(bound.default), key="attack.curve_steps",
                                      help=t("attack.curve_steps_help"))  # fmt: skip
    epsilons = attack_view.curve_epsilons(float(maximum))
    if st.button(t("attack.curve_start"), icon="📉", key="attack.curve_start", disabled=not chosen or not methods, type="primary"):
        parameters = {"runs": chosen, "methods": list(methods), "epsilons": epsilons, "steps": int(steps), "count": int(count)}
        work = attack_view.curve_work(Path(service().store.directory), chosen, list(methods), epsilons, int(steps), int(count))
        tasks.start(owner(), "curve", parameters, work)
    task = _task_state("curve")
    if task is None:
        return
    parameters = task.parameters
    st.caption(t("attack.curve_caption", count=parameters["count"], steps=parameters["steps"], seconds=f"{task.seconds:.1f}"))
    names = {method: method_name(method) for method in attack_view.METHODS}
    chart(attack_plots.robustness_curve(task.result, names, t("attack.epsilon.linf"), t("attack.accuracy")), key="attack.curve")
    rows = [{t("attack.column.network"): point.name, t("attack.column.method"): names[point.method], "ε": point.epsilon,
             t("attack.accuracy"): run_views.percent(point.accuracy)} for point in task.result]  # fmt: skip
    with st.expander(t("attack.curve_table")):
        st.dataframe(rows, hide_index=True, key="attack.curve_rows")


def transfer_view(network: attack_view.Attacked, runs: list) -> None:
    st.caption(t("attack.transfer_intro"))
    by_id = {run.id: run for run in runs}
    ids = list(by_id)
    source_column, target_column = st.columns(2)
    source = source_column.selectbox(
        t("attack.transfer_source"), ids, format_func=lambda run_id: run_label(by_id[run_id]), key="attack.transfer_source"
    )
    others = [run_id for run_id in ids if run_id != source] or ids
    target = target_column.selectbox(
        t("attack.transfer_target"), others, format_func=lambda run_id: run_label(by_id[run_id]), key="attack.transfer_target"
    )
    method_column, size_column, images_column = st.columns([2, 3, 2])
    method = method_column.selectbox(t("attack.method"), attack_view.METHODS, format_func=method_name, key="attack.transfer_method")
    bound = attack_view.epsilon_bound(method)
    norm = attack_view.NORMS[method]
    epsilon = 0.0
    if method != "deepfool":
        epsilon = size_column.slider(
            t(f"attack.epsilon.{norm}"), bound.minimum, bound.maximum, bound.default, bound.step, key=f"attack.transfer_epsilon.{norm}"
        )
    else:
        size_column.caption(t("attack.deepfool_help"))
    bound = attack_view.CURVE_IMAGES
    count = images_column.number_input(
        t("attack.curve_images"), int(bound.minimum), int(bound.maximum), int(bound.default), int(bound.step), key="attack.transfer_images"
    )
    if source == target:
        st.caption(t("attack.transfer_same"))
    if st.button(t("attack.transfer_start"), icon="🔀", key="attack.transfer_start", type="primary"):
        steps = attack_view.STEPS.default
        parameters = {"source": source, "target": target, "method": method, "epsilon": float(epsilon), "steps": steps, "count": int(count)}
        work = attack_view.transfer_work(Path(service().store.directory), source, target, method, float(epsilon), steps, int(count))
        tasks.start(owner(), "transfer", parameters, work)
    task = _task_state("transfer")
    if task is None:
        return
    parameters = task.parameters
    size = "–" if parameters["method"] == "deepfool" else f"{parameters['epsilon']:g}"
    st.caption(t("attack.transfer_caption", method=method_name(parameters["method"]), epsilon=size, count=parameters["count"]))
    rows = [
        {
            t("attack.column.role"): t(f"attack.role.{row.network}"), t("attack.column.network"): f"#{row.run_id}",
            t("attack.column.clean"): run_views.percent(row.clean_accuracy), t("attack.column.adversarial"): run_views.percent(row.adversarial_accuracy),
        }
        for row in attack_view.transfer_rows(task.result, parameters["source"], parameters["target"])
    ]  # fmt: skip
    st.table(rows)


RENDERERS = {"image": image_view, "fooling": fooling_view, "robustness": robustness_view, "transfer": transfer_view}
