"""The daemon's alert half in its own process: the real scheduler running `build_jobs(config)` until killed.

    python -m tests.monitor.alerts.worker monitor.toml [seconds]

Tests SIGKILL it to play a daemon crash; it exits by itself after ``seconds`` (default 60) at the latest.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta

from monitor.alerts.jobs import build_jobs
from monitor.config import load_config
from monitor.jobs.scheduler import Scheduler
from monitor.storage.db import make_engine


def main() -> None:
    config = load_config(sys.argv[1])
    engine = make_engine(config.database.url)
    scheduler = Scheduler(engine, build_jobs(config), owner=f"worker-{os.getpid()}", tick=timedelta(seconds=1))
    scheduler.start()
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 60.0)
    scheduler.shutdown()


if __name__ == "__main__":
    main()
