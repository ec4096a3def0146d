"""Engines and migrations: how Watchkeeper opens its database and brings the schema to head."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import overload

from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event

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


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine with the settings Watchkeeper relies on.

    SQLite gets WAL and a busy timeout so the review page and the daemon can share the file; foreign keys on.
    Postgres gets pre-ping so a restarted server is noticed instead of failing the next batch.
    """
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
    return create_engine(url, pool_pre_ping=True, **kwargs)


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_ALEMBIC_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision`` (``watchkeeper db upgrade``)."""
    command.upgrade(alembic_config(url), revision)
