"""`watchkeeper db new-key` and `rotate-key` from an operator's shell: a usable key, one clear line for a bad
key (its position, never its value), and a refusal to rotate without a key."""

from __future__ import annotations

from click.testing import CliRunner

from monitor.cli import main
from monitor.storage.crypto import parse_keys
from monitor.storage.db import upgrade


def test_new_key_prints_a_key_the_configuration_accepts(sqlite_url, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    made = runner.invoke(main, ["db", "new-key"])
    assert made.exit_code == 0
    key = made.stdout.strip()
    assert parse_keys(key) == [key]

    upgrade(sqlite_url)
    monkeypatch.setenv("WATCHKEEPER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("WATCHKEEPER_ENCRYPTION_KEY", f"{key},{key[:-4]}oops")
    bad = runner.invoke(main, ["db", "rotate-key"])
    assert bad.exit_code == 2
    assert "storage.encryption_key" in bad.stderr and "key 2 of 2 is not a Fernet key" in bad.stderr
    assert key[:20] not in bad.output

    monkeypatch.setenv("WATCHKEEPER_ENCRYPTION_KEY", key)
    done = runner.invoke(main, ["db", "rotate-key"])
    assert done.exit_code == 0, done.output
    assert "re-encrypted 0 records, 0 dead_letters" in done.stdout and key not in done.output

    monkeypatch.delenv("WATCHKEEPER_ENCRYPTION_KEY")
    refused = runner.invoke(main, ["db", "rotate-key"])
    assert refused.exit_code == 1 and "no encryption key" in refused.output
