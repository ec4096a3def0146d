"""The `watchkeeper` command line: a leaf that nothing else in the product imports.

Each command group lives in its own module here and is imported only when that command runs (or when
``--help`` lists it), so ``watchkeeper --help`` or ``watchkeeper silence list`` never loads the detectors,
pandas or Evidently. Every command reads configuration the same way (`monitor.cli.options`), and a bad
configuration stops it with one line naming the key and the file.
"""

from __future__ import annotations

import importlib

import click

from monitor.app.logs import setup_logging

# name -> (module under monitor.cli, attribute): the whole command tree, in the order `--help` lists it.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run"),
    "db": ("db", "db"),
    "demo": ("demo", "demo"),
    "produce": ("produce", "produce"),
    "report": ("report", "report"),
    "silence": ("silence", "silence"),
    "review": ("review", "review"),
    "reviewer": ("review", "reviewer"),
    "labels": ("review", "labels"),
    "shadow": ("shadow", "shadow"),
    "compare": ("compare", "compare"),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use, from `COMMANDS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(f"monitor.cli.{module}"), attribute)
        return command

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; a database failure it did not handle becomes one line and an exit code
        (`monitor.cli.errors`), not a traceback."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from monitor.cli.errors import DATABASE_ERRORS, describe

            if not isinstance(exc, DATABASE_ERRORS):
                raise
            message, code = describe(exc)
            click.echo(f"watchkeeper: {message}", err=True)
            ctx.exit(code)


@click.group(cls=LazyGroup)
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              default="INFO", show_default=True, help="DEBUG, INFO, WARNING or ERROR.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="WATCHKEEPER_LOG_FORMAT", help="text lines, or one JSON object per line for log shippers.")
@click.version_option(package_name="watchkeeper")
def main(log_level: str, log_format: str) -> None:
    """Watchkeeper: a production monitor for LLM traffic."""
    setup_logging(log_level, log_format)  # type: ignore[arg-type]
