"""The `watchkeeper` command line. Each feature defines its commands in its own module; this file only
assembles them, configures logging and turns configuration errors into one clear message."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from monitor.alerts.cli import silence
from monitor.config import Config, ConfigError, load_config
from monitor.demo import demo
from monitor.produce import produce
from monitor.reports import report_command
from monitor.review.cli import labels, review, reviewer
from monitor.shadow import shadow

DEFAULT_CONFIG = "monitor.toml"


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)


def load(config_path: str | None) -> Config:
    """The config from ``--config``, else ./monitor.toml if present, else defaults; exits 2 with the
    offending key and file on error."""
    path = config_path
    if path is None and Path(DEFAULT_CONFIG).exists():
        path = DEFAULT_CONFIG
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(f"watchkeeper: {exc}", err=True)
        sys.exit(2)


config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    help="Path to monitor.toml (default: ./monitor.toml if present).",
)


@click.group()
@click.option("--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING or ERROR.")
@click.version_option(package_name="watchkeeper")
def main(log_level: str) -> None:
    """Watchkeeper: a production monitor for LLM traffic."""
    setup_logging(log_level)


@main.command()
@config_option
def run(config_path: str | None) -> None:
    """Run the daemon: consume, detect, sample, store, commit; scheduled jobs in the background."""
    from monitor.daemon import EXIT_SCHEMA, Daemon, SchemaNotReady, settle_heap

    config = load(config_path)
    workers = config.pipeline.workers or os.cpu_count() or 1
    if workers > 1:
        from monitor.daemon import check_schema
        from monitor.storage.db import make_engine
        from monitor.workers import run_workers

        engine = make_engine(config.database.url)
        try:
            check_schema(engine, config.database.url)
        except SchemaNotReady as exc:
            click.echo(f"watchkeeper: {exc}", err=True)
            sys.exit(EXIT_SCHEMA)
        finally:
            engine.dispose()
        sys.exit(run_workers(config, workers))
    try:
        daemon = Daemon(config)
    except SchemaNotReady as exc:
        click.echo(f"watchkeeper: {exc}", err=True)
        sys.exit(EXIT_SCHEMA)
    daemon.install_signal_handlers()
    settle_heap()
    sys.exit(daemon.run())


@main.group()
def db() -> None:
    """Database schema management."""


@db.command()
@config_option
@click.option("--revision", default="head", show_default=True)
def upgrade(config_path: str | None, revision: str) -> None:
    """Bring the database schema up to date (Alembic)."""
    from monitor.daemon import redacted_url
    from monitor.storage.db import upgrade as do_upgrade

    config = load(config_path)
    do_upgrade(config.database.url, revision)
    click.echo(f"database {redacted_url(config.database.url)} is at {revision}")


main.add_command(silence)
main.add_command(report_command)
main.add_command(produce)
main.add_command(review)
main.add_command(reviewer)
main.add_command(labels)
main.add_command(demo)
main.add_command(shadow)
