"""Least-privilege Postgres roles: an analyst who reads, and the review page's own server.

Generated from the declared schema, so a table added later is covered by the same rules (and a test fails if
a new table is not classified). Postgres only: SQLite has no roles. `watchkeeper db roles` prints the SQL, or
applies it with ``--apply`` (which needs a user allowed to ``CREATE ROLE`` and ``GRANT``).

* **analyst** — ``SELECT`` on what analysts query (docs/tables.md) and the views; never `dead_letters.raw`
  (a malformed message's bytes, which may hold anything), any ciphertext (`records.text_encrypted`,
  `dead_letters.raw_encrypted`: with a key the clear text columns hold redacted text only), a reviewer's
  `token_hash`, the stored session key (`service_secrets`), alert delivery state, or the scheduler's locks.
  Nothing can be written.
* **review server** — what the labelling page needs and nothing else: read records, their detections, shadow
  answers and samples; assign samples and write labels; read reviewers and void their sessions; read/create
  its session key.
"""

from __future__ import annotations

from sqlalchemy import Table

from monitor.storage.schema import metadata

ANALYST_HIDDEN: dict[str, tuple[str, ...]] = {
    "records": ("text_encrypted",),
    "dead_letters": ("raw", "raw_encrypted"),
    "reviewers": ("token_hash",),
}
"""Tables analysts read except these columns (granted column by column)."""
ANALYST_NONE = frozenset({"service_secrets", "scheduler_locks", "alert_outbox", "detector_state", "genai_events"})
"""Tables analysts cannot read at all (`genai_events` holds content not yet redacted: it waits for its span)."""
VIEWS = ("review_record_verdicts", "review_accuracy_daily", "review_label_pairs", "review_agreement",
         "model_comparison_daily")

REVIEW_SERVER: dict[str, str] = {
    "records": "SELECT", "detections": "SELECT", "shadow_comparisons": "SELECT", "samples": "SELECT",
    "sample_assignments": "SELECT, INSERT", "labels": "SELECT, INSERT, UPDATE",
    "reviewers": "SELECT, UPDATE", "service_secrets": "SELECT, INSERT",
}


def _quoted(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain role name: {name!r} (letters, digits and _ only)")
    return f'"{name}"'


def _columns(table: Table, hidden: tuple[str, ...]) -> str:
    return ", ".join(f'"{c.name}"' for c in table.columns if c.name not in hidden)


def role_statements(analyst: str | None = "watchkeeper_analyst",
                    review_server: str | None = "watchkeeper_review") -> list[str]:
    """The SQL that creates (if missing) and grants the two roles, in order. Roles are created ``NOLOGIN``
    when new: give them a password and ``LOGIN`` (or grant them to login users) as your site does.

    >>> sql = role_statements("a", None)
    >>> any('"raw"' in s for s in sql), any("service_secrets" in s for s in sql)
    (False, False)
    """
    statements: list[str] = []
    for name in (n for n in (analyst, review_server) if n):
        role = _quoted(name)
        statements.append(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') "
                          f"THEN CREATE ROLE {role} NOLOGIN; END IF; END $$")
        statements.append(f"GRANT USAGE ON SCHEMA public TO {role}")
    if analyst:
        role = _quoted(analyst)
        for table in metadata.sorted_tables:
            if table.name in ANALYST_NONE:
                continue
            hidden = ANALYST_HIDDEN.get(table.name, ())
            what = f"SELECT ({_columns(table, hidden)})" if hidden else "SELECT"
            statements.append(f'GRANT {what} ON "{table.name}" TO {role}')
        statements += [f'GRANT SELECT ON "{view}" TO {role}' for view in VIEWS]
    if review_server:
        role = _quoted(review_server)
        statements += [f'GRANT {rights} ON "{table}" TO {role}' for table, rights in REVIEW_SERVER.items()]
        statements.append(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    return statements
