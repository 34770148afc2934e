"""The worker process: one run, trained in a process of its own, and the warm standby that becomes one.

Owns the entry points the scheduler spawns (`worker_main`, `standby_main`): output to the
run's log, signal handling that ends the run with a status, watching the scheduler so an
orphaned worker stops, and warming torch up before a run arrives. Training itself is
`core.jobs.runner`'s.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import torch

from core.jobs import runner
from core.jobs.store import RunStore

PARENT_CHECK_SECONDS = 0.5  # how often a worker checks that its scheduler is still alive




def worker_main(directory: str, run_id: int, resume: bool, threads: int, gpu: int | None) -> None:
    """Entry point of a worker process: train one run, logging to `<run dir>/worker.log`.

    SIGTERM, SIGINT or the death of the scheduler end the run `interrupted` (or `cancelled`
    when a cancel was asked for) with its finished epochs kept.
    """
    store = RunStore(directory)
    _redirect_output(store.run_directory(run_id) / "worker.log")

    def interrupt(signal_number, frame):
        # Ignore further signals so they cannot break the final status write.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    threading.Thread(target=_stop_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    torch.set_num_threads(threads)
    if gpu is not None:
        torch.cuda.set_device(gpu)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} worker {os.getpid()} starts run {run_id} (resume={resume})", flush=True)
    status = runner.execute(store, run_id, resume=resume)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} run {run_id} ended {status}", flush=True)


def standby_main(connection) -> None:
    """A worker started ahead of need: it imports torch and loads MNIST, then waits for one run.

    Starting a Python process and importing torch takes seconds; a standby pays that while
    nobody waits, so a submitted run starts training at once. It still trains exactly one
    run in its own process, like any worker, and exits when its scheduler goes away.
    """
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    from core.data import datasets

    try:
        datasets.load("mnist")
    except Exception:  # No data yet: the run will load (and report) it itself.
        pass
    _warm_up()
    try:
        job = connection.recv()
    except EOFError:
        return
    if job is not None:
        worker_main(*job)


def _warm_up() -> None:
    """Pay torch's first-use costs (spec checks on the meta device, autograd, oneDNN kernels) before a run arrives."""
    from core.model import network as networks

    network = {"layers": [{"kind": "conv", "filters": 8, "kernel_size": 5}, {"kind": "maxpool"}, {"kind": "dense", "units": 16}, {"kind": "output"}]}
    model = networks.build(network).to(memory_format=torch.channels_last)
    images = torch.rand(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    torch.nn.functional.cross_entropy(model(images), torch.zeros(16, dtype=torch.long)).backward()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def _redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr (tracebacks included) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)


def _stop_with_parent(parent: int) -> None:
    """Interrupt this worker once its scheduler is gone (killed with SIGKILL), instead of training on unseen."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)
