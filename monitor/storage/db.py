"""Engines and migrations: how Watchkeeper opens its database and brings the schema to head."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, create_engine, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError

from alembic import command

_ALEMBIC_DIR = Path(__file__).resolve().parents[2] / "alembic"


@overload
def as_utc(ts: datetime) -> datetime: ...
@overload
def as_utc(ts: None) -> None: ...
def as_utc(ts: datetime | None) -> datetime | None:
    """``ts`` as an aware UTC datetime. SQLite hands timestamps back naive; they were stored as UTC."""
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_S = 300
TCP_USER_TIMEOUT_S = 30


def make_engine(url: str, *, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                statement_timeout_s: float = STATEMENT_TIMEOUT_S, **kwargs: object) -> Engine:
    """An engine with the settings Watchkeeper relies on.

    SQLite gets WAL and a busy timeout so the review page and the daemon can share the file; foreign keys on.
    Postgres gets pre-ping so a restarted server is noticed instead of failing the next batch, and bounds on
    every wait so that a database that goes silent (packets dropped, no reset) is noticed within seconds, not
    after the kernel's 15-minute retransmission limit: a connect timeout, TCP keepalives (idle 10 s, then 3
    probes 5 s apart), ``tcp_user_timeout`` (unacknowledged data for 30 s drops the connection) and a
    server-side ``statement_timeout``. A timed-out call raises an OperationalError, which the pipeline treats
    as "database unavailable": it waits and retries.

    A URL SQLAlchemy cannot read raises `ArgumentError`, whose message never quotes the URL (it may hold a
    password): SQLAlchemy's own error for a port that is not a number is a bare ``ValueError``.
    """
    try:
        port = make_url(url).port
    except ValueError:  # ArgumentError is not one: it passes through as it is
        raise ArgumentError("the database URL's port is not a number") from None
    if port is not None and not 0 < port < 65536:  # psycopg's "invalid port number" read as "not answering"
        raise ArgumentError("the database URL's port is not from 1 to 65535")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    connect_args: dict[str, Any] = {
        "connect_timeout": max(1, round(connect_timeout_s)),
        "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
        "tcp_user_timeout": TCP_USER_TIMEOUT_S * 1000,
        "options": f"-c statement_timeout={int(statement_timeout_s * 1000)}",
    }
    connect_args.update(kwargs.pop("connect_args", None) or {})  # type: ignore[call-overload]
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_ALEMBIC_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision`` (``watchkeeper db upgrade``)."""
    command.upgrade(alembic_config(url), revision)


class SchemaNotReady(RuntimeError):
    """The database is not at the migrations' head: run ``watchkeeper db upgrade``."""


def redacted_url(url: str) -> str:
    """The database URL safe for logs: the password is masked, in the user part and in the query too
    (``?password=…``, ``sslpassword=…``: libpq takes them there, and they were printed as written)."""
    try:
        parsed = make_url(url)
        query = {k: "***" if any(word in k.lower() for word in ("password", "secret", "token")) else v
                 for k, v in parsed.query.items()}
        return parsed.set(query=query).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported by SQLAlchemy later
        return "<unparsable database url>"


def check_schema(engine: Engine, url: str) -> None:
    """Refuse to run on a database whose schema is not at the migrations' head."""
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        raise SchemaNotReady(
            f"database schema is at {current or 'nothing'}, expected {head}: "
            f"run `watchkeeper db upgrade` against {redacted_url(url)}"
        )


def insert_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]],
                  returning: str | None = None) -> list[Any] | None:
    """Insert ``rows``, skipping any whose key is already there: how every natural-keyed write stays
    idempotent (a replayed batch, a second daemon, a retried job). Postgres and SQLite only.

    With ``returning`` (a column name), the values of that column of the rows really inserted (``INSERT …
    ON CONFLICT DO NOTHING RETURNING``), so a caller can count only what is new."""
    if not rows:
        return [] if returning else None
    if conn.dialect.name == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    elif conn.dialect.name == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - only Postgres and SQLite are supported
        raise NotImplementedError(conn.dialect.name)
    if returning is None:
        conn.execute(stmt, rows)
        return None
    return list(conn.scalars(stmt.returning(table.c[returning]), rows))
