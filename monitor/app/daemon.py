"""`watchkeeper run`: assemble the pipeline and the scheduler from config, run until told to stop.

Shutdown contract (docs/cli.md): SIGTERM or SIGINT finishes the batch in hand, stores it, commits its
offsets, closes the consumer and returns exit code 0. If the database is down at that moment the batch
cannot be stored: the daemon retries for a grace period, then exits with code 3 without committing (the
messages are redelivered to whoever consumes the partitions next).
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TypeVar

from kafka.errors import KafkaConnectionError, KafkaTimeoutError
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError

from monitor.app.services import Services
from monitor.config import Config
from monitor.ingest.chain import build_steps
from monitor.ingest.formats import decoders_for
from monitor.ingest.pipeline import Pipeline, StoppedDuringOutage
from monitor.ingest.source import KafkaSource
from monitor.ingest.steps import Step
from monitor.ingest.steps.detect import DetectStep
from monitor.ops import metrics
from monitor.storage.db import check_schema, make_engine, redacted_url
from monitor.storage.store import Store, text_policy

log = logging.getLogger(__name__)
T = TypeVar("T")

EXIT_OK = 0
EXIT_SCHEMA = 2
EXIT_OUTAGE_AT_SHUTDOWN = 3


# Allocations between collections of the youngest generation (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000


def settle_heap() -> None:
    """Take what is loaded at start (models, vocabularies, detector state) out of the cyclic collector's
    sight, and let it run rarely.

    The pipeline allocates a handful of container objects per record and frees nearly all of them by
    reference counting; but every 700 allocations CPython scans the young objects, and now and then the
    whole heap, ~250k objects here once the models are loaded, each full pass ~150 ms. Measured on the
    chain (decode → detect → aggregate → drift → sample), the collector took ~12 µs of ~60 µs per record;
    frozen and with this threshold, ~0.1 µs. Cyclic garbage is still collected, just in larger steps.

    It changes the interpreter's collector, so the process entry points call it (`watchkeeper run`, each
    worker, the demo) once the daemon is built; a library user embedding `Daemon` decides for themselves.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


DATABASE_DOWN = (OperationalError, InterfaceError)


class StoppedBeforeStart(Exception):
    """SIGTERM/SIGINT arrived while the daemon was still waiting for its database or broker: nothing was
    consumed, so stopping is clean (exit 0)."""


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop``. Installed *before* anything slow (waiting for services, loading
    models), so that an orchestrator stopping a daemon that is still starting gets a clean exit 0, never -15."""

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: finishing the batch in hand, then exiting", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)


def wait_for_service(make: Callable[[], T], down: tuple[type[BaseException], ...], what: str,
                     max_delay_s: float = 5.0, stop: threading.Event | None = None) -> T:
    """``make()``, retried while it fails with one of ``down`` (the service is not answering yet): a daemon
    started before its database or broker waits for them, with one WARNING, instead of exiting. Raises
    `StoppedBeforeStart` when ``stop`` is set while waiting."""
    delay, since = 0.5, None
    stop = stop or threading.Event()
    while True:
        if stop.is_set():
            raise StoppedBeforeStart(f"stopped while waiting for {what}")
        try:
            result = make()
        except down as exc:
            if since is None:
                since = time.monotonic()
                log.warning("%s not answering (%s); waiting for it", what, str(exc).strip().splitlines()[0][:200])
            stop.wait(delay)
            delay = min(delay * 2, max_delay_s)
            continue
        if since is not None:
            log.info("%s answering after %.1f s", what, time.monotonic() - since)
        return result


class Daemon:
    """One consumer-group member: pipeline in the calling thread, scheduled jobs in the background."""

    def __init__(self, config: Config, *, engine: Engine | None = None,
                 steps: Sequence[Step] | None = None, services: bool = True,
                 stop_event: threading.Event | None = None) -> None:
        """``stop_event``: pass the event `install_stop_handlers` was given, so that a stop requested while
        the daemon is being built (waiting for services, loading models) is honoured."""
        self.config = config
        self.stop_event = stop_event or threading.Event()
        self.engine = engine or make_engine(config.database.url, connect_timeout_s=config.database.connect_timeout_s,
                                            statement_timeout_s=config.database.statement_timeout_s)
        wait_for_service(lambda: check_schema(self.engine, config.database.url), DATABASE_DOWN,
                         f"database {redacted_url(config.database.url)}", stop=self.stop_event)
        self.steps = list(steps) if steps is not None else build_steps(config, self.engine)
        metrics.initialise(d.name for step in self.steps if isinstance(step, DetectStep) for d in step.chain.detectors)
        self.source = wait_for_service(lambda: KafkaSource(
            config.kafka, max_poll_records=config.pipeline.batch_size,
            on_assigned=self._on_assigned, on_revoked=self._on_revoked,
        ), (KafkaTimeoutError, KafkaConnectionError), f"Kafka at {','.join(config.kafka.bootstrap_servers)}",
            stop=self.stop_event)
        cipher = config.storage.cipher()
        store = Store(self.engine, text_policy(config.pipeline.store_text, cipher), config.pipeline.store_detections,
                      cipher=cipher)
        self.pipeline = Pipeline(
            self.source, self.steps, store,
            group_id=config.kafka.group_id,
            batch_size=config.pipeline.batch_size,
            batch_timeout_ms=config.pipeline.batch_timeout_ms,
            fields=config.record.fields,
            decoders=decoders_for(config.kafka.topics, config.kafka.format, config.kafka.formats,
                                  app=config.kafka.otlp_app),
            retry_initial_s=config.database.retry_initial_s,
            retry_max_s=config.database.retry_max_s,
        )
        self.source.on_rewound = self.pipeline.expect_rewind
        self.services = Services(config, self.engine) if services else None

    def _on_assigned(self, assigned: set[tuple[str, int]]) -> None:
        for step in self.steps:
            step.on_assigned(assigned)

    def _on_revoked(self, revoked: set[tuple[str, int]]) -> None:
        self.pipeline.forget_partitions(revoked)
        for step in self.steps:
            step.on_revoked(revoked)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop this daemon (prefer `install_stop_handlers` before building it)."""
        install_stop_handlers(self.stop_event)

    def run(self) -> int:
        """Consume until `stop_event` is set. Returns the process exit code."""
        log.info(
            "watchkeeper consuming %s from %s as group %r into %s",
            ",".join(self.config.kafka.topics), ",".join(self.config.kafka.bootstrap_servers),
            self.config.kafka.group_id, redacted_url(self.config.database.url),
        )
        code = EXIT_OK
        try:
            if self.services is not None:
                self.services.start()
            self.pipeline.run(self.stop_event)
        except StoppedDuringOutage as exc:
            log.error("%s", exc)
            code = EXIT_OUTAGE_AT_SHUTDOWN
        except ProgrammingError as exc:  # a table or column the code expects is missing: not recoverable here
            log.error("the database schema does not match this version (%s): run `watchkeeper db upgrade`",
                      str(exc.orig or exc).strip().splitlines()[0][:200])
            code = EXIT_SCHEMA
        finally:
            if self.services is not None:
                self.services.stop()
            self.pipeline.close()
            self.source.close(commit=code == EXIT_OK)
            self.engine.dispose()
        c = self.pipeline.counters
        log.info("stopped: %d records, %d dead letters in %d batches", c.records, c.dead_letters, c.batches)
        return code
