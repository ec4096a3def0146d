"""The one logging set-up of every Watchkeeper process: the command line, the daemon and its workers."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str) -> None:
    """Log lines to standard error, one format everywhere; kafka-python's and Alembic's chatter from WARNING
    up only."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin at import
