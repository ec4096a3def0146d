"""`[pipeline] workers = 2` as an operator sees it: the supervisor and its worker processes."""

from __future__ import annotations

import signal
import subprocess

import psutil
import pytest

from tests.helpers import start_daemon_process, wait_for, write_config

pytestmark = pytest.mark.slow


def _workers_of(supervisor: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        children = psutil.Process(supervisor.pid).children()
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if "spawn_main" in " ".join(c.cmdline())]


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_supervisor_killed_while_its_workers_start_leaves_no_worker_behind(migrated_db_url, kafka_broker, topic,
                                                                             tmp_path):
    """An OOM kill or a node drain can SIGKILL the supervisor seconds after start, while its workers are still
    loading their detectors. Those workers must notice and exit, not live on as consumers nobody supervises
    (the supervisor started in its place starts workers of its own)."""
    config = write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker, topic=topic,
                          extra="workers = 2")
    supervisor = start_daemon_process(config, tmp_path / "workers.log")
    workers: list[psutil.Process] = []
    try:
        wait_for(lambda: len(_workers_of(supervisor)) == 2, 60, "the supervisor to spawn its two workers")
        workers = _workers_of(supervisor)
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(10)
        wait_for(lambda: not any(_running(w) for w in workers), 120, "the orphaned workers to exit")
    finally:
        for worker in workers:
            if _running(worker):
                worker.kill()
    log = (tmp_path / "workers.log").read_text()
    assert log.count("is gone; stopping") == 2, log[-3000:]
