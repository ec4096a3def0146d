"""`watchkeeper run`: the daemon (one process, or one consumer process per worker)."""

from __future__ import annotations

import logging
import os
import sys
import threading

import click

from monitor.cli.options import config_option, load

MAX_DEFAULT_WORKERS = 8


def default_workers(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """``[pipeline] workers = 0`` (the default): one consumer process per core this process may use — the
    cores it is pinned to, or its container's CPU quota (cgroup v2 ``cpu.max``) when smaller — at most
    `MAX_DEFAULT_WORKERS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = open(cpu_max).read().split()[:2]  # noqa: SIM115 - one short read
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period) + 0.5)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota here
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


@click.command()
@config_option
def run(config_path: str | None) -> None:
    """Run the daemon: consume, detect, sample, store, commit; scheduled jobs in the background."""
    from monitor.alerts.rules import build_rules
    from monitor.config import ConfigError

    config = load(config_path)
    try:  # every rule can be built from this configuration: say which one cannot before consuming anything
        build_rules(config.alerts, group_id=config.kafka.group_id, toxic_at=config.detectors.toxicity.threshold)
    except (ConfigError, ValueError) as exc:
        click.echo(f"watchkeeper: {exc}", err=True)
        sys.exit(2)
    workers = config.pipeline.workers or default_workers()
    if workers > 1:
        from monitor.ops import multiproc

        metrics_dir = multiproc.enable()  # before anything creates a metric: every process writes its own there
        from monitor.app.daemon import (
            DATABASE_DOWN,
            EXIT_OK,
            EXIT_SCHEMA,
            StoppedBeforeStart,
            install_stop_handlers,
            wait_for_service,
        )
        from monitor.app.workers import run_workers
        from monitor.storage.db import SchemaNotReady, check_schema, make_engine, redacted_url

        stop = threading.Event()
        install_stop_handlers(stop)  # a stop while the database is still starting is a clean exit
        engine = make_engine(config.database.url)
        try:  # a database that is still starting is waited for, as the one-process daemon does
            wait_for_service(lambda: check_schema(engine, config.database.url), DATABASE_DOWN,
                             f"database {redacted_url(config.database.url)}", stop=stop)
        except SchemaNotReady as exc:
            click.echo(f"watchkeeper: {exc}", err=True)
            sys.exit(EXIT_SCHEMA)
        except StoppedBeforeStart as exc:
            logging.getLogger("monitor.app.daemon").info("%s: nothing consumed, exiting", exc)
            sys.exit(EXIT_OK)
        finally:
            engine.dispose()
        try:
            code = run_workers(config, workers, stop=stop)
        finally:
            multiproc.cleanup(metrics_dir)
        sys.exit(code)
    from monitor.app.daemon import EXIT_OK, EXIT_SCHEMA, Daemon, StoppedBeforeStart, install_stop_handlers, settle_heap
    from monitor.storage.db import SchemaNotReady

    stop = threading.Event()
    install_stop_handlers(stop)  # before the slow part: SIGTERM while starting is a clean exit 0, never -15
    try:
        daemon = Daemon(config, stop_event=stop)
    except SchemaNotReady as exc:
        click.echo(f"watchkeeper: {exc}", err=True)
        sys.exit(EXIT_SCHEMA)
    except StoppedBeforeStart as exc:
        logging.getLogger("monitor.app.daemon").info("%s: nothing consumed, exiting", exc)
        sys.exit(EXIT_OK)
    settle_heap()
    sys.exit(daemon.run())
