"""Tests for `python -m core`, run as a real subprocess the way a learner or a script runs it: with
`--json` the last stdout line is one JSON object, and bad input ends with a one-line `error:` and
exit status 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.jobs.store import RunStore
from core.model import network as networks
from core.training.presets import PRESET_DIR, all_presets

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAIN_COMMAND = [
    "train", "--preset", "logistic-regression", "--set", "max_steps=30", "--set", "train_subset=2000",
    "--set", "device=cpu",  # `eval` reads the checkpoint on the CPU; training there too keeps the two comparable.
    "--json", "--quiet",
]


GOOD_NETWORK = all_presets()["nielsen-3-two-conv-pool"].network
BAD_NETWORKS = {
    "kernel-too-large": [{"kind": "maxpool", "size": 2}, {"kind": "conv", "filters": 20, "kernel_size": 15}, {"kind": "output"}],
    # Far over MAX_PARAMETERS: the check must come before PyTorch tries to allocate 1.3 TB.
    "far-too-many-parameters": [
        {"kind": "conv", "filters": 4096, "kernel_size": 1},
        {"kind": "dense", "units": 100000},
        {"kind": "output"},
    ],
}


def start_cli(runs_directory: Path, *arguments: str) -> subprocess.Popen:
    environment = {**os.environ, "LAYERLAB_RUNS": str(runs_directory)}
    return subprocess.Popen(
        [sys.executable, "-m", "core", *arguments],
        cwd=PROJECT_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=180)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def last_json(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    error_lines = result.stderr.strip().splitlines()
    assert len(error_lines) == 1 and error_lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in error_lines[0]
    return error_lines[0]


class Commands:
    """Subprocesses started together (each spends about 2 s importing torch) and collected once."""

    def __init__(self, processes: dict[str, subprocess.Popen]):
        self.processes, self.results = processes, {}

    def __getitem__(self, name: str) -> subprocess.CompletedProcess:
        if name not in self.results:
            self.results[name] = finish(self.processes[name])
        return self.results[name]

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    (folder / "good.json").write_text(json.dumps(GOOD_NETWORK), encoding="utf-8")
    for name, network in BAD_NETWORKS.items():
        (folder / f"{name}.json").write_text(json.dumps({"layers": network}), encoding="utf-8")
    return {"files": folder, "trained": folder / "trained-runs", "empty": folder / "empty-runs"}


@pytest.fixture(scope="module")
def commands(folders):
    """Every command that does not need the finished training run, all started at once."""
    files, empty = folders["files"], folders["empty"]
    plan = {
        "train": (folders["trained"], TRAIN_COMMAND),
        "presets": (empty, ["presets", "--json"]),
        "validate-good": (empty, ["validate", str(files / "good.json"), "--json"]),
        **{f"validate-{name}": (empty, ["validate", str(files / f"{name}.json"), "--json"]) for name in BAD_NETWORKS},
        "train-negative-rate": (empty, ["train", "--preset", "logistic-regression", "--set", "learning_rate=-1"]),
        "show-missing-run": (empty, ["runs", "show", "999"]),
    }
    started = Commands({name: start_cli(directory, *arguments) for name, (directory, arguments) in plan.items()})
    yield started
    started.stop()


@pytest.fixture(scope="module")
def trained(commands, folders) -> tuple[dict, Commands]:
    """The training run's JSON, and `runs list`, `runs show` and `eval` of it, started together."""
    result = commands["train"]
    assert result.returncode == 0, result.stderr
    run = last_json(result)
    run_id = str(run["run_id"])
    arguments = {
        "list": ["runs", "list", "--json"],
        "show": ["runs", "show", run_id, "--json"],
        "eval": ["eval", "--run", run_id, "--json"],
    }
    started = Commands({name: start_cli(folders["trained"], *command) for name, command in arguments.items()})
    yield run, started
    started.stop()


def test_presets_json_lists_every_preset_file(commands):
    result = commands["presets"]
    assert result.returncode == 0, result.stderr
    presets = last_json(result)["presets"]
    assert set(presets) == {path.stem for path in PRESET_DIR.glob("*.json")}
    for name, preset in presets.items():
        source = json.loads((PRESET_DIR / f"{name}.json").read_text(encoding="utf-8"))
        assert (preset["title"], preset["network"], preset["settings"]) == (source["title"], source["network"], source["settings"])
        assert preset["book_accuracy"] == source["book_accuracy"]


def test_validate_json_reports_the_shape_table(commands):
    result = commands["validate-good"]
    assert result.returncode == 0, result.stderr
    report = last_json(result)
    summary = networks.validate(GOOD_NETWORK)
    assert report["valid"] is True
    assert report["total_parameters"] == summary.total_parameters
    assert [(row["layer"], row["kind"], tuple(row["output_shape"]), row["parameters"]) for row in report["layers"]] == [
        (row.index + 1, row.kind, row.output_shape, row.parameters) for row in summary.rows
    ]
    assert summary.table() in result.stderr  # The human table goes to stderr when stdout carries JSON.


@pytest.mark.parametrize(
    "name, words", [("kernel-too-large", ["Layer 2", "15×15"]), ("far-too-many-parameters", ["parameters", "50,000,000"])]
)
def test_validate_bad_spec_exits_2_with_one_line(commands, name, words):
    result = commands[f"validate-{name}"]
    line = assert_one_line_error(result, *words)
    assert last_json(result) == {"error": line.removeprefix("error: ")}


def test_train_json_reports_a_finished_run(trained):
    run, _ = trained
    assert isinstance(run["run_id"], int) and run["status"] == "succeeded"
    assert run["epochs"] == 1 == run["best_epoch"]  # 30 steps of 64 images end inside the first epoch of 2,000.
    assert run["seconds"] > 0
    # Thirty steps of softmax regression learn far more than chance (10%).
    assert 0.5 < run["best_validation_accuracy"] <= 1 and 0.5 < run["test_accuracy"] <= 1


def test_runs_list_and_show_describe_the_run(trained):
    run, after = trained
    assert after["list"].returncode == 0, after["list"].stderr
    listed = last_json(after["list"])["runs"]
    assert [entry["run_id"] for entry in listed] == [run["run_id"]]
    assert listed[0]["test_accuracy"] == run["test_accuracy"] and listed[0]["owner"] == "cli"
    assert after["show"].returncode == 0, after["show"].stderr
    details = last_json(after["show"])
    assert details["id"] == run["run_id"] and details["status"] == "succeeded"
    assert details["settings"]["max_steps"] == 30 and details["settings"]["train_subset"] == 2000
    assert details["spec"] == networks.validate(all_presets()["logistic-regression"].network).spec
    assert [metrics["epoch"] for metrics in details["metrics"]] == [1]


def test_eval_confusion_matrix_matches_the_stored_test_accuracy(trained, mnist):
    run, after = trained
    assert after["eval"].returncode == 0, after["eval"].stderr
    report = last_json(after["eval"])
    matrix = report["confusion_matrix"]
    assert len(matrix) == 10 and all(len(row) == 10 for row in matrix)
    assert sum(map(sum, matrix)) == 10_000 == report["total"]
    assert [sum(row) for row in matrix] == mnist.test_labels.bincount(minlength=10).tolist()  # rows are true classes
    diagonal = sum(matrix[index][index] for index in range(10))
    assert report["test_accuracy"] == pytest.approx(diagonal / 10_000, abs=1e-12)
    assert report["errors"] == 10_000 - diagonal
    details = last_json(after["show"])
    best = details["metrics"][details["best_epoch"] - 1]
    assert report["test_accuracy"] == pytest.approx(best["test_accuracy"], abs=1e-9)
    assert report["test_accuracy"] == pytest.approx(run["test_accuracy"], abs=1e-9)


def test_train_with_impossible_setting_exits_2(commands, folders):
    assert_one_line_error(commands["train-negative-rate"], "'learning_rate'", "-1", "above 0")
    commands["show-missing-run"]  # The other command sharing this runs directory has finished too.
    assert RunStore(folders["empty"]).list() == []  # Nothing was queued.


def test_runs_show_unknown_run_exits_2(commands):
    assert_one_line_error(commands["show-missing-run"], "999")
