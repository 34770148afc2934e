"""The printable run report opens in headless Chromium with no network and draws every figure; in Korean too.

The report of a short real run is written to a file and opened from disk while every request
that is not for that file is refused, so a figure that needed the internet (plotly.js from a
CDN) would stay empty. A screenshot of each language goes to bench-out/screenshots/ (or
LAYERLAB_SCREENSHOTS); `make screenshots` copies them into docs/.
"""

from __future__ import annotations

import pytest

from core.jobs.store import RunStore
from core.views import report
from core.views.i18n import translate
from tests.browser_support import wait_for
from tests.conftest import short_fast_run
from tests.test_browser import SCREENSHOTS

FIGURES = ("curves", "filters", "confusion", "per-class")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[RunStore, int]:
    store = RunStore(tmp_path_factory.mktemp("report-runs"))
    return store, short_fast_run(store, epochs=2, train_subset=3000, name="fast", owner="ji-woo")


@pytest.mark.parametrize("language", ["en", "ko"])
def test_the_report_opens_offline_and_draws_every_figure(finished, browser, tmp_path, language):
    store, run_id = finished
    path = tmp_path / f"report-{language}.html"
    path.write_text(report.run_report(store, run_id, language), encoding="utf-8")
    context = browser.new_context(viewport={"width": 1100, "height": 1400}, locale="ko-KR" if language == "ko" else "en-US")
    refused = []

    def only_the_file(route):
        if route.request.url == path.as_uri():
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_file)
    page = context.new_page()
    try:
        page.goto(path.as_uri())
        for figure in FIGURES:
            wait_for(f"the {figure} figure drawn", lambda: page.locator(f"[data-figure='{figure}'] .main-svg").count() > 0, 30)
        # The mistakes are inline PNGs, drawn without the network too (naturalWidth is 0 for an image that failed).
        wait_for("the mistakes' images", lambda: page.locator("[data-figure='mistakes'] img").count() > 0, 10)
        assert page.locator("[data-figure='mistakes'] img").evaluate_all("images => images.every(image => image.naturalWidth === 84)")
        assert page.locator("h2", has_text=translate(language, "report.network")).count() == 1
        assert page.locator("h2", has_text=translate(language, "report.curves")).count() == 1
        assert refused == [], refused
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"report-{language}.png"), full_page=False)
    finally:
        context.close()
