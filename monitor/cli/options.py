"""What every command shares: the one ``--config`` option and the one way configuration is loaded."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from monitor.config import Config, ConfigError, load_config

DEFAULT_CONFIG = "monitor.toml"

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    help="Path to monitor.toml (default: ./monitor.toml if present).",
)


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
