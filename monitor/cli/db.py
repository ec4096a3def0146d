"""`watchkeeper db`: the schema to the latest Alembic migration, least-privilege roles, encryption keys."""

from __future__ import annotations

import sys

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


@db.command("new-key")
def new_key() -> None:
    """Print a fresh encryption key. Put it FIRST in WATCHKEEPER_ENCRYPTION_KEY (keep the old keys after it),
    restart the daemons, then run `watchkeeper db rotate-key`."""
    from monitor.storage.crypto import new_key as make_key

    click.echo(make_key())


@db.command("rotate-key")
@config_option
@click.option("--chunk", type=click.IntRange(1, 100_000), default=500, show_default=True,
              help="Rows re-encrypted per transaction.")
@click.option("--pause", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds to wait between chunks (room for a busy database).")
def rotate_key(config_path: str | None, chunk: int, pause: float) -> None:
    """Re-encrypt every stored ciphertext with the first key of [storage] encryption_key
    (WATCHKEEPER_ENCRYPTION_KEY), in chunks, while the daemons run. Old keys can leave the list afterwards."""
    from monitor.storage.crypto import ENV_VAR
    from monitor.storage.db import make_engine, redacted_url
    from monitor.storage.rotation import rotate

    config = load(config_path)
    cipher = config.storage.cipher()
    if cipher is None:
        raise click.ClickException(f"no encryption key: set {ENV_VAR} (or [storage] encryption_key), new key first")
    engine = make_engine(config.database.url)
    try:
        report = rotate(engine, cipher, chunk=chunk, pause_s=pause)
    finally:
        engine.dispose()
    rotated = ", ".join(f"{n} {table}" for table, n in report.rotated.items())
    click.echo(f"re-encrypted {rotated} with key {cipher.key_id}; sealed {report.sealed_clear} clear dead letters "
               f"on {redacted_url(config.database.url)}")
    lost = sum(report.undecryptable.values())
    if lost:
        click.echo(f"watchkeeper: {lost} values no key of the list opens were left as they are "
                   f"({report.undecryptable}); was a key dropped too early?", err=True)
        sys.exit(1)
