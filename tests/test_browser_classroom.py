"""A class in a real browser (headless Chromium, three contexts): the teacher makes a lesson link with the epochs
locked, student A opens it, cannot change the epochs, and trains; the leaderboard and the presenter view show A's
run; student B sees the run on the Runs page but gets no Cancel or Delete for it.

One `streamlit run app.py` server on a free port with a teacher passcode, over a throw-away runs directory; the
run trains in the scheduler the page starts. Screenshots go to `bench-out/screenshots/` (or LAYERLAB_SCREENSHOTS).
"""

from __future__ import annotations

import re

import pytest

from core.jobs import access
from tests.browser_support import PAGE_DEADLINE, main_text, serving, wait_for, wait_idle
from tests.test_browser import SCREENSHOTS, en, set_number, table_cells
from tests.test_browser_layout import select_first_run

PASSCODE = "owl-42"
VIEWPORT = {"width": 1400, "height": 1000}
TEACHER_KEY, KEY_A, KEY_B = access.new_key(), access.new_key(), access.new_key()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv(access.PASSCODE_VARIABLE, PASSCODE)  # the server reads it at start
    try:
        with serving(tmp_path_factory.mktemp("class-runs")) as served:
            yield served
    finally:
        patch.undo()


def open_train(page, url: str) -> None:
    page.goto(url)
    wait_for("the Train page", lambda: page.locator("h1", has_text=en("train.title")).count() > 0, PAGE_DEADLINE)
    wait_idle(page)


def number_input(page, label: str):
    return page.locator("[data-testid=stNumberInput]").filter(has=page.get_by_text(label, exact=True)).locator("input")


def make_lesson_link(page, url: str) -> str:
    """As the teacher: enter the passcode, choose short settings, lock the epochs and make the link; returns its address."""
    open_train(page, f"{url}/train?key={TEACHER_KEY}&lang=en")
    sidebar = page.locator("[data-testid=stSidebar]")
    sidebar.locator("[data-testid=stExpander] summary", has_text=en("sidebar.teacher")).click()
    sidebar.get_by_label(en("sidebar.teacher_passcode")).fill(PASSCODE)
    sidebar.get_by_role("button", name=en("sidebar.teacher_enter")).click()
    wait_for("teacher mode", lambda: en("sidebar.teacher_on")[:30] in sidebar.inner_text(), 20)
    wait_idle(page)
    set_number(page, en("train.field.epochs"), 1)
    page.locator("[data-testid=stExpander] summary", has_text=en("train.section.advanced")).click()
    set_number(page, en("train.field.train_subset"), 2000)
    page.locator("[data-testid=stExpander] summary", has_text=en("lesson_link.make")).click()
    page.get_by_label(en("lesson_link.title")).fill("Lesson 3")
    page.get_by_label(en("lesson_link.title")).press("Enter")
    wait_idle(page)
    page.wait_for_timeout(500)
    locks = page.locator("[data-testid=stMultiSelect]").filter(has=page.get_by_text(en("lesson_link.locks"), exact=True))
    option = page.get_by_role("option").filter(has_text=re.compile("^" + re.escape(en("train.field.epochs")) + "$"))
    for _ in range(3):  # a rerun that lands meanwhile closes the list: open it again
        locks.scroll_into_view_if_needed()
        locks.locator("input").click()
        page.keyboard.type(en("train.field.epochs"))
        try:
            option.wait_for(state="visible", timeout=5_000)
            break
        except Exception:
            wait_idle(page)
    option.click()
    wait_for("epochs among the locks", lambda: en("train.field.epochs") in locks.inner_text(), 10)
    page.keyboard.press("Escape")
    wait_idle(page)
    page.get_by_role("button", name=en("lesson_link.create")).click()
    code = page.locator("[data-testid=stCode]")
    wait_for("the lesson link", lambda: code.count() > 0 and "lesson=" in code.first.inner_text(), 20)
    return code.first.inner_text().strip()


def test_teacher_link_student_trains_leaderboard_presenter_and_the_other_student(server, browser):
    contexts = [browser.new_context(viewport=VIEWPORT, locale="en-US") for _ in range(3)]
    teacher, student_a, student_b = (context.new_page() for context in contexts)
    for page in (teacher, student_a, student_b):
        page.set_default_timeout(30_000)
    store = server["store"]
    try:
        address = make_lesson_link(teacher, server["url"])
        link_id = re.search(r"lesson=([A-Za-z0-9_-]+)", address).group(1)
        assert store.lesson_link(link_id)["locked"] == '["epochs"]'

        # Student A opens the link: the epochs are the teacher's, and locked.
        open_train(student_a, f"{address}&key={KEY_A}&owner=Minji")
        assert "Lesson 3" in main_text(student_a)
        epochs = number_input(student_a, en("train.field.epochs"))
        assert epochs.is_disabled() and epochs.input_value() == "1"
        student_a.get_by_role("button", name=re.compile(re.escape(en("train.start")) + "$")).click()
        mine = access.key_hash(KEY_A)
        (run,) = wait_for("A's run", lambda: [run for run in store.list() if run.owner_key_hash == mine], 20)
        assert run.lesson_link == link_id and run.settings["epochs"] == 1
        finished = wait_for("A's run to finish", lambda: (done := store.get(run.id, with_metrics=False)).finished and done, 180)
        assert finished.status == "succeeded", finished.message
        def board_cells() -> list[str]:
            grids = student_a.locator("[data-testid=stDataFrame]")
            return [cell for index in range(grids.count()) for cell in table_cells(student_a, index)]

        accuracy = f"{finished.test_accuracy:.2%}"
        wait_for("A's figure on the leaderboard", lambda: en("leaderboard.title") in main_text(student_a) and accuracy in board_cells(), 30)
        assert board_cells()[:3] == ["1", "Minji", accuracy]
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        student_a.screenshot(path=str(SCREENSHOTS / "classroom-student.png"))

        # The presenter view, opened from the teacher's link maker, shows the run on the board.
        teacher.get_by_role("link", name=en("lesson_link.present")).click()
        wait_for("the presenter view", lambda: teacher.locator("h1", has_text="Lesson 3").count() > 0, PAGE_DEADLINE)
        table = teacher.locator("[data-testid=stTable]")
        wait_for("A's row on the projector", lambda: table.count() > 0 and "Minji" in table.first.inner_text(), 30)
        assert f"{finished.test_accuracy:.2%}" in table.first.inner_text()
        wait_idle(teacher)
        teacher.screenshot(path=str(SCREENSHOTS / "classroom-presenter.png"))

        # Student B sees A's run among everyone's, without Cancel or Delete.
        student_b.goto(f"{server['url']}/runs?key={KEY_B}&lang=en")
        wait_for("the Runs page", lambda: student_b.locator("h1", has_text=en("runs.title")).count() > 0, PAGE_DEADLINE)
        wait_idle(student_b)
        select_first_run(student_b)
        wait_for("A's run opened", lambda: f"#{run.id}" in main_text(student_b), 20)
        wait_idle(student_b)
        assert student_b.get_by_role("button", name=en("runs.delete")).count() == 0
        assert student_b.get_by_role("button", name=en("train.cancel")).count() == 0
    finally:
        for context in contexts:
            context.close()
