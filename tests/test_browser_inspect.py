"""The Inspect page in a real browser (headless Chromium, issue 9), and its screenshots.

A run of the `fast` preset is trained before the server starts (3,000 images, 2 epochs, through
`core.jobs.runner.execute` like any run), then a real `streamlit run app.py` serves its runs
directory and the browser opens the Inspect page for it with `?run=ID`. The journey: in
Mistakes, click a cell of the confusion matrix (the Plotly selection Streamlit hands back) and
see exactly that cell's images, the count beside the matrix's value computed here from the
checkpoint; open one of them and see its activations, one heading per layer; in Filters, move
the epoch slider with the keyboard and see the caption and the tiles change to that epoch's
checkpoint; in Korean, see the view names from ko.json and no exception. Each view is saved
as `inspect-<view>.png` in the scratch folder (`bench-out/screenshots/`, or
`LAYERLAB_SCREENSHOTS`); `make screenshots` copies them into docs/screenshots/.

About 60 s on a quiet 2-core CPU (the run itself ~10 s, the top-patch scans a few seconds each).
Run it alone with `.venv/bin/python -m pytest tests/test_browser_inspect.py -q -s`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from core.jobs.store import RunStore
from core.probes import activations as activation_probes
from core.probes import filters as filter_probes
from core.probes import loading, mistakes
from core.views import i18n, inspection, run_views
from tests.browser_support import (
    NO_EXCEPTION,
    ROOT,
    assert_no_exception,
    main_text,
    serving,
    wait_for,
)
from tests.browser_support import wait_idle as support_wait_idle
from tests.inspect_support import train_run

SCREENSHOTS = Path(os.environ.get("LAYERLAB_SCREENSHOTS") or ROOT / "bench-out" / "screenshots")
VIEWPORT = {"width": 1400, "height": 1000}
PAGE_DEADLINE = 90.0  # seconds for a view to draw on a loaded machine (the first one imports torch and loads MNIST on the server)
GALLERY_PAGE = 40  # images on one gallery page (pages/inspect_widgets.py)


def en(key: str, **values) -> str:
    return i18n.translate("en", key, **values)


def ko(key: str, **values) -> str:
    return i18n.translate("ko", key, **values)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A finished run in a throw-away runs directory, and a real LayerLab server on it; everything started is stopped afterwards."""
    runs = tmp_path_factory.mktemp("inspect-runs")
    store = RunStore(runs)
    run_id = train_run(store)
    with serving(runs, run_id=run_id) as served:
        yield served



# ----------------------------------------------------------------------------- page helpers


def wait_idle(page, timeout: float = PAGE_DEADLINE) -> None:
    support_wait_idle(page, timeout)  # this journey's longer deadline


def charts(page):
    return page.locator("[data-testid=stMain] [data-testid=stPlotlyChart] .js-plotly-plot")


def chart_with_key(page, key: str):
    """The Plotly charts whose Streamlit key starts with `key` (their element has the class st-key-<key>, dots made dashes)."""
    return page.locator(f"[data-testid=stMain] [class*='st-key-{key.replace('.', '-')}'] .js-plotly-plot")


def only_chart(page, key: str):
    """The one chart keyed `key`, once the elements a rerun left behind (Streamlit keeps them until it ends) are gone."""
    chart = chart_with_key(page, key)
    wait_for(f"exactly one chart keyed {key}", lambda: chart.count() == 1, PAGE_DEADLINE)
    return chart


def trace_z(chart, trace: int = 0) -> np.ndarray:
    """The z values Plotly drew for a heat-map trace (decoded from the typed array it was sent)."""
    rows = chart.evaluate(f"element => Array.from(element._fullData[{trace}].z, row => Array.from(row))")
    return np.asarray(rows, dtype=np.float64)


def choose_view(page, name: str, language: str = "en") -> None:
    """Click a view in the segmented control and wait until it shows as chosen."""
    label = i18n.translate(language, f"inspect.view.{name}")
    button = page.locator("[data-testid=stMain] [data-testid=stButtonGroup]").get_by_role("radio", name=label, exact=True)
    button.click()
    wait_for(f"the {label} view to be chosen", lambda: button.get_attribute("aria-checked") == "true", 30)


def shown_tiles(page) -> list[int]:
    """Test indices of the gallery's tiles, in the page's order (each tile is a container keyed inspect-tile-<index>)."""
    return page.locator("[data-testid=stMain] [class*='st-key-inspect-tile-']").evaluate_all(
        "tiles => tiles.map(tile => Array.from(tile.classList).find(name => name.startsWith('st-key-inspect-tile-')))"
        ".map(name => parseInt(name.slice('st-key-inspect-tile-'.length)))"
    )


def screenshot(page, name: str, top: str | None = None) -> Path:
    """Save the visible page as SCREENSHOTS/`name`: from its top, or scrolled so the first element matching `top` starts the picture."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    if top is None:  # The main area scrolls inside the window: scroll it, and anything around it, back to the top.
        page.locator("[data-testid=stMain] h1").first.evaluate("element => { for (let node = element; node; node = node.parentElement) node.scrollTop = 0; }")
    else:
        page.locator(f"[data-testid=stMain] {top}").first.evaluate("element => element.scrollIntoView({block: 'start'})")
    # Images come from the server's media endpoint after the page has drawn: wait for them, or the tiles are empty.
    loaded = "images => images.every(image => image.complete && image.naturalWidth > 0)"
    wait_for("the page's images", lambda: page.locator("[data-testid=stMain] img").evaluate_all(loaded), PAGE_DEADLINE)
    page.mouse.move(0, VIEWPORT["height"] - 1)  # no hover tooltip in the picture
    time.sleep(0.5)  # let charts finish resizing
    assert_no_exception(page)
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size < 1_500_000, f"{path} is {path.stat().st_size:,} bytes"
    return path


# ----------------------------------------------------------------------------- the journey


def test_inspect_confusion_cell_mistake_activations_filters_korean(server, browser):
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        journey(page, server["url"], server["store"], server["run_id"])
    except Exception:
        failure = server["runs"].parent / "failure.png"
        page.screenshot(path=str(failure))
        print(f"\nbrowser: the page at the failure is in {failure}; the server's log in {failure.parent / 'streamlit.log'}")
        raise
    finally:
        context.close()


def journey(page, url: str, store: RunStore, run_id: int) -> None:
    started = time.monotonic()
    loaded = inspection.load_run(store, run_id)
    predictions = inspection.test_predictions(loaded)
    matrix = mistakes.confusion(predictions)
    names = loaded.splits.class_names
    epochs = inspection.epoch_checkpoints(store, run_id)
    assert list(epochs) == [0, 1, 2], epochs

    # The Inspect page for the run named in the URL; Filters is the first view, at the last epoch.
    page.goto(f"{url}/inspect?run={run_id}")
    wait_for("the Inspect page", lambda: page.locator("h1", has_text=en("inspect.title")).count() > 0, PAGE_DEADLINE)
    model, spec, _ = loading.load(epochs[2])
    layer = filter_probes.filter_layers(model, spec)[0]
    caption = lambda epoch: en("inspect.filters.caption", count=layer.filters, layer=layer.index + 1, description=layer.description, epoch=epoch)  # noqa: E731
    wait_for("the epoch-2 filters", lambda: caption(2) in main_text(page) and chart_with_key(page, "inspect.filters.grid").count() > 0, PAGE_DEADLINE)
    wait_for("the top patches", lambda: chart_with_key(page, "inspect.filters.patches").count() > 0, PAGE_DEADLINE)
    wait_idle(page)
    grid = only_chart(page, "inspect.filters.grid")
    weights = filter_probes.filter_grid(model, layer, 0).weights
    assert grid.evaluate("element => element._fullData.length") == len(weights)  # one tile per filter
    np.testing.assert_allclose(trace_z(grid, 0), weights[0], atol=1e-6)
    screenshot(page, "inspect-filters.png", top="[data-testid=stButtonGroup]")  # the grid and the top patches in one picture

    # Mistakes: the matrix drawn is the one computed here; clicking a cell shows exactly its images.
    choose_view(page, "mistakes")
    wait_for("the confusion matrix", lambda: chart_with_key(page, "inspect.confusion").count() > 0, PAGE_DEADLINE)
    wait_idle(page)
    confusion_chart = only_chart(page, "inspect.confusion")
    assert trace_z(confusion_chart).shape == (10, 10)
    drawn = confusion_chart.evaluate("element => Array.from(element._fullData[0].text, row => Array.from(row))")
    assert np.asarray(drawn, dtype=np.int64).tolist() == matrix.tolist()
    assert int(matrix.sum()) == len(predictions.labels) == 10_000
    # The largest off-diagonal cell that fits on one gallery page, so every one of its images is shown.
    off_diagonal = np.where(np.eye(10, dtype=bool) | (matrix > GALLERY_PAGE), -1, matrix)
    true_class, predicted_class = (int(value) for value in np.unravel_index(off_diagonal.argmax(), matrix.shape))
    expected = mistakes.cell(predictions, true_class, predicted_class)
    assert len(expected) == matrix[true_class, predicted_class] > 0
    box = confusion_chart.bounding_box()
    # The cell's centre in page pixels, from Plotly's own axes (the square cells shrink the plot inside the chart).
    x, y = confusion_chart.evaluate(
        f"element => {{ const layout = element._fullLayout; return [layout.xaxis._offset + layout.xaxis.l2p({predicted_class}), "
        f"layout.yaxis._offset + layout.yaxis.l2p({true_class})]; }}"
    )
    page.mouse.click(box["x"] + x, box["y"] + y)
    heading = en("inspect.mistakes.cell", label=names[true_class], prediction=names[predicted_class], count=len(expected))
    wait_for(f"the cell {true_class}→{predicted_class} heading", lambda: heading in main_text(page), PAGE_DEADLINE)
    wait_for("the cell's tiles", lambda: len(shown_tiles(page)) == len(expected), PAGE_DEADLINE)
    wait_idle(page)
    assert page.get_by_role("combobox", name=en("inspect.mistakes.true_class"), exact=True).input_value() == names[true_class]
    assert page.get_by_role("combobox", name=en("inspect.mistakes.predicted_class"), exact=True).input_value() == names[predicted_class]
    tiles = shown_tiles(page)
    assert sorted(tiles) == sorted(expected.tolist()), (tiles, expected)
    screenshot(page, "inspect-mistakes.png")

    # One of its mistakes opens in Activations: that image's caption and one heading per layer.
    index = int(expected[0])
    page.locator(f"[data-testid=stMain] .st-key-inspect-tile-{index}").get_by_role("button", name=en("inspect.mistakes.open")).click()
    image_caption = en(
        "inspect.image.caption", index=index, label=names[true_class], prediction=names[predicted_class],
        confidence=run_views.percent(float(predictions.confidence[index])),
    )  # fmt: skip
    wait_for(f"test image {index} in Activations", lambda: image_caption in main_text(page), PAGE_DEADLINE)
    layers = activation_probes.activations(loaded.model, loaded.spec, loaded.splits.test_images[index]).layers
    wait_for("every layer's output", lambda: charts(page).count() >= 1 + len(layers), PAGE_DEADLINE)
    wait_idle(page)
    button = page.locator("[data-testid=stMain] [data-testid=stButtonGroup]").get_by_role("radio", name=en("inspect.view.activations"), exact=True)
    assert button.get_attribute("aria-checked") == "true"
    text = main_text(page)
    for output in layers:
        shape = "×".join(str(side) for side in output.values.shape)
        assert en("inspect.activations.layer", layer=output.index + 1, description=output.description, shape=shape) in text
    first_maps = only_chart(page, f"inspect.activations.layer{layers[0].index}")
    np.testing.assert_allclose(trace_z(first_maps, 0), layers[0].values[0], rtol=1e-5, atol=1e-5)
    screenshot(page, "inspect-activations.png")

    # Filters: the keyboard moves the epoch slider back to epoch 1; the caption and the tiles follow.
    choose_view(page, "filters")
    wait_for("the filters again", lambda: caption(2) in main_text(page), PAGE_DEADLINE)
    wait_idle(page)
    slider = page.locator("[data-testid=stMain] [data-testid=stSlider] input[type=range]").first
    slider.focus()
    slider.press("ArrowLeft")
    wait_for("the epoch-1 caption", lambda: caption(1) in main_text(page), PAGE_DEADLINE)
    wait_idle(page)
    epoch_one, _, _ = loading.load(epochs[1])
    np.testing.assert_allclose(trace_z(only_chart(page, "inspect.filters.grid"), 0), filter_probes.filter_grid(epoch_one, layer, 0).weights[0], atol=1e-6)
    slider.press("ArrowRight")
    wait_for("the epoch-2 caption again", lambda: caption(2) in main_text(page), PAGE_DEADLINE)
    wait_idle(page)

    # The other views, for their screenshots: each draws its charts without an exception.
    for view, key, pictures in (("attribution", "inspect.attribution.", 3), ("ensembles", "inspect.ensemble_accuracies", 1), ("diagnostics", "diagnostics.", 4)):
        choose_view(page, view)
        wait_for(f"the {view} charts", lambda: chart_with_key(page, key).count() >= pictures, PAGE_DEADLINE)
        wait_idle(page)
        screenshot(page, f"inspect-{view}.png")

    # Korean: the page and its view names in Korean, and no exception.
    choose_view(page, "mistakes")
    wait_for("the confusion matrix again", lambda: chart_with_key(page, "inspect.confusion").count() > 0, PAGE_DEADLINE)
    wait_idle(page)
    page.locator("[data-testid=stSidebar] [data-testid=stRadio] label", has_text=i18n.LANGUAGES["ko"]).click()
    wait_for("the Korean title", lambda: page.locator("h1", has_text=ko("inspect.title")).count() > 0, PAGE_DEADLINE)
    wait_for("the Korean confusion matrix", lambda: ko("inspect.mistakes.confusion") in main_text(page), PAGE_DEADLINE)
    wait_idle(page)
    views = page.locator("[data-testid=stMain] [data-testid=stButtonGroup]").inner_text()
    for view in ("filters", "activations", "mistakes", "attribution", "ensembles", "diagnostics"):
        assert ko(f"inspect.view.{view}") in views, f"the {view} view is not named in Korean: {views!r}"
        assert en(f"inspect.view.{view}") not in views, f"the {view} view is still named in English: {views!r}"
    assert en("inspect.mistakes.confusion") not in main_text(page)
    assert page.locator(NO_EXCEPTION).count() == 0
    print(f"\nbrowser: the Inspect journey took {time.monotonic() - started:.1f} s after training")
