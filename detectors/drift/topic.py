"""Calibrated detection of a change in what users ask about, from prompt embeddings.

The warm-up learns ``topics`` clusters of the prompt embeddings (spherical k-means: k-means++ seeding on
the first few embeddings, then online MacQueen updates for the rest of the first half of the warm-up).
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

from typing import Any

import numpy as np

from detectors.drift.bernoulli import BernoulliCUSUM
from detectors.drift.chart import Change, Chart
from detectors.drift.cusum import GaussianCUSUM


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
        x = _unit(np.asarray(embeddings, dtype=float).reshape(len(embeddings), -1))
        changes: list[Change] = []
        i = 0
        while i < len(x):
            if not self.charts:
                i += self._learn(x[i:])
                continue
            chunk = x[i:]
            similarity = chunk @ self.centres.T  # type: ignore[union-attr]
            label = np.argmax(similarity, axis=1)
            nearest = 1.0 - similarity[np.arange(len(chunk)), label]
            inputs = [nearest, *(label == j for j in range(self.topics))]
            first: tuple[int, int, Change] | None = None
            for j, (chart, values) in enumerate(zip(self.charts, inputs, strict=True)):
                found = chart.update_many(values)
                if found and (first is None or found[0].index < first[1]):
                    first = (j, found[0].index, found[0])
            if first is None:
                break
            j, t, change = first
            shares = [c.events / c.warm_n for c in self.charts[1:] if c.warm_n]  # type: ignore[attr-defined]
            change.before |= {"measure": "distance"} if j == 0 else {"measure": "share", "topic": j - 1}
            change.details |= {"shares_before": shares, "topics": self.topics}
            changes.append(Change(i + t, change.direction, change.before, change.after, change.details))
            self._reset()
            i += t + 1
        self.drift_detected = bool(changes)
        return changes

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
        for row in take[used:]:  # MacQueen: each centre is the running mean of its members
            j = int(np.argmax(self.centres @ row))  # type: ignore[operator]
            self.counts[j] += 1
            self.centres[j] += (row - self.centres[j]) / (self.counts[j] + 4)  # type: ignore[index]
            self.centres[j] /= max(np.linalg.norm(self.centres[j]), 1e-12)  # type: ignore[index]
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

