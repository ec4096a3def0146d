"""The one logging set-up of every Watchkeeper process: the command line, the daemon and its workers."""

from __future__ import annotations

import logging
import sys


class SealingFormatter(logging.Formatter):
    """Formats as usual, then masks every credential in the whole line, traceback included
    (`detectors.redact.seal`): a library that logs a request body or an exception that quotes a value
    cannot put a raw secret in the log, whatever the log level."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        # Imported here, not at the top: the command line imports this module for every command, and
        # `watchkeeper --help` should not load the detectors.
        from detectors.redact import seal

        self._seal = seal

    def format(self, record: logging.LogRecord) -> str:
        return self._seal(super().format(record))


def setup_logging(level: str) -> None:
    """Log lines to standard error, one format everywhere; library chatter (kafka-python,
    Alembic, APScheduler) from WARNING up only."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SealingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin at import
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # "Running job…" / "executed" per tick
    # kafka-python times its IO thread's tasks and warns when one ran long; start-up (loading the detectors)
    # trips it every time and the warning says nothing an operator can act on.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
