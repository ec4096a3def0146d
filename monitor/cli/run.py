"""`watchkeeper run`: the daemon (one process, or one consumer process per worker)."""

from __future__ import annotations

import os
import sys

import click

from monitor.cli.options import config_option, load


@click.command()
@config_option
def run(config_path: str | None) -> None:
    """Run the daemon: consume, detect, sample, store, commit; scheduled jobs in the background."""
    from monitor.alerts.rules import build_rules
    from monitor.app.daemon import EXIT_SCHEMA, Daemon, settle_heap
    from monitor.config import ConfigError
    from monitor.storage.db import SchemaNotReady, check_schema, make_engine

    config = load(config_path)
    try:  # every rule can be built from this configuration: say which one cannot before consuming anything
        build_rules(config.alerts, group_id=config.kafka.group_id, toxic_at=config.detectors.toxicity.threshold)
    except (ConfigError, ValueError) as exc:
        click.echo(f"watchkeeper: {exc}", err=True)
        sys.exit(2)
    workers = config.pipeline.workers or os.cpu_count() or 1
    if workers > 1:
        from monitor.app.workers import run_workers

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
