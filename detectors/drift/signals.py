"""The catalogue of signals Watchkeeper watches on every stream, and which kind of chart watches each.

Lengths, token counts and latency are positive and heavy-tailed (roughly lognormal): their charts work on
``log1p`` of the value. Feedback scores are bounded and often binary (thumbs up = 1): the chart's
warm-up histogram takes their shape as it is. ``cost`` (US dollars per call, when the source reports it:
LiteLLM, some OTLP instrumentations) is watched as it is: per-call prices are fractions of a cent, where
``log1p`` would be the identity anyway. Errors, refusals, toxic answers and prompt-injection attempts are rates,
watched with Bernoulli charts; a toxic answer is one whose ``response_toxicity`` score reaches
``[detectors.toxicity] threshold``, an injection attempt a prompt the ``prompt_injection`` detector flagged.
The topic mix is watched from the subjects of embedded prompts (`detectors.drift.subjects`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from detectors.drift.cusum import Transform


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    kind: Literal["continuous", "rate", "topic"]
    transform: Transform = "log"


SIGNALS: tuple[Signal, ...] = (
    Signal("prompt_chars", "continuous"),
    Signal("response_chars", "continuous"),
    Signal("latency_ms", "continuous"),
    Signal("tokens_in", "continuous"),
    Signal("tokens_out", "continuous"),
    Signal("feedback_score", "continuous", transform="identity"),
    Signal("cost", "continuous", transform="identity"),
    Signal("error", "rate"),
    Signal("refusal", "rate"),
    Signal("toxic", "rate"),
    Signal("injection", "rate"),
    Signal("prompt_topic", "topic"),
)
SCALAR_SIGNALS: tuple[Signal, ...] = tuple(s for s in SIGNALS if s.kind != "topic")
TOPIC_SIGNAL = Signal("prompt_topic", "topic")
TOPIC_PREFIX = "topic:"
"""Bucket rows of the topic mix are named ``topic:<subject>``; their counts are folded into ``prompt_topic``."""
