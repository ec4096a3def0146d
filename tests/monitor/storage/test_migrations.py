"""The migrations build exactly the schema the code declares, on both databases, and step back down."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from monitor.storage.db import alembic_config, make_engine
from monitor.storage.schema import metadata


def _differences(engine: Engine) -> list[object]:
    """What autogenerate would still write: tables, columns, indexes and types that differ, and on Postgres
    column comments too (analysts read them in their SQL client). Server defaults aside, and comments on
    SQLite, which keeps none."""
    ignored = {"modify_default"} if engine.dialect.name == "postgresql" else {"modify_comment", "modify_default"}
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return [d for d in compare_metadata(context, metadata)
                if not (isinstance(d, tuple) and d[0] in ("add_table_comment", "remove_table_comment"))
                and not (isinstance(d, list) and all(c[0] in ignored for c in d))]


def test_upgrade_head_builds_the_declared_schema(migrated_db_url: str) -> None:
    engine = make_engine(migrated_db_url)
    try:
        assert _differences(engine) == []
    finally:
        engine.dispose()


def test_leak_counters_come_and_go_with_their_migration(migrated_db_url: str) -> None:
    from alembic import command

    config = alembic_config(migrated_db_url)
    engine = make_engine(migrated_db_url)
    try:
        command.downgrade(config, "0002_review_views")
        columns = {c["name"] for c in inspect(engine).get_columns("stream_minutes")}
        assert "pii_in_response" not in columns and "secret_in_response" not in columns
        command.upgrade(config, "head")
        columns = {c["name"] for c in inspect(engine).get_columns("stream_minutes")}
        assert {"pii_in_response", "secret_in_response"} <= columns
    finally:
        engine.dispose()


def test_model_comparison_view_comes_and_goes_with_its_migration(migrated_db_url: str) -> None:
    """0005 adds the analysts' per-model daily view; stepping back below it removes it, and up again restores
    it, on both databases."""
    from alembic import command

    config = alembic_config(migrated_db_url)
    engine = make_engine(migrated_db_url)
    try:
        assert "model_comparison_daily" in inspect(engine).get_view_names()
        command.downgrade(config, "0003_leak_counters")
        assert "model_comparison_daily" not in inspect(engine).get_view_names()
        command.upgrade(config, "head")
        assert "model_comparison_daily" in inspect(engine).get_view_names()
    finally:
        engine.dispose()


def test_encryption_columns_come_and_go_with_their_migration(migrated_db_url: str) -> None:
    """0009 adds the ciphertext and key-id columns (nullable: rows stored before stay as they were); stepping
    back below it removes them and keeps the rows, on both databases."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    from alembic import command

    config = alembic_config(migrated_db_url)
    engine = make_engine(migrated_db_url)
    added = {"records": {"text_encrypted", "text_key"}, "dead_letters": {"raw_encrypted", "raw_key"}}
    try:
        command.downgrade(config, "0008_drift_buckets")
        for table, columns in added.items():
            assert not columns & {c["name"] for c in inspect(engine).get_columns(table)}
        with engine.begin() as conn:
            conn.execute(text('INSERT INTO dead_letters (topic, "partition", "offset", raw, reason, received_at, '
                              "digest) VALUES ('t', 0, 1, :raw, 'bad', :now, 'd')"),
                         {"raw": b"{", "now": datetime.now(UTC)})
        command.upgrade(config, "0009_encryption")
        for table, columns in added.items():
            assert columns <= {c["name"] for c in inspect(engine).get_columns(table)}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT raw, raw_encrypted FROM dead_letters")).one() == (b"{", None)
        command.downgrade(config, "0008_drift_buckets")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM dead_letters")).scalar() == 1
        command.upgrade(config, "head")
    finally:
        engine.dispose()
