"""The Inspect page's views: each reads its widgets, calls a probe and draws what comes back.

Loaded models and test predictions are cached per checkpoint file (its path, size and
modification time), so moving a slider never reloads a model, and a resumed run's newer
weights are picked up. Session-state keys: "inspect.view" (the view shown), "inspect.image"
(the test image Activations and Attribution show, set by a mistake's button too), and
"drawing" (the Draw page's latest 28×28 digit, offered as a fourth source of images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from core.probes import attribution as attribution_probes
from core.probes import ensembles as ensemble_probes
from core.probes import filters as filter_probes
from core.probes import loading, mistakes
from core.views import inspect_plots, inspection, plots, run_views
from pages.common import language, service, t

VIEWS = ("filters", "activations", "mistakes", "attribution", "ensembles", "diagnostics")
GALLERY_PAGE = 40  # images per gallery page
GALLERY_COLUMNS = 8


def _stamp(path: Path) -> tuple[str, int, int]:
    stat = Path(path).stat()
    return str(path), stat.st_mtime_ns, stat.st_size


@st.cache_resource(max_entries=8, show_spinner=False)
def _loaded(directory: str, run_id: int, stamp: tuple) -> inspection.LoadedRun:
    return inspection.load_run(service().store, run_id)


def loaded_run(run_id: int) -> inspection.LoadedRun:
    """The run's best-validation model, spec and dataset; errors are `inspection.ERRORS`."""
    store = service().store
    return _loaded(str(store.directory), run_id, _stamp(inspection.best_checkpoint(store, run_id)))


@st.cache_resource(max_entries=8, show_spinner=False)
def _predictions(directory: str, run_id: int, stamp: tuple) -> mistakes.Predictions:
    return inspection.test_predictions(loaded_run(run_id))


def predictions(run_id: int) -> mistakes.Predictions:
    store = service().store
    return _predictions(str(store.directory), run_id, _stamp(inspection.best_checkpoint(store, run_id)))


@st.cache_resource(max_entries=16, show_spinner=False)
def _checkpoint_model(stamp: tuple):
    model, spec, _ = loading.load(Path(stamp[0]))
    return model, spec


def chart(figure, key: str, **options):
    return st.plotly_chart(figure, key=key, config=plots.CHART_CONFIG, **options)


def image_tile(loaded: inspection.LoadedRun, index: int, caption: str, width: int = 84) -> None:
    st.image(loaded.splits.test_images[index].numpy(), caption=caption, width=width)


def open_in_activations(index: int) -> None:
    """A mistake's button: show that image in Activations (a callback, so it runs before the widgets are drawn)."""
    st.session_state["inspect.image"] = int(index)
    st.session_state["inspect.pick"] = "index"
    st.session_state["inspect.view"] = "activations"


# ----------------------------------------------------------------------------- filters


def filters(loaded: inspection.LoadedRun) -> None:
    store = service().store
    epochs = inspection.epoch_checkpoints(store, loaded.run_id)
    if epochs:
        epoch = st.select_slider(t("inspect.filters.epoch"), list(epochs), value=list(epochs)[-1], key="inspect.epoch", help=t("inspect.filters.epoch_help"))
        path = epochs[epoch]
    else:
        st.caption(t("inspect.filters.no_epochs"))
        epoch, path = "best", loaded.path
    model, spec = _checkpoint_model(_stamp(path))
    layers = filter_probes.filter_layers(model, spec)
    if not layers:
        st.info(t("inspect.filters.none"))
        return
    choice, channel_column = st.columns([3, 1])
    layer = choice.selectbox(t("inspect.filters.layer"), layers, format_func=lambda item: f"{item.index + 1}. {item.description}", key="inspect.filter_layer")
    channel = 0
    if layer.input_channels > 1:
        channel = channel_column.number_input(t("inspect.filters.input_map"), 1, layer.input_channels, 1, key="inspect.input_map") - 1
    grid = filter_probes.filter_grid(model, layer, channel)
    st.caption(t("inspect.filters.caption", count=len(grid.weights), layer=layer.index + 1, description=layer.description, epoch=epoch))
    chart(inspect_plots.filter_grid(grid, language()), key="inspect.filters.grid")
    top_patches(loaded, path, model, spec, layer)


def top_patches(loaded: inspection.LoadedRun, path: Path, model, spec: dict, layer) -> None:
    st.subheader(t("inspect.filters.patches"))
    if layer.kind != "conv":
        st.caption(t("inspect.filters.dense_note"))
        return
    st.caption(t("inspect.filters.patches_help"))
    bar = st.progress(0.0, text=t("inspect.filters.progress"))
    patches = inspection.top_patches(service().store, loaded.run_id, path, model, spec, layer.index, loaded.splits, progress=lambda done: bar.progress(done, text=t("inspect.filters.progress")))
    bar.empty()
    number = st.number_input(t("inspect.filters.filter"), 1, layer.filters, 1, key="inspect.patch_filter") - 1
    images = loaded.splits.validation_images[patches.image_indices[number]].numpy()
    chart(inspect_plots.top_patches(images, patches.boxes[number], patches.activations[number], language()), key="inspect.filters.patches")


# ----------------------------------------------------------------------------- choosing an image


def _keep_image() -> None:
    st.session_state["inspect.image"] = int(st.session_state["inspect.image_input"])


@dataclass(frozen=True)
class Chosen:
    """The image Activations and Attribution show: a test image (with its index and label) or the user's drawing."""

    image: torch.Tensor  # (28, 28) uint8
    index: int | None  # the test-set index; None for a drawing
    label: int | None  # the true class; None for a drawing


def chosen_image(loaded: inspection.LoadedRun) -> Chosen:
    """The image to show: a test image by index, by class or from the mistakes, or the Draw page's drawing."""
    count = len(loaded.splits.test_images)
    st.session_state.setdefault("inspect.image", 0)
    st.session_state.setdefault("inspect.pick", "index")
    picks = ("index", "class", "mistake") + (("drawing",) if st.session_state.get("drawing") is not None else ())
    if st.session_state["inspect.pick"] not in picks:
        st.session_state["inspect.pick"] = "index"
    pick = st.radio(t("inspect.image.pick"), picks, format_func=lambda name: t(f"inspect.image.by_{name}"), horizontal=True, key="inspect.pick")
    if pick == "drawing":
        return Chosen(torch.as_tensor(np.asarray(st.session_state["drawing"], dtype=np.uint8)), None, None)
    if pick == "index":
        st.session_state["inspect.image_input"] = st.session_state["inspect.image"]
        st.number_input(t("inspect.image.index"), 0, count - 1, key="inspect.image_input", on_change=_keep_image)
    elif pick == "class":
        names = loaded.splits.class_names
        left, right = st.columns(2)
        digit = left.selectbox(t("inspect.image.class"), range(len(names)), format_func=names.__getitem__, key="inspect.pick_class")
        members = np.flatnonzero(loaded.splits.test_labels.numpy() == digit)
        nth = right.number_input(t("inspect.image.nth"), 1, len(members), 1, key="inspect.pick_nth")
        st.session_state["inspect.image"] = int(members[nth - 1])
    else:
        wrong = mistakes.misclassified(predictions(loaded.run_id))
        if not len(wrong):
            st.info(t("inspect.image.no_mistakes"))
        else:
            labels, predicted = predictions(loaded.run_id).labels, predictions(loaded.run_id).predicted
            names = loaded.splits.class_names
            index = st.selectbox(
                t("inspect.image.mistake"), wrong.tolist(), key="inspect.pick_mistake",
                format_func=lambda i: t("inspect.ensembles.tile", index=i, label=names[labels[i]], prediction=names[predicted[i]]),
            )  # fmt: skip
            st.session_state["inspect.image"] = int(index)
    index = int(st.session_state["inspect.image"])
    return Chosen(loaded.splits.test_images[index], index, int(loaded.splits.test_labels[index]))


def chosen_caption(loaded: inspection.LoadedRun, chosen: Chosen, probabilities) -> str:
    """A test image's caption from the run's predictions, or the drawing's from the probabilities just computed."""
    if chosen.index is not None:
        return image_caption(loaded, chosen.index)
    probabilities = np.asarray(probabilities, dtype=float)
    predicted = int(probabilities.argmax())
    return t("inspect.image.drawing_caption", prediction=loaded.splits.class_names[predicted], confidence=run_views.percent(float(probabilities[predicted])))


def image_caption(loaded: inspection.LoadedRun, index: int) -> str:
    scores = predictions(loaded.run_id)
    names = loaded.splits.class_names
    return t(
        "inspect.image.caption", index=index, label=names[scores.labels[index]], prediction=names[scores.predicted[index]],
        confidence=run_views.percent(float(scores.confidence[index])),
    )  # fmt: skip


# ----------------------------------------------------------------------------- activations


def activations(loaded: inspection.LoadedRun) -> None:
    chosen = chosen_image(loaded)
    result = inspection.image_activations(loaded, chosen.image)
    picture, bars = st.columns([1, 3])
    picture.image(chosen.image.numpy(), width=140)
    picture.caption(chosen_caption(loaded, chosen, result.probabilities))
    bars.caption(t("inspect.activations.probabilities"))
    with bars:
        figure = inspect_plots.probabilities(result.probabilities, loaded.splits.class_names, chosen.label, language())
        chart(figure, key="inspect.activations.probabilities")
    for layer in result.layers:
        shape = "×".join(str(side) for side in layer.values.shape)
        st.markdown(f"**{t('inspect.activations.layer', layer=layer.index + 1, description=layer.description, shape=shape)}**")
        chart(inspect_plots.feature_maps(layer, language()), key=f"inspect.activations.layer{layer.index}")


# ----------------------------------------------------------------------------- mistakes


def _cell_from_chart(event) -> None:
    """A clicked confusion cell sets both class filters (read before the filters are drawn, so they can change)."""
    points = event.selection.points if event and event.selection else []
    if not points or "customdata" not in points[0]:
        return
    true_class, predicted_class = int(points[0]["customdata"][0]), int(points[0]["customdata"][1])
    if st.session_state.get("inspect.cell_clicked") != (true_class, predicted_class):
        st.session_state["inspect.cell_clicked"] = (true_class, predicted_class)
        st.session_state["inspect.true_class"], st.session_state["inspect.predicted_class"] = true_class, predicted_class


def mistakes_view(loaded: inspection.LoadedRun) -> None:
    scores = predictions(loaded.run_id)
    names = loaded.splits.class_names
    matrix = mistakes.confusion(scores)
    wrong = mistakes.misclassified(scores)
    st.caption(t("inspect.mistakes.summary", count=len(wrong), total=int(matrix.sum()), accuracy=run_views.percent(scores.accuracy)))
    left, right = st.columns([3, 2])
    with left:
        st.markdown(f"**{t('inspect.mistakes.confusion')}**")
        st.caption(t("inspect.mistakes.confusion_help"))
        event = chart(inspect_plots.confusion(matrix, names, language()), key="inspect.confusion", on_select="rerun", selection_mode="points")
        _cell_from_chart(event)
    with right:
        st.markdown(f"**{t('inspect.mistakes.per_class')}**")
        chart(inspect_plots.per_class_accuracy(mistakes.per_class_accuracy(matrix), names, language()), key="inspect.per_class")
    options = [None, *range(len(names))]
    label = lambda value: t("inspect.mistakes.any") if value is None else names[value]  # noqa: E731
    first, second = st.columns(2)
    true_class = first.selectbox(t("inspect.mistakes.true_class"), options, format_func=label, key="inspect.true_class")
    predicted_class = second.selectbox(t("inspect.mistakes.predicted_class"), options, format_func=label, key="inspect.predicted_class")
    if true_class is not None and predicted_class is not None:
        shown = mistakes.cell(scores, true_class, predicted_class)
        st.markdown(f"**{t('inspect.mistakes.cell', label=names[true_class], prediction=names[predicted_class], count=len(shown))}**")
    else:
        shown = mistakes.misclassified(scores, true_class, predicted_class)
        st.markdown(f"**{t('inspect.mistakes.gallery', count=len(shown))}**")
    gallery(loaded, scores, shown)


def gallery(loaded: inspection.LoadedRun, scores: mistakes.Predictions, indices: np.ndarray) -> None:
    """One page of images, each with its true label, prediction, confidence and a button to open it in Activations."""
    if not len(indices):
        st.info(t("inspect.mistakes.none"))
        return
    pages = (len(indices) - 1) // GALLERY_PAGE + 1
    page = st.number_input(t("inspect.mistakes.page"), 1, pages, 1, key="inspect.gallery_page") if pages > 1 else 1
    names = loaded.splits.class_names
    columns = st.columns(GALLERY_COLUMNS)
    for position, index in enumerate(indices[(page - 1) * GALLERY_PAGE : page * GALLERY_PAGE]):
        with columns[position % GALLERY_COLUMNS], st.container(key=f"inspect-tile-{index}"):
            caption = t(
                "inspect.mistakes.tile", index=int(index), label=names[scores.labels[index]], prediction=names[scores.predicted[index]],
                confidence=run_views.percent(float(scores.confidence[index])),
            )  # fmt: skip
            image_tile(loaded, int(index), caption)
            st.button(t("inspect.mistakes.open"), key=f"inspect.open.{index}", on_click=open_in_activations, args=(int(index),), icon="🔍")


# ----------------------------------------------------------------------------- attribution


def attribution(loaded: inspection.LoadedRun) -> None:
    chosen = chosen_image(loaded)
    names = loaded.splits.class_names
    probabilities = inspection.image_activations(loaded, chosen.image).probabilities
    targets = {"predicted": int(np.asarray(probabilities).argmax())}
    if chosen.label is not None:  # A drawing has no true class.
        targets["true"] = chosen.label
    target_name = st.radio(
        t("inspect.attribution.target"), list(targets), horizontal=True, key="inspect.attribution_target",
        format_func=lambda name: f"{t(f'inspect.plot.{name}')}: {names[targets[name]]}",
    )  # fmt: skip
    st.caption(chosen_caption(loaded, chosen, probabilities))
    st.caption(t("inspect.attribution.help"))
    methods = attribution_probes.methods_for(loaded.model)
    image = chosen.image
    for column, method in zip(st.columns(3), attribution_probes.METHODS):
        column.markdown(f"**{t(f'inspect.attribution.{method}')}**")
        if method not in methods:
            column.caption(t("inspect.attribution.no_conv"))
            continue
        values = attribution_probes.attribute(loaded.model, image, targets[target_name], method)
        with column:
            chart(inspect_plots.attribution(image.numpy(), values, method, language()), key=f"inspect.attribution.{method}")


# ----------------------------------------------------------------------------- ensembles


def ensembles(loaded: inspection.LoadedRun) -> None:
    candidates = {run.id: run for run in inspection.runs_with_weights(service().store)}
    candidates.setdefault(loaded.run_id, service().store.get(loaded.run_id, with_metrics=False))
    st.caption(t("inspect.ensembles.pick"))
    chosen = st.multiselect(
        t("inspect.ensembles.members"), list(candidates), default=[loaded.run_id], key="inspect.ensemble_members",
        format_func=lambda run_id: f"#{run_id} {candidates[run_id].name} ({run_views.percent(candidates[run_id].test_accuracy)})",
    )  # fmt: skip
    combination = st.radio(
        t("inspect.ensembles.combination"), ensemble_probes.COMBINATIONS, horizontal=True, key="inspect.ensemble_combination",
        format_func=lambda name: t(f"inspect.ensembles.{name}"),
    )  # fmt: skip
    if not chosen:
        return
    try:
        members = [predictions(run_id) for run_id in chosen]
        result = ensemble_probes.combine(members, combination)
    except inspection.ERRORS as error:
        st.warning(error.render(language()))
        return
    ensemble_name = t("inspect.ensembles.ensemble")
    first, second = st.columns(2)
    first.metric(t("inspect.ensembles.accuracy"), run_views.percent(result.accuracy))
    second.metric(t("inspect.ensembles.best_member"), run_views.percent(max(result.member_accuracies)))
    chart(inspect_plots.member_accuracies([f"#{run_id}" for run_id in chosen], result.member_accuracies, ensemble_name, result.accuracy, language()), key="inspect.ensemble_accuracies")
    names = loaded.splits.class_names
    st.markdown(f"**{t('inspect.ensembles.mistakes', count=len(result.mistakes))}**")
    _ensemble_tiles(loaded, result.mistakes, result, names, members)
    st.markdown(f"**{t('inspect.ensembles.disagreements', count=len(result.disagreements))}**")
    _ensemble_tiles(loaded, result.disagreements, result, names, members)


def _ensemble_tiles(loaded, indices, result, names, members) -> None:
    """Up to a gallery page of images, each with its label, the ensemble's answer and every member's vote."""
    columns = st.columns(GALLERY_COLUMNS)
    for position, index in enumerate(indices[:GALLERY_PAGE]):
        votes = "".join(names[member.predicted[index]][:1] for member in members)
        caption = t("inspect.ensembles.tile", index=int(index), label=names[result.labels[index]], prediction=names[result.predicted[index]])
        with columns[position % GALLERY_COLUMNS]:
            image_tile(loaded, int(index), f"{caption} · {t('inspect.ensembles.votes', votes=votes)}")


RENDERERS = {
    "filters": filters,
    "activations": activations,
    "mistakes": mistakes_view,
    "attribution": attribution,
    "ensembles": ensembles,
}
