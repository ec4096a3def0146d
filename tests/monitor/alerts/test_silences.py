"""Silences: a silenced alert is recorded but not sent, until the silence ends; silences are bounded and
managed from the command line."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner

from monitor.alerts.evaluate import evaluate_once
from monitor.alerts.silences import add_silence, expire_silence, list_silences
from monitor.cli import main
from tests.monitor.alerts.conftest import NOW, add_leak, alert_rows, make_config, outbox_rows

RULES = {"no_traffic": {"enabled": False}}


def test_a_silenced_alert_is_recorded_not_sent_and_announced_when_the_silence_ends(engine, db_url) -> None:  # type: ignore[no-untyped-def]
    config = make_config(db_url, rules=RULES)
    with engine.begin() as conn:
        silence = add_silence(conn, rule="secret_in_response", scope="model=m*", duration=timedelta(hours=2),
                              reason="key rotation drill", now=NOW, max_duration=timedelta(days=1))
    add_leak(engine, at=NOW, model="m1")
    add_leak(engine, at=NOW, model="other")
    for s in range(0, 20, 2):
        evaluate_once(engine, config, NOW + timedelta(seconds=s))
    m1, other = sorted(alert_rows(engine), key=lambda a: a.scope)
    assert (m1.scope, m1.silenced, m1.last_notified_at) == ("model=m1", True, None)
    assert (other.scope, other.silenced) == ("model=other", False)
    assert [r.fingerprints for r in outbox_rows(engine)] == [["secret_in_response@model=other"]]

    with engine.begin() as conn:
        assert expire_silence(conn, silence.id, NOW + timedelta(seconds=30))
        assert not expire_silence(conn, silence.id, NOW + timedelta(seconds=31))  # already ended
    evaluate_once(engine, config, NOW + timedelta(seconds=32))
    assert [r.fingerprints for r in outbox_rows(engine)][-1] == ["secret_in_response@model=m1"]


def test_silences_are_bounded_and_need_a_reason(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="at most"):
            add_silence(conn, rule="*", scope="*", duration=timedelta(days=30), reason="quiet please", now=NOW,
                        max_duration=timedelta(days=7))
        with pytest.raises(ValueError, match="reason"):
            add_silence(conn, rule="*", scope="*", duration=timedelta(hours=1), reason="  ", now=NOW,
                        max_duration=timedelta(days=7))
        add_silence(conn, rule="*", scope="*", duration=timedelta(hours=1), reason="deploy", now=NOW,
                    max_duration=timedelta(days=7))
        assert len(list_silences(conn, NOW + timedelta(minutes=59))) == 1
        assert list_silences(conn, NOW + timedelta(minutes=61)) == []  # ended by itself


def test_silence_commands(db_url, engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    toml = tmp_path / "monitor.toml"
    toml.write_text(f'[database]\nurl = "{db_url}"\n[alerts]\nmax_silence = "1d"\n')
    run = CliRunner().invoke
    added = run(main, ["silence", "add", "--config", str(toml), "--rule", "toxicity_rate", "--scope", "model=m1",
                       "--for", "2h", "--reason", "known issue, fix deploying", "--by", "ana"])
    assert added.exit_code == 0, added.output
    assert added.output.startswith("silence 1: toxicity_rate model=m1 until ")
    listed = run(main, ["silence", "list", "--config", str(toml)])
    assert "toxicity_rate" in listed.output and "known issue, fix deploying" in listed.output and "ana" in listed.output

    typo = run(main, ["silence", "add", "--config", str(toml), "--rule", "toxicity", "--scope", "global",
                      "--for", "1h", "--reason", "x"])
    assert typo.exit_code == 2 and "no rule 'toxicity'" in typo.output
    too_long = run(main, ["silence", "add", "--config", str(toml), "--rule", "*", "--scope", "*",
                          "--for", "3d", "--reason", "x"])
    assert too_long.exit_code == 2 and "at most" in too_long.output

    assert run(main, ["silence", "expire", "--config", str(toml), "1"]).exit_code == 0
    assert "no active silences" in run(main, ["silence", "list", "--config", str(toml)]).output
    assert run(main, ["silence", "expire", "--config", str(toml), "1"]).exit_code == 1
