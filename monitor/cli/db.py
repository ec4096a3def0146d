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


@db.command()
@config_option
@click.option("--analyst", default="watchkeeper_analyst", show_default=True, help="The read-only role.")
@click.option("--review-server", default="watchkeeper_review", show_default=True,
              help="The review page's own role.")
@click.option("--apply", is_flag=True, help="Run the statements (needs CREATEROLE and GRANT rights).")
def roles(config_path: str | None, analyst: str, review_server: str, apply: bool) -> None:
    """Least-privilege Postgres roles: print their SQL, or create and grant them with --apply."""
    from sqlalchemy import text

    from monitor.storage.db import make_engine, redacted_url
    from monitor.storage.roles import role_statements

    try:
        statements = role_statements(analyst, review_server)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not apply:
        click.echo(";\n".join(statements) + ";")
        return
    config = load(config_path)
    if not config.database.url.startswith("postgresql"):
        raise click.ClickException("roles exist on Postgres only; this database is not Postgres")
    engine = make_engine(config.database.url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()
    click.echo(f"roles {analyst} and {review_server} granted on {redacted_url(config.database.url)}")
