"""A class on one server: thirty students watch their runs' pages while four runs train.

Each simulated student is a real Streamlit client without a browser: it opens the app's
websocket on 127.0.0.1, loads the Train page with its own run selected (`?run=…&key=…`,
half of them in Korean), and then does what the page's one-second timer does in a browser:
it asks for the live view's fragment again whenever the server's auto-rerun interval comes
round. A poll's latency is the time from that request to the server's "fragment finished"
message, with every delta in between received: how long a student waits for the page to
show the newest epoch. An error is an exception drawn on the page, a script that ends
without success, a poll that gets no answer within POLL_TIMEOUT_SECONDS, or a dropped
connection.

The reference is the same client alone with nothing training, measured in the same run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.pages import free_port, start_server
from core.jobs import access
from core.jobs.locks import scheduler_pid, scheduler_running
from core.jobs.service import JobService, wait_for
from core.jobs.store import RunStore
from core.training import presets

STUDENTS = 30
TRAINING = 4  # LAYERLAB_MAX_JOBS for the server: four runs train, the rest wait in the queue
POLL_TIMEOUT_SECONDS = 30.0
FINISHED_OK = ("FINISHED_SUCCESSFULLY", "FINISHED_FRAGMENT_RUN_SUCCESSFULLY")


class Student:
    """One browser's worth of websocket traffic; collects the latency of every poll and what went wrong."""

    def __init__(self, port: int, query: str):
        self.port = port
        self.query = query
        self.load_seconds: float | None = None
        self.polls: list[float] = []
        self.errors: list[str] = []
        self.interval = 1.0  # seconds between polls, as the page's last auto-rerun message asked

    async def _exchange(self, socket, fragment_id: str = "") -> str:
        """Send one rerun request and read until the script finishes; returns the fragment id the page asks to poll."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        request = BackMsg()
        request.rerun_script.query_string = self.query
        request.rerun_script.page_name = "train"
        if fragment_id:
            request.rerun_script.fragment_id = fragment_id
            request.rerun_script.is_auto_rerun = True
        await socket.send(request.SerializeToString())
        polled = ""
        while True:
            message = ForwardMsg()
            message.ParseFromString(await asyncio.wait_for(socket.recv(), POLL_TIMEOUT_SECONDS))
            kind = message.WhichOneof("type")
            if kind == "auto_rerun":
                polled, self.interval = message.auto_rerun.fragment_id, message.auto_rerun.interval
            elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                if message.delta.new_element.WhichOneof("type") == "exception":
                    self.errors.append(f"exception: {message.delta.new_element.exception.message[:120]}")
            elif kind == "script_finished":
                status = ForwardMsg.ScriptFinishedStatus.Name(message.script_finished)
                if status == "FINISHED_EARLY_FOR_RERUN":
                    continue  # the page asked for a rerun (st.rerun): the next script run follows on the same socket
                if status not in FINISHED_OK:
                    self.errors.append(f"script ended {status}")
                return polled or fragment_id

    async def attend(self, until: float) -> None:
        import websockets

        try:
            async with websockets.connect(
                f"ws://127.0.0.1:{self.port}/_stcore/stream", subprotocols=["streamlit"], max_size=None, open_timeout=POLL_TIMEOUT_SECONDS
            ) as socket:
                started = time.perf_counter()
                fragment_id = await self._exchange(socket)
                self.load_seconds = time.perf_counter() - started
                if not fragment_id:
                    self.errors.append("the page did not poll its run")
                    return
                while time.monotonic() < until:
                    due = time.monotonic() + self.interval  # the live view's run_every, as a browser's timer keeps it
                    started = time.perf_counter()
                    await self._exchange(socket, fragment_id)
                    self.polls.append(time.perf_counter() - started)
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
        except (OSError, TimeoutError, asyncio.TimeoutError) as error:
            self.errors.append(f"{type(error).__name__}: {error}")
        except Exception as error:  # a dropped websocket (websockets.ConnectionClosed) and anything else count as errors
            self.errors.append(f"{type(error).__name__}: {error}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(students: list[Student]) -> dict:
    polls = [seconds for student in students for seconds in student.polls]
    loads = [student.load_seconds for student in students if student.load_seconds is not None]
    return {
        "students": len(students),
        "polls": len(polls),
        "poll_median": statistics.median(polls) if polls else None,
        "poll_p95": percentile(polls, 0.95) if polls else None,
        "poll_max": max(polls) if polls else None,
        "load_median": statistics.median(loads) if loads else None,
        "errors": [error for student in students for error in student.errors],
    }


async def _class(port: int, queries: list[str], seconds: float) -> list[Student]:
    students = [Student(port, query) for query in queries]
    until = time.monotonic() + seconds
    await asyncio.gather(*(student.attend(until) for student in students))
    return students


def submit_runs(service: JobService, count: int) -> list[tuple[int, str]]:
    """One run per student, each long enough to outlast the measurement; returns (run id, owner key) pairs."""
    preset = presets.get("shallow-mlp")
    owned = []
    for number in range(count):
        key = access.new_key()
        settings = preset.train_settings(epochs=200, train_subset=5000)
        run_id = service.submit(preset.network, settings, owner=f"student {number + 1}", actor=access.Actor.for_key(key))
        owned.append((run_id, key))
    return owned


def _stop_scheduler(store: RunStore) -> None:
    """It would exit by itself once idle; the benchmark's runs directory is about to go."""
    if (pid := scheduler_pid(store)) is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while scheduler_running(store) and time.monotonic() < deadline:
            time.sleep(0.2)


def one_class(seconds: float, options: tuple[str, ...] = ()) -> dict:
    """A fresh server and runs directory: the reference (one student, one run training), then the class."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as directory:
        runs = Path(directory)
        os.environ["LAYERLAB_MAX_JOBS"] = str(TRAINING)  # the server and the scheduler it starts inherit it
        service = JobService(RunStore(runs))
        port = free_port()
        server = start_server(runs, port, options)
        try:
            service.ensure_scheduler()
            alone_run, alone_key = submit_runs(service, 1)[0]
            wait_for(service.store, alone_run, timeout=60, statuses=("running",))
            reference = summary(asyncio.run(_class(port, [f"run={alone_run}&key={alone_key}&lang=en"], min(seconds, 20.0))))
            service.cancel(alone_run)
            wait_for(service.store, alone_run, timeout=60)
            owned = submit_runs(service, STUDENTS)
            deadline = time.monotonic() + 60
            while len(service.store.list(status="running")) < TRAINING and time.monotonic() < deadline:
                time.sleep(0.5)
            queries = [f"run={run_id}&key={key}&lang={'ko' if number % 2 else 'en'}" for number, (run_id, key) in enumerate(owned)]
            started = time.monotonic()
            students = asyncio.run(_class(port, queries, seconds))
            elapsed = time.monotonic() - started
            training = len(service.store.list(status="running"))
            epochs = sum(len(service.store.metrics(run_id)) for run_id, _ in owned)
            for run_id, _ in owned:
                service.cancel(run_id)
            for run_id, _ in owned:
                wait_for(service.store, run_id, timeout=60)
        finally:
            server.terminate()
            server.wait(timeout=20)
            _stop_scheduler(service.store)
    loaded = summary(students)
    print(
        f"classroom{' ' + ' '.join(options) if options else ''}: {loaded['students']} students, {loaded['polls']} polls in {elapsed:.0f} s, "
        f"p95 {loaded['poll_p95']:.3f} s (alone {reference['poll_p95']:.3f} s), {len(loaded['errors'])} errors",
        flush=True,
    )
    return {"reference": reference, "class": loaded, "seconds": elapsed, "training_at_end": training, "epochs_recorded": epochs}


def bench_classroom(seconds: float = 45.0) -> dict:
    """LayerLab's server settings, then Streamlit's default of a full garbage collection after every script run."""
    return {
        "students": STUDENTS,
        "training": TRAINING,
        "ours": one_class(seconds),
        "streamlit_default_gc": one_class(seconds, ("--runner.postScriptGC", "true")),
    }
