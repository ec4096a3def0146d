"""The one logging set-up of every Watchkeeper process: the command line, the daemon and its workers."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]
_current: LogFormat = "text"


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


class JsonFormatter(SealingFormatter):
    """One JSON object per line for log shippers: ``ts`` (RFC 3339, UTC), ``level``, ``logger``, ``message``,
    and ``exception`` when there is one; sealed like the text format (the whole line, after encoding)."""

    def __init__(self) -> None:
        super().__init__("%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self._seal(json.dumps(entry, ensure_ascii=False))


class BrokerOutageFilter(logging.Filter):
    """Lets kafka-python's WARNING/ERROR lines through once per (logger, message template) every ``window_s``.

    While the broker is down kafka-python logs every reconnect attempt, fetch, metadata refresh and heartbeat
    that fails, several lines each, with a traceback for a reset connection: bench/faults' broker_restart case
    wrote ~130 ERROR lines for a 60 s outage. Which of them happen says what went wrong; how often, nothing.
    A line that passes after some were held back says how many; a connection error loses its traceback (a
    reset or refused socket is the whole story) but keeps its message."""

    def __init__(self, window_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith("kafka"):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        since, held = self._seen.get(key, (-self._window_s, 0))
        if now - since < self._window_s:
            self._seen[key] = (since, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held:
            self._append(record, f" [{held} more like this in the last {now - since:.0f} s not shown]")
        if record.exc_info and isinstance(record.exc_info[1], OSError):
            self._append(record, f": {record.exc_info[1]!r}")
            record.exc_info = None
            record.exc_text = None
        return True

    @staticmethod
    def _append(record: logging.LogRecord, text: str) -> None:
        record.msg = f"{record.msg}{text.replace('%', '%%') if record.args else text}"


def current_format() -> LogFormat:
    """The format `setup_logging` chose last (the worker processes use the same)."""
    return _current


def setup_logging(level: str, log_format: LogFormat = "text") -> None:
    """Log lines to standard error, one format everywhere (``text`` or ``json``); library chatter
    (kafka-python, Alembic, APScheduler) from WARNING up only."""
    global _current
    _current = log_format
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(SealingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(BrokerOutageFilter())
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # "Context impl…" per check, one line per plugin
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # "Running job…" / "executed" per tick
    # "skipped: maximum number of running instances reached" whenever a job outlasts its tick: our scheduler
    # tracks slots itself (a skipped check is re-done on the next tick), so it is noise to an operator.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
    for chatty in ("httpx", "httpcore"):  # one INFO line per HTTP request (shadow replay, Slack, health)
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # kafka-python times its IO thread's tasks and warns when one ran long; start-up (loading the detectors)
    # trips it every time and the warning says nothing an operator can act on.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
