"""`watchkeeper db upgrade`: the schema to the latest Alembic migration."""

from __future__ import annotations

import click

from monitor.cli.options import config_option, load


@click.group()
def db() -> None:
    """Database schema management."""


@db.command()
@config_option
@click.option("--revision", default="head", show_default=True)
def upgrade(config_path: str | None, revision: str) -> None:
    """Bring the database schema up to date (Alembic)."""
    from monitor.storage.db import redacted_url
    from monitor.storage.db import upgrade as do_upgrade

    config = load(config_path)
    do_upgrade(config.database.url, revision)
    click.echo(f"database {redacted_url(config.database.url)} is at {revision}")
