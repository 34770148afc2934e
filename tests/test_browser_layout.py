"""Issue 8 in a real browser: a refresh keeps everything, every page reads cleanly at 1024×768, the Runs table refreshes itself.

A real `streamlit run app.py` server with its own runs directory, in which one short real run
(the "fast" preset, 2 epochs of 2,000 images) has trained in this process beforehand, so the
Train and Runs pages have something to show. At 1024×768 (a classroom projector) and 1400×1000,
in English and Korean, on Build, Train and Runs: no widget label breaks inside a word (read from
the browser's own line boxes), no select value or button label is cut with "…", and the shape
table shows all its columns; a screenshot of each lands in the scratch folder
(`bench-out/screenshots/`, or `LAYERLAB_SCREENSHOTS`), which `make screenshots` copies into docs/.

About a minute on a 2-core CPU. Run it alone with `.venv/bin/python -m pytest tests/test_browser_layout.py -q -s`.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from core.jobs.access import Actor, new_key
from core.jobs.service import JobService
from core.jobs.store import RunStore
from core.training.presets import get as get_preset
from core.training.settings import TrainSettings
from core.views import i18n
from tests.browser_support import serving, wait_for
from tests.test_browser import PAGE_DEADLINE, SCREENSHOTS, assert_no_exception, table_cells, wait_idle

SIZES = {"1024x768": {"width": 1024, "height": 768}, "1400x1000": {"width": 1400, "height": 1000}}
PAGES = {"build": "", "train": "train", "runs": "runs", "lessons": "lessons"}
MINJI_KEY = new_key()  # the screenshots' browser owns the run, so its pages show what an owner sees
TITLES = {"build": "build.title", "train": "train.title", "runs": "runs.title", "lessons": "lessons.title"}

# For every element the selector finds: the characters at which the browser started a new line, with the
# characters either side. A text node's line boxes are found with a Range over each character and getClientRects().
LINE_BREAKS = """
selector => {
  const breaks = [];
  for (const label of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(label, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const text = node.textContent;
      let lastTop = null;
      for (let index = 0; index < text.length; index++) {
        const range = document.createRange();
        range.setStart(node, index);
        range.setEnd(node, index + 1);
        const rects = range.getClientRects();
        if (!rects.length || !rects[0].width) continue;
        if (lastTop !== null && rects[0].top > lastTop + 2) {
          breaks.push({label: label.innerText.trim(), before: text[index - 1] || '', after: text[index]});
        }
        lastTop = rects[0].top;
      }
    }
  }
  return breaks;
}
"""

# Texts that the page cuts: an element drawn with an ellipsis whose text is wider than its box
# (select values, button labels), or a widget label wider than its box (a long word pushed out).
CUT_TEXTS = """
() => {
  const cut = [];
  const boxes = document.querySelectorAll('[data-testid=stMain] [data-testid=stSelectbox] *, [data-testid=stMain] button *, [data-testid=stMain] [data-testid=stWidgetLabel] *');
  for (const element of boxes) {
    const style = getComputedStyle(element);
    const clips = style.textOverflow === 'ellipsis' || style.overflow === 'hidden' || element.closest('[data-testid=stWidgetLabel]');
    if (clips && element.clientWidth > 0 && element.scrollWidth > element.clientWidth + 1 && element.innerText.trim()) {
      cut.push(element.innerText.trim());
    }
  }
  return [...new Set(cut)];
}
"""

# The shape table: its grid may not scroll sideways (every column fits), and it ends inside the window.
TABLE_FITS = """
element => {
  const box = element.getBoundingClientRect();
  const scrollers = [...element.querySelectorAll('*')].filter(node => node.scrollWidth > node.clientWidth + 1 && getComputedStyle(node).overflowX !== 'visible');
  return {right: box.right, width: window.innerWidth, scrolling: scrollers.length};
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A LayerLab server whose runs directory holds one short real run, trained here before the server starts."""
    runs = tmp_path_factory.mktemp("layout-runs")
    store = RunStore(runs)
    service = JobService(store)
    settings = TrainSettings(**{**get_preset("fast").train_settings().to_dict(), "epochs": 2, "train_subset": 2000, "batch_size": 64})
    run_id = service.submit(get_preset("fast").network, settings, owner="Minji", name="fast #1", actor=Actor.for_key(MINJI_KEY))
    assert service.run_here(run_id) == "succeeded", store.get(run_id).message
    with serving(runs, run_id=run_id) as served:
        yield served


def open_page(page, url: str, name: str, language: str) -> None:
    page.goto(url)
    heading = i18n.translate(language, TITLES[name])
    wait_for(f"the {name} page", lambda: page.locator("h1", has_text=heading).count() > 0, PAGE_DEADLINE)
    wait_idle(page)
    if name == "build":
        wait_for("the shape table", lambda: page.locator("[data-testid=stDataFrame]").count() > 0, 20)
    if name == "train":
        wait_for("the run's curves", lambda: page.locator("[data-testid=stMain] .js-plotly-plot").count() > 0, 20)
    time.sleep(1.0)  # let charts and the grid finish their first resize


def select_first_run(page) -> None:
    grid = page.locator("[data-testid=stDataFrame]")
    wait_for("the runs table", lambda: grid.count() > 0 and grid.first.bounding_box(), 20)
    box = grid.first.bounding_box()
    page.mouse.click(box["x"] + 15, box["y"] + 35 + 17)  # the first row's selection box (rows are 35 px high)


HANGUL = re.compile("[\uac00-\ud7a3]")
TEXTS = "[data-testid=stMarkdownContainer], [data-testid=stCaptionContainer], [data-testid=stAlertContainer]"


def check_layout(page, where: str) -> None:
    breaks = page.evaluate(LINE_BREAKS, "[data-testid=stMain] [data-testid=stWidgetLabel]")
    inside_words = [item for item in breaks if not item["before"].isspace() and not item["after"].isspace()]
    assert not inside_words, f"{where}: labels broken inside a word: {inside_words}"
    # Captions, texts and messages, in the sidebar too: a Korean word is never split between lines.
    breaks = page.evaluate(LINE_BREAKS, TEXTS)
    inside_korean = [item for item in breaks if HANGUL.match(item["before"]) and HANGUL.match(item["after"])]
    assert not inside_korean, f"{where}: Korean words broken across lines: {inside_korean}"
    cut = page.evaluate(CUT_TEXTS)
    assert not cut, f"{where}: cut texts: {cut}"


@pytest.mark.parametrize("language", ["en", "ko"])
@pytest.mark.parametrize("size", SIZES)
def test_every_page_reads_cleanly_and_is_photographed(server, browser, size, language):
    context = browser.new_context(viewport=SIZES[size], locale="en-US")
    page = context.new_page()
    page.set_default_timeout(30_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        for name, path in PAGES.items():
            query = f"lang={language}&owner=Minji&key={MINJI_KEY}" + (f"&run={server['run_id']}" if name == "train" else "")
            if name == "runs":  # the curves and figures show once a run is ticked in the table
                page.goto(f"{server['url']}/{path}?{query}")
                wait_for("the runs page", lambda: page.locator("h1", has_text=i18n.translate(language, "runs.title")).count() > 0, PAGE_DEADLINE)
                wait_idle(page)
                select_first_run(page)
                wait_for("the run's curves", lambda: page.locator("[data-testid=stMain] .js-plotly-plot").count() > 0, 20)
                wait_idle(page)
                time.sleep(1.0)
            else:
                open_page(page, f"{server['url']}/{path}?{query}", name, language)
            check_layout(page, f"{name} at {size} in {language}")
            if name == "build":
                table = page.locator("[data-testid=stDataFrame]").first
                table.scroll_into_view_if_needed()
                fits = table.evaluate(TABLE_FITS)
                assert fits["scrolling"] == 0 and fits["right"] <= fits["width"], f"the shape table is cut at {size}: {fits}"
                cells = table_cells(page)
                assert len(cells) % 4 == 0 and cells, "all four columns hold cells"
                page.locator("[data-testid=stMain] h1").first.scroll_into_view_if_needed()
            page.mouse.move(0, SIZES[size]["height"] - 1)  # no hover tooltip in the picture
            time.sleep(0.3)
            assert_no_exception(page)
            shot = SCREENSHOTS / f"{name}-{language}-{size}.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size < 1_500_000
    finally:
        context.close()


def test_a_refresh_keeps_language_name_network_and_settings(server, browser):
    context = browser.new_context(viewport=SIZES["1024x768"], locale="en-US")
    page = context.new_page()
    page.set_default_timeout(30_000)
    ko = lambda key, **values: i18n.translate("ko", key, **values)  # noqa: E731
    try:
        open_page(page, f"{server['url']}/?lang=ko", "build", "ko")
        name = page.locator("[data-testid=stSidebar] input[type=text]").first
        name.fill("민지")
        name.press("Enter")
        wait_for("the name in the address", lambda: "owner=" in page.evaluate("location.href"), 20)
        wait_idle(page)
        set_number(page, ko("build.field.filters"), 7)
        # Wait for the server to have it: a page switch drops the widget values of a rerun it interrupts.
        wait_for("the edit in the draft", lambda: saved_draft(server["runs"]).get("network", {}).get("layers", [{}])[0].get("filters") == 7, 20)
        page.locator("[data-testid=stSidebarNav] a", has_text=ko("nav.train")).click()
        wait_for("the Train page", lambda: page.locator("h1", has_text=ko("train.title")).count() > 0, PAGE_DEADLINE)
        wait_idle(page)
        set_number(page, ko("train.field.epochs"), 5)
        wait_for("the setting in the draft", lambda: saved_draft(server["runs"]).get("settings", {}).get("epochs") == 5, 20)
        page.reload()  # F5
        wait_for("the Korean Train page after the refresh", lambda: page.locator("h1", has_text=ko("train.title")).count() > 0, PAGE_DEADLINE)
        wait_idle(page)
        owner = page.locator("[data-testid=stSidebar] input[type=text]").first
        wait_for("the name back in the sidebar", lambda: owner.input_value() == "민지", 20)
        wait_for("5 epochs back on Train", lambda: number_value(page, ko("train.field.epochs")) == "5", 20)
        main = page.locator("[data-testid=stMain]")
        wait_for("the edited network (7 feature maps) as the one to train", lambda: "7 × 5×5" in main.inner_text(), 20)
        page.locator("[data-testid=stSidebarNav] a", has_text=ko("nav.build")).click()
        wait_for("the Build page", lambda: page.locator("h1", has_text=ko("build.title")).count() > 0, PAGE_DEADLINE)
        wait_idle(page)
        wait_for("7 feature maps back on Build", lambda: number_value(page, ko("build.field.filters")) == "7", 20)
    finally:
        context.close()


def test_the_runs_table_refreshes_itself_while_runs_are_active(server, browser):
    store: RunStore = server["store"]
    # A queued run that no scheduler picks up (the page starts none): the test moves it on by hand.
    run_id = store.create(get_preset("fast").network, {"epochs": 1}, name="waiting #1", owner="Minji", status="queued")
    context = browser.new_context(viewport=SIZES["1400x1000"], locale="en-US")
    page = context.new_page()
    try:
        page.goto(f"{server['url']}/runs?lang=en")
        wait_for("the runs table", lambda: page.locator("[data-testid=stDataFrame]").count() > 0, PAGE_DEADLINE)
        queued, cancelled = i18n.translate("en", "common.status.queued"), i18n.translate("en", "common.status.cancelled")
        wait_for("the queued run", lambda: queued in table_cells(page), 20)
        store.update(run_id, status="cancelled", message="")
        wait_for("the table to show the change without a click", lambda: queued not in table_cells(page) and cancelled in table_cells(page), 15)
    finally:
        context.close()
        store.delete(run_id)


def saved_draft(runs: Path) -> dict:
    """The most recently written draft: while this test runs, its browser is the only one editing."""
    found = sorted((runs / "drafts").glob("*.json"), key=lambda path: path.stat().st_mtime)
    return json.loads(found[-1].read_text(encoding="utf-8")) if found else {}


def set_number(page, label: str, value: int) -> None:
    field = page.locator("[data-testid=stNumberInput]").filter(has=page.get_by_text(label, exact=True)).first.locator("input")
    field.click()
    field.fill(str(value))
    field.press("Enter")
    wait_for(f"{label} to be {value}", lambda: field.input_value() == str(value), 10)
    wait_idle(page)


def number_value(page, label: str) -> str:
    return page.locator("[data-testid=stNumberInput]").filter(has=page.get_by_text(label, exact=True)).first.locator("input").input_value()
