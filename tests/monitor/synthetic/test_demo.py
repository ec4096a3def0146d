"""`watchkeeper demo` as a new user runs it, for the three minutes the README promises: every scripted
incident is reached, Evidently reports compare two non-empty windows (an error spike's empty answers
included), alerts fire on incidents and not on the normal traffic, and the closing lines say where to look."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.synthetic.broker import free_port
from monitor.synthetic.demo import SCRIPT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
ROOT = Path(__file__).resolve().parents[3]
DEMO_S = 185


def test_three_minutes_of_demo_reach_every_incident_and_a_real_evidently_report(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "demo", "--duration", str(DEMO_S), "--review-port", str(free_port())],
        cwd=tmp_path, capture_output=True, text=True, timeout=DEMO_S + 180,
        env={**os.environ, "PYTHONPATH": str(ROOT), "WATCHKEEPER_METRICS_PORT": str(free_port())})
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    produced = [int(m) for m in re.findall(r"produced\s+(\d+)", out)]
    last_incident = max(i.start + i.duration for i in SCRIPT)
    assert produced and produced[-1] >= last_incident, f"{produced[-1:]} produced, incidents end at {last_incident}"
    assert "failed for slot" not in out and "Traceback" not in out, out[-4000:]

    db = sqlite3.connect(tmp_path / ".watchkeeper-demo" / "watchkeeper.db")
    summaries = [json.loads(s) for (s,) in db.execute("SELECT summary FROM reports WHERE kind = 'evidently_drift'")]
    compared = [s for s in summaries if s.get("status") != "insufficient_data" and s["reference"]["records"] > 0]
    assert compared, [s.get("reason") for s in summaries]
    errors = db.execute("SELECT COUNT(*) FROM records WHERE status = 'error'").fetchone()[0]
    assert errors > 300  # the error spike (25% of 2000 records) was consumed
    rules = {rule for (rule,) in db.execute("SELECT DISTINCT rule FROM alerts")}
    assert {"toxicity_rate", "secret_in_response", "drift"} <= rules, rules
    assert not rules & {"pii_in_response", "dead_letter_rate"}, "alerts on the demo's normal traffic"
    assert "Its database is" in out and "--config" in out and "watchkeeper report" in out
