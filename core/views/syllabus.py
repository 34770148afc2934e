"""The Lessons page's content: lessons that rerun the source texts' experiments, and where a learner stands in each.

A lesson (`assets/lessons/<id>.json`) is a short explanation and a list of steps in English
and Korean. Each step is one experiment: a preset's network (or one written in the lesson)
with the preset's settings and the step's changes, the figure its source reports, and the
view that shows its result. This module loads and checks lessons, turns a step into the
network and settings to train, and finds a learner's own runs of each step in the run store
(same network, same settings apart from the number of epochs and the seed), so progress
through a lesson belongs to the owner key that trained it and survives any refresh.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from core.errors import LayerLabError
from core.jobs.store import Run
from core.training import presets
from core.training.settings import TrainSettings
from core.views import run_views
from core.views.i18n import LANGUAGES

LESSON_DIR = Path(__file__).resolve().parents[2] / "assets" / "lessons"
# Settings a learner may change and still be running the step: how long, and which random start.
FREE_SETTINGS = frozenset({"epochs", "seed"})
# Where a step's result is seen: the page the step's "Open" link goes to.
VIEWS = ("train", "runs", "inspect", "attack", "draw")
# Steps that train nothing: a neuron to play with, the "next sample" classifier (ml4a) over the run of the step
# it `uses`, and a pointer to a view that shows a pass through the network layer by layer.
DEMOS = ("neuron", "next-sample", "forward-pass")


class LessonError(LayerLabError, ValueError):
    """A lesson file that cannot be used: unknown preset, missing translation, bad settings."""


@dataclass(frozen=True)
class Step:
    id: str
    title: dict[str, str]  # language → text
    text: dict[str, str]
    network: dict
    settings: dict  # every TrainSettings field the step fixes (its preset's, then its own changes)
    preset: str | None
    claim: float | None  # the source's figure: test accuracy in percent
    claim_epochs: int | None
    view: str
    ensemble: int = 0  # > 0: the step's result is this many runs of it voting (the Inspect page's ensemble view)
    # A random search (Ng, course 2): setting name → (low, high) exponents of 10, sampled uniformly on that log scale,
    # for `search_runs` runs; the searched settings are free, like epochs and seed.
    search: dict[str, tuple[float, float]] = field(default_factory=dict)
    search_runs: int = 0
    demo: str = ""  # one of DEMOS: the step trains nothing
    uses: str = ""  # for "next-sample" and "forward-pass": the id of the step whose run they show

    def train_settings(self, **overrides) -> TrainSettings:
        return TrainSettings.from_dict({**self.settings, **overrides})


@dataclass(frozen=True)
class Lesson:
    id: str
    source: dict[str, str]
    title: dict[str, str]
    intro: dict[str, str]
    steps: tuple[Step, ...]

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise LessonError("lesson.unknown_step", lesson=self.id, step=repr(step_id))


def _texts(values: dict, field: str, where: str) -> dict[str, str]:
    texts = values.get(field)
    if not isinstance(texts, dict) or any(not isinstance(texts.get(language), str) or not texts[language].strip() for language in LANGUAGES):
        raise LessonError("lesson.missing_text", where=where, field=field, languages=", ".join(LANGUAGES))
    return {language: texts[language].strip() for language in LANGUAGES}


def _step(values: dict, lesson_id: str) -> Step:
    step_id = str(values.get("id", ""))
    where = f"{lesson_id}/{step_id}"
    preset = presets.get(values["preset"]) if values.get("preset") else None
    network = values.get("network") or (preset.network if preset else None)
    demo = str(values.get("demo", ""))
    if demo and demo not in DEMOS:
        raise LessonError("lesson.unknown_demo", where=where, value=repr(demo), names=", ".join(DEMOS))
    if demo:
        network = network or {}
    elif not isinstance(network, dict):
        raise LessonError("lesson.no_network", where=where)
    settings = {**(preset.settings if preset else {}), **values.get("settings", {})}
    TrainSettings.from_dict(settings).validate()  # SettingsError names the setting
    claim = values.get("claim", preset.book_accuracy if preset and "claim" not in values else None)
    claim_epochs = values.get("claim_epochs", preset.book_epochs if preset and "claim_epochs" not in values else None)
    search = {name: (float(low), float(high)) for name, (low, high) in values.get("search", {}).items()}
    if search:
        trial = {name: 10.0**high for name, (_, high) in search.items()}
        TrainSettings.from_dict({**settings, **trial}).validate()  # the range's top must be a valid setting too
    view = values.get("view", "runs")
    if view not in VIEWS:
        raise LessonError("lesson.unknown_view", where=where, value=repr(view), names=", ".join(VIEWS))
    return Step(
        id=step_id, title=_texts(values, "title", where), text=_texts(values, "text", where), network=network, settings=settings,
        preset=preset.name if preset else None, claim=claim, claim_epochs=claim_epochs, view=view, ensemble=int(values.get("ensemble", 0)),
        search=search, search_runs=int(values.get("search_runs", 8 if search else 0)), demo=demo, uses=str(values.get("uses", "")),
    )  # fmt: skip


def parse(values: dict, lesson_id: str) -> Lesson:
    steps = tuple(_step(step, lesson_id) for step in values.get("steps", []))
    if not steps or len({step.id for step in steps}) != len(steps) or not all(step.id for step in steps):
        raise LessonError("lesson.bad_steps", lesson=lesson_id)
    trained = {step.id for step in steps if not step.demo}
    for step in steps:
        if step.demo in ("next-sample", "forward-pass") and step.uses not in trained:
            raise LessonError("lesson.bad_uses", where=f"{lesson_id}/{step.id}", value=repr(step.uses))
    return Lesson(
        id=lesson_id, source=_texts(values, "source", lesson_id), title=_texts(values, "title", lesson_id), intro=_texts(values, "intro", lesson_id),
        steps=steps,
    )  # fmt: skip


@lru_cache(maxsize=1)
def all_lessons() -> dict[str, Lesson]:
    """Every lesson in `assets/lessons/`, in the order of their files' `order` field."""
    loaded = []
    for path in sorted(LESSON_DIR.glob("*.json")):
        values = json.loads(path.read_text(encoding="utf-8"))
        loaded.append((values.get("order", 0), path.stem, parse(values, path.stem)))
    return {lesson_id: lesson for _, lesson_id, lesson in sorted(loaded)}


def get(lesson_id: str) -> Lesson:
    lessons = all_lessons()
    if lesson_id not in lessons:
        raise LessonError("lesson.unknown", value=repr(lesson_id), names=", ".join(lessons))
    return lessons[lesson_id]


@lru_cache(maxsize=256)
def _validated_spec(network_json: str, dataset: str) -> str:
    from core.model import network as networks  # torch: only matching runs against a step needs the built spec

    return json.dumps(networks.validate(json.loads(network_json), dataset).spec, sort_keys=True)


def is_run_of(run: Run, step: Step) -> bool:
    """Whether `run` trained this step's experiment: the same network, and the step's settings except epochs and seed."""
    dataset = step.settings.get("dataset", "mnist")
    if run.dataset != dataset:
        return False
    free = FREE_SETTINGS | set(step.search)
    fixed = {name: value for name, value in step.train_settings().to_dict().items() if name in step.settings and name not in free}
    if any(run.settings.get(name) != value for name, value in fixed.items()):
        return False
    return json.dumps(run.spec, sort_keys=True) == _validated_spec(json.dumps(step.network, sort_keys=True), dataset)


@dataclass(frozen=True)
class StepResult:
    """A learner's best run of one step (the one with the highest test accuracy at its best-validation epoch)."""

    step: Step
    runs: tuple[Run, ...]  # all of the learner's runs of the step, newest first
    best: Run | None

    @property
    def done(self) -> bool:
        return self.best is not None and self.best.test_accuracy is not None

    @property
    def active(self) -> bool:
        return any(run.status in ("queued", "running") for run in self.runs)


def progress(lesson: Lesson, runs: list[Run], owner_key_hash: str | None) -> list[StepResult]:
    """Each step with the learner's runs of it; a browser without a key has none."""
    own = run_views.owned_by(runs, owner_key_hash)
    results = []
    for step in lesson.steps:
        if step.demo:
            continue
        matching = tuple(sorted((run for run in own if is_run_of(run, step)), key=lambda run: -run.id))
        measured = [run for run in matching if run.test_accuracy is not None]
        best = max(measured, key=lambda run: (run.test_accuracy, run.epochs_done)) if measured else None
        results.append(StepResult(step, matching, best))
    return results


def sample(step: Step, owner_key_hash: str | None, index: int) -> dict[str, float]:
    """The `index`-th point of this learner's random search: each searched setting drawn uniformly in log10, 3 significant digits.

    Seeded by the owner and the index, so a refresh or a second click never draws a point twice, and two learners differ.
    """
    digest = hashlib.sha256(f"{owner_key_hash}:{step.id}:{index}".encode()).digest()
    generator = random.Random(int.from_bytes(digest[:8], "big"))
    return {name: float(f"{10.0 ** generator.uniform(low, high):.3g}") for name, (low, high) in sorted(step.search.items())}


def search_points(result: StepResult) -> list[dict]:
    """The finished runs of a search step: their searched settings and best validation accuracy, for the scatter plot."""
    points = []
    for run in result.runs:
        if run.best_validation_accuracy is None:
            continue
        points.append({"id": run.id, "accuracy": run.best_validation_accuracy, **{name: run.settings.get(name) for name in result.step.search}})
    return points


ACTIVATIONS = {
    "sigmoid": lambda z: 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0,
    "tanh": math.tanh,
    "relu": lambda z: max(0.0, z),
}


def neuron(inputs: list[float], weights: list[float], bias: float) -> dict[str, float]:
    """One neuron: its weighted sum z = w·x + b and what each activation function makes of it (ml4a's first picture)."""
    z = sum(weight * value for weight, value in zip(weights, inputs, strict=True)) + bias
    return {"z": z, **{name: function(z) for name, function in ACTIVATIONS.items()}}


def next_sample(labels, probabilities, index: int) -> dict:
    """Test digit `index` (wrapping round) as the "next sample" demo shows it: the label, the guess, how sure, and the score so far."""
    count = len(labels)
    index %= count
    row = probabilities[index]
    guess = int(row.argmax())
    seen = index + 1
    right = int((probabilities[:seen].argmax(axis=1) == labels[:seen]).sum())
    return {"index": index, "label": int(labels[index]), "guess": guess, "confidence": float(row[guess]), "right": right, "seen": seen}


PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "ladder.json"


def published_figures(path: Path = PUBLISHED) -> dict[str, dict]:
    """LayerLab's own full-length measurements, by step id (docs/ladder.json, written by the ladder benchmark); {} until measured."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {key: value for key, value in values.get("steps", {}).items() if isinstance(value, dict)}


def table_rows(results: list[StepResult], language: str, published: dict[str, dict]) -> list[dict]:
    """One row a step: the source's figure, LayerLab's published one, the learner's best (with its epochs) and its state."""
    rows = []
    for result in results:
        step, best = result.step, result.best
        ours = published.get(step.id)
        rows.append(
            {
                "step": step.title[language],
                "source": None if step.claim is None else step.claim / 100,
                "source_epochs": step.claim_epochs,
                "layerlab": None if ours is None else ours.get("test_accuracy"),
                "layerlab_epochs": None if ours is None else ours.get("epochs"),
                "yours": None if best is None else best.test_accuracy,
                "your_epochs": None if best is None else best.epochs_done,
                "runs": len(result.runs),
                "active": result.active,
            }
        )
    return rows
