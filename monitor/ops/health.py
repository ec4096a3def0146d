"""What `/livez` and `/readyz` check, Kubernetes-style.

- live: the process can still do its work without a restart — the scheduler's thread is running (when this
  process runs the scheduler). A failing liveness probe gets the pod restarted, so it checks nothing outside
  the process: a database outage must not restart every daemon.
- ready: the database answers and its schema is at the migrations' head, at least one consumer of this
  deployment is in its group, and the scheduler is alive. The database check is cached a few seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.storage.db import SchemaNotReady, check_schema


@dataclass
class Verdict:
    """Each check's name -> ``ok`` or why not; ``ok`` when all are."""

    checks: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(value == "ok" for value in self.checks.values())


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class Health:
    """``scheduler_alive`` is None in a process without a scheduler; ``consumers`` counts group members."""

    def __init__(self, engine: Engine, url: str, *, consumers: Callable[[], float],
                 scheduler_alive: Callable[[], bool] | None, cache_s: float = 5.0) -> None:
        self.engine = engine
        self.url = url
        self.consumers = consumers
        self.scheduler_alive = scheduler_alive
        self.cache_s = cache_s
        self._db: tuple[float, str] | None = None
        self._lock = threading.Lock()

    def live(self) -> Verdict:
        verdict = Verdict({"process": "ok"})
        if self.scheduler_alive is not None:
            verdict.checks["scheduler"] = "ok" if self.scheduler_alive() else "scheduler thread stopped"
        return verdict

    def ready(self) -> Verdict:
        verdict = self.live()
        verdict.checks["database"] = self._database()
        joined = self.consumers()
        verdict.checks["consumer"] = "ok" if joined >= 1 else "no consumer has joined its group yet"
        return verdict

    def _database(self) -> str:
        with self._lock:
            if self._db is not None and time.monotonic() - self._db[0] < self.cache_s:
                return self._db[1]
            try:
                check_schema(self.engine, self.url)
                state = "ok"
            except SchemaNotReady as exc:
                state = str(exc)
            except SQLAlchemyError as exc:
                state = f"database not answering: {_first_line(exc)}"
            self._db = (time.monotonic(), state)
            return state
