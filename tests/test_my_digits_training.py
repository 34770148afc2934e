"""A new run can add its owner's "my digits" to its training data: the runner really puts them in front
of the training images and records how many, a missing, empty or damaged set trains on the dataset
alone with a note, the CLI's `--set include_my_digits=true` reaches the setting, the Train page offers
the checkbox with the count (and greys it out, saying why, without a name or digits), and the Runs
page shows what a run trained with."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.drawing import digits
from core.jobs import access, runner, training_data
from core.jobs.store import RunStore
from core.training.presets import get as get_preset
from core.training.settings import TrainSettings, parse_assignment
from core.views import i18n, run_views

APP = str(Path(__file__).resolve().parent.parent / "app.py")
SAVED = 5  # digits in the owner's set


def en(key: str, **values) -> str:
    return i18n.translate("en", key, **values)


@pytest.fixture
def app_store(runs_dir) -> RunStore:
    st.cache_resource.clear()  # `service()` is cached per process; make it use this test's runs directory.
    st.cache_data.clear()
    yield RunStore(runs_dir)
    st.cache_resource.clear()
    st.cache_data.clear()


def save_digits(store: RunStore, owner: str, mnist, count: int = SAVED) -> digits.DigitSet:
    """`count` MNIST test digits saved as the owner's own, labelled 9 − their true label so they differ from the training split's."""
    digit_set = digits.DigitSet(store.directory, owner)
    for index in range(count):
        digit_set.add(mnist.test_images[index].numpy(), 9 - int(mnist.test_labels[index]))
    return digit_set


def tiny_run(store: RunStore, owner: str, **settings) -> int:
    """A logistic-regression run of a few steps on a small subset: it trains in seconds."""
    preset = get_preset("logistic-regression")
    values = preset.train_settings(epochs=1, max_steps=3, train_subset=64, batch_size=32, device="cpu", **settings)
    return store.create(preset.network, values.to_dict(), name="mine", owner=owner)


def train_recording_splits(monkeypatch) -> list:
    """Replace the runner's `train` with one that keeps the splits it was given, then trains as before."""
    seen = []
    real_train = runner.train

    def recording_train(summary, settings, splits, callbacks, resume_state=None):
        seen.append(splits)
        return real_train(summary, settings, splits, callbacks, resume_state=resume_state)

    monkeypatch.setattr(runner, "train", recording_train)
    return seen


KEYS = {"kim": access.new_key(), "lee": access.new_key()}  # each browser's owner key; "my digits" are kept under its hash


def open_page(page: str, owner: str, browser: str | None = None) -> AppTest:
    """The page as the browser `browser` (default: the one named `owner`), with `owner` typed as its name."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["key"] = KEYS[browser or owner]
    at.session_state["owner"] = owner
    at.session_state["network"] = get_preset("logistic-regression").network
    at.session_state["preset"] = "logistic-regression"
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def test_the_runner_puts_my_digits_in_front_of_the_training_images_and_the_runs_page_says_so(app_store, mnist, monkeypatch):
    digit_set = save_digits(app_store, "kim", mnist)
    seen = train_recording_splits(monkeypatch)
    run_id = tiny_run(app_store, "kim", include_my_digits=True)
    assert runner.execute(app_store, run_id) == "succeeded"

    (splits,) = seen
    images, labels = digit_set.tensors()
    assert len(splits.train_images) == len(mnist.train_images) + SAVED
    assert np.array_equal(splits.train_images[:SAVED].numpy(), images.numpy())
    assert splits.train_labels[:SAVED].tolist() == labels.tolist()
    assert np.array_equal(splits.train_images[SAVED:].numpy(), mnist.train_images.numpy())  # the dataset follows, unchanged
    assert len(mnist.train_images) == 50_000  # the cached dataset itself was not changed
    assert training_data.read(app_store.run_directory(run_id)) == training_data.TrainingData(SAVED)

    at = open_page("pages/runs.py", "kim")
    at.session_state[at.dataframe[0].key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    assert en("runs.my_digits", count=SAVED) in [element.value for element in at.caption]


def test_a_damaged_set_still_trains_with_none_of_them_and_a_note(app_store, mnist, monkeypatch):
    digit_set = save_digits(app_store, "kim", mnist, count=2)
    (digit_set.directory / digits.INDEX).write_text("{not json", encoding="utf-8")
    seen = train_recording_splits(monkeypatch)
    run_id = tiny_run(app_store, "kim", include_my_digits=True)
    assert runner.execute(app_store, run_id) == "succeeded"
    assert len(seen[0].train_images) == len(mnist.train_images)
    record = training_data.read(app_store.run_directory(run_id))
    assert record.my_digits == 0 and record.note.code == "run.my_digits_unreadable"
    text = run_views.my_digits_text(app_store, app_store.get(run_id, with_metrics=False), "ko")
    assert text.startswith(i18n.translate("ko", "runs.my_digits", count=0)) and "내 숫자를 추가하지 않았습니다" in text


@pytest.mark.parametrize(
    ("owner", "saved", "dataset", "code"),
    [
        ("", 0, "mnist", "run.my_digits_no_owner"),
        ("kim", 0, "mnist", "run.my_digits_empty"),
        ("kim", 2, "fashion-mnist", "run.my_digits_not_mnist"),
    ],
)
def test_no_digits_are_added_without_an_owner_a_digit_or_mnist(store, mnist, owner, saved, dataset, code):
    save_digits(store, "kim", mnist, count=saved)
    run = store.get(tiny_run(store, owner, include_my_digits=True, dataset=dataset), with_metrics=False)
    splits = dataclasses.replace(mnist, dataset=dataset)
    assert runner.with_my_digits(store, run, splits) is splits
    record = training_data.read(store.run_directory(run.id))
    assert record.my_digits == 0 and record.note.code == code


def test_a_run_with_an_owner_key_takes_that_browsers_digits_not_the_typed_names(store, mnist):
    save_digits(store, "kim", mnist)  # a set kept under the name "kim" (before classroom mode)
    lee = access.key_hash(KEYS["lee"])
    run_id = store.create(get_preset("logistic-regression").network, TrainSettings(include_my_digits=True).to_dict(), owner="kim",
                          owner_key_hash=lee)  # fmt: skip
    run = store.get(run_id, with_metrics=False)
    assert runner.with_my_digits(store, run, mnist) is mnist  # lee's browser has none
    assert training_data.read(store.run_directory(run_id)).note.code == "run.my_digits_empty"
    save_digits(store, lee, mnist, count=3)
    assert len(runner.with_my_digits(store, run, mnist).train_labels) == len(mnist.train_labels) + 3


def test_a_run_that_did_not_ask_records_nothing(store):
    run = store.get(tiny_run(store, "kim"), with_metrics=False)
    assert training_data.read(store.run_directory(run.id)) is None
    assert run_views.my_digits_text(store, run) is None


def test_the_command_line_sets_it_like_any_switch():
    name, value = parse_assignment("include_my_digits=true")
    assert TrainSettings().with_values(**{name: value}).include_my_digits is True
    assert TrainSettings().include_my_digits is False  # off unless asked for


def test_the_train_page_offers_my_digits_with_their_count(app_store, mnist):
    save_digits(app_store, access.key_hash(KEYS["kim"]), mnist)
    at = open_page("pages/train.py", "kim")
    box = at.checkbox(key="train.include_my_digits")
    assert box.label == en("train.my_digits_checkbox", count=SAVED) and not box.disabled and not box.value
    box.check().run()
    assert not at.exception, [error.value for error in at.exception]
    assert at.session_state["settings"]["include_my_digits"] is True  # what the Train button submits


@pytest.mark.parametrize("owner", ["lee", "kim"])
def test_the_train_page_greys_the_checkbox_out_and_says_why(app_store, mnist, owner):
    save_digits(app_store, access.key_hash(KEYS["kim"]), mnist)  # kim's browser's digits
    # Lee's browser is offered none of them, even with "kim" typed as its name.
    at = open_page("pages/train.py", owner, browser="lee")
    reason = "empty"
    box = at.checkbox(key="train.include_my_digits.unavailable")
    assert box.label == en("train.my_digits_checkbox", count=0) and box.disabled and not box.value
    assert en(f"train.my_digits_hint.{reason}") in [element.value for element in at.caption]
    assert at.session_state["settings"]["include_my_digits"] is False
