"""An ensemble on the Draw page: `core.drawing.ensemble` combines a drawing's or my digits' predictions exactly
as `core.probes.ensembles.combine` combines a test split's (vote and average can disagree, and each follows
combine), and the page shows the ensemble's digit, the averaged probabilities, each member's digit, and the
ensemble's row on my digits, all as core computes them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from core.drawing import digits, ensemble, preprocess, synthetic
from core.jobs import runner
from core.probes import ensembles
from core.probes.mistakes import Predictions
from core.training import checkpoint
from core.training.presets import get as get_preset
from tests.test_app_draw import KIM, app_store, draw, en, finished_run, metric, open_draw  # noqa: F401 — fixtures and helpers


class FixedAnswer(nn.Module):
    """A "network" that gives every image the same probabilities: members whose answers a test chooses."""

    def __init__(self, probabilities: list[float]):
        super().__init__()
        self.logits = nn.Parameter(torch.log(torch.tensor(probabilities)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(images), -1)


def answering(digit_probabilities: dict[int, float]) -> FixedAnswer:
    rest = (1.0 - sum(digit_probabilities.values())) / (10 - len(digit_probabilities))
    return FixedAnswer([digit_probabilities.get(digit, rest) for digit in range(10)])


# One run is sure of a 3; two lean to a 5 with a 3 close behind: two votes for 5, but 3 has the larger mean.
MEMBERS = [answering({3: 0.91}), answering({5: 0.40, 3: 0.35}), answering({5: 0.40, 3: 0.35})]
IMAGE = np.zeros((28, 28), dtype=np.uint8)


@pytest.mark.parametrize(("combination", "expected"), [("vote", 5), ("average", 3)])
def test_a_drawing_is_combined_as_combine_combines_a_split(combination, expected):
    prediction = ensemble.predict(MEMBERS, IMAGE, combination)
    members = [Predictions(np.zeros(1, dtype=np.int64), model(torch.zeros(1, 1, 28, 28)).softmax(1).detach().numpy()) for model in MEMBERS]
    assert prediction.digit == expected == int(ensembles.combine(members, combination).predicted[0])
    assert prediction.member_digits == [3, 5, 5]
    assert np.allclose(prediction.probabilities, np.mean([member.probabilities[0] for member in members], axis=0), atol=1e-6)


def test_an_ensemble_of_one_is_that_run():
    prediction = ensemble.predict(MEMBERS[1:2], IMAGE, "vote")
    assert prediction.digit == 5 and prediction.agreeing == 1
    assert np.allclose(prediction.probabilities, prediction.member_probabilities[0])


def test_my_digits_are_scored_for_the_ensemble_as_combine_decides(store, mnist):
    digit_set = digits.DigitSet(store.directory, "kim")
    for index, label in enumerate([3, 5, 5, 7]):
        digit_set.add(mnist.test_images[index].numpy(), label)
    voted, averaged = ensemble.evaluate(MEMBERS, digit_set, "vote"), ensemble.evaluate(MEMBERS, digit_set, "average")
    assert (voted.correct, voted.per_label_correct[5], averaged.correct, averaged.per_label_correct[3]) == (2, 2, 1, 1)
    assert voted.total == averaged.total == 4


def test_runs_of_different_datasets_do_not_make_an_ensemble():
    assert ensemble.same_dataset(["mnist", "mnist"]) == "mnist"
    with pytest.raises(preprocess.DrawingError) as refused:
        ensemble.same_dataset(["mnist", "fashion-mnist"])
    assert "different datasets" in str(refused.value)


@pytest.fixture
def second_run(app_store, finished_run) -> int:  # noqa: F811 — the fixtures imported above
    """Another short run, with another seed and rate, so the members need not agree."""
    preset = get_preset("logistic-regression")
    settings = preset.train_settings(epochs=1, train_subset=1000, learning_rate=0.05, seed=7, device="cpu", eval_batch_size=2000)
    run_id = app_store.create(preset.network, settings.to_dict(), name="second", owner="test")
    assert runner.execute(app_store, run_id) == "succeeded"
    return run_id


def test_the_page_shows_the_ensembles_digit_and_each_members(app_store, finished_run, second_run, mnist):  # noqa: F811
    saved = digits.DigitSet(app_store.directory, KIM)
    for index in range(6):
        saved.add(mnist.test_images[index].numpy(), int(mnist.test_labels[index]))
    at = open_draw()
    at.radio(key="draw.mode").set_value("ensemble").run()
    assert at.multiselect(key="draw.members").value == [second_run, finished_run]  # newest first
    canvas = synthetic.as_drawn(mnist.test_images[8].numpy(), np.random.default_rng(11))
    draw(at, canvas)
    models = [checkpoint.load(app_store.best_checkpoint_path(run_id))[0] for run_id in (second_run, finished_run)]
    for combination in ensemble.COMBINATIONS:
        at.radio(key="draw.combination").set_value(combination).run()
        assert not at.exception, [error.value for error in at.exception]
        expected = ensemble.predict(models, preprocess.prepare(canvas).image, combination)
        assert metric(at, en("draw.prediction")) == str(expected.digit)
        captions = [element.value for element in at.caption]
        assert en("draw.confidence", percent=f"{expected.probabilities[expected.digit]:.1%}") in captions  # the averaged probability
        said = ", ".join(f"#{run_id} → {digit}" for run_id, digit in zip((second_run, finished_run), expected.member_digits))
        assert en("draw.members_say", members=said) in captions
        figures = {figure["data"][0]["type"]: figure for figure in (json.loads(chart.proto.spec) for chart in at.get("plotly_chart"))}
        assert np.allclose(figures["bar"]["data"][0]["y"], 100 * expected.probabilities, atol=1e-4)  # all ten averaged probabilities
        assert figures["bar"]["layout"]["yaxis"]["title"]["text"] == en("draw.probability_averaged")

        report = ensemble.evaluate(models, saved, combination)
        row = en("draw.ensemble_row", combination=en(f"inspect.ensembles.{combination}"), accuracy=f"{report.accuracy:.1%}")
        strip = figures["heatmap"]["data"][0]
        assert strip["y"][0] == row  # the ensemble's row on my digits, above each run's
        assert strip["text"][0] == [
            f"{right}/{total}" if total else "" for right, total in zip(report.per_label_correct, report.per_label_total)
        ]
