"""What every command shares: the one ``--config`` option, the one way configuration is loaded, and the one
way a database problem is reported (one line and an exit code, never a traceback)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from monitor.config import Config, ConfigError, load_config

DEFAULT_CONFIG = "monitor.toml"
DEMO_CONFIG = Path(".watchkeeper-demo") / "monitor.toml"
"""Where `watchkeeper demo` leaves its configuration (its ``--workdir`` default)."""

EXIT_USAGE = 2
"""Bad configuration, bad database URL, schema missing or behind: fix and run again."""
EXIT_UNAVAILABLE = 1
"""The database did not answer: try again later (docs/cli.md: 1 is "failed, says why in one line")."""

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    help="Path to monitor.toml (default: ./monitor.toml if present).",
)


def fail(message: str, code: int = EXIT_USAGE) -> None:
    click.echo(f"watchkeeper: {message}", err=True)
    sys.exit(code)


def load(config_path: str | None, *, existing_database: bool = False) -> Config:
    """The config from ``--config``, else ./monitor.toml if present, else defaults; exits 2 with the
    offending key and file on error.

    ``existing_database``: the command reads a database that must already exist (report, silence, labels…).
    A SQLite file that is not there is then not silently created: without ``--config``, when the demo's
    configuration is there, its database is used (and said so); otherwise the command stops, naming the file
    and the configuration it came from."""
    path = config_path
    if path is None and Path(DEFAULT_CONFIG).exists():
        path = DEFAULT_CONFIG
    try:
        config = load_config(path)
    except ConfigError as exc:
        fail(str(exc))
    if existing_database and _missing_sqlite(config.database.url):
        if config_path is None and DEMO_CONFIG.exists():
            demo = load(str(DEMO_CONFIG))
            if not _missing_sqlite(demo.database.url):
                click.echo(f"watchkeeper: using the demo's database {sqlite_path(demo.database.url)} "
                           f"({sqlite_path(config.database.url)} from {config.source} does not exist; "
                           f"--config to choose)", err=True)
                return demo
        fail(f"no database at {sqlite_path(config.database.url)} (database.url from {config.source}): run "
             "`watchkeeper db upgrade` to create it, or --config the configuration of the database you mean"
             + (f" (the demo's: --config {DEMO_CONFIG})" if DEMO_CONFIG.exists() else ""))
    return config


def sqlite_path(url: str) -> str | None:
    """The file a ``sqlite:///path`` URL opens; None for other databases and in-memory SQLite."""
    if not url.startswith("sqlite"):
        return None
    _, _, rest = url.partition(":///")
    rest = rest.split("?", 1)[0]
    return rest if rest and rest != ":memory:" else None


def _missing_sqlite(url: str) -> bool:
    path = sqlite_path(url)
    return path is not None and not Path(path).exists()
