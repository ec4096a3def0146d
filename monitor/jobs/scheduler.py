"""Periodic jobs inside the daemon, each run by one instance only, each time slot run once.

Time is cut into slots aligned to the epoch in UTC: a job with ``interval=1h`` owns one slot per hour
(``…T13:00:00Z``, ``…T14:00:00Z``). Every instance wakes each job every ``tick`` (never longer than the
job's interval) and tries to claim the job's row in ``scheduler_locks`` with one conditional UPDATE:

* the lease is free (``locked_until`` is NULL or in the past — a crashed owner's lease simply expires), and
* the current slot is not done (``last_run_at`` is older than the slot).

Exactly one instance wins; it runs the job with the slot's start time and records that slot in
``last_run_at`` when the job returns. So several daemons never run a slot twice, and a slot missed while
every daemon was down (or while a run kept failing) is run late, once, on the next tick — if several slots
were missed only the latest is run (coalescing). A failed run is logged with the job's name, keeps the lease
for a short back-off so instances do not hammer a broken job, and is retried after it; it never stops
the scheduler or the daemon.

Contract for job authors: ``run(engine, slot)`` receives the start of the slot (UTC, tz-aware), may take
a while (up to the lease), should be idempotent for a given slot (a run that dies after its work
committed but before the slot was recorded is run again) and should keep its work bounded.

>>> from datetime import timedelta
>>> from monitor.storage.db import make_engine
>>> from monitor.storage.schema import metadata
>>> engine = make_engine("sqlite://")
>>> metadata.create_all(engine)
>>> seen = []
>>> hourly = Job("hello", timedelta(hours=1), lambda engine, slot: seen.append(slot))
>>> sched = Scheduler(engine, [hourly], owner="doc")
>>> sched.run_due(datetime(2026, 5, 1, 13, 20, tzinfo=UTC))
{'hello': 'ran'}
>>> sched.run_due(datetime(2026, 5, 1, 13, 40, tzinfo=UTC))  # same slot: already done
{'hello': 'done'}
>>> seen
[datetime.datetime(2026, 5, 1, 13, 0, tzinfo=datetime.timezone.utc)]

In the daemon: ``sched.start()`` once, ``sched.shutdown()`` on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import ColumnElement, Engine, and_, insert, or_, select, update
from sqlalchemy.exc import DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from monitor.ops.metrics import DATABASE_ERRORS
from monitor.storage.db import as_utc
from monitor.storage.schema import scheduler_locks

_DATABASE_DOWN = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)
"""Errors that say the database is not answering: one line per outage, not a traceback per attempt."""

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Outcome = Literal["ran", "done", "locked", "failed"]
"""What one attempt did: ran the slot, found it done already, found another instance holding the lease,
or ran it and the job raised (or the database could not be reached)."""


class Superseded(Exception):
    """A job found that another instance did its work meanwhile (its optimistic write lost the race, e.g. after
    the lease moved to another daemon): nothing is lost, the slot is retried. Logged as one WARNING line, not a
    traceback."""


@dataclass(frozen=True)
class Job:
    """A periodic job: ``run(engine, slot)`` once per ``interval`` across all instances.

    ``lease`` bounds how long a run may hold the job before another instance may take over (a crashed
    owner's lease expires); by default twice the interval, between one minute and one hour.
    """

    name: str
    interval: timedelta
    run: Callable[[Engine, datetime], None]
    lease: timedelta | None = None

    def __post_init__(self) -> None:
        if self.interval <= timedelta(0):
            raise ValueError(f"job {self.name!r}: interval must be positive")
        if not self.name or len(self.name) > 200:
            raise ValueError(f"job name must have 1 to 200 characters: {self.name!r}")

    @property
    def lease_for(self) -> timedelta:
        if self.lease is not None:
            return self.lease
        return min(max(2 * self.interval, timedelta(minutes=1)), timedelta(hours=1))

    @property
    def retry_after(self) -> timedelta:
        """How long a failed run keeps the job locked before any instance retries it."""
        return min(self.interval, timedelta(minutes=5))


def slot_start(interval: timedelta, now: datetime) -> datetime:
    """Start of the slot of length ``interval`` (aligned to the UTC epoch) that contains ``now``."""
    slots = (as_utc(now) - EPOCH) // interval
    return EPOCH + slots * interval


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Scheduler:
    """Runs ``jobs`` against ``engine`` on a background thread pool (APScheduler).

    ``tick`` is how often this instance checks whether a job's current slot still needs running; it is
    what "late" means for a missed run. ``run_due`` does one synchronous round, for tests and tools.
    """

    def __init__(
        self,
        engine: Engine,
        jobs: Sequence[Job],
        owner: str | None = None,
        tick: timedelta = timedelta(seconds=60),
    ) -> None:
        names = [job.name for job in jobs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate job names: {duplicates}")
        if tick <= timedelta(0):
            raise ValueError("tick must be positive")
        self.engine = engine
        self.jobs = list(jobs)
        self.owner = owner or default_owner()
        self.tick = tick
        self._rows_ready = False
        self._down_since: float | None = None
        self._rows_lock = threading.Lock()
        self._down_lock = threading.Lock()
        """Jobs run on several threads at once: only one of them reports the database going or coming back."""
        self._aps: BackgroundScheduler | None = None
        self._last_attempt = time.monotonic()

    def start(self) -> None:
        """Start the background thread; each job is first checked right away (a missed slot runs now)."""
        if self._aps is not None:
            raise RuntimeError("scheduler already started")
        aps = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        now = datetime.now(UTC)
        for job in self.jobs:
            every = min(job.interval, self.tick)
            aps.add_job(
                self._attempt,
                IntervalTrigger(seconds=every.total_seconds(), timezone=UTC),
                args=[job],
                id=job.name,
                name=job.name,
                next_run_time=now,
            )
        aps.start()
        self._aps = aps
        log.info("scheduler started as %s with jobs %s", self.owner, [job.name for job in self.jobs])

    def alive(self) -> bool:
        """The background thread is running and has attempted a job within three ticks (a wedged pool is
        not alive): what ``/livez`` and ``/readyz`` report."""
        aps = self._aps
        thread = getattr(aps, "_thread", None)
        if aps is None or not aps.running or (thread is not None and not thread.is_alive()):
            return False
        if not self.jobs:
            return True
        every = min(min(job.interval for job in self.jobs), self.tick).total_seconds()
        return time.monotonic() - self._last_attempt < 3 * every + 30

    def shutdown(self, wait: bool = True) -> None:
        """Stop scheduling; with ``wait`` the runs in progress finish (and record their slot) first."""
        if self._aps is not None:
            self._aps.shutdown(wait=wait)
            self._aps = None

    def run_due(self, now: datetime | None = None) -> dict[str, Outcome]:
        """Attempt every job once, in this thread, as if the clock read ``now``."""
        return {job.name: self._attempt(job, now) for job in self.jobs}

    def _attempt(self, job: Job, now: datetime | None = None) -> Outcome:
        self._last_attempt = time.monotonic()
        now = as_utc(now) if now is not None else datetime.now(UTC)
        slot = slot_start(job.interval, now)
        try:
            self._ensure_rows()
            lease_until = self._claim(job, slot, now)
            if lease_until is None:
                return self._why_not(job, slot)
        except _DATABASE_DOWN as exc:
            self._database_down(exc)
            return "failed"
        except Exception:
            log.exception("scheduled job %s: could not claim slot %s", job.name, slot.isoformat())
            return "failed"
        self._database_back()
        # Jobs that run every few seconds (alert evaluation, delivery) would drown the log at INFO.
        level = logging.DEBUG if job.interval < timedelta(minutes=1) else logging.INFO
        log.log(level, "scheduled job %s: running slot %s", job.name, slot.isoformat())
        started = time.monotonic()
        try:
            job.run(self.engine, slot)
        except _DATABASE_DOWN as exc:
            self._database_down(exc)
            return "failed"
        except Exception as exc:
            if isinstance(exc, Superseded):
                log.warning("scheduled job %s: %s; retrying slot %s", job.name, exc, slot.isoformat())
            else:
                log.exception("scheduled job %s failed for slot %s", job.name, slot.isoformat())
            failed_at = now + timedelta(seconds=time.monotonic() - started)
            self._release(job, lease_until, failed_at + job.retry_after)
            return "failed"
        try:
            self._complete(job, slot, lease_until)
        except Exception:
            log.exception("scheduled job %s: ran slot %s but could not record it", job.name, slot.isoformat())
            return "failed"
        return "ran"

    def _database_down(self, exc: BaseException) -> None:
        """Counted in ``watchkeeper_database_errors_total{component="scheduler"}``; one WARNING when the
        database stops answering the scheduler (not a traceback per job and second); the rest at DEBUG until
        `_database_back`."""
        DATABASE_ERRORS.labels("scheduler").inc()
        with self._down_lock:
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
        if first:
            text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            log.warning("scheduler: database unavailable (%s); jobs wait for it", text[0][:200] if text else exc)
        else:
            log.debug("scheduler: database still unavailable: %s", exc)

    def _database_back(self) -> None:
        with self._down_lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.info("scheduler: database back after %.1f s", time.monotonic() - since)

    def _ensure_rows(self) -> None:
        if self._rows_ready:
            return
        with self._rows_lock:
            if self._rows_ready:
                return
            with self.engine.connect() as conn:
                existing = set(conn.scalars(select(scheduler_locks.c.job)))
            for job in self.jobs:
                if job.name in existing:
                    continue
                try:
                    with self.engine.begin() as conn:
                        conn.execute(insert(scheduler_locks).values(job=job.name))
                except IntegrityError:
                    pass  # another instance created it first
            self._rows_ready = True

    def _claim(self, job: Job, slot: datetime, now: datetime) -> datetime | None:
        lease_until = now + job.lease_for
        t = scheduler_locks.c
        stmt = (
            update(scheduler_locks)
            .where(
                t.job == job.name,
                or_(t.locked_until.is_(None), t.locked_until < now),
                or_(t.last_run_at.is_(None), t.last_run_at < slot),
            )
            .values(owner=self.owner, locked_until=lease_until)
        )
        with self.engine.begin() as conn:
            claimed = conn.execute(stmt).rowcount == 1
        return lease_until if claimed else None

    def _why_not(self, job: Job, slot: datetime) -> Outcome:
        with self.engine.connect() as conn:
            last = conn.scalar(select(scheduler_locks.c.last_run_at).where(scheduler_locks.c.job == job.name))
        return "done" if last is not None and as_utc(last) >= slot else "locked"

    def _ours(self, job: Job, lease_until: datetime) -> ColumnElement[bool]:
        t = scheduler_locks.c
        return and_(t.job == job.name, t.owner == self.owner, t.locked_until == lease_until)

    def _release(self, job: Job, lease_until: datetime, until: datetime | None) -> None:
        try:
            with self.engine.begin() as conn:
                stmt = update(scheduler_locks).where(self._ours(job, lease_until)).values(locked_until=until)
                conn.execute(stmt)
        except Exception:
            log.exception("scheduled job %s: could not release its lease", job.name)

    def _complete(self, job: Job, slot: datetime, lease_until: datetime) -> None:
        t = scheduler_locks.c
        with self.engine.begin() as conn:
            conn.execute(
                update(scheduler_locks)
                .where(t.job == job.name, or_(t.last_run_at.is_(None), t.last_run_at < slot))
                .values(last_run_at=slot)
            )
            released = conn.execute(
                update(scheduler_locks).where(self._ours(job, lease_until)).values(locked_until=None)
            ).rowcount
        if not released:
            log.warning("scheduled job %s: slot %s outlived its lease (%s)", job.name, slot, job.lease_for)
