"""Everything the daemon runs beside the data path: scheduled jobs, the shadow worker, the review page, the
ops endpoint (metrics and probes).

None of it touches the ingest chain: jobs read and write the database on their own connections, on the
scheduler's threads, and each job runs on one instance at a time (see `monitor.jobs.scheduler`).
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from monitor.alerts import jobs as alert_jobs
from monitor.config import Config
from monitor.jobs import compare, drift, reference_health, reports, retention, rollups
from monitor.jobs.scheduler import Job, Scheduler
from monitor.ops import metrics
from monitor.ops.health import Health
from monitor.ops.server import OpsServer, build_registry, gauge_value
from monitor.ops.state import StateCollector

log = logging.getLogger(__name__)


def build_jobs(config: Config, engine: Engine) -> tuple[list[Job], list[object]]:
    """The periodic jobs this configuration asks for, and the objects that own resources to close."""
    jobs = [
        *alert_jobs.build_jobs(config),
        *reports.build_jobs(config),
        *rollups.build_jobs(config),
        *retention.build_jobs(config),
        *drift.build_jobs(config),
        *compare.build_jobs(config),
        *reference_health.build_jobs(config),
    ]
    owners: list[object] = []
    if config.shadow.references:
        from monitor.shadow.worker import ShadowWorker  # its HTTP client and chain load only where it replays

        worker = ShadowWorker(config, engine)
        jobs.append(Job("shadow-replay", config.shadow.interval, worker.run))
        owners.append(worker)
    return jobs, owners


class Services:
    """Start with `start()`, stop with `stop()`; safe to stop twice."""

    def __init__(self, config: Config, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        self.scheduler: Scheduler | None = None
        self._owners: list[object] = []
        self._review: object | None = None
        self.ops: OpsServer | None = None

    def start(self) -> None:
        self._start_ops()
        if self.config.scheduler.enabled:
            jobs, self._owners = build_jobs(self.config, self.engine)
            self.scheduler = Scheduler(self.engine, jobs, owner=self.config.scheduler.owner,
                                       tick=self.config.scheduler.tick)
            self.scheduler.start()
        if self.config.review.serve_in_daemon:
            from monitor.review.app import ReviewServer  # the web stack loads only where the page is served

            server = ReviewServer(self.engine, self.config)
            server.start()
            self._review = server
            log.info("review page on http://%s:%s/", self.config.review.host, server.port)

    def _start_ops(self) -> None:
        """The ops endpoint, when enabled. A port already taken is one WARNING, not a dead daemon: the data
        path matters more than its metrics."""
        ops = self.config.ops
        if not ops.enabled:
            return
        metrics.initialise()  # this process's series at zero (the scheduler's database errors, in particular)
        registry = build_registry(StateCollector(self.engine, self.config.kafka.group_id))
        health = Health(self.engine, self.config.database.url,
                        consumers=lambda: gauge_value(registry, "watchkeeper_consumers"),
                        scheduler_alive=self._scheduler_alive if self.config.scheduler.enabled else None)
        try:
            self.ops = OpsServer(ops.host, ops.port, registry, health)
        except OSError as exc:
            log.warning("metrics and probes not served: cannot listen on %s:%d (%s)", ops.host, ops.port,
                        exc.strerror or exc)
            return
        self.ops.start()
        log.info("metrics on http://%s:%d/metrics, probes /livez and /readyz", ops.host, self.ops.port)

    def _scheduler_alive(self) -> bool:
        return self.scheduler is not None and self.scheduler.alive()

    def stop(self) -> None:
        if self.ops is not None:
            self.ops.stop()
            self.ops = None
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        for owner in self._owners:
            owner.close()  # type: ignore[attr-defined]
        self._owners = []
        if self._review is not None:
            self._review.stop()  # type: ignore[attr-defined]
            self._review = None
