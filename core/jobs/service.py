"""The job service: background training that outlives browsers, shared by every user.

Owns the narrow interface that pages and the CLI use — `submit`, `cancel`, `resume`,
`run` (status and metrics come from the run store) — and the embedded executor behind it:
one scheduler process per runs directory that starts each run in its own worker process
(spawn context, as CUDA requires), so a crash, a segfault or an out-of-memory error in one
run cannot take down the app or other runs. A cluster backend replaces `Scheduler._launch`
and nothing above it; `docs/jobs.md` shows one with Ray. It knows nothing of training
itself (`core.jobs.runner` does) or of the UI, and imports no torch: listing, cancelling and
resuming runs answer at once; only `submit` and `run_here` load the model code.

Who may do what (`core.jobs.access`): every call that changes a run — `cancel`, `resume`,
`delete`, `free_disk` — takes the `Actor` asking and refuses (`AccessDenied`) unless it is
the run's owner (the browser whose key made it), the teacher or the administrator; the
default actor is the administrator, which is what the CLI is without `--as-owner`. Pages
always pass their browser's actor, so the server refuses whatever a page might show.

How a run moves: `submit` stores it as `queued` (an owner may have at most
`max_queued_per_owner()` queued at once; the teacher and the administrator have no cap); the
scheduler claims queued runs in the fair order of `queued_run_ids` (round-robin between
owners, the order `queue_position` reports) as `running` while fewer than
the limit are running, and the worker writes progress, heartbeats and metrics, and ends it
`succeeded`, `diverged`, `failed` or `cancelled`. A worker that dies, or a service that stops, leaves the run `interrupted`
with its finished epochs and checkpoints; `resume` queues it to continue from there.
Readers that go through `run` and `runs` see such a run `interrupted` at once, with or
without a scheduler running.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from dataclasses import dataclass

from core.errors import Message
from core.jobs import access, disk, lesson_links
from core.jobs.access import ADMIN, Actor
from core.jobs.liveness import reconcile
from core.jobs.locks import held, scheduler_pid, scheduler_running, start_lock_path
from core.jobs.store import FINISHED, Run, RunNotResumable, RunStore
from core.training.settings import TrainSettings

PROJECT_ROOT = Path(__file__).resolve().parents[2]

START_TIMEOUT_SECONDS = 30.0  # how long `ensure_scheduler` waits for a new scheduler to take its lock
DEFAULT_MAX_QUEUED_PER_OWNER = 2  # queued runs one owner may have waiting (LAYERLAB_MAX_QUEUED_PER_OWNER)


def max_queued_per_owner() -> int:
    """How many queued runs one owner may have: `LAYERLAB_MAX_QUEUED_PER_OWNER`, else DEFAULT_MAX_QUEUED_PER_OWNER."""
    configured = os.environ.get("LAYERLAB_MAX_QUEUED_PER_OWNER", "").strip()
    if not configured:
        return DEFAULT_MAX_QUEUED_PER_OWNER
    try:
        return max(1, int(configured))
    except ValueError:
        raise ValueError(f"LAYERLAB_MAX_QUEUED_PER_OWNER is {configured!r}; set it to a whole number of runs, e.g. 2.") from None


class JobService:
    """submit / cancel / resume / run: the only interface pages and the CLI use for training."""

    def __init__(self, store: RunStore | None = None):
        self.store = store or RunStore()

    def submit(
        self, network: dict, settings: TrainSettings, owner: str = "", name: str = "", actor: Actor = ADMIN, lesson_link: str | None = None,
    ) -> int:
        """Validate and queue a run owned by `actor`'s key; returns its id.

        Raises SpecError/SettingsError for bad input, QueueFull when the actor already has
        `max_queued_per_owner()` runs queued (the teacher and the administrator have no cap), and
        LessonLinkError for an unknown `lesson_link` or a submission that changes what it locks.
        The owner's name and the run's name are stored sanitised (`access.display_name`).
        """  # fmt: skip
        from core.model import network as networks  # torch: only a submission needs shapes

        settings.validate()
        summary = networks.validate(network, settings.dataset)
        if lesson_link is not None:
            link = self.lesson_link(lesson_link)
            lesson_links.check_submission(link, summary.spec, networks.validate(link.network, settings.dataset).spec, settings)
        return self.store.create(
            summary.spec, settings.to_dict(), name=access.display_name(name, limit=80), owner=access.display_name(owner), status="queued",
            parameters=summary.total_parameters, owner_key_hash=actor.key_hash,
            queued_cap=None if actor.oversees else max_queued_per_owner(), lesson_link=lesson_link,
        )  # fmt: skip

    def create_lesson_link(self, network: dict, settings: TrainSettings, locked: list[str], title: str, actor: Actor) -> str:
        """The teacher's new lesson link for this network and these settings; returns its id. Only the teacher (or admin) may."""
        from core.model import network as networks

        if not actor.oversees:
            raise access.AccessDenied("access.teacher_only")
        settings.validate()
        networks.validate(network, settings.dataset)
        link_id = lesson_links.new_id()
        self.store.create_lesson_link(
            link_id, access.display_name(title, limit=80), network, settings.to_dict(), lesson_links.checked_locks(locked)
        )
        return link_id

    def lesson_link(self, link_id: str) -> lesson_links.LessonLink:
        """The lesson link, or LessonLinkError: `lesson_link.malformed` for a crafted id, `lesson_link.unknown` for none such."""
        row = self.store.lesson_link(lesson_links.checked_id(link_id))
        if row is None:
            raise lesson_links.LessonLinkError("lesson_link.unknown", value=link_id)
        return lesson_links.from_row(row)

    def hide_names(self, link_id: str, hidden: bool, actor: Actor) -> None:
        """Whether the link's leaderboard and presenter view show names; only the teacher (or admin) may change it."""
        if not actor.oversees:
            raise access.AccessDenied("access.teacher_only")
        self.lesson_link(link_id)
        self.store.set_lesson_link_names_hidden(link_id, hidden)

    def _checked(self, run_id: int, actor: Actor) -> Run:
        """The run, after checking that `actor` may act on it (RunNotFound, AccessDenied)."""
        run = self.store.get(run_id, with_metrics=False)
        access.check(actor, run)
        return run

    def cancel(self, run_id: int, actor: Actor = ADMIN) -> str:
        """Cancel a queued run at once, or ask a running one to stop; returns "cancelled", "cancelling" or the final status.

        A running run stops within 2 s when a scheduler serves it, keeping its finished epochs and best checkpoint.
        """
        self._checked(run_id, actor)
        if self.store.transition(run_id, ("queued",), status="cancelled", message=Message("run.cancelled_before_start"), finished_at=time.time()):
            return "cancelled"
        run = self.store.get(run_id, with_metrics=False)
        if run.status != "running":
            return run.status
        self.store.request_cancel(run_id)
        reconcile(self.store)  # A run whose worker is already gone ends now.
        status = self.store.get(run_id, with_metrics=False).status
        return "cancelling" if status == "running" else status

    def resume(self, run_id: int, actor: Actor = ADMIN) -> None:
        """Queue an interrupted, cancelled or failed run to continue after its last finished epoch (QueueFull past a student's cap)."""
        run = self._checked(run_id, actor)
        if run.status not in ("interrupted", "cancelled", "failed"):
            raise RunNotResumable("resume.wrong_status", run=run_id, status=run.status)
        if not self.store.resume_state_path(run_id).is_file():
            raise RunNotResumable("resume.no_state", run=run_id)
        # A student's resume joins the queue like a submission, so it counts against the same cap (QueueFull).
        self.store.requeue(
            run_id, ("interrupted", "cancelled", "failed"), queued_cap=None if actor.oversees else max_queued_per_owner(),
            resume_requested=1, cancel_requested=0, message="",
        )  # fmt: skip

    def delete(self, run_id: int, actor: Actor = ADMIN) -> None:
        """Delete a run that is not running, with its metrics and files (RunStillRunning while it runs)."""
        self._checked(run_id, actor)
        self.store.delete(run_id)

    def free_disk(self, run_id: int, actor: Actor = ADMIN, keep: str = "views") -> int:
        """Thin the run's epoch checkpoints (`disk.prune`); the bytes freed."""
        self._checked(run_id, actor)
        return disk.prune(self.store, run_id, keep=keep)

    def run(self, run_id: int) -> Run:
        """The run with its metrics, as every reader should see it: a `running` run whose worker is gone is first marked interrupted.

        Needs no scheduler: any process that reads a run this way ends a lost one.
        """
        run = self.store.get(run_id)
        if run.status == "running" and run_id in reconcile(self.store):
            run = self.store.get(run_id)
        return run

    def runs(self, owner: str | None = None) -> list[Run]:
        """The newest runs (the store's listing), after ending those whose worker is gone."""
        reconcile(self.store)
        return self.store.list(owner=owner)

    def queue_position(self, run_id: int) -> int | None:
        """1 for the next run to start; None when the run is not queued. The scheduler starts runs in this order (`queued_run_ids`)."""
        order = queued_run_ids(self.store)
        return order.index(run_id) + 1 if run_id in order else None

    def run_here(self, run_id: int, poll: Callable[[], None] | None = None) -> str:
        """Train a queued run in this process (the CLI's foreground `train`), calling `poll` twice a second.

        Ctrl-C cancels the run cleanly; its finished epochs are kept.
        """
        if not self.store.transition(run_id, ("queued",), status="running", started_at=time.time(), heartbeat_at=time.time()):
            raise RunNotResumable("run.not_queued", run=run_id)
        from core.jobs import runner  # torch: only training here needs it

        outcome: dict[str, str] = {}
        thread = threading.Thread(target=lambda: outcome.update(status=runner.execute(self.store, run_id)), daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.5)
                if poll:
                    poll()
        except KeyboardInterrupt:
            self.store.request_cancel(run_id)
            thread.join()
        return outcome.get("status", self.store.get(run_id, with_metrics=False).status)

    def ensure_scheduler(self) -> bool:
        """Start a background scheduler for this runs directory unless one serves it; True when this call started one.

        Callers take turns on a start lock, and each waits until the scheduler it started holds the
        directory's lock, so two browser sessions (or the app and the CLI) never start two.
        The scheduler logs to `<runs dir>/scheduler.log` and exits after IDLE_EXIT_SECONDS idle.
        """
        with held(start_lock_path(self.store)):
            if scheduler_running(self.store):
                return False
            with open(self.store.directory / "scheduler.log", "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "core", "scheduler", "--exit-when-idle"],
                    cwd=PROJECT_ROOT,
                    env={**os.environ, "LAYERLAB_RUNS": str(self.store.directory)},
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # Outlives the app process that started it, and its Ctrl-C.
                )
            # Reap it when it exits, so an idle-exited scheduler does not linger as a zombie.
            threading.Thread(target=process.wait, name="scheduler-reaper", daemon=True).start()
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while time.monotonic() < deadline and process.poll() is None and scheduler_pid(self.store) != process.pid:
                time.sleep(0.05)
            return True



@dataclass(frozen=True)
class Owner:
    """What the fair order knows of one owner: their queued runs (oldest first), how many run now, when one last started."""

    queued: tuple[int, ...]
    running: int = 0
    last_started: float | None = None  # None: none of theirs has started yet


def fair_order(owners: dict[str, Owner]) -> list[int]:
    """Queued run ids in the order to start them: round-robin between owners, not first come, first served.

    Each queued run gets a turn: how many of its owner's runs are running plus how many of
    theirs wait ahead of it. Lower turns go first; at equal turns the owner served least
    recently goes first (never served before anyone), then the owner who has waited longest.
    So with A's five runs queued before B's one, B's run starts second: after A's first has
    started, A's next waits a turn, and once A's first has finished, B (never served) beats A.
    """
    keyed = []
    for owner in owners.values():
        served = -1.0 if owner.last_started is None else owner.last_started
        for rank, run_id in enumerate(owner.queued):
            keyed.append(((owner.running + rank, served, owner.queued[0], run_id), run_id))
    return [run_id for _, run_id in sorted(keyed)]


# Who owns a run, for fairness: the key's hash, or the typed name for runs made before classroom mode.
OWNER_IDENTITY = "COALESCE('key:' || owner_key_hash, 'name:' || owner)"


def queued_run_ids(store: RunStore) -> list[int]:
    """Every queued run's id, with no cap, in the order the scheduler starts them (`fair_order`).

    Queries of our own rather than `RunStore.list`, which returns the newest 500 rows decoded.
    """
    with store._connect() as connection:
        queued = connection.execute(f"SELECT id, {OWNER_IDENTITY} FROM runs WHERE status = 'queued' ORDER BY id").fetchall()
        if not queued:
            return []
        history = connection.execute(
            f"SELECT {OWNER_IDENTITY}, SUM(status = 'running'), MAX(started_at) FROM runs "
            f"WHERE {OWNER_IDENTITY} IN (SELECT {OWNER_IDENTITY} FROM runs WHERE status = 'queued') GROUP BY 1"
        ).fetchall()
    waiting: dict[str, list[int]] = {}
    for run_id, identity in queued:
        waiting.setdefault(identity, []).append(run_id)
    served = {identity: (int(running or 0), last) for identity, running, last in history}
    return fair_order({identity: Owner(tuple(ids), *served.get(identity, (0, None))) for identity, ids in waiting.items()})


def wait_for(store: RunStore, run_id: int, timeout: float = 600.0, statuses: tuple[str, ...] = FINISHED) -> Run:
    """Block until run `run_id` reaches one of `statuses` (tests and scripts)."""
    deadline = time.monotonic() + timeout
    while True:
        run = store.get(run_id, with_metrics=False)
        if run.status in statuses:
            return store.get(run_id)
        if time.monotonic() > deadline:
            raise TimeoutError(f"Run {run_id} did not reach {statuses} within {timeout} s (it is {run.status}).")
        time.sleep(0.1)
