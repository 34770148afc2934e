"""Shared fixtures: real MNIST, and a fresh runs directory per test so runs never leak between tests."""

from __future__ import annotations

import sys

import pytest

from core.data import datasets as data
from core.jobs.store import RunStore


@pytest.fixture(autouse=True)
def real_main_module():
    """Put `sys.modules["__main__"]` back after each test.

    AppTest runs a page script as `__main__` and leaves it there; a process started later with
    multiprocessing's "spawn" re-runs `__main__`'s file first, so it would run that script (an
    `AppTest.from_function` script even fails there) instead of starting cleanly.
    """
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def mnist() -> data.Splits:
    """The real MNIST splits (fetched and verified once by `make data`)."""
    return data.load("mnist")


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """An empty runs directory, also exported as LAYERLAB_RUNS for subprocesses."""
    directory = tmp_path / "runs"
    monkeypatch.setenv("LAYERLAB_RUNS", str(directory))
    return directory


@pytest.fixture
def store(runs_dir) -> RunStore:
    return RunStore(runs_dir)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, for the browser tests (tests/browser_support.py launches it)."""
    from tests.browser_support import launch_browser

    yield from launch_browser()


@pytest.fixture(scope="session")
def trained_conv(mnist):
    """The fast preset's conv net after 200 Adam steps (about 97.5% test accuracy), in eval mode on the CPU.

    A naturally trained network worth attacking, trained once per session in a few seconds;
    tests that change it (its `.grad`, its mode) must work on a `copy.deepcopy` of it.
    """
    from core.training import presets
    from core.training.loop import train

    preset = presets.get("fast")
    result = train(preset.network, preset.train_settings(epochs=1, max_steps=200, device="cpu"), mnist)
    assert result.status == "succeeded", result.message
    return result.model.cpu().eval()


def short_fast_run(store: RunStore, epochs: int, train_subset: int, name: str, owner: str) -> int:
    """A real, finished run of the `fast` preset on the first `train_subset` training images (for exports and reports)."""
    from core.jobs import runner
    from core.training import presets
    from core.training.settings import TrainSettings

    preset = presets.get("fast")
    settings = TrainSettings.from_dict({**preset.settings, "epochs": epochs, "train_subset": train_subset, "device": "cpu"})
    run_id = store.create(preset.network, settings.to_dict(), name=name, owner=owner)
    assert runner.execute(store, run_id) == "succeeded"
    return run_id
