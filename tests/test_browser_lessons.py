"""One lesson followed in a real browser (headless Chromium), in English and in Korean: open the Lessons page,
choose the optimisers lesson, train its Adam step for one epoch, and see the step's result and curves appear.

A real `streamlit run app.py` server on a free port serves an empty runs directory; the run trains in the
scheduler the page starts, as in a classroom. Screenshots of each stage go to `bench-out/screenshots/`
(or LAYERLAB_SCREENSHOTS); `make screenshots` copies them into docs/screenshots/.
"""

from __future__ import annotations

import pytest

from core.jobs import access
from core.views import i18n, run_views, syllabus
from tests.browser_support import PAGE_DEADLINE, main_text, serving, wait_for, wait_idle
from tests.test_browser import SCREENSHOTS

LESSON, STEP = "dlfs-optimizers", "adam"
VIEWPORT = {"width": 1400, "height": 1000}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("lesson-runs")) as served:
        yield served


@pytest.mark.parametrize("language", ["en", "ko"])
def test_follow_the_optimisers_lesson_to_its_result(server, browser, language):
    def text(key: str, **values) -> str:
        return i18n.translate(language, key, **values)

    lesson = syllabus.get(LESSON)
    step = lesson.step(STEP)
    key = access.new_key()
    context = browser.new_context(viewport=VIEWPORT, locale="ko-KR" if language == "ko" else "en-US")
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(f"{server['url']}/lessons?lang={language}&key={key}")
        wait_for("the Lessons page", lambda: page.locator("h1", has_text=text("lessons.title")).count() > 0, PAGE_DEADLINE)
        wait_idle(page)
        chooser = page.locator("[data-testid=stSelectbox]").filter(has=page.get_by_text(text("lessons.choose"), exact=True))
        chooser.locator("input").click()
        page.get_by_role("option", name=lesson.title[language]).click()
        wait_for("the lesson's introduction", lambda: lesson.intro[language][:40] in main_text(page), 20)
        wait_idle(page)
        box = page.locator(f".st-key-lesson_step_{STEP}")
        assert text("lessons.state.not_started") in box.inner_text()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"lesson-1-start-{language}.png"))

        epochs = box.locator("[data-testid=stNumberInput] input")
        epochs.click()
        epochs.fill("1")
        epochs.press("Enter")
        wait_for("one epoch", lambda: epochs.input_value() == "1", 10)
        wait_idle(page)
        box.get_by_role("button", name=text("lessons.train")).click()
        mine = access.key_hash(key)
        (run,) = wait_for("the queued run", lambda: [run for run in server["store"].list() if run.owner_key_hash == mine], 20)
        assert syllabus.is_run_of(run, step) and run.settings["epochs"] == 1
        # The step's line follows the run live, then shows its result; the curves appear above the steps.
        wait_for("the step's result", lambda: f"#{run.id}" in box.inner_text() and server["store"].get(run.id, with_metrics=False).finished, 240)
        finished = server["store"].get(run.id, with_metrics=False)
        assert finished.status == "succeeded", finished.message
        result = text("lessons.state.done", accuracy=run_views.percent(finished.test_accuracy), epochs=1, id=run.id)
        wait_for("the result on the page", lambda: result in box.inner_text(), 30)
        wait_for("the lesson's curves", lambda: page.locator("[data-testid=stPlotlyChart] .main-svg").count() > 0, 30)
        wait_idle(page)
        page.locator("h1").first.scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / f"lesson-2-result-{language}.png"))
    finally:
        context.close()
