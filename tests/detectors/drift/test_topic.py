"""Topic drift on real prompt embeddings: users start asking about things they never asked before."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import orjson
import pytest

from detectors.drift.embedding import PromptEmbedder
from detectors.drift.topic import TopicMix, update_topics
from monitor.ingest.record import decode
from monitor.synthetic.generator import Incident, TrafficGenerator


@pytest.fixture(scope="module")
def embedder() -> PromptEmbedder:
    return PromptEmbedder()


def _prompts(n: int, incidents: list[Incident], seed: int = 4) -> list[str]:
    gen = TrafficGenerator(seed=seed, start=datetime(2026, 3, 1, tzinfo=UTC), incidents=incidents)
    return [decode(g.value).prompt for g in gen.generate(n)]


def test_legal_and_gaming_questions_showing_up_are_detected_soon_after_they_start(embedder):
    shift = Incident("topic_shift", start=6000, duration=4000, magnitude=0.3)
    vectors = embedder.embed(_prompts(10_000, [shift]))
    detector = TopicMix(arl0=1e6, warmup=3000, topics=8)
    assert detector.update_many(vectors[:6000]) == []
    changes = detector.update_many(vectors[6000:])
    assert changes, "a 30% share of new topics went unnoticed"
    change = changes[0]
    assert change.index < 1500
    # New subjects sit far from the reference centre, or crowd the cluster nearest to them.
    if change.before["measure"] == "distance":
        assert change.after["mean"] > change.before["mean"]
    else:
        assert change.after["rate"] != pytest.approx(change.before["rate"], abs=0.01)
    assert len(change.details["shares_before"]) == 8


def test_the_usual_mix_raises_nothing_and_survives_a_restart(embedder):
    vectors = embedder.embed(_prompts(16_000, [], seed=5))
    detector = TopicMix(arl0=1e5, warmup=3000, topics=8)
    assert detector.update_many(vectors[:5000]) == []
    restored = TopicMix.from_state(orjson.loads(orjson.dumps(detector.state())))
    assert not restored.warming_up
    assert restored.update_many(vectors[5000:]) == []
    assert np.allclose(restored.centres, detector.centres)


def test_detectors_of_several_streams_fed_together_report_what_each_reports_alone(embedder):
    shift = Incident("topic_shift", start=7000, duration=5000, magnitude=0.3)
    streams = [embedder.embed(_prompts(12_000, [shift] if s == 1 else [], seed=20 + s)) for s in range(3)]
    alone = [TopicMix(arl0=1e6, warmup=2000, topics=6) for _ in streams]
    together = [TopicMix(arl0=1e6, warmup=2000, topics=6) for _ in streams]
    expected, found = [], []
    for start in range(0, 12_000, 400):
        parts = [v[start:start + 400] for v in streams]
        alone_found = [d.update_many(p) for d, p in zip(alone, parts, strict=True)]
        expected += [(s, start + c.index) for s, changes in enumerate(alone_found) for c in changes]
        found += [(s, start + c.index) for s, changes in enumerate(update_topics(together, parts)) for c in changes]
    assert found == expected and [s for s, _ in expected] == [1]
    assert 7000 <= expected[0][1] < 8000
