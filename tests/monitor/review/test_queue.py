"""Each reviewer gets their own queue, sees one record once, and never another reviewer's work."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from monitor.config import ReviewConfig
from monitor.review.queue import LabelError, ReviewQueue
from monitor.storage.schema import labels, sample_assignments
from tests.monitor.review.conftest import build_review_db


def test_queues_are_filled_lazily_and_kept_apart(review_db):
    queue = ReviewQueue(review_db.engine, ReviewConfig(queue_size=10))
    ana, bo = review_db.ids["ana"], review_db.ids["bo"]
    assert queue.pending(ana) == []
    assert queue.fill(ana) == 10 and queue.fill(ana) == 0
    queue.fill(bo)
    mine, theirs = queue.pending(ana), queue.pending(bo)
    assert len(mine) == len(theirs) == 10
    assert not {i.record_id for i in mine} & {i.record_id for i in theirs}  # one reviewer wanted each
    # A record sampled for several reasons is one item that lists them all.
    first = next(i for i in mine + theirs if i.record_id == review_db.email_record)
    assert set(first.reasons) >= {"uniform", "pii", "low_feedback"}

    assert queue.view(bo, mine[0].sample_id) is None
    assert queue.label(bo, mine[0].sample_id, "correct") is False
    assert queue.label(ana, mine[0].sample_id, "incorrect", ["hallucination"], "made up a date")
    view = queue.view(ana, mine[0].sample_id)
    assert (view.verdict, view.tags, view.note) == ("incorrect", ["hallucination"], "made up a date")
    assert len(queue.pending(ana)) == 9
    # Relabelling replaces the verdict; bo sees nothing of it.
    queue.label(ana, mine[0].sample_id, "correct")
    with review_db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(labels)).scalar_one() == 1
    assert queue.done(bo) == [] and [i.verdict for i in queue.done(ana)] == ["correct"]
    with pytest.raises(LabelError):
        queue.label(ana, mine[1].sample_id, "great")
    with pytest.raises(LabelError):
        queue.label(ana, mine[1].sample_id, "correct", ["nonsense"])


def test_the_page_shows_findings_with_values_still_redacted(review_db):
    queue = ReviewQueue(review_db.engine, ReviewConfig(queue_size=100))
    ana = review_db.ids["ana"]
    queue.fill(ana)
    item = next(i for i in queue.pending(ana) if i.record_id == review_db.email_record)
    view = queue.view(ana, item.sample_id)
    shown = "".join(s.text for s in view.prompt + view.response)
    assert "ana@example.com" not in shown
    assert [s.kind for s in view.prompt + view.response if s.kind] == ["EMAIL", "EMAIL"]
    assert any(f.detector == "pii" and f.kinds == ("EMAIL",) for f in view.findings)
    assert view.record["feedback_comment"] == "wrong address"


def test_a_share_of_records_goes_to_two_reviewers(db_url):
    db = build_review_db(db_url, volume=40, double_share=0.5)
    queue = ReviewQueue(db.engine, ReviewConfig(queue_size=100))
    for reviewer_id in db.ids.values():
        queue.fill(reviewer_id)
    with db.engine.connect() as conn:
        per_sample = conn.execute(
            select(sample_assignments.c.sample_id, func.count()).group_by(sample_assignments.c.sample_id)
        ).all()
    counts = {n for _, n in per_sample}
    assert counts == {1, 2}
    doubled = sum(n == 2 for _, n in per_sample)
    assert 0 < doubled < len(per_sample)
    db.engine.dispose()
