"""What the Train and Runs pages both draw for one run: its outcome message and its headline figures."""

import streamlit as st

from core.views import run_views
from core.views.i18n import render_any
from pages.common import actor, language, service, t


def outcome(run) -> None:
    """Why the run stopped and what to change: red for failed or diverged, amber for stopped early."""
    if run.status in ("failed", "diverged"):
        st.error(f"**{t(f'train.outcome.{run.status}')}** {run_views.message(run, language())}")
    elif run.status in ("interrupted", "cancelled"):
        st.warning(f"**{t(f'train.outcome.{run.status}')}** {run_views.message(run, language())}")
    elif run.message:
        st.info(run_views.message(run, language()))


def figures(run, per_row: int = 4) -> None:
    """Best validation accuracy, the test accuracy at that epoch, epochs done and training time."""
    best, test, epochs, seconds = st.columns(per_row) + (st.columns(per_row) if per_row < 4 else [])
    best.metric(t("common.best_validation_accuracy"), run_views.percent(run.best_validation_accuracy))
    test.metric(t("common.test_accuracy"), run_views.percent(run.test_accuracy), help=t("train.test_help", epoch=run.best_epoch))
    epochs.metric(t("common.epochs"), f"{run.epochs_done}/{run.settings.get('epochs', run.epochs_done)}")
    seconds.metric(t("common.time"), run_views.format_duration(run_views.run_seconds(run)))
    if robust := run_views.robust_figure(run):
        help_text = t("train.robust_help", steps=robust["steps"], epsilon=f"{robust['epsilon']:g}", images=f"{robust['images']:,}")
        st.columns(per_row)[0].metric(t("common.robust_accuracy"), run_views.percent(robust["accuracy"]), help=help_text)


def resume(run) -> bool:
    """Queue `run` to go on after its last finished epoch; False, with the reason shown, when it cannot."""
    try:
        service().resume(run.id, actor=actor())
    except ValueError as error:  # e.g. its saved state is gone, or it is not this browser's; the sentence says what to do
        st.error(render_any(error, language()))
        return False
    service().ensure_scheduler()
    return True


def cancel(run) -> bool:
    """Cancel `run` as this browser; False, with the reason shown, when the service refuses (not this browser's run)."""
    try:
        service().cancel(run.id, actor=actor())
    except ValueError as error:
        st.error(render_any(error, language()))
        return False
    return True
