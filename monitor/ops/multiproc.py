"""prometheus-client's multiprocess mode for ``[pipeline] workers > 1``, kept apart from the metric
definitions: the directory must be in the environment *before* `prometheus_client` creates any metric in
the supervisor, and the spawned workers inherit it."""

from __future__ import annotations

import os
import shutil
import tempfile

ENV = "PROMETHEUS_MULTIPROC_DIR"
_PREFIX = "watchkeeper-metrics-"


def enable() -> str:
    """Point this process and the workers it will spawn at a multiprocess directory; returns it.

    An existing ``PROMETHEUS_MULTIPROC_DIR`` is used as given (emptied of a previous run's files, which
    would otherwise add to the totals); otherwise a fresh temporary one."""
    path = os.environ.get(ENV) or tempfile.mkdtemp(prefix=_PREFIX)
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))
    os.environ[ENV] = path
    return path


def enabled() -> bool:
    return bool(os.environ.get(ENV))


def cleanup(path: str) -> None:
    """Remove the directory `enable` made (not one the operator gave)."""
    if os.path.basename(path).startswith(_PREFIX):
        shutil.rmtree(path, ignore_errors=True)


def worker_gone(pid: int) -> None:
    """Drop a dead worker's live gauges; its counters stay (they are totals)."""
    if enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
