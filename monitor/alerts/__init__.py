"""Alerts for the on-call engineer: few, clear, trustworthy — Alertmanager's hygiene with state in the database.

One concept per module, in the order an evaluation runs:
rules (what is wrong, with evidence) → lifecycle (firing/resolved, dedup by fingerprint) → silences and
inhibition (recorded, not sent) → grouping (one message per scope, re-notification) → routing (which sink
and channel by severity) → render (Block Kit and console text) → outbox (durable, same transaction) →
delivery by `outbox.deliver_pending` through a sink (console, slack). `evaluate.evaluate_once` runs the
first half; `jobs.build_jobs` schedules both halves in the daemon.
"""
