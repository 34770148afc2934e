"""The whole journey in a real browser (headless Chromium, issue 4), and the README's screenshots.

A real `streamlit run app.py` server on a free port, a throw-away runs directory, real clicks
and typing: load a preset on Build and see its parameter count, train a short run on Train
and watch the progress bar and the curves move until the final accuracy shows, switch to
Korean and see the same page in Korean, then find the run on the Runs page. Each page is
saved to a scratch folder on the way (`bench-out/screenshots/`, or `LAYERLAB_SCREENSHOTS`);
`make screenshots` copies them into docs/screenshots/, so a test run never rewrites the
tracked pictures. At the end the server, the detached scheduler it started and the scheduler's
workers are all stopped (the test fails if any process started with its runs directory is left).

About 30 s on a 2-core CPU, of which the run itself takes 10–35 s depending on the load.
Run it alone with `.venv/bin/python -m pytest tests/test_browser.py -q -s` (-s prints what it saw).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from core.data import datasets as data
from core.jobs.store import RunStore
from core.training import checkpoint
from core.model import network as networks
from core.training.presets import get as get_preset
from core.views import i18n, run_views
from tests.browser_support import (
    ROOT,
    assert_no_exception,
    main_text,
    metric_value,
    serving,
    wait_for,
    wait_idle,
)

SCREENSHOTS = Path(os.environ.get("LAYERLAB_SCREENSHOTS") or ROOT / "bench-out" / "screenshots")
VIEWPORT = {"width": 1400, "height": 900}
PRESET = "fast"  # Two small conv layers: a nice diagram, and a few seconds per epoch on a short subset.
EPOCHS, TRAIN_SUBSET, BATCH_SIZE = 3, 3000, 64
RUN_DEADLINE = 120.0  # seconds from pressing Train to the final figures
PAGE_DEADLINE = 60.0  # seconds for a page to draw (the first one imports torch on the server)


def en(key: str, **values) -> str:
    return i18n.translate("en", key, **values)


def ko(key: str, **values) -> str:
    return i18n.translate("ko", key, **values)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real LayerLab server on a free port with its own runs directory; everything it started is stopped afterwards."""
    runs = tmp_path_factory.mktemp("browser-runs")
    with serving(runs) as served:
        yield served



# ----------------------------------------------------------------------------- page helpers




def selectbox_value(page, label: str) -> str:
    """What the selectbox labelled `label` shows."""
    return page.get_by_role("combobox", name=label, exact=True).input_value()


def set_number(page, label: str, value: int) -> None:
    """Type `value` into the number input labelled `label` and commit it with Enter."""
    field = page.locator("[data-testid=stNumberInput]").filter(has=page.get_by_text(label, exact=True)).locator("input")
    field.click()
    field.fill(str(value))
    field.press("Enter")
    wait_for(f"{label} to be {value}", lambda: field.input_value() == str(value), 10)
    wait_idle(page)


def go_to(page, title: str, heading: str) -> None:
    """Click `title` in the sidebar navigation and wait for the page's `heading`."""
    page.locator("[data-testid=stSidebarNav] a", has_text=title).click()
    wait_for(f"the {title} page", lambda: page.locator("h1", has_text=heading).count() > 0, PAGE_DEADLINE)
    wait_idle(page)


def curve_points(page) -> int:
    """Points in the training curves' first trace (epochs so far); 0 while there is no curve."""
    chart = page.locator("[data-testid=stMain] [data-testid=stPlotlyChart] .js-plotly-plot")
    if chart.count() == 0:
        return 0
    return chart.first.evaluate("element => (element.data && element.data[0] && element.data[0].x) ? element.data[0].x.length : 0")


def progress_text(page) -> str | None:
    bar = page.locator("[data-testid=stProgress]")
    if bar.count() == 0:
        return None
    return bar.first.inner_text().strip() + " " + (bar.first.locator("[role=progressbar]").first.get_attribute("aria-valuenow") or "")


def table_cells(page, index: int = 0) -> list[str]:
    """The texts of a dataframe's cells, row by row (read from the grid's accessible table; the grid itself is a canvas)."""
    grid = page.locator("[data-testid=stDataFrame]").nth(index)
    return grid.evaluate("element => Array.from(element.querySelectorAll('[role=gridcell]')).map(cell => cell.textContent.trim())")


def screenshot(page, name: str, height: int | None = None) -> Path:
    """Save the visible page as SCREENSHOTS/`name`, optionally with a taller window (the main area scrolls inside it)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    if height:
        page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
        wait_idle(page)
    page.mouse.move(0, page.viewport_size["height"] - 1)  # no hover tooltip in the picture
    time.sleep(0.5)  # let charts finish resizing
    assert_no_exception(page)
    page.screenshot(path=str(path), full_page=False)
    page.set_viewport_size(VIEWPORT)
    assert path.stat().st_size < 1_500_000, f"{path} is {path.stat().st_size:,} bytes"
    return path


# ----------------------------------------------------------------------------- the journey


def test_chromium_has_a_korean_font():
    """`make test` installs fonts-noto-cjk: without a Korean font Hangul shows as empty boxes in the Korean screenshots."""
    import subprocess

    fonts = subprocess.run(["fc-list", ":lang=ko", "family"], capture_output=True, text=True, timeout=60).stdout
    assert fonts.strip(), "no font with Korean glyphs is installed; run `make browser`"


def test_build_train_watch_korean_runs(server, browser):
    store: RunStore = server["store"]
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        journey(page, server["url"], store)
    except Exception:
        failure = server["runs"].parent / "failure.png"
        page.screenshot(path=str(failure))
        print(f"\nbrowser: the page at the failure is in {failure}; the server's log in {failure.parent / 'streamlit.log'}")
        raise
    finally:
        context.close()


def journey(page, url: str, store: RunStore) -> None:
    # Build: open the app and choose the preset in "Start from", which loads it (no Load button since issue 8).
    page.goto(url)
    wait_for("the Build page", lambda: page.locator("h1", has_text=en("build.title")).count() > 0, PAGE_DEADLINE)
    wait_idle(page)
    expected = networks.validate(get_preset(PRESET).network).total_parameters
    assert metric_value(page, en("build.total_parameters")) != f"{expected:,}", "pick a preset that differs from the start network"
    start = page.locator("[data-testid=stSelectbox]").filter(has=page.get_by_text(en("build.start_from"), exact=True))
    start.locator("input").click()
    start.locator("input").fill(en(f"build.preset.{PRESET}.title")[:12])
    page.get_by_role("option", name=en(f"build.preset.{PRESET}.title")).click()
    total = en("build.total_parameters")
    wait_for(f"the {PRESET} preset's {expected:,} parameters", lambda: metric_value(page, total) == f"{expected:,}", 30)
    wait_idle(page)
    assert en(f"build.preset.{PRESET}.description")[:40] in main_text(page)
    wait_for("the network diagram", lambda: page.locator("[data-testid=stMain] [data-testid=stPlotlyChart] .js-plotly-plot").count() > 0, 20)
    wait_for("the shape table", lambda: page.locator("[data-testid=stDataFrame]").count() > 0, 20)
    layers = len(get_preset(PRESET).network["layers"])
    # The grid redraws after the metric: wait until it holds the new preset's rows.
    cells = wait_for("the shape table's rows", lambda: (found := table_cells(page)) and len(found) == 4 * (layers + 2) and found, 20)
    assert len(cells) == 4 * (layers + 2), cells  # the input, one row per layer and the total
    assert cells[-4:] == ["", en("build.total_row"), "", f"{expected:,}"], cells[-4:]
    screenshot(page, "build.png", height=1160)  # tall enough for the table and the diagram below it

    # Train: a short run of the preset with at least two epochs, so the curves get several points.
    go_to(page, en("nav.train"), en("train.title"))
    set_number(page, en("train.field.epochs"), EPOCHS)
    set_number(page, en("train.field.batch_size"), BATCH_SIZE)
    page.locator("[data-testid=stExpander] summary", has_text=en("train.section.advanced")).click()
    set_number(page, en("train.field.train_subset"), TRAIN_SUBSET)
    set_number(page, en("train.field.max_steps"), 0)
    started = time.monotonic()
    page.get_by_role("button", name=re.compile(re.escape(en("train.start")) + "$")).click()

    # Watch it: the progress bar moves and the curves grow, until the final figures show.
    progress_seen: list[str] = []
    points_seen: list[int] = []
    test_label = en("common.test_accuracy")
    while True:
        assert time.monotonic() - started < RUN_DEADLINE, f"no final figures after {RUN_DEADLINE:.0f} s: {progress_seen}, {points_seen}"
        try:
            assert_no_exception(page)
            text = progress_text(page)
            points = curve_points(page)
            finished = page.locator("h3", has_text=en("common.status.succeeded")).count() > 0
            value = metric_value(page, test_label)
        except Exception as error:  # noqa: BLE001 — read mid-rerun; read again
            if "shows an exception" in str(error):
                raise
            time.sleep(0.2)
            continue
        if text and (not progress_seen or progress_seen[-1] != text):
            progress_seen.append(text)
        if points and (not points_seen or points_seen[-1] != points):
            points_seen.append(points)
        if finished and value not in (None, "–") and page.locator("[data-testid=stProgress]").count() == 0:
            break
        time.sleep(0.2)
    seconds = time.monotonic() - started
    run = store.get(store.list()[0].id)
    assert run.status == "succeeded", run.message
    assert len(run.metrics) == EPOCHS
    assert (run.settings["epochs"], run.settings["train_subset"], run.settings["batch_size"]) == (EPOCHS, TRAIN_SUBSET, BATCH_SIZE)
    assert len(progress_seen) >= 2, f"the progress bar never changed: {progress_seen}"
    points_seen.append(wait_for("every epoch in the curves", lambda: curve_points(page) == EPOCHS and curve_points(page), 10))
    assert min(points_seen) < EPOCHS and max(points_seen) == EPOCHS, f"the curves did not grow: {points_seen}"
    assert metric_value(page, test_label) == run_views.percent(run.test_accuracy)
    assert metric_value(page, en("common.best_validation_accuracy")) == run_views.percent(run.best_validation_accuracy)
    assert metric_value(page, en("common.epochs")) == f"{EPOCHS}/{EPOCHS}"
    print(f"\nbrowser: run #{run.id} took {seconds:.1f} s to its final figures; progress {progress_seen}; curve points {points_seen}")
    wait_idle(page)
    screenshot(page, "train.png")

    # Korean: the same Train page, in Korean.
    page.locator("[data-testid=stSidebar] [data-testid=stRadio] label", has_text=i18n.LANGUAGES["ko"]).click()
    wait_for("the Korean title", lambda: page.locator("h1", has_text=ko("train.title")).count() > 0, 30)
    wait_idle(page)
    shown = run_views.percent(run.test_accuracy)
    wait_for("the Korean test-accuracy figure", lambda: metric_value(page, ko("common.test_accuracy")) == shown, 20)
    text = main_text(page)
    # A selectbox keeps its label across reruns unless told its value again: it must switch language too.
    assert selectbox_value(page, ko("train.field.dataset")) == ko("train.choice.mnist")
    shown_keys = ("train.section.data", "train.section.advanced", "train.reset", "common.best_validation_accuracy")
    for key in shown_keys:
        assert ko(key) in text, f"{key} is not shown in Korean"
    for key in (*shown_keys, "common.test_accuracy", "train.choice.mnist"):
        assert en(key) not in text, f"{en(key)!r} is still shown in English"
    assert ko("common.status.succeeded") in page.locator("h3").first.inner_text()
    screenshot(page, "train-ko.png")

    # Runs, in English again: the run is in the table; ticking it overlays its curves.
    page.locator("[data-testid=stSidebar] [data-testid=stRadio] label", has_text=i18n.LANGUAGES["en"]).click()
    wait_for("the English title", lambda: page.locator("h1", has_text=en("train.title")).count() > 0, 30)
    wait_idle(page)
    go_to(page, en("nav.runs"), en("runs.title"))
    grid = page.locator("[data-testid=stDataFrame]")
    wait_for("the runs table", lambda: grid.count() > 0 and grid.first.bounding_box(), 20)
    box = grid.first.bounding_box()
    page.mouse.click(box["x"] + 15, box["y"] + 35 + 17)  # the first row's selection box (rows are 35 px high)
    wait_for("the overlaid curves", lambda: page.locator("[data-testid=stMain] [data-testid=stPlotlyChart]").count() > 0, 20)
    wait_idle(page)
    cells = table_cells(page)
    # The grid's accessible cells hold the numbers without the column's % format.
    accuracies = [cell.rstrip("%") for cell in cells[3:5]]
    assert cells[:3] == [str(run.id), f"{PRESET} #1", en("common.status.succeeded")], cells  # a distinct default name
    assert accuracies == [run_views.percent(run.best_validation_accuracy)[:-1], run_views.percent(run.test_accuracy)[:-1]], cells
    assert curve_points(page) == EPOCHS
    wait_for("the run's figures below the curves", lambda: metric_value(page, test_label) == run_views.percent(run.test_accuracy), 20)
    wait_idle(page)
    screenshot(page, "runs.png")
    assert_no_exception(page)

    # Take it with you: the PyTorch file downloads from the Runs page and, with only torch, reads a test digit as the app does.
    button = page.get_by_role("button", name=en("runs.export.python"))
    button.scroll_into_view_if_needed()
    with page.expect_download(timeout=60_000) as download:
        button.click()
    folder = store.directory.parent / "download"
    folder.mkdir(exist_ok=True)
    with zipfile.ZipFile(download.value.path()) as archive:
        names = sorted(archive.namelist())
        archive.extractall(folder)
    assert [Path(name).suffix for name in names] == [".pt", ".py"], names
    digit = folder / "digit.png"
    image = data.load("mnist").test_images[0]
    Image.fromarray(image.numpy()).save(digit)
    model, _, _ = checkpoint.load(store.best_checkpoint_path(run.id))
    with torch.no_grad():
        expected = int(model(image.reshape(1, 1, 28, 28).float() / 255).argmax())
    script = folder / next(name for name in names if name.endswith(".py"))
    result = subprocess.run([sys.executable, "-I", str(script), str(digit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(str(expected)), result.stdout
