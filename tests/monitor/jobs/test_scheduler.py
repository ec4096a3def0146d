"""Periodic jobs shared by several daemons: one instance per slot, missed slots run late once,
failures logged and retried, crashed owners' leases expire."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from monitor.config import Config
from monitor.jobs.scheduler import Job, Scheduler, slot_start
from monitor.storage.db import make_engine
from monitor.storage.schema import metadata, scheduler_locks

T0 = datetime(2026, 5, 1, 13, 20, tzinfo=UTC)
HOURLY = timedelta(hours=1)


class Recorder:
    """A job body that remembers the slots it ran."""

    def __init__(self) -> None:
        self.slots: list[datetime] = []

    def __call__(self, engine: Engine, slot: datetime) -> None:
        self.slots.append(slot)


def test_two_daemons_run_each_hourly_slot_once(engine: Engine) -> None:
    ran = Recorder()
    a = Scheduler(engine, [Job("rollups", HOURLY, ran)], owner="daemon-a")
    b = Scheduler(engine, [Job("rollups", HOURLY, ran)], owner="daemon-b")

    assert a.run_due(T0) == {"rollups": "ran"}
    assert b.run_due(T0 + timedelta(minutes=1)) == {"rollups": "done"}
    assert a.run_due(T0 + timedelta(minutes=30)) == {"rollups": "done"}
    # The next hour belongs to whichever instance gets there first.
    assert b.run_due(T0 + HOURLY) == {"rollups": "ran"}
    assert a.run_due(T0 + HOURLY) == {"rollups": "done"}

    assert ran.slots == [datetime(2026, 5, 1, 13, tzinfo=UTC), datetime(2026, 5, 1, 14, tzinfo=UTC)]
    with engine.connect() as conn:
        row = conn.execute(select(scheduler_locks)).one()
    assert row.owner == "daemon-b" and row.locked_until is None


def test_eight_instances_racing_for_the_same_slot_run_it_once(engine: Engine) -> None:
    ran = Recorder()
    instances = [Scheduler(engine, [Job("report", HOURLY, ran)], owner=f"daemon-{i}") for i in range(8)]
    start = threading.Barrier(len(instances))
    outcomes: list[str] = []

    def tick(sched: Scheduler) -> None:
        start.wait()
        outcomes.extend(sched.run_due(T0).values())

    threads = [threading.Thread(target=tick, args=(sched,)) for sched in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert ran.slots == [slot_start(HOURLY, T0)]
    assert len(outcomes) == 8 and outcomes.count("ran") == 1
    assert set(outcomes) <= {"ran", "done", "locked"}


def test_an_instance_finds_the_job_locked_while_another_runs_it(engine: Engine) -> None:
    outcomes = []
    b = Scheduler(engine, [Job("report", HOURLY, Recorder())], owner="daemon-b")

    def slow_report(_engine: Engine, _slot: datetime) -> None:
        outcomes.append(b.run_due(T0 + timedelta(seconds=5)))  # B ticks while A is still running

    a = Scheduler(engine, [Job("report", HOURLY, slow_report)], owner="daemon-a")
    assert a.run_due(T0) == {"report": "ran"}
    assert outcomes == [{"report": "locked"}]


def test_a_missed_run_is_run_late_once_for_the_latest_slot(engine: Engine) -> None:
    ran = Recorder()
    Scheduler(engine, [Job("retention", HOURLY, ran)], owner="before-outage").run_due(T0)

    # Every daemon was down from 13:20 to 16:10; the restarted one catches up once, not three times.
    restarted = Scheduler(engine, [Job("retention", HOURLY, ran)], owner="after-outage")
    assert restarted.run_due(datetime(2026, 5, 1, 16, 10, tzinfo=UTC)) == {"retention": "ran"}
    assert restarted.run_due(datetime(2026, 5, 1, 16, 11, tzinfo=UTC)) == {"retention": "done"}
    assert ran.slots == [datetime(2026, 5, 1, 13, tzinfo=UTC), datetime(2026, 5, 1, 16, tzinfo=UTC)]


def test_a_failing_job_is_logged_backs_off_and_is_retried_without_stopping_the_others(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    attempts = []

    def flaky(_engine: Engine, slot: datetime) -> None:
        attempts.append(slot)
        if len(attempts) == 1:
            raise RuntimeError("slack is down")

    healthy = Recorder()
    jobs = [Job("outbox", HOURLY, flaky), Job("rollups", HOURLY, healthy)]
    sched = Scheduler(engine, jobs, owner="daemon-a")

    with caplog.at_level(logging.ERROR, logger="monitor.jobs.scheduler"):
        assert sched.run_due(T0) == {"outbox": "failed", "rollups": "ran"}
    assert "scheduled job outbox failed" in caplog.text and "slack is down" in caplog.text

    # Held for the back-off (nobody hammers a broken job), then the same slot is retried and completed.
    assert sched.run_due(T0 + timedelta(minutes=1)) == {"outbox": "locked", "rollups": "done"}
    assert Job("outbox", HOURLY, flaky).retry_after == timedelta(minutes=5)
    assert sched.run_due(T0 + timedelta(minutes=6)) == {"outbox": "ran", "rollups": "done"}
    assert attempts == [slot_start(HOURLY, T0)] * 2


class Crash(BaseException):
    """The process dying mid-run: nothing after the job body runs, the lease is left held."""


def test_a_crashed_owners_lease_expires_and_another_instance_takes_the_slot(engine: Engine) -> None:
    def dies(_engine: Engine, _slot: datetime) -> None:
        raise Crash

    lease = timedelta(minutes=10)
    with pytest.raises(Crash):
        Scheduler(engine, [Job("report", HOURLY, dies, lease=lease)], owner="crashed").run_due(T0)

    ran = Recorder()
    survivor = Scheduler(engine, [Job("report", HOURLY, ran, lease=lease)], owner="survivor")
    assert survivor.run_due(T0 + timedelta(minutes=9)) == {"report": "locked"}
    assert survivor.run_due(T0 + timedelta(minutes=11)) == {"report": "ran"}
    assert ran.slots == [slot_start(HOURLY, T0)]


def test_the_background_scheduler_runs_a_due_job_right_after_start(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    metadata.create_all(engine)
    done = threading.Event()
    sched = Scheduler(engine, [Job("tick", HOURLY, lambda _e, _s: done.set())], owner="daemon")
    sched.start()
    try:
        assert done.wait(timeout=30), "the job never ran"
    finally:
        sched.shutdown()
    with engine.connect() as conn:
        last = conn.scalar(select(scheduler_locks.c.last_run_at))
    assert last is not None
    engine.dispose()


def test_slots_are_aligned_to_utc_and_jobs_need_distinct_names(sqlite_url: str) -> None:
    daily = timedelta(days=1)
    assert slot_start(daily, datetime(2026, 5, 1, 23, 59, tzinfo=UTC)) == datetime(2026, 5, 1, tzinfo=UTC)
    assert slot_start(timedelta(minutes=5), T0 + timedelta(minutes=3)) == T0 + timedelta(minutes=0)
    engine = make_engine(sqlite_url)
    with pytest.raises(ValueError, match="duplicate job names"):
        Scheduler(engine, [Job("a", daily, Recorder()), Job("a", daily, Recorder())])
    with pytest.raises(ValueError, match="interval must be positive"):
        Job("a", timedelta(0), Recorder())


def test_scheduler_config_takes_human_durations() -> None:
    config = Config.model_validate({"scheduler": {"tick": "30s"}, "reports": {"reference_window": "2w"}})
    assert config.scheduler.tick == timedelta(seconds=30)
    assert config.reports.reference_window == timedelta(days=14)


def test_a_database_that_resets_connections_costs_one_log_line_not_a_traceback_per_attempt(
        postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The network to Postgres is cut: every lease claim fails, every second, for as long as it lasts. The
    log says so once (WARNING), then once more when the database is back (INFO), and the job runs again."""
    from sqlalchemy import make_url

    from tests.tcp_proxy import TcpProxy

    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    engine = make_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
                         connect_timeout_s=2)
    try:
        metadata.create_all(engine)
        ran = Recorder()
        scheduler = Scheduler(engine, [Job("rollups", HOURLY, ran)], owner="daemon-a")
        assert scheduler.run_due(T0) == {"rollups": "ran"}
        proxy.cut()
        with caplog.at_level(logging.DEBUG, logger="monitor.jobs.scheduler"):
            outcomes = [scheduler.run_due(T0 + HOURLY * (1 + i)) for i in range(5)]
            proxy.restore()
            assert scheduler.run_due(T0 + HOURLY * 7) == {"rollups": "ran"}
        assert outcomes == [{"rollups": "failed"}] * 5
        lines = [r for r in caplog.records if r.name == "monitor.jobs.scheduler" and r.levelno >= logging.INFO]
        warnings = [r.getMessage() for r in lines if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "database unavailable" in warnings[0]
        assert len([r for r in lines if "database back" in r.getMessage()]) == 1
        assert all(r.exc_info is None for r in caplog.records if r.name == "monitor.jobs.scheduler")
    finally:
        engine.dispose()
        proxy.close()


class _SlowHandler(logging.Handler):
    """Writes take a while, as stderr into a full pipe does: the GIL is released and other job threads run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        threading.Event().wait(0.05)
        self.messages.append(record.getMessage())


def test_jobs_running_at_once_when_the_database_comes_back_say_so_once(postgres_url: str) -> None:
    """The scheduler's jobs run on a thread pool; after an outage the ones due together all succeed at once.
    bench/faults db_blackhole logged "database back" three times in the same millisecond; once is the story."""
    from sqlalchemy import make_url

    from tests.tcp_proxy import TcpProxy

    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    engine = make_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
                         connect_timeout_s=2)
    handler = _SlowHandler()
    logger = logging.getLogger("monitor.jobs.scheduler")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        metadata.create_all(engine)
        jobs = [Job(f"job{i}", HOURLY, Recorder()) for i in range(4)]
        scheduler = Scheduler(engine, jobs, owner="daemon-a")
        assert scheduler.run_due(T0) == {job.name: "ran" for job in jobs}
        proxy.cut()
        assert set(scheduler.run_due(T0 + HOURLY).values()) == {"failed"}
        proxy.restore()
        start = threading.Barrier(len(jobs))
        outcomes: list[str] = []

        def attempt(job: Job) -> None:
            start.wait()
            outcomes.append(scheduler._attempt(job, T0 + HOURLY))  # as the scheduler's thread pool runs each job

        threads = [threading.Thread(target=attempt, args=(job,)) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        engine.dispose()
        proxy.close()
    assert outcomes == ["ran"] * len(jobs)
    assert len([m for m in handler.messages if "database unavailable" in m]) == 1
    assert len([m for m in handler.messages if "database back" in m]) == 1, handler.messages
