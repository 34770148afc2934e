"""The Adversarial lab in a real browser (headless Chromium): attack a test digit with FGSM and see the
prediction change, in English and in Korean, at 1400×1000 and at a projector's 1024×768.

A real `streamlit run app.py` server serves a throw-away runs directory holding one short `fast` run,
trained here before the server starts. Which test image FGSM flips at the page's default ε is found
with `core` first; the test types that index into the page and waits for the prediction `core` gives.
On the way it checks the layout as tests/test_browser_layout.py does (no label broken inside a word,
no Korean word split, nothing cut) and saves screenshots to `bench-out/screenshots/` (or
LAYERLAB_SCREENSHOTS): attack-<language>-<size>.png, and the fooling-image and robustness views.

Run it alone with `.venv/bin/python -m pytest tests/test_browser_attack.py -q -s`.
"""

from __future__ import annotations

import time

import pytest

from core.jobs.store import RunStore
from core.views import attack_view, i18n
from tests.browser_support import PAGE_DEADLINE, assert_no_exception, metric_value, serving, wait_for, wait_idle
from tests.inspect_support import train_run
from tests.test_browser import SCREENSHOTS
from tests.test_browser_layout import SIZES, check_layout


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("attack-runs")
    store = RunStore(runs)
    run_id = train_run(store, name="fast")
    network = attack_view.load_attacked(store, [run_id])
    epsilon = attack_view.EPSILON["linf"].default
    index, outcome = next(
        (index, outcome)
        for index in range(1, 500)  # not 0, which the page shows first
        if (outcome := attack_view.attack_image(network, attack_view.test_subject(network, index), "fgsm", epsilon)).predicted_after
        != outcome.predicted_before
    )
    with serving(runs, run_id=run_id, index=index, outcome=outcome) as served:
        yield served




def choose_view(page, language: str, name: str) -> None:
    label = i18n.translate(language, f"attack.view.{name}")
    button = page.locator("[data-testid=stMain] [data-testid=stButtonGroup]").get_by_role("radio", name=label, exact=True)
    button.click()
    wait_for(f"the {label} view", lambda: button.get_attribute("aria-checked") == "true", 30)
    wait_idle(page)


def photograph(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, page.viewport_size["height"] - 1)  # no hover tooltip in the picture
    time.sleep(0.8)  # let the charts finish their first resize
    assert_no_exception(page)
    page.screenshot(path=str(SCREENSHOTS / name))
    assert (SCREENSHOTS / name).stat().st_size < 1_500_000


@pytest.mark.parametrize("language", ["en", "ko"])
def test_fgsm_changes_the_prediction_of_a_test_digit(server, browser, language):
    text = lambda key, **values: i18n.translate(language, key, **values)  # noqa: E731
    outcome = server["outcome"]
    context = browser.new_context(viewport=SIZES["1400x1000"], locale="en-US")
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(f"{server['url']}/attack?lang={language}")
        wait_for("the lab", lambda: page.locator("h1", has_text=text("attack.title")).count() > 0, PAGE_DEADLINE)
        wait_for("the first prediction", lambda: metric_value(page, text("attack.after")) is not None, PAGE_DEADLINE)
        wait_idle(page)
        # The first visit of a fresh server (the English test's) must find the page by its name: no "page not found" dialog.
        assert page.locator("[role=dialog]").count() == 0, page.locator("[role=dialog]").first.inner_text()
        field = (
            page.locator("[data-testid=stNumberInput]")
            .filter(has=page.get_by_text(text("attack.index"), exact=True))
            .first.locator("input")
        )
        field.fill(str(server["index"]))
        field.press("Enter")
        wait_for(
            f"FGSM's prediction {outcome.predicted_after} for test image {server['index']}",
            lambda: metric_value(page, text("attack.before")) == str(outcome.predicted_before)
            and metric_value(page, text("attack.after")) == str(outcome.predicted_after),
            30,
        )
        wait_idle(page)
        assert metric_value(page, text("attack.after")) != metric_value(page, text("attack.before"))
        verdict = text("attack.verdict.fooled", before=outcome.predicted_before, after=outcome.predicted_after, target="").replace("**", "")
        assert page.get_by_text(verdict).count() > 0, verdict
        for size in ("1400x1000", "1024x768"):
            page.set_viewport_size(SIZES[size])
            wait_idle(page)
            time.sleep(0.5)
            check_layout(page, f"the lab at {size} in {language}")
            photograph(page, f"attack-{language}-{size}.png")
        if language == "en":
            page.set_viewport_size(SIZES["1400x1000"])
            choose_view(page, language, "fooling")
            wait_for("the fooling image", lambda: metric_value(page, text("attack.fool_confidence", target="0")) is not None, 60)
            photograph(page, "attack-fooling.png")
            choose_view(page, language, "robustness")
            images = page.locator("[data-testid=stNumberInput]").filter(has=page.get_by_text(text("attack.curve_images"), exact=True))
            images.first.locator("input").fill("50")  # the quickest curve the page allows: 50 images, 7 values of ε, FGSM and PGD-10
            images.first.locator("input").press("Enter")
            wait_idle(page)
            page.get_by_role("button", name=text("attack.curve_start")).click()
            wait_for("the robustness curve", lambda: page.locator("[data-testid=stMain] .js-plotly-plot").count() > 0, 120)
            wait_idle(page)
            photograph(page, "attack-robustness.png")
    except Exception:
        failure = server["runs"].parent / f"attack-failure-{language}.png"
        page.screenshot(path=str(failure))
        print(f"\nbrowser: the page at the failure is in {failure}; the server's log in {failure.parent / 'streamlit.log'}")
        raise
    finally:
        context.close()
