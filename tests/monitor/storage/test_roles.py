"""An analyst's role reads what analysts query and nothing that could hold a raw secret; the review page's
role can label but not read dead letters — checked by connecting as each role to a real Postgres."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import ProgrammingError

from monitor.cli import main
from monitor.storage.roles import ANALYST_HIDDEN, ANALYST_NONE, REVIEW_SERVER, VIEWS
from monitor.storage.schema import metadata


def test_every_table_is_classified_for_the_analyst_role() -> None:
    """A new table must be decided on: analysts read it whole, without some columns, or not at all."""
    names = {t.name for t in metadata.sorted_tables}
    assert set(ANALYST_HIDDEN) | ANALYST_NONE | set(REVIEW_SERVER) <= names
    assert "dead_letters" in ANALYST_HIDDEN and "service_secrets" in ANALYST_NONE and VIEWS


@pytest.mark.postgres
def test_roles_applied_by_the_cli_grant_reads_and_refuse_secrets(postgres_url, tmp_path) -> None:
    import uuid

    from monitor.storage.db import upgrade

    upgrade(postgres_url)
    suffix = uuid.uuid4().hex[:8]
    analyst, review = f"wk_analyst_{suffix}", f"wk_review_{suffix}"
    config = tmp_path / "monitor.toml"
    config.write_text(f'[database]\nurl = "{postgres_url}"\n')
    result = CliRunner().invoke(main, ["db", "roles", "--config", str(config), "--analyst", analyst,
                                       "--review-server", review, "--apply"])
    assert result.exit_code == 0, result.output
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for role in (analyst, review):
            conn.execute(text(f'ALTER ROLE "{role}" LOGIN'))
    try:
        def as_role(role: str, sql: str) -> bool:
            url = make_url(postgres_url).set(username=role)
            engine = create_engine(url)
            try:
                with engine.begin() as conn:
                    conn.execute(text(sql))
                return True
            except ProgrammingError as exc:
                assert "permission denied" in str(exc)
                return False
            finally:
                engine.dispose()

        assert as_role(analyst, "SELECT id, model, prompt, response FROM records")
        assert as_role(analyst, "SELECT topic, reason FROM dead_letters")
        assert as_role(analyst, "SELECT * FROM review_accuracy_daily")
        assert not as_role(analyst, "SELECT raw FROM dead_letters")
        assert not as_role(analyst, "SELECT raw_encrypted FROM dead_letters")
        assert not as_role(analyst, "SELECT text_encrypted FROM records")
        assert as_role(analyst, "SELECT text_key FROM records")
        assert not as_role(analyst, "SELECT token_hash FROM reviewers")
        assert not as_role(analyst, "SELECT * FROM service_secrets")
        assert not as_role(analyst, "DELETE FROM records")
        assert as_role(review, "SELECT id FROM samples")
        assert not as_role(review, "SELECT reason FROM dead_letters")
        assert not as_role(review, "DELETE FROM labels")
    finally:
        with admin.connect() as conn:
            for role in (analyst, review):
                conn.execute(text(f'DROP OWNED BY "{role}"'))
                conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()
