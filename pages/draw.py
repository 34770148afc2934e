"""Draw: draw a digit (or upload a photo of one) and see what a trained run thinks, instantly;
keep your own digits, with their true labels, as a small dataset of your handwriting."""

import numpy as np
import streamlit as st

from core.drawing import classify, digits, preprocess
from core.training import checkpoint
from core.views import drawing_plots
from pages import canvas_widget
from pages.common import language, require_frame, select_run, service, t

require_frame()

CANVAS_KEY = "draw.canvas"
RUNS_TO_COMPARE = 8  # my digits are scored by at most this many recent runs


@st.cache_resource(max_entries=8, show_spinner=False)
def model_for(path: str, modified: float):
    """A run's best checkpoint, rebuilt once per file version and shared by every session (inference only)."""
    model, _, settings = checkpoint.load(path)
    return model, settings.dataset


@st.cache_data(max_entries=64, show_spinner=False)
def set_report(path: str, modified: float, runs_directory: str, owner: str, set_version: float) -> digits.SetReport:
    model, _ = model_for(path, modified)
    return digits.evaluate(model, digits.DigitSet(runs_directory, owner))


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


def my_digits() -> digits.DigitSet:
    return digits.DigitSet(service().store.directory, st.session_state.owner)


def open_in_inspect(run_id: int, view: str) -> None:
    """Show the drawing in the Inspect page's `view` (activations or attribution) for the run it was classified by."""
    select_run(run_id)
    st.session_state["inspect.view"], st.session_state["inspect.pick"] = view, "drawing"
    st.switch_page("pages/inspect.py")


def open_in_attack(run_id: int) -> None:
    """Open the drawing in the Adversarial lab, attacked on the run that classified it."""
    st.session_state["attack.runs"], st.session_state["attack.view"], st.session_state["attack.pick"] = [run_id], "image", "drawing"
    st.switch_page("pages/attack.py")


def show_prediction(prepared: preprocess.Prepared, model, dataset: str, uploaded: bool, run_id: int) -> None:
    probabilities = classify.probabilities(model, prepared.image)
    digit = int(probabilities.argmax())
    # Shared with the pages that inspect or attack a drawing (see pages/common.py's key list).
    st.session_state["drawing"] = prepared.image
    seen, verdict = st.columns([1, 1])
    seen.image(np.kron(prepared.image, np.ones((6, 6), dtype=np.uint8)), caption=t("draw.network_sees"), width=168)
    verdict.metric(t("draw.prediction"), str(digit))
    verdict.caption(t("draw.confidence", percent=f"{probabilities[digit]:.1%}"))
    if uploaded and prepared.dark_on_light:
        verdict.caption(t("draw.inverted"))
    names = classify.class_names(dataset)
    st.plotly_chart(drawing_plots.probability_bars(probabilities.tolist(), names, t("draw.probability")), key="draw.probabilities")
    activations_column, attribution_column = st.columns(2)
    if activations_column.button(t("draw.open_activations"), icon="🔬", key="draw.open_activations", width="stretch"):
        open_in_inspect(run_id, "activations")
    if attribution_column.button(t("draw.open_attribution"), icon="🔥", key="draw.open_attribution", width="stretch"):
        open_in_inspect(run_id, "attribution")
    if st.button(t("draw.open_attack"), icon="🎯", key="draw.open_attack", width="stretch"):
        open_in_attack(run_id)
    save_form(prepared.image, digit)


def save_form(image: np.ndarray, guess: int) -> None:
    label_column, button_column = st.columns([1, 1], vertical_alignment="bottom")
    # Keyed by the guess, so the label follows each new guess until the learner corrects it.
    label = label_column.selectbox(t("draw.true_label"), list(range(10)), index=guess, key=f"draw.true_label.{guess}")
    if button_column.button(t("draw.save"), icon="💾", key="draw.save"):
        try:
            my_digits().add(image, int(label))
            st.toast(t("draw.saved", label=label, count=len(my_digits())))
        except digits.DigitSetError as error:
            st.error(error.render(language()))


def my_digits_section(runs: list) -> None:
    st.subheader(t("draw.my_digits"))
    digit_set = my_digits()
    try:
        count, counts = len(digit_set), digit_set.counts()
    except digits.DigitSetError as error:
        st.error(error.render(language()))
        return
    if not st.session_state.owner:
        st.caption(t("draw.owner_hint"))
    st.metric(t("draw.my_digits_count"), count)
    if count:
        st.caption(t("draw.per_label", counts=", ".join(f"{label}: {number}" for label, number in enumerate(counts))))
        index = digit_set.directory / digits.INDEX
        version = index.stat().st_mtime if index.exists() else 0.0
        rows = []
        for run in runs[:RUNS_TO_COMPARE]:
            report = set_report(*checkpoint_of(run), str(service().store.directory), st.session_state.owner, version)
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


st.title(t("draw.title"))
st.caption(t("draw.intro"))
runs = usable_runs()
if not runs:
    st.info(t("draw.no_runs"))
    st.page_link("pages/train.py", label=t("runs.go_train"), icon="📈")
    st.stop()
chosen = st.selectbox(t("draw.run"), runs, format_func=run_label, key="draw.run")
model, dataset = model_for(*checkpoint_of(chosen))

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
            show_prediction(prepared, model, dataset, uploaded=photo is not None, run_id=chosen.id)
    except preprocess.DrawingError as error:
        st.warning(error.render(language()))

my_digits_section(runs)
