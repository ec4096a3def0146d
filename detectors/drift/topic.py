"""Calibrated detection of a change in what users ask about, from prompt embeddings.

The warm-up learns ``topics`` clusters of the prompt embeddings (spherical k-means: k-means++ seeding on
the first few embeddings, then online MacQueen updates, in blocks of 16, for the rest of the first half of the warm-up).
From then on two things are watched, each with half of the false-alarm budget: how far prompts are from
their nearest cluster (a `GaussianCUSUM` on that cosine distance: subjects the traffic never had sit far
from every cluster), and the share of prompts nearest each cluster (one `BernoulliCUSUM` per cluster: a shift in the mix
between known subjects). Clusters are re-learnt when the detector re-arms, so a new topic mix
becomes the new reference.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> centres = rng.normal(size=(6, 16))
>>> def prompts(n, mix):
...     return centres[rng.choice(6, size=n, p=mix)] + rng.normal(scale=0.5, size=(n, 16))
>>> detector = TopicMix(arl0=1e6, warmup=2000, topics=6)
>>> detector.update_many(prompts(6000, [0.3, 0.3, 0.2, 0.2, 0.0, 0.0]))
[]
>>> change = detector.update_many(prompts(3000, [0.2, 0.2, 0.15, 0.15, 0.3, 0.0]))[0]
>>> change.direction, change.index < 1000
('up', True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from detectors.drift.bernoulli import BernoulliCUSUM
from detectors.drift.chart import Change, Chart, update_together
from detectors.drift.cusum import GaussianCUSUM

_BLOCK = 16
"""Embeddings per k-means step while the clusters are learnt."""


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator, rounds: int = 10) -> np.ndarray:
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        far = 1 - np.max(x @ np.array(centres).T, axis=1)
        weights = np.maximum(far, 0)
        pick = rng.choice(len(x), p=weights / weights.sum()) if weights.sum() > 0 else rng.integers(len(x))
        centres.append(x[pick])
    c = np.array(centres)
    for _ in range(rounds):
        label = np.argmax(x @ c.T, axis=1)
        for j in range(k):
            members = x[label == j]
            if len(members):
                c[j] = members.mean(axis=0)
        c = _unit(c)
    return c


class TopicMix:
    """Watches the shares of prompt-embedding clusters; reports the first share that moved.

    Parameters: ``arl0`` in embedded prompts (the whole detector); ``warmup`` embeddings (half to learn the
    clusters, half to learn their shares); ``topics`` clusters; ``odds_ratio`` and ``margin`` as in
    `BernoulliCUSUM`; ``seed`` fixes the k-means++ draws so a replay clusters identically.
    """

    kind = "topic"

    def __init__(self, arl0: float = 1e7, warmup: int = 4000, topics: int = 8, odds_ratio: float = 2.0,
                 margin: float = 1.0, seed: int = 0) -> None:
        if topics < 2 or warmup < 40 * topics:
            raise ValueError("need at least 2 topics and 40 warm-up embeddings per topic")
        self.arl0, self.warmup, self.topics = float(arl0), int(warmup), int(topics)
        self.odds_ratio, self.margin, self.seed = odds_ratio, margin, seed
        self.drift_detected = False
        self._reset()

    def _reset(self) -> None:
        self.seeds: list[list[float]] = []
        self.centres: np.ndarray | None = None
        self.counts = np.zeros(self.topics)
        self.clustered = 0
        self.charts: list[Chart] = []  # the distance chart, then one share chart per cluster

    @property
    def warming_up(self) -> bool:
        return not self.charts or self.charts[0].warming_up

    def update_many(self, embeddings: np.ndarray) -> list[Change]:
        """Feed embeddings (rows, arrival order); return the changes they revealed."""
        return update_topics([self], [embeddings])[0]

    def _run(self, x: np.ndarray) -> list[Change]:
        """`update_many` on unit rows, one detector alone."""
        changes: list[Change] = []
        i = 0
        while i < len(x):
            if not self.charts:
                i += self._learn(x[i:])
                continue
            nearest, shares = self._classify(x[i:])
            found = [self.charts[0].update_many(nearest), *update_together(self.charts[1:], shares)]
            change = self._first(found, i)
            if change is None:
                break
            changes.append(change)
            i = change.index + 1
        self.drift_detected = bool(changes)
        return changes

    def _classify(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Each row's cosine distance to its nearest cluster, and one 0/1 column per cluster: is it nearest."""
        similarity = x @ self.centres.T  # type: ignore[union-attr]
        label = np.argmax(similarity, axis=1)
        nearest = 1.0 - similarity[np.arange(len(x)), label]
        return nearest, list(np.arange(self.topics)[:, None] == label)

    def _first(self, found: list[list[Change]], offset: int) -> Change | None:
        """The earliest of the charts' changes (``found``: the distance chart's, then each share chart's) as
        this detector's change, its index shifted by ``offset``; the detector re-arms. None if none."""
        first: tuple[int, Change] | None = None
        for j, changes in enumerate(found):
            if changes and (first is None or changes[0].index < first[1].index):
                first = (j, changes[0])
        if first is None:
            return None
        j, change = first
        shares = [c.events / c.warm_n for c in self.charts[1:] if c.warm_n]  # type: ignore[attr-defined]
        change.before |= {"measure": "distance"} if j == 0 else {"measure": "share", "topic": j - 1}
        change.details |= {"shares_before": shares, "topics": self.topics}
        self._reset()
        return Change(offset + change.index, change.direction, change.before, change.after, change.details)

    def _learn(self, x: np.ndarray) -> int:
        """Cluster the first half of the warm-up; return how many rows were used."""
        half = self.warmup // 2
        take = x[: half - self.clustered]
        used = 0
        if self.centres is None:
            need = 4 * self.topics - len(self.seeds)
            self.seeds.extend(take[:need].tolist())
            used = min(need, len(take))
            if len(self.seeds) == 4 * self.topics:
                rng = np.random.default_rng(self.seed)
                self.centres = _kmeans_pp(np.array(self.seeds), self.topics, rng)
                self.seeds = []
        rest = take[used:]
        k = np.arange(self.topics)
        for start in range(0, len(rest), _BLOCK):
            # MacQueen in small blocks: each centre moves to the running mean of its members, the members
            # of a block found with the centres as the block began (a block of one is MacQueen exactly).
            block = rest[start:start + _BLOCK]
            member = np.argmax(block @ self.centres.T, axis=1)[:, None] == k  # type: ignore[union-attr]
            m = member.sum(axis=0)
            self.counts += m
            step = (member.T @ block - m[:, None] * self.centres) / (self.counts + 4)[:, None]
            self.centres = _unit(self.centres + step)  # type: ignore[operator]
        self.clustered += len(take)
        if self.clustered >= half:
            # Half the alarm rate to the distance chart, half shared by the cluster charts.
            self.charts = [GaussianCUSUM(2 * self.arl0, self.warmup - half, transform="identity",
                                         margin=self.margin)]
            self.charts += [BernoulliCUSUM(2 * self.arl0 * self.topics, self.warmup - half, self.odds_ratio,
                                           self.margin) for _ in range(self.topics)]
        return len(take)

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "params": {"arl0": self.arl0, "warmup": self.warmup, "topics": self.topics,
                       "odds_ratio": self.odds_ratio, "margin": self.margin, "seed": self.seed},
            "seeds": self.seeds,
            "centres": None if self.centres is None else self.centres.tolist(),
            "counts": self.counts.tolist(),
            "clustered": self.clustered,
            "charts": [c.state() for c in self.charts],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TopicMix:
        detector = cls(**state["params"])
        detector.seeds = state["seeds"]
        detector.centres = None if state["centres"] is None else np.asarray(state["centres"], dtype=float)
        detector.counts = np.asarray(state["counts"], dtype=float)
        detector.clustered = int(state["clustered"])
        detector.charts = [Chart.from_state(c) for c in state["charts"]]
        return detector


def update_topics(detectors: Sequence[TopicMix], embeddings: Sequence[np.ndarray]) -> list[list[Change]]:
    """``[d.update_many(e) for d, e in zip(detectors, embeddings)]``, with the same results, faster: the
    charts of all armed detectors (one per stream) advance together (`update_together`)."""
    xs = [_unit(np.asarray(e, dtype=float).reshape(len(e), -1)) for e in embeddings]
    out: list[list[Change]] = [[] for _ in detectors]
    ready = [j for j, d in enumerate(detectors) if d.charts and not d.warming_up and len(xs[j])]
    if len(ready) < 2:
        ready = []
    for j in sorted(set(range(len(detectors))) - set(ready)):
        out[j] = detectors[j]._run(xs[j])
    if not ready:
        return out
    classified = [detectors[j]._classify(xs[j]) for j in ready]
    distances = update_together([detectors[j].charts[0] for j in ready], [n for n, _ in classified])
    shares = update_together([c for j in ready for c in detectors[j].charts[1:]],
                             [column for _, columns in classified for column in columns])
    at = 0
    for q, j in enumerate(ready):
        detector, topics = detectors[j], detectors[j].topics
        change = detector._first([distances[q], *shares[at:at + topics]], 0)
        at += topics
        if change is None:
            detector.drift_detected = False
            continue
        rest = detector._run(xs[j][change.index + 1:])
        out[j] = [change, *(Change(c.index + change.index + 1, c.direction, c.before, c.after, c.details)
                            for c in rest)]
        detector.drift_detected = True
    return out

