"""How a production answer compares with the reference model's answer to the same prompt.

Metrics per pair: semantic similarity (`inference.embed`), ROUGE-L (`inference.rouge`), the length ratio,
whether exactly one of the two refuses, and the toxicity and PII count of the reference answer. The refusal,
toxicity and PII figures come from the same per-record detectors the pipeline runs (`detectors.base.Detector`),
applied to the answers alone, so "refuses" means the same thing here as on the dashboards. The pair agrees
when every configured threshold holds; the reasons it does not are kept for the reviewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from detectors.base import Detection, Detector
from inference.embed import AnswerEmbedder
from inference.rouge import rouge_l


@dataclass(slots=True, frozen=True)
class Thresholds:
    """When a pair counts as agreeing. A threshold at its neutral value (0, or an infinite bound) is off."""

    min_similarity: float = 0.5
    min_rouge_l: float = 0.0
    min_length_ratio: float = 0.25
    max_length_ratio: float = 4.0
    refusal_mismatch_disagrees: bool = True


@dataclass(slots=True, frozen=True)
class Pair:
    """One prompt with the production answer and the reference answer."""

    prompt: str
    production: str
    reference: str


@dataclass(slots=True)
class Comparison:
    similarity: float
    rouge_l: float
    length_ratio: float | None
    """Production characters over reference characters; None when only the reference is empty."""
    production_refusal: bool | None
    reference_refusal: bool | None
    reference_toxicity: float | None
    reference_pii: int | None
    agree: bool
    reasons: list[str] = field(default_factory=list)
    """Why the pair disagrees (empty when it agrees)."""

    @property
    def refusal_mismatch(self) -> bool | None:
        if self.production_refusal is None or self.reference_refusal is None:
            return None
        return self.production_refusal != self.reference_refusal


@dataclass(slots=True)
class _AnswerView:
    """An answer dressed as a record, so per-record detectors can read it (`detectors.base.Recordlike`)."""

    id: str
    prompt: str
    response: str
    status: str = "ok"
    tokens_out: int | None = None
    finish_reason: str | None = None


def refuses(detection: Detection) -> bool:
    """A refusal proper: the refusal detector also flags empty and truncated answers, which are not."""
    reasons = detection.details.get("reasons")
    return "refusal" in reasons if isinstance(reasons, list) else detection.flagged


def length_ratio(production: str, reference: str) -> float | None:
    if not reference:
        return 1.0 if not production else None
    return len(production) / len(reference)


class Comparer:
    """Scores pairs in batches. Detectors are optional: a metric whose detector is absent is stored as NULL.

    >>> comparer = Comparer()
    >>> [c] = comparer.compare([Pair("Capital of France?", "Paris is the capital of France.",
    ...                              "The capital of France is Paris.")])
    >>> c.agree, round(c.rouge_l, 2), c.reasons
    (True, 0.67, [])
    """

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        *,
        embedder: AnswerEmbedder | None = None,
        refusal: Detector | None = None,
        toxicity: Detector | None = None,
        pii: Detector | None = None,
    ) -> None:
        self.thresholds = thresholds or Thresholds()
        self.embedder = embedder or AnswerEmbedder()
        self.refusal = refusal
        self.toxicity = toxicity
        self.pii = pii

    @staticmethod
    def _run(detector: Detector | None, views: list[_AnswerView]) -> list[Detection] | None:
        if detector is None or not views:
            return None
        detections = detector.detect(views)
        if len(detections) != len(views):
            raise ValueError(f"detector {detector.name!r} returned {len(detections)} for {len(views)} answers")
        return detections

    def compare(self, pairs: Sequence[Pair]) -> list[Comparison]:
        if not pairs:
            return []
        sims = self.embedder.similarity([p.production for p in pairs], [p.reference for p in pairs])
        production = [_AnswerView(f"production-{i}", p.prompt, p.production) for i, p in enumerate(pairs)]
        reference = [_AnswerView(f"reference-{i}", p.prompt, p.reference) for i, p in enumerate(pairs)]
        # Toxicity and PII are about the reference answer alone, not the prompt it was given.
        answer_only = [_AnswerView(v.id, "", v.response) for v in reference]
        refusal_prod = self._run(self.refusal, production)
        refusal_ref = self._run(self.refusal, reference)
        toxicity = self._run(self.toxicity, answer_only)
        pii = self._run(self.pii, answer_only)

        out = []
        for i, pair in enumerate(pairs):
            pii_count = None
            if pii is not None:
                pii_count = sum(1 for f in pii[i].findings if f.field == "response") or int(pii[i].flagged)
            out.append(self._judge(Comparison(
                similarity=float(sims[i]),
                rouge_l=rouge_l(pair.production, pair.reference),
                length_ratio=length_ratio(pair.production, pair.reference),
                production_refusal=refuses(refusal_prod[i]) if refusal_prod is not None else None,
                reference_refusal=refuses(refusal_ref[i]) if refusal_ref is not None else None,
                reference_toxicity=toxicity[i].score if toxicity is not None else None,
                reference_pii=pii_count,
                agree=True,
            )))
        return out

    def _judge(self, c: Comparison) -> Comparison:
        t = self.thresholds
        if c.similarity < t.min_similarity:
            c.reasons.append(f"similarity {c.similarity:.2f} < {t.min_similarity:g}")
        if c.rouge_l < t.min_rouge_l:
            c.reasons.append(f"rouge_l {c.rouge_l:.2f} < {t.min_rouge_l:g}")
        if c.length_ratio is None:
            c.reasons.append("reference answer is empty")
        elif not t.min_length_ratio <= c.length_ratio <= t.max_length_ratio:
            c.reasons.append(f"length ratio {c.length_ratio:.2f} outside [{t.min_length_ratio:g}, "
                             f"{t.max_length_ratio:g}]")
        if t.refusal_mismatch_disagrees and c.refusal_mismatch:
            who = "reference" if c.reference_refusal else "production"
            c.reasons.append(f"refusal mismatch: only the {who} answer refuses")
        c.agree = not c.reasons
        return c


def comparison_metrics(c: Comparison) -> dict[str, Any]:
    """The JSON kept in `shadow_comparisons.metrics`: everything that has no column of its own."""
    return {
        "production_refusal": c.production_refusal,
        "reference_refusal": c.reference_refusal,
        "reasons": c.reasons,
    }
