"""The fault suite: the real daemon (`python -m monitor run`, a separate process) against faults, per case:
lost, doubled, dead-lettered, seconds to recover, daemon exits, log lines, peak RSS. Product figures (Kafka +
the daemon + Postgres or SQLite), not unit figures.

    python -m bench.faults                       # every case, Postgres at 127.0.0.1:5432, full sizes
    python -m bench.faults --quick               # smaller sizes and shorter outages (a few minutes)
    python -m bench.faults --case poison --case broker_restart --db sqlite

Cases:
  poison          10% malformed traffic plus the fuzz corpus (`monitor.synthetic.poison`, with a 5 MB message)
  broker_restart  tansu killed and started again empty on the same port; the topic auto-created (1 partition
                  instead of 3, so partition 0 holds fewer messages than the daemon had read there)
  topic_recreated the topic deleted and created again with 4 partitions instead of 3 while the broker and
                  the group's committed offsets stay: positions past the new log ends, and a new partition
  db_reset        the database connection reset and refused for ``--outage`` seconds (TCP proxy)
  db_blackhole    the database silent (packets dropped, no reset) for ``--outage`` seconds, longer than
                  max_poll_interval_ms (set to 20 s here), so the offset commit after it is rejected
  sigkill         the daemon SIGKILLed ``--kills`` times while it stores a run, restarted each time
  sigkill2        the same with two daemons in one consumer group, killed in turn
  slack           Slack (a local HTTP server standing in for it) answers 500 for half of ``--outage`` (60 s
                  by default), then refuses connections for the other half, while traffic with 5% malformed
                  messages makes the dead-letter rule fire; ``recover_s`` is from Slack's recovery to every
                  decided notification delivered, ``lost`` counts records and notifications never delivered

Columns: ``lost`` records produced but not in `records` (or dead letters expected but missing); ``doubled``
records counted in `stream_minutes` more than once (sum(n) - rows of `records`; records themselves are
keyed by id); ``dead`` dead letters stored (``expected`` in brackets); ``recover_s`` seconds from the end of
the fault to everything stored; ``exits`` daemon exits nobody asked for; ``log`` lines the daemon wrote
from the start of the fault to recovery (``tb`` how many of them are tracebacks); ``rss_mb`` peak RSS of the
daemon. The baseline, measured in the same run, is the ``clean`` case: the same traffic with no fault.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psutil
from kafka import KafkaProducer
from sqlalchemy import create_engine, func, make_url, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.storage.db import make_engine, upgrade  # noqa: E402
from monitor.storage.schema import alert_outbox, dead_letters, records, stream_minutes  # noqa: E402
from monitor.synthetic.broker import LocalBroker, create_topic, delete_topic, free_port  # noqa: E402
from monitor.synthetic.poison import corpus  # noqa: E402
from tests.monitor.alerts.slack_server import FakeSlack  # noqa: E402
from tests.tcp_proxy import TcpProxy  # noqa: E402

POSTGRES_ADMIN = os.environ.get("WATCHKEEPER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@dataclass
class Result:
    case: str
    lost: int = 0
    doubled: int = 0
    dead: int = 0
    dead_expected: int = 0
    recover_s: float | None = None
    exits: int = 0
    log_lines: int = 0
    tracebacks: int = 0
    rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)


def record(i: int, prefix: str) -> bytes:
    return orjson.dumps({"id": f"{prefix}-{i:07d}", "ts": 1_763_000_000_000 + i * 10, "model": f"m{i % 2}",
                         "app": ["chat", "search"][i % 2], "prompt": f"Question {i}: how do I bake bread?",
                         "response": f"Answer {i}: flour, water, salt, yeast, time.", "latency_ms": 100 + i % 400})


def produce(bootstrap: str, topic: str, values: list[bytes | None]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_request_size=16 << 20,
                             batch_size=1 << 20)
    for n, value in enumerate(values):
        producer.send(topic, value=value, key=str(n).encode())
    producer.flush()
    producer.close()


class Database:
    """A fresh database for one case: a Postgres database of its own, or a SQLite file."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        if kind == "sqlite":
            self.url = f"sqlite:///{workdir / 'faults.db'}"
            self.name = ""
        else:
            self.name = f"wk_faults_{uuid.uuid4().hex[:10]}"
            admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.name}"'))
            admin.dispose()
            self.url = f"{POSTGRES_ADMIN.rsplit('/', 1)[0]}/{self.name}"
        upgrade(self.url)
        self.engine = make_engine(self.url)

    def counts(self) -> tuple[int, int, int]:
        """(records, dead letters, sum of stream_minutes.n)."""
        with self.engine.connect() as conn:
            n = conn.scalar(select(func.count()).select_from(records)) or 0
            d = conn.scalar(select(func.count()).select_from(dead_letters)) or 0
            c = conn.scalar(select(func.coalesce(func.sum(stream_minutes.c.n), 0))) or 0
        return int(n), int(d), int(c)

    def stored_ids(self, prefix: str) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.scalars(select(records.c.id).where(records.c.id.like(f"{prefix}%"))))

    def drop(self) -> None:
        self.engine.dispose()
        if self.kind == "postgres":
            admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            admin.dispose()


class DaemonProcess:
    """`python -m monitor run` restarted whenever it exits without being asked; its peak RSS is sampled."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.config, self.log, self.env = config, log, env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.exits = 0
        self.asked_to_stop = False
        self.peak_rss = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.start()
        threading.Thread(target=self._watch, daemon=True).start()

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(self.config)],
                                     stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **self.env})

    def _watch(self) -> None:
        while not self._stop.is_set():
            with self._lock:  # kill() replaces the process: one that it killed must not be restarted here too
                proc = self.proc
                if proc is not None and proc.poll() is not None and not self.asked_to_stop:
                    self.exits += 1
                    self.start()
            if proc is not None:
                try:
                    p = psutil.Process(proc.pid)
                    rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                    self.peak_rss = max(self.peak_rss, rss)
                except psutil.Error:
                    pass
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL (an OOM kill, a node loss): asked for, so not counted as an exit; restarted at once."""
        with self._lock:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.start()

    def stop(self) -> int:
        with self._lock:
            self.asked_to_stop = True
            self._stop.set()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9


WORKERS = 0
"""``[pipeline] workers`` of the daemons (``--workers``; 0: one consumer process per core, the default)."""


def write_config(path: Path, db_url: str, bootstrap: str, topic: str, extra_kafka: str = "") -> Path:
    path.write_text(f"""
[database]
url = "{db_url}"
retry_initial_s = 0.2
retry_max_s = 2.0

[kafka]
bootstrap_servers = ["{bootstrap}"]
topics = ["{topic}"]
group_id = "wk-{topic}"
session_timeout_ms = 6000
{extra_kafka}

[pipeline]
batch_size = 1000
batch_timeout_ms = 200
workers = {WORKERS}

[retention]
# The records are dated November 2025 (fixed, so that runs compare), older than the default 30 days: a
# daemon (re)started in a new hour would run the retention job, delete them, and the run would count them lost.
enabled = false
""")
    return path


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.25)
    return None


def log_window(log: Path, start_line: int) -> tuple[int, int]:
    lines = log.read_text(errors="replace").splitlines()[start_line:]
    return len(lines), sum(1 for line in lines if line.startswith("Traceback"))


def line_count(log: Path) -> int:
    return len(log.read_text(errors="replace").splitlines()) if log.exists() else 0


def outbox_state(db: Database) -> tuple[int, int]:
    """(notifications decided, notifications not delivered: pending or dead)."""
    with db.engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(alert_outbox)) or 0
        open_ = conn.scalar(select(func.count()).select_from(alert_outbox).where(alert_outbox.c.status != "sent"))
    return int(total), int(open_ or 0)


def run_case(name: str, db_kind: str, n: int, outage_s: float, kills: int) -> Result:
    """One case from a fresh broker, topic and database to stopped daemons, measured."""
    result = Result(name)
    work = Path(tempfile.mkdtemp(prefix=f"faults-{name}-"))
    port = free_port()
    broker = LocalBroker(port=port).start()
    topic = f"faults-{name}-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap_servers, topic, partitions=3)
    db = Database(db_kind, work)
    proxy = None
    slack = None
    env: dict[str, str] = {}
    db_url = db.url
    if name in ("db_reset", "db_blackhole"):
        url = make_url(db.url)
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        db_url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    if name == "slack":
        slack = FakeSlack().__enter__()
        slack.down, slack.down_status = True, 500
        env["SLACK_WEBHOOK_URL"] = slack.webhook_url
    extra = "max_poll_interval_ms = 20000" if name == "db_blackhole" else ""
    config = write_config(work / "monitor.toml", db_url, broker.bootstrap_servers, topic, extra)
    logs = [work / "daemon.log"] + ([work / "daemon2.log"] if name == "sigkill2" else [])
    prefix = f"{name}-{uuid.uuid4().hex[:4]}"
    daemons = [DaemonProcess(config, log, env) for log in logs]
    expected_ids = {f"{prefix}-{i:07d}" for i in range(n)}
    dead_expected = 0
    decided_in_outage = answered_500 = 0
    marks = [0 for _ in logs]

    def mark() -> None:
        marks[:] = [line_count(log) for log in logs]

    def delivered() -> bool:
        total, open_ = outbox_state(db)
        return total > 0 and open_ == 0

    try:
        if name == "poison":
            poisons = corpus(prefix=prefix, big_mb=5)
            values: list[bytes | None] = []
            malformed = 0
            for i in range(n):
                values.append(record(i, prefix))
                if i % 9 == 0:  # 10% of the traffic malformed
                    values.append(record(i, prefix)[: 20 + i % 40])
                    malformed += 1
            values.extend(p.value for p in poisons)
            dead_expected = malformed + sum(1 for p in poisons if p.reason is not None)
            expected_ids |= {f"{prefix}-deep63", f"{prefix}-huge-md", f"{prefix}-nul", f"{prefix}-dup",
                             f"{prefix}-big"}
            mark()
            fault_end = time.monotonic()
            produce(broker.bootstrap_servers, topic, values)
        elif name == "clean":
            mark()
            fault_end = time.monotonic()
            produce(broker.bootstrap_servers, topic, [record(i, prefix) for i in range(n)])
        elif name in ("sigkill", "sigkill2"):
            produce(broker.bootstrap_servers, topic, [record(i, prefix) for i in range(n)])
            mark()
            for k in range(kills):
                target = n * (k + 1) // (kills + 2)
                wait_until(lambda t=target: db.counts()[0] >= t, 120)
                daemons[k % len(daemons)].kill()
            fault_end = time.monotonic()
        elif name == "slack":
            assert slack is not None
            mark()
            start = time.monotonic()
            values = []
            for i in range(n):
                values.append(record(i, prefix))
                if i % 20 == 0:  # 5% malformed: the dead-letter rate rule fires
                    values.append(record(i, prefix)[:25])
                    dead_expected += 1
            produce(broker.bootstrap_servers, topic, values)
            if wait_until(lambda: outbox_state(db)[0] > 0, max(outage_s / 2, 60)) is None:
                result.notes.append("no notification decided while Slack answered 500")
            time.sleep(max(0.0, start + outage_s / 2 - time.monotonic()))
            slack.down = False
            slack.refuse()
            time.sleep(max(0.0, start + outage_s - time.monotonic()))
            slack.accept()
            fault_end = time.monotonic()
            decided_in_outage = outbox_state(db)[0]
            answered_500 = len(slack.requests)
        else:
            half = n // 2
            produce(broker.bootstrap_servers, topic, [record(i, prefix) for i in range(half)])
            if wait_until(lambda: db.counts()[0] >= half, 120) is None:
                result.notes.append("first half not stored in 120 s")
            mark()
            if name == "broker_restart":
                broker.stop()
                time.sleep(outage_s)
                broker = LocalBroker(port=port).start()  # empty: the topic is auto-created by the producer
                fault_end = time.monotonic()
                produce(broker.bootstrap_servers, topic, [record(i, prefix) for i in range(half, n)])
            elif name == "topic_recreated":
                delete_topic(broker.bootstrap_servers, topic)
                create_topic(broker.bootstrap_servers, topic, partitions=4)
                fault_end = time.monotonic()
                produce(broker.bootstrap_servers, topic, [record(i, prefix) for i in range(half, n)])
            else:
                assert proxy is not None
                if name == "db_reset":
                    proxy.cut()
                else:
                    proxy.blackhole()
                produce(broker.bootstrap_servers, topic, [record(i, prefix) for i in range(half, n)])
                time.sleep(outage_s)
                proxy.restore()
                fault_end = time.monotonic()

        def recovered() -> bool:
            stored = expected_ids <= db.stored_ids(prefix) and db.counts()[1] >= dead_expected
            return stored and (slack is None or delivered())

        done = wait_until(recovered, 300)
        result.recover_s = None if done is None else round(time.monotonic() - fault_end, 1)
        time.sleep(2)
        for log, start_line in zip(logs, marks, strict=True):
            lines, tracebacks = log_window(log, start_line)
            result.log_lines += lines
            result.tracebacks += tracebacks
    finally:
        for daemon in daemons:
            code = daemon.stop()
            if code != 0:
                result.notes.append(f"exit code at SIGTERM {code}")
        broker.stop()
        if proxy is not None:
            proxy.close()
    stored = db.stored_ids(prefix)
    n_rows, n_dead, counted = db.counts()
    result.lost = len(expected_ids - stored) + max(0, dead_expected - n_dead)
    if slack is not None:
        result.lost += outbox_state(db)[1]
        with db.engine.connect() as conn:
            attempts = conn.scalar(select(func.coalesce(func.sum(alert_outbox.c.attempts), 0))) or 0
        result.notes.append(f"Slack: {decided_in_outage} notification(s) decided during the outage, "
                            f"{answered_500} request(s) answered 500, {attempts} delivery attempts in all")
        slack.__exit__(None, None, None)
    result.doubled = max(0, counted - n_rows)
    if counted < n_rows:
        result.notes.append(f"{n_rows - counted} stored records not counted")
    result.dead, result.dead_expected = n_dead, dead_expected
    result.exits = sum(d.exits for d in daemons)
    result.rss_mb = round(max(d.peak_rss for d in daemons) / 2**20)
    db.drop()
    result.notes.append(f"log: {', '.join(map(str, logs))}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cases = ["clean", "poison", "broker_restart", "topic_recreated", "db_reset", "db_blackhole", "sigkill", "sigkill2",
             "slack"]
    parser.add_argument("--case", action="append", choices=cases, help="run only these (repeatable)")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--quick", action="store_true", help="20k records, 15 s outages (30 s blackhole), 5 kills")
    parser.add_argument("-n", type=int, help="records per case (default 100k, 20k with --quick)")
    parser.add_argument("--outage", type=float, help="seconds each outage lasts (default 60, 15 with --quick)")
    parser.add_argument("--kills", type=int, help="SIGKILLs in the sigkill case (default 20, 5 with --quick)")
    parser.add_argument("--workers", type=int, default=0,
                        help="[pipeline] workers of each daemon (default 0: one consumer process per core)")
    args = parser.parse_args(argv)
    global WORKERS
    WORKERS = args.workers
    n = args.n or (20_000 if args.quick else 100_000)
    outage = args.outage or (15.0 if args.quick else 60.0)
    kills = args.kills or (5 if args.quick else 20)
    chosen = args.case or cases
    if "clean" not in chosen:
        chosen = ["clean", *chosen]  # the baseline, in the same run
    print(f"bench/faults: {n:,} records per case, outages {outage:.0f} s, {kills} kills, database {args.db}, "
          f"workers {WORKERS or 'one per core'}")
    header = (f"{'case':<15} {'lost':>5} {'doubled':>7} {'dead (expected)':>16} {'recover_s':>9} {'exits':>5} "
              f"{'log':>6} {'tb':>4} {'rss_mb':>6}")
    print(header)
    print("-" * len(header))
    bad = 0
    for name in chosen:
        # The blackhole must outlast max_poll_interval_ms (20 s) for the rejected commit to happen.
        seconds = max(outage, 30.0) if name == "db_blackhole" else outage
        r = run_case(name, args.db, n, seconds, kills)
        recover = "never" if r.recover_s is None else f"{r.recover_s:.1f}"
        print(f"{r.case:<15} {r.lost:>5} {r.doubled:>7} {f'{r.dead} ({r.dead_expected})':>16} {recover:>9} "
              f"{r.exits:>5} {r.log_lines:>6} {r.tracebacks:>4} {r.rss_mb:>6.0f}", flush=True)
        for note in r.notes:
            print(f"{'':<15} {note}")
        bad += bool(r.lost or r.doubled or r.exits or r.recover_s is None)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
