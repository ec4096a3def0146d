"""`watchkeeper run` with ``pipeline.workers > 1``: several consumer processes on one host.

Python runs one core per process, and the detectors are CPU-bound, so a host uses its cores the Kafka way:
each worker is an ordinary member of the consumer group (Kafka splits the partitions between them), runs
the whole chain, and commits its own offsets. The parent runs the scheduled jobs and the review page once,
forwards SIGTERM/SIGINT to the workers, restarts a worker that dies, and exits 0 when all stopped cleanly.
A topic needs at least as many partitions as there are workers for all of them to get work.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from monitor.app.daemon import Daemon, StoppedBeforeStart, install_stop_handlers, settle_heap
from monitor.app.logs import LogFormat, current_format, setup_logging
from monitor.app.services import Services
from monitor.config import Config
from monitor.ops import multiproc
from monitor.storage.db import make_engine

log = logging.getLogger(__name__)

_RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)


def _worker_main(config: Config, index: int, log_level: int, log_format: LogFormat, supervisor: int) -> None:
    """A child: one consumer-group member without the background services.

    ``supervisor`` is the pid of the process that spawned this one, passed in rather than read here: a
    supervisor killed while this worker was still starting has already been replaced by init as its parent."""

    setup_logging(logging.getLevelName(log_level), log_format)
    stop = threading.Event()
    install_stop_handlers(stop)  # before building: a stop while starting is a clean exit

    def orphan_watch() -> None:
        # A parent killed with SIGKILL cannot stop its workers: each stops itself when orphaned, also while it
        # is still starting (waiting for its database or broker, loading models).
        while not stop.wait(1.0):
            if os.getppid() != supervisor:
                log.warning("worker %d: supervisor %d is gone; stopping", index, supervisor)
                stop.set()

    threading.Thread(target=orphan_watch, name="orphan-watch", daemon=True).start()
    try:
        daemon = Daemon(config, services=False, stop_event=stop)
    except StoppedBeforeStart as exc:
        log.info("worker %d %s: nothing consumed, exiting", index, exc)
        raise SystemExit(0) from None
    log.info("worker %d started", index)
    settle_heap()
    raise SystemExit(daemon.run())


def run_workers(config: Config, count: int, stop: threading.Event | None = None) -> int:
    """Supervise ``count`` worker processes until SIGTERM/SIGINT (or ``stop`` is set); returns the exit code."""

    ctx = mp.get_context("spawn")
    stop = stop or threading.Event()
    level = logging.getLogger().getEffectiveLevel()

    def start(i: int) -> BaseProcess:
        proc = ctx.Process(target=_worker_main, args=(config, i, level, current_format(), os.getpid()),
                           name=f"watchkeeper-worker-{i}")
        proc.start()
        return proc

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping %d workers", signal.Signals(signum).name, count)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workers = [start(i) for i in range(count)]
    restarts = [0] * count
    engine = make_engine(config.database.url, connect_timeout_s=config.database.connect_timeout_s,
                         statement_timeout_s=config.database.statement_timeout_s)
    services = Services(config, engine)
    services.start()
    try:
        while not stop.wait(0.5):
            for i, proc in enumerate(workers):
                if proc.is_alive():
                    continue
                if proc.pid is not None:
                    multiproc.worker_gone(proc.pid)
                delay = _RESTART_BACKOFF_S[min(restarts[i], len(_RESTART_BACKOFF_S) - 1)]
                log.error("worker %d exited with code %s; restarting in %.0f s", i, proc.exitcode, delay)
                if stop.wait(delay):
                    break
                restarts[i] += 1
                workers[i] = start(i)
    finally:
        for proc in workers:
            if proc.is_alive() and proc.pid is not None:
                proc.terminate()  # SIGTERM: the worker finishes its batch and commits
        deadline = time.monotonic() + 60
        for proc in workers:
            proc.join(max(0.0, deadline - time.monotonic()))
        services.stop()
        engine.dispose()
        for proc in workers:
            if proc.pid is not None:
                multiproc.worker_gone(proc.pid)
    codes = [proc.exitcode for proc in workers]
    log.info("workers stopped with exit codes %s", codes)
    return max((code or 0) if code is not None and code >= 0 else 1 for code in codes)
