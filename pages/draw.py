"""Draw: draw a digit (or upload a photo of one) and see what a trained run, or an ensemble of runs, thinks,
instantly; keep your own digits, with their true labels, as a small dataset of your handwriting."""

import numpy as np
import streamlit as st

from core.drawing import classify, digits, ensemble, preprocess
from core.training import checkpoint
from core.views import drawing_plots
from pages import canvas_widget
from pages.common import digits_owner, language, require_frame, select_run, service, t

require_frame()

CANVAS_KEY = "draw.canvas"
RUNS_TO_COMPARE = 8  # my digits are scored by at most this many recent runs
ENSEMBLE_DEFAULT = 3  # an ensemble starts with the newest three runs: an odd number, so a vote between two is decided
ENSEMBLE_MAX = 8  # members at most; model_for keeps this many models loaded, so none is reloaded on every stroke
MODES = ("run", "ensemble")
SAVED_TOAST = "draw.saved_toast"  # a message to show once, after the rerun that follows saving a digit


@st.cache_resource(max_entries=ENSEMBLE_MAX, show_spinner=False)
def model_for(path: str, modified: float):
    """A run's best checkpoint, rebuilt once per file version and shared by every session (inference only)."""
    model, _, settings = checkpoint.load(path)
    return model, settings.dataset


@st.cache_data(max_entries=64, show_spinner=False)
def set_report(path: str, modified: float, runs_directory: str, owner: str, set_version: float) -> digits.SetReport:
    model, _ = model_for(path, modified)
    return digits.evaluate(model, digits.DigitSet(runs_directory, owner))


@st.cache_data(max_entries=32, show_spinner=False)
def ensemble_report(checkpoints: tuple, combination: str, runs_directory: str, owner: str, set_version: float) -> digits.SetReport:
    models = [model_for(path, modified)[0] for path, modified in checkpoints]
    return ensemble.evaluate(models, digits.DigitSet(runs_directory, owner), combination)


def usable_runs() -> list:
    """Finished runs that saved a best checkpoint, newest first."""
    store = service().store
    return [run for run in service().runs() if run.finished and run.best_epoch and store.best_checkpoint_path(run.id).is_file()]


def run_label(run) -> str:
    accuracy = f"{run.test_accuracy:.2%}" if run.test_accuracy is not None else "–"
    return t("draw.run_choice", id=run.id, name=run.name or "–", accuracy=accuracy)


def checkpoint_of(run) -> tuple[str, float]:
    path = service().store.best_checkpoint_path(run.id)
    return str(path), path.stat().st_mtime


def choose_members(runs: list) -> tuple[list, str]:
    """The run, or the runs of an ensemble, that classify the drawing, and how an ensemble combines them."""
    modes = {mode: t(f"draw.mode.{mode}") for mode in MODES}  # AppTest calls format_func outside the run
    if len(runs) < 2 or st.radio(t("draw.classify_with"), MODES, format_func=modes.get, horizontal=True, key="draw.mode") == "run":
        return [st.selectbox(t("draw.run"), runs, format_func=run_label, key="draw.run")], "vote"
    by_id = {run.id: run for run in runs}
    labels = {run_id: run_label(run) for run_id, run in by_id.items()}
    chosen = st.multiselect(
        t("draw.members"), list(by_id), default=list(by_id)[:ENSEMBLE_DEFAULT], format_func=labels.get, max_selections=ENSEMBLE_MAX,
        key="draw.members",
    )  # fmt: skip
    names = {name: t(f"inspect.ensembles.{name}") for name in ensemble.COMBINATIONS}
    combination = st.radio(t("draw.combination"), ensemble.COMBINATIONS, format_func=names.get, horizontal=True, key="draw.combination")
    return [by_id[run_id] for run_id in chosen], combination


def my_digits() -> digits.DigitSet:
    return digits.DigitSet(service().store.directory, digits_owner())


def open_in_inspect(run_id: int, view: str) -> None:
    """Show the drawing in the Inspect page's `view` (activations or attribution) for the run it was classified by."""
    select_run(run_id)
    st.session_state["inspect.view"], st.session_state["inspect.pick"] = view, "drawing"
    st.switch_page("pages/inspect.py")


def open_in_attack(run_ids: list[int]) -> None:
    """Open the drawing in the Adversarial lab, attacked on the run, or the ensemble's runs, that classified it."""
    st.session_state["attack.runs"], st.session_state["attack.view"], st.session_state["attack.pick"] = list(run_ids), "image", "drawing"
    st.switch_page("pages/attack.py")


def show_prediction(
    prepared: preprocess.Prepared, models: list, dataset: str, uploaded: bool, run_id: int, combination: str, member_ids: list[int]
) -> None:
    """The prediction of one run (`run_id`), or of the ensemble of `member_ids` (the buttons to Inspect then take the first)."""
    prediction = ensemble.predict(models, prepared.image, combination)
    probabilities, digit = prediction.probabilities, prediction.digit
    # Shared with the pages that inspect or attack a drawing (see pages/common.py's key list).
    st.session_state["drawing"] = prepared.image
    seen, verdict = st.columns([1, 1])
    seen.image(np.kron(prepared.image, np.ones((6, 6), dtype=np.uint8)), caption=t("draw.network_sees"), width=168)
    verdict.metric(t("draw.prediction"), str(digit))
    verdict.caption(t("draw.confidence", percent=f"{probabilities[digit]:.1%}"))
    if uploaded and prepared.dark_on_light:
        verdict.caption(t("draw.inverted"))
    names = classify.class_names(dataset)
    if len(models) > 1:
        members_view(prediction, member_ids, verdict)
    axis_title = t("draw.probability_averaged" if len(models) > 1 else "draw.probability")
    st.plotly_chart(drawing_plots.probability_bars(probabilities.tolist(), names, axis_title), key="draw.probabilities")
    activations_column, attribution_column = st.columns(2)
    if activations_column.button(t("draw.open_activations"), icon="🔬", key="draw.open_activations", width="stretch"):
        open_in_inspect(run_id, "activations")
    if attribution_column.button(t("draw.open_attribution"), icon="🔥", key="draw.open_attribution", width="stretch"):
        open_in_inspect(run_id, "attribution")
    if st.button(t("draw.open_attack"), icon="🎯", key="draw.open_attack", width="stretch"):
        open_in_attack(member_ids)
    save_form(prepared.image, digit)


def members_view(prediction: ensemble.EnsemblePrediction, member_ids: list[int], column) -> None:
    """What each member of the ensemble says, and how the ensemble decided."""
    said = ", ".join(f"#{run_id} → {digit}" for run_id, digit in zip(member_ids, prediction.member_digits))
    column.caption(t("draw.members_say", members=said))
    column.caption(t(f"draw.decided.{prediction.combination}", agreeing=prediction.agreeing, members=len(member_ids)))
    column.caption(t("draw.inspect_first_member", id=member_ids[0]))


def save_form(image: np.ndarray, guess: int) -> None:
    label_column, button_column = st.columns([1, 1], vertical_alignment="bottom")
    # Keyed by the guess, so the label follows each new guess until the learner corrects it.
    label = label_column.selectbox(t("draw.true_label"), list(range(10)), index=guess, key=f"draw.true_label.{guess}")
    if button_column.button(t("draw.save"), icon="💾", key="draw.save"):
        try:
            my_digits().add(image, int(label))
            # The canvas is a fragment: rerun the whole page so "my digits" below shows the new count, toast included.
            st.session_state[SAVED_TOAST] = t("draw.saved", label=label, count=len(my_digits()))
            st.rerun()
        except digits.DigitSetError as error:
            st.error(error.render(language()))


def my_digits_section(runs: list, members: list, combination: str) -> None:
    st.subheader(t("draw.my_digits"))
    digit_set = my_digits()
    try:
        count, counts = len(digit_set), digit_set.counts()
    except digits.DigitSetError as error:
        st.error(error.render(language()))
        return
    st.metric(t("draw.my_digits_count"), count)
    if count:
        st.caption(t("draw.per_label", counts=", ".join(f"{label}: {number}" for label, number in enumerate(counts))))
        index = digit_set.directory / digits.INDEX
        version = index.stat().st_mtime if index.exists() else 0.0
        rows = []
        if len(members) > 1:
            checkpoints = tuple(checkpoint_of(member) for member in members)
            report = ensemble_report(checkpoints, combination, str(service().store.directory), digits_owner(), version)
            name = t("draw.ensemble_row", combination=t(f"inspect.ensembles.{combination}"), accuracy=f"{report.accuracy:.1%}")
            rows.append((name, report.per_label_correct, report.per_label_total))
        for run in runs[:RUNS_TO_COMPARE]:
            report = set_report(*checkpoint_of(run), str(service().store.directory), digits_owner(), version)
            rows.append((f"#{run.id} {run.name} · {report.accuracy:.1%}", report.per_label_correct, report.per_label_total))
        st.caption(t("draw.strip_caption"))
        st.plotly_chart(drawing_plots.confusion_strip(rows, t("draw.true_digit")), key="draw.strip")
        st.download_button(t("draw.export"), digit_set.export_zip(), file_name="my-digits.zip", mime="application/zip", icon="📦")
    upload = st.file_uploader(t("draw.import"), type=["zip"], key="draw.import")
    if upload is not None and st.button(t("draw.import_button"), key="draw.import_button"):
        try:
            st.success(t("draw.imported", count=digit_set.import_zip(upload.getvalue())))
        except digits.DigitSetError as error:
            st.error(error.render(language()))


@st.fragment
def draw_and_classify(models: list, dataset: str, members: list, combination: str) -> None:
    """The canvas and its prediction, rerun on their own after each stroke (not the whole page), so the answer comes at once."""
    canvas_column, result_column = st.columns([1, 1])
    with canvas_column:
        st.subheader(t("draw.canvas"))
        pen_width = st.slider(t("draw.pen_width"), *canvas_widget.PEN_WIDTHS, canvas_widget.DEFAULT_PEN_WIDTH, key="draw.pen_width")
        drawing = canvas_widget.drawing_canvas(CANVAS_KEY, pen_width=pen_width)
        clear_column, undo_column = st.columns(2)
        clear_column.button(t("draw.clear"), icon="🧽", on_click=canvas_widget.clear, args=(CANVAS_KEY,), key="draw.clear", width="stretch")
        undo_column.button(t("draw.undo"), icon="↩️", on_click=canvas_widget.undo, args=(CANVAS_KEY,), key="draw.undo", width="stretch")
        photo = st.file_uploader(t("draw.upload"), type=["png", "jpg", "jpeg"], key="draw.upload", help=t("draw.upload_help"))

    with result_column:
        try:
            if photo is not None:
                prepared = preprocess.prepare_upload(photo.getvalue())
            elif drawing.image is not None:
                prepared = preprocess.prepare(drawing.image)
            else:
                prepared = None
                st.info(t("draw.start"))
            if prepared is not None:
                show_prediction(
                    prepared,
                    models,
                    dataset,
                    uploaded=photo is not None,
                    run_id=members[0].id,
                    combination=combination,
                    member_ids=[member.id for member in members],
                )
        except preprocess.DrawingError as error:
            st.warning(error.render(language()))


st.title(t("draw.title"))
if SAVED_TOAST in st.session_state:
    st.toast(st.session_state.pop(SAVED_TOAST))
st.caption(t("draw.intro"))
runs = usable_runs()
if not runs:
    st.info(t("draw.no_runs"))
    st.page_link("pages/train.py", label=t("runs.go_train"), icon="📈")
    st.stop()
members, combination = choose_members(runs)
if not members:
    st.info(t("draw.pick_members"))
    st.stop()
loaded = [model_for(*checkpoint_of(member)) for member in members]
try:
    dataset = ensemble.same_dataset([member_dataset for _, member_dataset in loaded])
except preprocess.DrawingError as error:
    st.warning(error.render(language()))
    st.stop()
models = [model for model, _ in loaded]

draw_and_classify(models, dataset, members, combination)
my_digits_section(runs, members, combination)
