"""The durable outbox: every notification is a row in `alert_outbox` before anyone tries to send it.

The evaluation that decides a notification writes its row in the same transaction that records the alert
as announced, so a notification is never decided-but-lost nor sent-but-unrecorded-as-decided. A worker
(`deliver_pending`, run every second) sends pending rows through a `Sink` and marks them ``sent``.

Delivery contract:

* Order: rows of one sink go out in id order. When a row fails, later rows of that sink wait (head of
  line), so after an outage everything arrives in the order it was decided.
* Retries: transient failures (timeouts, 5xx, 429) back off exponentially (``Retry-After`` wins when given);
  a permanent failure (a 4xx other than 429, a revoked token) or ``max_attempts`` / ``max_age`` makes the
  row ``dead`` with the reason in ``last_error`` and a log line. Dead rows never block the queue.
* Exactly once, nearly: a row is claimed (``claimed_at``, ``attempts + 1``, committed) before the send and
  marked sent in its own short transaction right after the sink returns. Two windows could resend: a crash
  after Slack answered 200 and before the commit (milliseconds), and an attempt that failed on our side after
  the request may have reached Slack (the answer timed out or the connection dropped: `DeliveryError`
  ``maybe_delivered``, remembered in ``alert_outbox.maybe_sent``). The next attempt is told (``maybe_sent``):
  the Slack Web API sink then looks for the message it may have posted (its metadata carries the outbox id)
  instead of posting again. An incoming webhook has no such check: documented at-least-once in those
  windows.

>>> from datetime import datetime, UTC
>>> from monitor.storage.db import make_engine
>>> from monitor.storage.schema import metadata
>>> engine = make_engine("sqlite://"); metadata.create_all(engine)
>>> now = datetime(2026, 1, 1, tzinfo=UTC)
>>> with engine.begin() as conn:
...     _ = enqueue(conn, sink="console", channel=None, kind="firing", group_key="console|global",
...                 fingerprints=["no_traffic@global"], payload={"text": "hello"}, now=now)
>>> class Print:
...     def send(self, message): print(message.payload["text"])
>>> deliver_pending(engine, {"console": Print()}, now).sent
hello
[1]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, insert, or_, select, update

from monitor.config import AlertsConfig
from monitor.storage.db import as_utc as _utc
from monitor.storage.schema import alert_outbox

log = logging.getLogger(__name__)

PENDING, SENT, DEAD = "pending", "sent", "dead"


class DeliveryError(Exception):
    """A sink could not deliver. ``permanent``: retrying cannot help. ``retry_after``: seconds the
    receiver asked us to wait (HTTP 429). ``maybe_delivered``: the request may have reached the receiver
    before it failed (a timeout, a dropped connection), so a retry must check before sending again."""

    def __init__(self, reason: str, *, permanent: bool = False, retry_after: float | None = None,
                 maybe_delivered: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after
        self.maybe_delivered = maybe_delivered


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What a sink gets: the rendered payload and where it goes."""

    id: int
    sink: str
    channel: str | None
    kind: str
    payload: Mapping[str, Any]
    created_at: datetime
    updates_ref: str | None = None
    """The sink's reference of the message to edit in place (its `external_ref`), when this is an edit."""
    maybe_sent: bool = False
    """A previous attempt was cut off (a crash, a timeout) after it may have reached the receiver."""


class Sink(Protocol):
    """Sends one message. Returns the receiver's reference for it (Slack ``channel:ts``) or None;
    raises `DeliveryError` on failure. Knows nothing about rules or alerts."""

    def send(self, message: Outgoing) -> str | None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing notification is retried; the defaults are `monitor.config.AlertsConfig`'s."""

    initial: timedelta = timedelta(seconds=1)
    maximum: timedelta = timedelta(seconds=5)
    max_attempts: int = 1_000_000
    max_age: timedelta = timedelta(days=1)

    @classmethod
    def from_config(cls, config: AlertsConfig) -> RetryPolicy:
        return cls(config.backoff_initial, config.backoff_max, config.max_attempts, config.max_age)

    def delay(self, attempts: int) -> timedelta:
        """Wait after the ``attempts``-th failed attempt: initial, 2×, 4×, … capped at maximum."""
        return min(self.initial * (2 ** min(attempts - 1, 30)), self.maximum)


@dataclass(slots=True)
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)


def enqueue(conn: Connection, *, sink: str, channel: str | None, kind: str, group_key: str,
            fingerprints: Sequence[str], payload: Mapping[str, Any], now: datetime,
            updates_id: int | None = None) -> int:
    """Add a pending notification inside the caller's transaction; returns its id."""
    stmt = insert(alert_outbox).values(
        created_at=now, sink=sink, channel=channel, kind=kind, group_key=group_key,
        fingerprints=list(fingerprints), payload=dict(payload), status=PENDING, attempts=0,
        next_attempt_at=now, updates_id=updates_id,
    ).returning(alert_outbox.c.id)
    return conn.execute(stmt).scalar_one()


def latest_message(conn: Connection, group_key: str, fingerprint: str) -> int | None:
    """The id of the newest firing/reminder message of ``group_key`` that named ``fingerprint``."""
    t = alert_outbox.c
    rows = conn.execute(
        select(t.id, t.fingerprints).where(t.group_key == group_key, t.kind.in_(("firing", "reminder")))
        .order_by(t.id.desc()).limit(200)
    )
    return next((row.id for row in rows if fingerprint in (row.fingerprints or ())), None)


def message_fingerprints(conn: Connection, outbox_id: int) -> list[str]:
    return list(conn.scalar(select(alert_outbox.c.fingerprints).where(alert_outbox.c.id == outbox_id)) or [])


def deliver_pending(engine: Engine, sinks: Mapping[str, Sink], now: datetime, *,
                    policy: RetryPolicy = RetryPolicy(), limit: int = 500,
                    claim_timeout: timedelta = timedelta(seconds=30)) -> DeliveryReport:
    """Send what is due, oldest first, one sink's queue stopping at its first failure.

    A row claimed by an attempt that has not finished within ``claim_timeout`` (its worker died, or is
    still waiting on the receiver) is left alone until then, so two workers never send it at once.
    """
    t = alert_outbox.c
    report = DeliveryReport()
    with engine.connect() as conn:
        rows = list(conn.execute(select(alert_outbox).where(t.status == PENDING).order_by(t.id).limit(limit)))
    blocked: set[str] = set()
    for row in rows:
        if row.sink in blocked:
            continue
        created = _utc(row.created_at)
        assert created is not None
        sink = sinks.get(row.sink)
        if now - created >= policy.max_age:
            reason = row.last_error or ("no sink configured" if sink is None else "never attempted")
            _dead(engine, row, f"undelivered after {policy.max_age}: {reason}", report)
            continue
        if sink is None or _utc(row.next_attempt_at) > now:  # type: ignore[operator]
            blocked.add(row.sink)
            continue
        if not _claim(engine, row.id, now, now - claim_timeout):
            blocked.add(row.sink)  # another attempt holds it; keep the order behind it
            continue
        try:
            ref = sink.send(_outgoing(engine, row))
        except DeliveryError as exc:
            attempts = row.attempts + 1
            if exc.permanent or attempts >= policy.max_attempts:
                why = "permanent failure" if exc.permanent else f"{attempts} attempts"
                _dead(engine, row, f"{why}: {exc.reason}", report)
                continue
            wait = timedelta(seconds=exc.retry_after) if exc.retry_after is not None else policy.delay(attempts)
            _retry(engine, row.id, exc.reason, now + wait, maybe_sent=exc.maybe_delivered)
            if _worth_a_line(attempts, exc.reason, row.last_error):
                log.info("alert notification %d to %s failed (attempt %d, next in %s; the next line at attempt %d "
                         "unless the reason changes): %s", row.id, row.sink, attempts, wait,
                         1 << attempts.bit_length(), exc.reason)
            report.retrying.append(row.id)
            blocked.add(row.sink)
            continue
        with engine.begin() as conn:
            conn.execute(update(alert_outbox).where(t.id == row.id).values(
                status=SENT, sent_at=datetime.now(UTC), external_ref=ref, claimed_at=None, last_error=None))
        if row.last_error:
            log.info("alert notification %d to %s delivered at attempt %d, %s after it was decided",
                     row.id, row.sink, row.attempts + 1, timedelta(seconds=round((now - created).total_seconds())))
        report.sent.append(row.id)
    return report


def _worth_a_line(attempts: int, reason: str, last_reason: str | None) -> bool:
    """Whether a failed attempt is logged: the first, the 2nd, 4th, 8th… and any whose reason differs from the
    previous one. Attempts come every ``backoff_max`` (5 s) for as long as Slack is down; a line each made an
    hour's outage 720 lines that said the same thing."""
    return attempts & (attempts - 1) == 0 or reason[:2000] != (last_reason or "")


def _outgoing(engine: Engine, row: Any) -> Outgoing:
    updates_ref = None
    if row.updates_id is not None:
        with engine.connect() as conn:
            updates_ref = conn.scalar(select(alert_outbox.c.external_ref).where(
                alert_outbox.c.id == row.updates_id, alert_outbox.c.status == SENT))
    return Outgoing(id=row.id, sink=row.sink, channel=row.channel, kind=row.kind, payload=row.payload,
                    created_at=_utc(row.created_at), updates_ref=updates_ref,  # type: ignore[arg-type]
                    maybe_sent=row.claimed_at is not None or bool(row.maybe_sent))


def _claim(engine: Engine, outbox_id: int, now: datetime, stale_before: datetime) -> bool:
    t = alert_outbox.c
    with engine.begin() as conn:
        result = conn.execute(update(alert_outbox).where(
            t.id == outbox_id, t.status == PENDING, or_(t.claimed_at.is_(None), t.claimed_at < stale_before),
        ).values(claimed_at=now, attempts=t.attempts + 1))
    return result.rowcount == 1


def _retry(engine: Engine, outbox_id: int, reason: str, at: datetime, *, maybe_sent: bool) -> None:
    values: dict[str, Any] = {"claimed_at": None, "last_error": reason[:2000], "next_attempt_at": at}
    if maybe_sent:  # once maybe sent, every later attempt checks first (a refused retry proves nothing)
        values["maybe_sent"] = True
    with engine.begin() as conn:
        conn.execute(update(alert_outbox).where(alert_outbox.c.id == outbox_id).values(**values))


def _dead(engine: Engine, row: Any, reason: str, report: DeliveryReport) -> None:
    with engine.begin() as conn:
        conn.execute(update(alert_outbox).where(alert_outbox.c.id == row.id)
                     .values(status=DEAD, claimed_at=None, last_error=reason[:2000]))
    log.warning("alert notification %d (%s, %s) to %s is dead: %s", row.id, row.kind, row.group_key,
                row.sink, reason)
    report.dead.append(row.id)
