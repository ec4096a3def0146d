"""The one logging set-up of every Watchkeeper process: the command line, the daemon and its workers."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str) -> None:
    """Log lines to standard error, one format everywhere; library chatter (kafka-python,
    Alembic, APScheduler) from WARNING up only."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin at import
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # "Running job…" / "executed" per tick
    # kafka-python times its IO thread's tasks and warns when one ran long; start-up (loading the detectors)
    # trips it every time and the warning says nothing an operator can act on.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
