"""The job service for real: worker processes, signals, a scheduler that is stopped and restarted, real MNIST.

Each test gets its own runs directory (LAYERLAB_RUNS). The scheduler runs either in a thread
of this process (`scheduler_thread`) or as `python -m core scheduler` (`service`), a real
service the tests stop with SIGTERM or SIGKILL and start again. `no_leftover_processes`
fails any test that leaves a scheduler or worker running. Budgets are tiny (logistic
regression on 2,000–4,000 images) so the file takes a few minutes at most on two cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

import pytest
import torch

from core.jobs import liveness, locks
from core.jobs import scheduler as job_scheduler
from core.jobs import service as job_service
from core.jobs.store import FINISHED, Run, RunStore
from core.training import checkpoint
from core.training.loop import train
from core.training.settings import SettingsError, TrainSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOGISTIC = {"layers": [{"kind": "output", "init": "zeros"}], "normalize": True}

# Generous: other work on a shared 2-core machine can triple the time a worker takes to start.
pytestmark = pytest.mark.timeout(300)
T = TypeVar("T")


def quick_settings(**values) -> TrainSettings:
    """Two epochs on 2,000 images: about 0.2 s of training."""
    return TrainSettings(
        **{"epochs": 2, "batch_size": 100, "train_subset": 2000, "learning_rate": 0.5, "eval_batch_size": 10000, "device": "cpu", **values}
    )


def slow_settings(**values) -> TrainSettings:
    """About 2 s per epoch on one core (5,000 steps of 2 images), so a test can act mid-epoch.

    Momentum and a step schedule (halve the rate every epoch) give resume real optimiser and
    schedule state to carry over.
    """
    return TrainSettings(
        **{
            "epochs": 3,
            "batch_size": 2,
            "train_subset": 10000,
            "optimizer": "momentum",
            "learning_rate": 0.01,
            "schedule": "step",
            "step_epochs": 1,
            "gamma": 0.5,
            "eval_batch_size": 10000,
            "device": "cpu",
            **values,
        }
    )


# ----------------------------------------------------------------------------- waiting and processes


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {what}.")
        time.sleep(interval)


def wait_finished(store: RunStore, run_id: int, timeout: float = 120.0) -> Run:
    wait_until(lambda: store.get(run_id, with_metrics=False).status in FINISHED, timeout, f"run {run_id} to finish")
    return store.get(run_id)


def wait_mid_epoch(store: RunStore, run_id: int, epoch: int, timeout: float = 120.0) -> Run:
    """Wait until run `run_id` has finished `epoch - 1` epochs and is part-way through `epoch`."""

    def mid_epoch() -> Run | None:
        run = store.get(run_id)
        assert run.status not in FINISHED, f"run {run_id} ended {run.status} ({run.message}) before epoch {epoch}"
        progress = run.progress
        inside = progress.get("epoch") == epoch and 0 < progress.get("step", 0) < progress.get("steps_per_epoch", 0)
        return run if run.status == "running" and run.epochs_done == epoch - 1 and inside else None

    return wait_until(mid_epoch, timeout, f"run {run_id} to be inside epoch {epoch}")


def pid_alive(pid: int) -> bool:
    return liveness._pid_alive(pid)


def processes_using(runs_dir: Path) -> list[int]:
    """Every other process whose environment points LAYERLAB_RUNS at `runs_dir` (schedulers, workers).

    Leaves out multiprocessing's resource tracker: one helper per parent process, started by
    the first spawned worker of this test process, which ends when pytest does.
    """
    marker = f"LAYERLAB_RUNS={runs_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0") and "resource_tracker" not in command_line(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def parent_of(pid: int) -> int | None:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def standby_of(scheduler: subprocess.Popen, runs_dir: Path) -> int:
    """Wait for the scheduler's one child process while no run trains: its warm standby; returns its pid."""
    children = wait_until(
        lambda: [pid for pid in processes_using(runs_dir) if parent_of(pid) == scheduler.pid], 30, "the scheduler's standby worker"
    )
    assert len(children) == 1, children
    return children[0]


def command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def same_metrics(stored: dict, reference: dict) -> bool:
    """Accuracies and rates exactly, losses to float rounding (thread scheduling may reorder sums)."""
    exact = ("epoch", "train_accuracy", "validation_accuracy", "test_accuracy", "learning_rate")
    close = ("train_loss", "validation_loss")
    return all(stored[name] == reference[name] for name in exact) and all(
        stored[name] == pytest.approx(reference[name], rel=1e-5) for name in close
    )


@pytest.fixture
def one_thread():
    """Workers train on cpu_count // limit threads; a test that compares a worker's numbers with a
    reference gives it two slots on two cores (one thread), and the reference one thread too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def no_leftover_processes(runs_dir):
    """Fail a test that leaves any process serving its runs directory; kill what it left."""
    yield
    try:
        wait_until(lambda: not processes_using(runs_dir), 20, "every scheduler and worker to exit", interval=0.1)
    except AssertionError:
        leftovers = {pid: command_line(pid) for pid in processes_using(runs_dir)}
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        pytest.fail(f"Processes left running after the test: {leftovers}")


@pytest.fixture
def scheduler_thread(store):
    """Start the real scheduler loop in a thread of this process; it is stopped at the end of the test."""
    started: list[tuple[threading.Event, threading.Thread]] = []

    def start(limit: int) -> None:
        stop = threading.Event()
        thread = threading.Thread(target=job_scheduler.run_scheduler, args=(store,), kwargs={"limit": limit, "stop": stop}, daemon=True)
        thread.start()
        started.append((stop, thread))
        wait_until(lambda: locks.scheduler_pid(store) == os.getpid(), 10, "the scheduler to take its lock")

    yield start
    for stop, thread in started:
        stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the scheduler did not stop"


class Service:
    """`python -m core scheduler` as a real process, which a test can stop or kill and start again."""

    def __init__(self, runs_dir: Path, limit: int):
        self.runs_dir, self.limit = runs_dir, limit
        self.process: subprocess.Popen | None = None

    def start(self) -> "Service":
        environment = {**os.environ, "LAYERLAB_RUNS": str(self.runs_dir), "LAYERLAB_MAX_JOBS": str(self.limit)}
        with open(self.runs_dir / "service.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "core", "scheduler"], cwd=PROJECT_ROOT, env=environment, stdout=log, stderr=log
            )
        store = RunStore(self.runs_dir)
        wait_until(lambda: locks.scheduler_pid(store) == self.process.pid, 30, "the scheduler process to take its lock")
        return self

    def stop(self, signal_number: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal_number)
        return self.process.wait(timeout)


@pytest.fixture
def service(runs_dir):
    """Start `python -m core scheduler` with LAYERLAB_MAX_JOBS=limit; every one started is stopped at the end."""
    started: list[Service] = []

    def start(limit: int = 1) -> Service:
        started.append(Service(runs_dir, limit).start())
        return started[-1]

    yield start
    for running in started:
        try:
            running.stop(signal.SIGTERM)
        except subprocess.TimeoutExpired:
            running.stop(signal.SIGKILL)


@pytest.fixture
def auto_started_scheduler(store):
    """Stop the scheduler that `ensure_scheduler` started (in its own session, so not our child) at the end."""
    yield
    pid = locks.scheduler_pid(store)
    if pid:
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pid_alive(pid), 30, "the auto-started scheduler to exit")


# ----------------------------------------------------------------------------- the interface, without workers


def test_queue_positions_follow_submission_and_a_queued_run_cancels_at_once(store):
    service = job_service.JobService(store)
    run_ids = [service.submit(LOGISTIC, quick_settings(seed=index), owner=f"student{index}") for index in range(3)]
    assert [service.queue_position(run_id) for run_id in run_ids] == [1, 2, 3]

    assert service.cancel(run_ids[1]) == "cancelled"
    assert [service.queue_position(run_id) for run_id in run_ids] == [1, None, 2]
    cancelled = service.run(run_ids[1])
    assert cancelled.status == "cancelled" and cancelled.message
    assert [run.owner for run in service.runs(owner="student2")] == ["student2"]

    with pytest.raises(ValueError, match="never finished an epoch"):
        service.resume(run_ids[1])
    with pytest.raises(ValueError, match="queued"):
        service.resume(run_ids[0])
    with pytest.raises(SettingsError):
        service.submit(LOGISTIC, quick_settings(batch_size=0))


def test_runs_whose_worker_is_gone_show_as_interrupted_on_the_next_look(store):
    service = job_service.JobService(store)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead_pid = int(finished.stdout)
    now = time.time()
    killed, reused, slow_start, never_launched = (service.submit(LOGISTIC, quick_settings()) for _ in range(4))
    store.update(killed, status="running", worker_pid=dead_pid, started_at=now, heartbeat_at=now, epochs_done=2)
    # After a reboot the old pid may belong to a newer process (here: this one, which started after an hour-old run).
    store.update(reused, status="running", worker_pid=os.getpid(), started_at=now - 3600, heartbeat_at=now - 3600)
    # A worker still importing torch on a busy machine has not beaten yet, but its process is the run's own.
    store.update(slow_start, status="running", worker_pid=os.getpid(), started_at=now, heartbeat_at=now - liveness.STALE_SECONDS - 30)
    # Claimed by a scheduler that died before it recorded a pid: only the heartbeat can tell.
    store.update(never_launched, status="running", worker_pid=None, started_at=now - 60, heartbeat_at=now - liveness.STALE_SECONDS - 5)

    # One run read on its own (`runs show`, a run page) is ended too, with no scheduler running.
    assert service.run(killed).status == "interrupted"
    statuses = {run.id: run for run in service.runs()}
    assert statuses[killed].status == "interrupted" and "2 finished epochs" in statuses[killed].message
    assert statuses[killed].worker_pid is None
    assert statuses[reused].status == "interrupted"
    assert statuses[slow_start].status == "running"
    assert statuses[never_launched].status == "interrupted"


# ----------------------------------------------------------------------------- real workers


def test_four_jobs_queue_within_the_limit_and_each_gets_its_own_correct_metrics(store, scheduler_thread, mnist, one_thread):
    service = job_service.JobService(store)
    rates = [0.05, 0.15, 0.5, 1.5]
    run_ids = [service.submit(LOGISTIC, quick_settings(learning_rate=rate), owner=f"student{n}") for n, rate in enumerate(rates)]
    assert [service.queue_position(run_id) for run_id in run_ids] == [1, 2, 3, 4]

    scheduler_thread(limit=2)
    most_running, positions_seen = 0, set()
    deadline = time.monotonic() + 180
    while not all(store.get(run_id, with_metrics=False).finished for run_id in run_ids):
        runs = store.list()
        running = [run for run in runs if run.status == "running"]
        most_running = max(most_running, len(running))
        assert len(running) <= 2, f"{len(running)} runs train at once with a limit of 2"
        positions_seen.update(service.queue_position(run.id) for run in runs if run.status == "queued")
        assert time.monotonic() < deadline, "the four runs did not finish within 180 s"
        time.sleep(0.02)
    assert most_running == 2
    assert {1, 2} <= positions_seen  # Runs waited in the queue and were shown their place.

    for n, (run_id, rate) in enumerate(zip(run_ids, rates)):
        run = store.get(run_id)
        assert run.status == "succeeded", run.message
        assert run.owner == f"student{n}" and run.epochs_done == 2
        # Each run's metrics are exactly those of training its own settings here, in this process.
        reference = train(LOGISTIC, quick_settings(learning_rate=rate), mnist)
        assert len(run.metrics) == 2
        assert all(same_metrics(stored, expected.to_dict()) for stored, expected in zip(run.metrics, reference.history))
    assert len({store.get(run_id).metrics[-1]["validation_loss"] for run_id in run_ids}) == 4


def test_cancel_is_honoured_within_two_seconds_and_keeps_the_finished_epochs(store, scheduler_thread):
    service = job_service.JobService(store)
    scheduler_thread(limit=1)
    run_id = service.submit(LOGISTIC, slow_settings(epochs=5))
    wait_mid_epoch(store, run_id, 2)
    best_before = store.best_checkpoint_path(run_id).read_bytes()

    requested = time.monotonic()
    assert service.cancel(run_id) == "cancelling"
    wait_until(lambda: store.get(run_id, with_metrics=False).status == "cancelled", 5, "the cancel", interval=0.01)
    latency = time.monotonic() - requested
    print(f"cancel mid-epoch took {latency:.2f} s")
    assert latency < 2.0, f"cancel took {latency:.2f} s"

    run = store.get(run_id)
    assert run.epochs_done == 1 and [row["epoch"] for row in run.metrics] == [1]
    assert "kept" in run.message
    assert store.best_checkpoint_path(run_id).read_bytes() == best_before
    model, _, _ = checkpoint.load(store.best_checkpoint_path(run_id))
    assert sum(parameter.numel() for parameter in model.parameters()) == 7850

    # A run cancelled while its worker is still starting (importing torch, loading MNIST) is
    # stopped by the scheduler, within the same 2 s.
    starting = service.submit(LOGISTIC, slow_settings())
    wait_until(lambda: store.get(starting, with_metrics=False).status == "running", 30, "the second run to start")
    requested = time.monotonic()
    service.cancel(starting)
    wait_until(lambda: store.get(starting, with_metrics=False).status == "cancelled", 5, "the early cancel", interval=0.01)
    latency = time.monotonic() - requested
    print(f"cancel during start-up took {latency:.2f} s")
    assert latency < 2.0, f"cancel of a starting run took {latency:.2f} s"


def test_an_out_of_memory_error_fails_its_run_with_advice_and_the_service_keeps_serving(store, scheduler_thread, monkeypatch):
    # Test-only hook in core/runner.py: step 3 of the run named "oom-victim" raises CUDA's out-of-memory error.
    monkeypatch.setenv("LAYERLAB_FAULT_INJECTION", "oom_at_step:3@oom-victim")
    service = job_service.JobService(store)
    victim = service.submit(LOGISTIC, quick_settings(), name="oom-victim")
    beside = service.submit(LOGISTIC, quick_settings(), name="beside")
    after = service.submit(LOGISTIC, quick_settings(), name="after")  # Gets the victim's slot once it fails.
    scheduler_thread(limit=2)

    failed = wait_finished(store, victim)
    assert failed.status == "failed"
    assert "out of memory" in failed.message.lower() and "lower the batch size" in failed.message.lower()
    assert failed.epochs_done == 0
    assert "OutOfMemoryError" in (store.run_directory(victim) / "worker.log").read_text()

    for run_id in (beside, after):
        run = wait_finished(store, run_id)
        assert run.status == "succeeded" and run.epochs_done == 2, run.message
    assert store.get(after).started_at >= failed.finished_at
    assert locks.scheduler_running(store)


# A second process that follows one run through the store, as a second app process would.
FOLLOWER = """
import json, sys, time
from core.jobs.store import RunStore
store, run_id, seen = RunStore(sys.argv[1]), int(sys.argv[2]), []
while True:
    run = store.get(run_id)
    seen.append([run.status, run.epochs_done, len(run.metrics), run.progress.get("epoch"), run.progress.get("step")])
    if run.status not in ("queued", "running"):
        break
    time.sleep(0.05)
print(json.dumps(seen))
"""


def test_twenty_readers_and_a_second_process_see_live_progress_while_two_jobs_write(store, scheduler_thread):
    service = job_service.JobService(store)
    run_ids = [service.submit(LOGISTIC, slow_settings(epochs=2, train_subset=3000, seed=seed)) for seed in (1, 2)]
    follower = subprocess.Popen(
        [sys.executable, "-c", FOLLOWER, str(store.directory), str(run_ids[0])], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True
    )
    errors: list[BaseException] = []
    reads: list[int] = []
    done = threading.Event()

    def read_until_done() -> None:
        metrics_seen = {run_id: 0 for run_id in run_ids}
        count = 0
        try:
            while not done.is_set():
                for run_id in run_ids:
                    run = service.run(run_id)
                    assert len(run.metrics) >= metrics_seen[run_id], "a metric row disappeared"
                    metrics_seen[run_id] = len(run.metrics)
                service.runs()
                count += 1
                time.sleep(0.005)
        except BaseException as error:  # Collected and reported by the test.
            errors.append(error)
        reads.append(count)

    readers = [threading.Thread(target=read_until_done) for _ in range(20)]
    for reader in readers:
        reader.start()
    try:
        scheduler_thread(limit=2)
        finished = [wait_finished(store, run_id) for run_id in run_ids]
    finally:
        done.set()
        for reader in readers:
            reader.join(30)
    seen = json.loads(follower.communicate(timeout=30)[0])

    assert not errors, f"readers failed: {errors[:3]}"
    assert len(reads) == 20 and sum(reads) > 100
    for run in finished:
        assert run.status == "succeeded", run.message
        assert [row["epoch"] for row in run.metrics] == [1, 2] and run.epochs_done == 2
    # The other process saw the run move step by step while it trained, then saw every epoch.
    live_steps = {(epoch, step) for status, _, _, epoch, step in seen if status == "running" and step}
    assert len(live_steps) >= 3
    assert seen[-1][:3] == ["succeeded", 2, 2]


def test_a_worker_killed_mid_epoch_keeps_its_epochs_and_resumes_with_the_same_state(store, scheduler_thread, mnist, one_thread, tmp_path):
    service = job_service.JobService(store)
    settings = slow_settings(epochs=2)
    scheduler_thread(limit=2)  # Two slots on two cores: the worker trains on one thread, like the reference below.
    run_id = service.submit(LOGISTIC, settings)
    running = wait_mid_epoch(store, run_id, 2)
    best_before = store.best_checkpoint_path(run_id).read_bytes()

    os.kill(running.worker_pid, signal.SIGKILL)
    killed = wait_until(lambda: (run := store.get(run_id)).status in ("failed", "interrupted") and run, 10, "the killed run's status")
    assert killed.status == "interrupted" and "SIGKILL" in killed.message and "resume" in killed.message
    assert killed.epochs_done == 1 and killed.metrics == running.metrics and len(killed.metrics) == 1
    assert store.best_checkpoint_path(run_id).read_bytes() == best_before
    _, metadata = checkpoint.read(store.best_checkpoint_path(run_id))
    assert metadata["epoch"] == 1
    saved_state = tmp_path / "state_after_epoch_1.pt"
    shutil.copy(store.resume_state_path(run_id), saved_state)

    service.resume(run_id)
    resumed = wait_finished(store, run_id)
    assert resumed.status == "succeeded", resumed.message
    assert resumed.epochs_done == 2 > killed.epochs_done
    assert resumed.metrics[0] == killed.metrics[0]  # The finished epoch was kept, not trained again.
    # The step schedule went on halving from where it was (a fresh schedule would give 0.005 again).
    assert [row["learning_rate"] for row in resumed.metrics] == pytest.approx([0.005, 0.0025])
    # Epoch 2 is exactly what training on from the saved weights, momentum and schedule gives.
    reference = train(LOGISTIC, settings, mnist, resume_state=checkpoint.load_resume_state(saved_state))
    assert all(same_metrics(stored, expected.to_dict()) for stored, expected in zip(resumed.metrics[1:], reference.history[1:]))


# ----------------------------------------------------------------------------- the service as a process


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_run_outlives_a_stopped_service_as_interrupted_and_a_new_service_resumes_it(store, service, stop_signal):
    jobs_service = job_service.JobService(store)
    first = service(limit=1)
    run_id = jobs_service.submit(LOGISTIC, slow_settings(epochs=2))
    running = wait_mid_epoch(store, run_id, 2)

    first.stop(stop_signal)
    # SIGTERM: the scheduler stops its workers. SIGKILL: each worker notices its scheduler is gone.
    interrupted = wait_until(lambda: (run := jobs_service.run(run_id)).status != "running" and run, 10, "the run to stop")
    assert interrupted.status == "interrupted" and interrupted.message
    wait_until(lambda: not pid_alive(running.worker_pid), 10, "the worker to exit")
    assert interrupted.epochs_done == 1 and len(interrupted.metrics) == 1

    service(limit=1)
    time.sleep(0.5)  # A few scheduler rounds: an interrupted run waits for the learner, it is not restarted unasked.
    assert store.get(run_id, with_metrics=False).status == "interrupted"
    jobs_service.resume(run_id)
    resumed = wait_finished(store, run_id)
    assert resumed.status == "succeeded" and resumed.epochs_done == 2
    assert resumed.metrics[0] == interrupted.metrics[0]


def test_ensure_scheduler_starts_one_scheduler_however_many_callers_ask(store, auto_started_scheduler):
    service = job_service.JobService(store)
    answers: list[bool] = []
    callers = [threading.Thread(target=lambda: answers.append(service.ensure_scheduler())) for _ in range(3)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(60)
    assert sorted(answers) == [False, False, True]
    assert service.ensure_scheduler() is False

    pid = locks.scheduler_pid(store)
    assert pid and pid_alive(pid)
    schedulers = [other for other in processes_using(store.directory) if " scheduler" in command_line(other)]
    assert schedulers == [pid]
    wait_until(lambda: "serves" in (store.directory / "scheduler.log").read_text(), 10, "the scheduler's log line")


def test_an_idle_scheduler_exits_and_frees_its_lock_for_the_next_one(store, monkeypatch):
    monkeypatch.setattr(job_scheduler, "IDLE_EXIT_SECONDS", 0.3)
    arguments = {"exit_when_idle": True, "stop": threading.Event()}
    scheduler = threading.Thread(target=job_scheduler.run_scheduler, args=(store,), kwargs=arguments, daemon=True)
    scheduler.start()
    scheduler.join(10)
    assert not scheduler.is_alive()
    assert not locks.scheduler_running(store) and locks.scheduler_pid(store) is None


def cli(*arguments: str) -> dict:
    """Run `python -m core … --json` as a separate process and return its JSON line."""
    finished = subprocess.run(
        [sys.executable, "-m", "core", *arguments, "--json"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 0, finished.stderr
    return json.loads(finished.stdout.strip().splitlines()[-1])


def test_cli_train_in_background_cancel_resume_and_list_go_through_the_scheduler(store, tmp_path, monkeypatch, auto_started_scheduler):
    monkeypatch.setenv("LAYERLAB_MAX_JOBS", "1")
    spec_file = tmp_path / "slow.json"
    spec_file.write_text(json.dumps({"network": LOGISTIC, "settings": slow_settings(epochs=4).to_dict()}))

    queued = cli("train", "--spec", str(spec_file), "--background", "--owner", "ada")
    run_id = queued["run_id"]
    assert queued["status"] == "queued"
    assert locks.scheduler_pid(store)  # `train --background` started the scheduler.

    wait_until(lambda: store.get(run_id, with_metrics=False).epochs_done >= 1, 120, "the first epoch")
    assert cli("cancel", str(run_id))["status"] in ("cancelling", "cancelled")
    cancelled = wait_finished(store, run_id, timeout=10)
    assert cancelled.status == "cancelled" and 1 <= cancelled.epochs_done < 4

    assert cli("resume", str(run_id))["status"] == "queued"
    resumed = wait_finished(store, run_id)
    assert resumed.status == "succeeded" and resumed.epochs_done == 4
    assert resumed.metrics[: cancelled.epochs_done] == cancelled.metrics

    listed = cli("runs", "list", "--owner", "ada")["runs"]
    assert [(run["run_id"], run["status"], run["epochs"], run["owner"]) for run in listed] == [(run_id, "succeeded", 4, "ada")]


# ----------------------------------------------------------------------------- drills: one run's trouble stays its own


def test_a_run_in_the_standby_ends_interrupted_when_its_scheduler_is_killed_and_then_resumes(store, service, runs_dir):
    jobs_service = job_service.JobService(store)
    first = service(limit=1)
    standby = standby_of(first.process, runs_dir)
    run_id = jobs_service.submit(LOGISTIC, slow_settings(epochs=2))
    running = wait_mid_epoch(store, run_id, 2)
    assert running.worker_pid == standby  # The run trains in the process that waited as the standby.

    first.stop(signal.SIGKILL)
    # Read the store directly (no reconcile): the worker itself must record how it ended.
    stopped = wait_until(lambda: (run := store.get(run_id)).status != "running" and run, 5, "the worker to record its end")
    assert stopped.status == "interrupted"
    assert stopped.message_code == "run.interrupted"  # written by the worker itself, as the message the learner reads
    assert stopped.epochs_done == 1 and stopped.worker_pid is None
    wait_until(lambda: not pid_alive(standby), 10, "the standby-turned-worker to exit")

    service(limit=1)
    jobs_service.resume(run_id)
    resumed = wait_finished(store, run_id)
    assert resumed.status == "succeeded" and resumed.epochs_done == 2, resumed.message
    assert resumed.metrics[0] == stopped.metrics[0]


def test_cancelling_and_deleting_a_run_at_once_leaves_the_scheduler_serving_the_others(store, service, runs_dir):
    jobs_service = job_service.JobService(store)
    scheduler = service(limit=2)
    doomed = jobs_service.submit(LOGISTIC, slow_settings(epochs=5))
    other = jobs_service.submit(LOGISTIC, slow_settings(epochs=2, seed=1))
    wait_mid_epoch(store, doomed, 1)
    wait_mid_epoch(store, other, 1)

    assert jobs_service.cancel(doomed) == "cancelling"
    # Delete it the moment it reads cancelled, while its worker process is still exiting.
    wait_until(lambda: store.get(doomed, with_metrics=False).status == "cancelled", 10, "the cancel", interval=0.002)
    store.delete(doomed)

    finished = wait_finished(store, other)
    assert finished.status == "succeeded" and finished.epochs_done == 2, finished.message
    assert scheduler.process.poll() is None and locks.scheduler_pid(store) == scheduler.process.pid
    assert "Traceback" not in (runs_dir / "service.log").read_text()


def test_a_standby_that_cannot_warm_up_logs_it_and_still_trains_the_next_run(store, service, runs_dir, monkeypatch):
    monkeypatch.setenv("LAYERLAB_FAULT_INJECTION", "standby_warm_up_fails")
    scheduler = service(limit=1)
    standby = standby_of(scheduler.process, runs_dir)
    log = runs_dir / "service.log"
    wait_until(lambda: f"standby {standby} could not warm up" in log.read_text(), 60, "the warm-up failure in the log")
    time.sleep(3.0)  # Fifteen scheduling rounds: a standby that died of it would have been replaced by now.
    assert pid_alive(standby) and standby_of(scheduler.process, runs_dir) == standby
    assert "exited with code" not in log.read_text()

    run_id = job_service.JobService(store).submit(LOGISTIC, quick_settings())
    run = wait_finished(store, run_id)
    assert run.status == "succeeded", run.message
    assert f"worker {standby} starts run {run_id}" in (store.run_directory(run_id) / "worker.log").read_text()


def test_standbys_that_die_young_are_restarted_with_a_doubling_delay(store, service, runs_dir, monkeypatch):
    monkeypatch.setenv("LAYERLAB_FAULT_INJECTION", "standby_exits")
    service(limit=1)
    log = runs_dir / "service.log"

    def deaths() -> list[str]:
        return [line for line in log.read_text().splitlines() if "exited with code 3" in line]

    started = time.monotonic()
    wait_until(lambda: len(deaths()) >= 3, 90, "three standbys to die")
    elapsed = time.monotonic() - started
    delays = [float(line.split("next starts in ")[1].split(" s")[0]) for line in deaths()[:3]]
    assert delays == [1.0, 2.0, 4.0]
    # Three deaths took at least the first two delays: the standbys were not restarted every round.
    assert elapsed >= 3.0
    assert len(deaths()) <= 4


def test_a_stop_signal_that_arrives_as_training_ends_leaves_the_run_succeeded(store, scheduler_thread, monkeypatch):
    # Test-only hook in core/jobs/runner.py: the worker gets SIGTERM the moment `train` returns.
    monkeypatch.setenv("LAYERLAB_FAULT_INJECTION", "sigterm_after_training@late-stop")
    scheduler_thread(limit=1)
    run_id = job_service.JobService(store).submit(LOGISTIC, quick_settings(), name="late-stop")
    run = wait_finished(store, run_id)
    assert run.status == "succeeded" and run.epochs_done == 2, run.message
    assert run.message == "" and run.worker_pid is None
    log = store.run_directory(run_id) / "worker.log"
    wait_until(lambda: f"run {run_id} ended succeeded" in log.read_text(), 10, "the worker's last log line")  # Written after the status.


def test_600_queued_runs_keep_their_order_and_the_oldest_starts_first(store):
    run_ids = [store.create(LOGISTIC, quick_settings().to_dict(), status="queued") for _ in range(600)]
    service = job_service.JobService(store)
    assert [service.queue_position(run_ids[index]) for index in (0, 1, 299, 599)] == [1, 2, 300, 600]
    assert job_service.queued_run_ids(store) == run_ids

    scheduler = job_scheduler.Scheduler(store, limit=1)
    try:
        scheduler._start_queued()
        assert list(scheduler.workers) == [run_ids[0]]
        assert store.get(run_ids[0], with_metrics=False).status == "running"
        assert len(job_service.queued_run_ids(store)) == 599 and service.queue_position(run_ids[1]) == 1
    finally:
        scheduler.shutdown()
    assert store.get(run_ids[0], with_metrics=False).status in FINISHED


def test_a_run_that_dies_in_the_standby_leaves_its_last_words_in_its_own_worker_log(store, service, runs_dir, monkeypatch):
    # Test-only hook in core/jobs/runner.py: step 3 of the run named "dies" prints a line and leaves with exit code 3.
    monkeypatch.setenv("LAYERLAB_FAULT_INJECTION", "exit_at_step:3@dies")
    scheduler = service(limit=1)
    standby = standby_of(scheduler.process, runs_dir)
    run_id = job_service.JobService(store).submit(LOGISTIC, quick_settings(), name="dies")
    run = wait_finished(store, run_id)

    log = store.run_directory(run_id) / "worker.log"
    assert run.status == "failed" and "exited with code 3" in run.message
    assert f"(see {log})" in run.message
    written = log.read_text()
    assert f"worker {standby} starts run {run_id}" in written  # It died in the standby.
    assert f"run {run_id} leaves with exit code 3 at step 3" in written
    assert "leaves with exit code" not in (runs_dir / "service.log").read_text()


def test_one_run_parses_its_settings_and_validates_its_spec_once(store, monkeypatch):
    from core.jobs import runner
    from core.model import network as networks

    validations: list[object] = []
    parses: list[dict] = []
    validate, from_dict = networks.validate, TrainSettings.from_dict.__func__

    def counting_validate(spec, dataset="mnist"):
        validations.append(spec)
        return validate(spec, dataset)

    def counting_from_dict(cls, values):
        parses.append(values)
        return from_dict(cls, values)

    monkeypatch.setattr(networks, "validate", counting_validate)
    monkeypatch.setattr(TrainSettings, "from_dict", classmethod(counting_from_dict))
    run_id = store.create(LOGISTIC, quick_settings().to_dict())
    assert runner.execute(store, run_id) == "succeeded"
    assert len(validations) == 1 and len(parses) == 1
    assert store.get(run_id).epochs_done == 2


def test_a_damaged_runs_database_is_reported_once_and_the_scheduler_serves_again_once_it_is_restored(store, service, runs_dir):
    scheduler = service(limit=1)
    database = runs_dir / "runs.sqlite"
    wait_until(lambda: "serves" in (runs_dir / "service.log").read_text(), 30, "the scheduler to start serving")
    saved = {path: path.read_bytes() for path in runs_dir.glob("runs.sqlite*")}
    for path in saved:
        path.unlink()
    database.write_bytes(b"this is not a database" * 100)
    time.sleep(4)  # Five rounds a second would log twenty times in this span without the back-off.
    log = (runs_dir / "service.log").read_text()
    assert scheduler.process.poll() is None, "the scheduler died of a damaged database"
    assert log.count("cannot use the runs database") == 1, log
    assert str(runs_dir) in log.split("cannot use the runs database")[1].splitlines()[0]

    database.unlink()
    for path, content in saved.items():
        path.write_bytes(content)
    run_id = job_service.JobService(RunStore(runs_dir)).submit(LOGISTIC, quick_settings())
    finished = wait_finished(store, run_id, timeout=120)
    assert finished.status == "succeeded", finished.message
    assert "can be used again" in (runs_dir / "service.log").read_text()
