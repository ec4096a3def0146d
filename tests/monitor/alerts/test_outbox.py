"""The outbox across a daemon crash: what was decided is delivered after the restart, exactly once — also
when the crash comes after Slack accepted a message and before the daemon recorded it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.monitor.alerts.conftest import add_leak, outbox_rows

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def write_toml(path: Path, db_url: str, slack) -> Path:  # type: ignore[no-untyped-def]
    path.write_text(f"""
[database]
url = "{db_url}"
[alerts]
group_wait = "1s"
slack_bot_token = "{slack.token}"
slack_channel = "C0ONCALL"  # an id: conversations.history needs one
slack_api_url = "{slack.api_url}"
slack_timeout = "1s"
backoff_max = "2s"
[alerts.rules.no_traffic]
enabled = false
""")
    return path


def start_worker(toml: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.monitor.alerts.worker", str(toml), "90"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:  # a worker starts slowly on a busy machine
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_notifications_decided_while_slack_was_down_survive_a_kill_and_arrive_once(engine, db_url, slack,
                                                                                    tmp_path) -> None:  # type: ignore[no-untyped-def]
    toml = write_toml(tmp_path / "monitor.toml", db_url, slack)
    slack.down = True
    for model in ("m1", "m2", "m3"):
        add_leak(engine, at=datetime.now(UTC), model=model)
    worker = start_worker(toml)
    try:
        until(lambda: len(outbox_rows(engine)) == 3 and outbox_rows(engine)[0].attempts >= 1)
    finally:
        kill(worker)
    assert slack.messages == []

    slack.down = False
    worker = start_worker(toml)
    try:
        until(lambda: {r.status for r in outbox_rows(engine)} == {"sent"}, timeout=40)
        time.sleep(2)  # a few more delivery rounds: nothing else may go out
    finally:
        kill(worker)
    titles = [m["blocks"][0]["text"]["text"] for m in slack.messages]
    assert titles == [f"[CRITICAL] FIRING model={m}: secret_in_response" for m in ("m1", "m2", "m3")]


def test_a_crash_after_slack_accepted_the_message_does_not_post_it_twice(engine, db_url, slack,
                                                                         tmp_path) -> None:  # type: ignore[no-untyped-def]
    toml = write_toml(tmp_path / "monitor.toml", db_url, slack)
    slack.fail_next(("accept_then_stall", 60))  # Slack posts it, the answer never reaches the daemon
    add_leak(engine, at=datetime.now(UTC), model="m1")
    worker = start_worker(toml)
    try:
        until(lambda: len(slack.messages) == 1)
    finally:
        kill(worker)
    (row,) = outbox_rows(engine)
    assert row.status == "pending" and row.claimed_at is not None  # the daemon never heard back

    worker = start_worker(toml)
    try:
        until(lambda: outbox_rows(engine)[0].status == "sent", timeout=40)
        time.sleep(2)
    finally:
        kill(worker)
    (message,) = slack.messages
    assert outbox_rows(engine)[0].external_ref == f"{message['channel']}:{message['ts']}"
