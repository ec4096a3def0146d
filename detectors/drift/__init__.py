"""Calibrated online drift detection: one chart per module, a bank that runs them per stream × signal.

- `chart` — the shared mechanics (warm-up, two one-sided CUSUMs, re-arm, state);
- `calibration` — thresholds for a target false-alarm rate from a warm-up sample;
- `cusum` — continuous signals; `bernoulli` — rates; `topic` — the topic mix of prompt embeddings;
- `signals` — what is watched; `embedding` — prompt embeddings; `bank` — streams × signals, checkpointable.
"""

from detectors.drift.bank import GLOBAL, DriftBank, DriftEvent, Observation, stream_name
from detectors.drift.bernoulli import BernoulliCUSUM
from detectors.drift.chart import Change, Chart
from detectors.drift.cusum import GaussianCUSUM
from detectors.drift.topic import TopicMix

__all__ = [
    "GLOBAL",
    "BernoulliCUSUM",
    "Change",
    "Chart",
    "DriftBank",
    "DriftEvent",
    "GaussianCUSUM",
    "Observation",
    "TopicMix",
    "stream_name",
]
