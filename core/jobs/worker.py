"""The worker process: one run, trained in a process of its own, and the warm standby that becomes one.

Owns the entry points the scheduler spawns (`worker_main`, `standby_main`): output to the
run's `worker.log`, signal handling that ends the run with a status (a stop signal counts
only until the run's outcome is decided, so it can never turn a finished run into a lost
one), watching the scheduler so an orphaned worker stops, and warming torch up before a run
arrives. Training itself is `core.jobs.runner`'s.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import torch

from core.jobs import runner
from core.jobs.store import RunStore

PARENT_CHECK_SECONDS = 0.5  # how often a worker checks that its scheduler is still alive


class ParentWatch:
    """Watches the scheduler that started this process, and acts once it is gone (killed with SIGKILL).

    A standby waiting for a run has nothing to save and simply exits. Once the process
    trains a run (a worker, or a standby that became one), it interrupts itself with SIGTERM
    instead, so the run ends `interrupted` with its status written rather than left `running`.
    """

    def __init__(self, parent: int):
        self.parent = parent
        self.training = threading.Event()
        threading.Thread(target=self._watch, name="parent-watch", daemon=True).start()

    def _watch(self) -> None:
        while os.getppid() == self.parent:
            time.sleep(PARENT_CHECK_SECONDS)
        if self.training.is_set():
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            os._exit(0)


def worker_main(directory: str, run_id: int, resume: bool, threads: int, gpu: int | None, parent: int) -> None:
    """Entry point of a worker process: train one run, logging to `<run dir>/worker.log`.

    `parent` is the scheduler's pid. SIGTERM, SIGINT or the death of the scheduler end the
    run `interrupted` (or `cancelled` when a cancel was asked for) with its finished epochs kept.
    """
    _train(directory, run_id, resume, threads, gpu, ParentWatch(parent))


def standby_main(connection, parent: int) -> None:
    """A worker started ahead of need: it imports torch and loads MNIST, then waits for one run.

    Starting a Python process and importing torch takes seconds; a standby pays that while
    nobody waits, so a submitted run starts training at once. It still trains exactly one
    run in its own process, like any worker, and exits when its scheduler goes away. A
    failed warm-up is logged and the standby waits anyway: the run pays the costs itself.
    """
    watch = ParentWatch(parent)
    if runner.fault("standby_exits") is not None:
        print(f"standby {os.getpid()} exits at once (injected by {runner.FAULT_INJECTION_VARIABLE})", flush=True)
        os._exit(3)
    try:
        _warm_up()
    except Exception:  # Never fatal: a standby that died here would only be started again, and fail again.
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} standby {os.getpid()} could not warm up; it waits for a run anyway:", flush=True)
        traceback.print_exc()
    try:
        job = connection.recv()
    except EOFError:
        return
    if job is not None:
        directory, run_id, resume, threads, gpu, _ = job
        _train(directory, run_id, resume, threads, gpu, watch)


def _train(directory: str, run_id: int, resume: bool, threads: int, gpu: int | None, watch: ParentWatch) -> None:
    """Train run `run_id` in this process: its output goes to its worker.log, stop signals end it with a status."""
    store = RunStore(directory)
    log = store.run_directory(run_id) / "worker.log"
    # First, before anything can fail: whatever this run prints or dies with belongs in its own log.
    _redirect_output(log)
    outcome_decided = threading.Event()

    def interrupt(signal_number, frame):
        # Ignore further signals so they cannot break the final status write.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if not outcome_decided.is_set():  # Once the outcome is known, a stop has nothing left to stop.
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    watch.training.set()
    torch.set_num_threads(threads)
    if gpu is not None:
        torch.cuda.set_device(gpu)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} worker {os.getpid()} starts run {run_id} (resume={resume})", flush=True)
    status = runner.execute(store, run_id, resume=resume, log=log, outcome_decided=outcome_decided.set)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} run {run_id} ended {status}", flush=True)


def _warm_up() -> None:
    """Pay torch's first-use costs (MNIST in memory, spec checks on the meta device, autograd, oneDNN kernels) before a run arrives."""
    from core.data import datasets
    from core.model import network as networks

    if runner.fault("standby_warm_up_fails") is not None:
        raise RuntimeError(f"warm-up failed (injected by {runner.FAULT_INJECTION_VARIABLE})")
    try:
        datasets.load("mnist")
    except Exception:  # No data yet: the run will load (and report) it itself.
        pass
    network = {"layers": [{"kind": "conv", "filters": 8, "kernel_size": 5}, {"kind": "maxpool"}, {"kind": "dense", "units": 16}, {"kind": "output"}]}
    model = networks.build(network).to(memory_format=torch.channels_last)
    images = torch.rand(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    torch.nn.functional.cross_entropy(model(images), torch.zeros(16, dtype=torch.long)).backward()


def _redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr (tracebacks included) to `path`, a line at a time.

    Line buffering matters: a process that dies abruptly (`os._exit` in a native library, a
    signal) would otherwise lose what it printed last, which is what explains its death.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    with open(path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)
