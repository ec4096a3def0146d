"""An operator adds reviewers from the command line and an analyst exports every label."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time

import httpx
import orjson
from click.testing import CliRunner

from monitor.cli import main
from monitor.config import ReviewConfig
from monitor.review.queue import ReviewQueue
from tests.monitor.review.conftest import build_review_db


def test_reviewers_are_managed_and_labels_exported(sqlite_url, tmp_path, monkeypatch):
    db = build_review_db(sqlite_url, volume=12)
    monkeypatch.setenv("WATCHKEEPER_DATABASE_URL", sqlite_url)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    added = runner.invoke(main, ["reviewer", "add", "cy"])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    assert token.startswith("wkr_") and len(token) > 40
    assert runner.invoke(main, ["reviewer", "add", "cy"]).exit_code == 1

    listed = runner.invoke(main, ["reviewer", "list"])
    assert [line.split("\t")[:2] for line in listed.stdout.splitlines()] == \
        [["ana", "active"], ["bo", "active"], ["cy", "active"]]
    assert token not in listed.output and db.tokens["ana"] not in listed.output

    queue = ReviewQueue(db.engine, ReviewConfig(queue_size=3))
    for name, verdict in (("ana", "correct"), ("bo", "incorrect")):
        queue.fill(db.ids[name])
        for item in queue.pending(db.ids[name]):
            queue.label(db.ids[name], item.sample_id, verdict, ["off-topic"], "=HYPERLINK(\"x\")")

    out = tmp_path / "labels.csv"
    assert runner.invoke(main, ["labels", "export", "--format", "csv", "--out", str(out)]).exit_code == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6 and {r["reviewer"] for r in rows} == {"ana", "bo"}
    assert all(r["note"].startswith("'=") for r in rows)  # a spreadsheet will not run it as a formula
    assert all(r["uniform_inclusion_probability"] == "1.0" for r in rows)

    jsonl = runner.invoke(main, ["labels", "export", "--format", "jsonl"])
    records = [orjson.loads(line) for line in jsonl.stdout.splitlines()]
    assert [r["note"] for r in records] == ['=HYPERLINK("x")'] * 6 and records[0]["tags"] == ["off-topic"]

    assert runner.invoke(main, ["reviewer", "disable", "cy"]).exit_code == 0
    assert "cy\tdisabled" in runner.invoke(main, ["reviewer", "list"]).stdout
    db.engine.dispose()


def test_review_serve_listens_where_it_is_told(sqlite_url, tmp_path):
    db = build_review_db(sqlite_url, volume=3)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "WATCHKEEPER_DATABASE_URL": sqlite_url}
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "review", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", headers={
                    "Authorization": f"Bearer {db.tokens['bo']}"}, timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
                time.sleep(0.2)
        assert response.status_code == 200 and 'id="reviewer-name">bo<' in response.text
    finally:
        proc.terminate()
        proc.wait(10)
    db.engine.dispose()
