"""`watchkeeper db rotate-key` while the daemon ingests from Kafka: every row stored before and during the
rotation opens with the new key alone afterwards, and none is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import func, select

from monitor.storage.crypto import Cipher, new_key, open_texts
from monitor.storage.db import make_engine
from monitor.storage.schema import dead_letters, records
from tests.helpers import DaemonThread, config_for, encode, good_record, produce, wait_for, write_config

pytestmark = pytest.mark.slow

AWS = "AKIA4HKQ2ZP7LW3NXR6T"


def _values(first: int, n: int) -> list[bytes]:
    out = [encode(good_record(i, prompt=f"prompt {i} key {AWS}")) for i in range(first, first + n)]
    out.append(b'{"id": "broken-' + str(first).encode() + b'", "prompt": "' + AWS.encode() + b'"')
    return out


def _count(engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_rotation_while_ingest_runs_loses_nothing(migrated_db_url, kafka_broker, topic, tmp_path) -> None:  # type: ignore[no-untyped-def]
    old, new = new_key(), new_key()
    engine = make_engine(migrated_db_url)

    def config(keys: str):  # type: ignore[no-untyped-def]
        path = write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker, topic=topic,
                            extra=f'store_text = "full"\n[storage]\nencryption_key = "{keys}"\n'
                                  "[scheduler]\nenabled = false\n")
        return path, config_for(path)

    # Before: a daemon with the old key alone stores 2000 records and a dead letter.
    _, first = config(old)
    produce(kafka_broker, topic, _values(0, 2000))
    with DaemonThread(first, services=False):
        wait_for(lambda: _count(engine, records) == 2000 and _count(engine, dead_letters) == 1, 90, "first 2000")

    # The new key goes first; the daemon restarts with both and keeps ingesting while rotate-key runs.
    path, both = config(f"{new},{old}")
    def keep_producing() -> None:  # 3000 more records and 12 dead letters over about 3 s
        for k in range(12):
            produce(kafka_broker, topic, _values(10_000 + k * 250, 250))
            time.sleep(0.25)

    producing = threading.Thread(target=keep_producing)
    with DaemonThread(both, services=False):
        producing.start()
        wait_for(lambda: _count(engine, records) > 2100, 60, "ingest under way")
        during = _count(engine, records)
        rotated = subprocess.run(
            [sys.executable, "-m", "monitor", "db", "rotate-key", "--config", str(path), "--chunk", "100",
             "--pause", "0.05"],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "WATCHKEEPER_ENCRYPTION_KEY": f"{new},{old}"})
        after_rotation = _count(engine, records)
        producing.join()
        wait_for(lambda: _count(engine, records) == 5000 and _count(engine, dead_letters) == 13, 120, "all 5000")
    assert rotated.returncode == 0, rotated.stderr
    assert "re-encrypted 2000 records, 1 dead_letters" in rotated.stdout
    assert new not in rotated.stdout + rotated.stderr and old not in rotated.stdout + rotated.stderr
    assert after_rotation > during, "the daemon kept storing while the rotation ran"

    only_new = Cipher([new])
    with engine.connect() as conn:
        rows = conn.execute(select(records.c.id, records.c.text_encrypted, records.c.text_key)).all()
        letters = conn.execute(select(dead_letters.c.raw, dead_letters.c.raw_encrypted, dead_letters.c.raw_key)).all()
    engine.dispose()
    assert len(rows) == 5000 and {key for _, _, key in rows} == {only_new.key_id}
    for record_id, token, key in rows:
        opened = open_texts(only_new, token, key)
        assert opened is not None and opened["prompt"] == f"prompt {int(record_id[4:])} key {AWS}"
    assert all(raw is None and key == only_new.key_id and AWS.encode() in only_new.decrypt(token)
               for raw, token, key in letters)
