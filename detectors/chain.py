"""The configured detector chain: every detector over a batch, then redaction and per-record signals.

`DetectorChain.from_config` is the only place that turns ``[detectors]`` into detector objects, so a
deployment changes models or switches detectors off in ``monitor.toml`` alone. The PII and secrets
findings of a batch are reused for redaction (no second scan), which is why redaction refuses to run when
either of those detectors is switched off.

Redaction covers every stored text of a record: prompt and response, and the error message, feedback
comment and metadata. With ``store_text = "none"`` the prompt and response are not stored at all, but the
error, feedback comment and metadata still are, so they are redacted then too (when the PII and secrets
detectors are on; otherwise the store writes none of them).
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter

from detectors.annotation import Annotation
from detectors.base import Detection, Detector, Finding, Recordlike, extra_fields
from detectors.config import DetectorsConfig, ToxicityConfig
from detectors.injection import InjectionDetector
from detectors.pii import PiiDetector
from detectors.redact import redact, redact_metadata
from detectors.refusal import RefusalDetector
from detectors.secrets import SecretsDetector
from detectors.signals import signals_of
from detectors.toxicity import HuggingFaceBackend, ProfanityCheckBackend, ToxicityBackend, ToxicityDetector


def toxicity_backend(cfg: ToxicityConfig) -> ToxicityBackend:
    """The backend ``[detectors.toxicity]`` names."""
    if cfg.backend == "hf-pipeline":
        assert cfg.model_path is not None  # the config validator guarantees it
        return HuggingFaceBackend(cfg.model_path, device=cfg.device, batch_size=cfg.batch_size,
                                  toxic_labels=cfg.toxic_labels)
    return ProfanityCheckBackend()


class DetectorChain:
    """Runs ``detectors`` over a batch and annotates each record.

    With ``redact=True`` every annotation carries the prompt, response, error, feedback comment and metadata
    with each PII/secret finding replaced by ``[KIND]``; with ``redact=False`` the redacted values stay None,
    except that ``redact_extras=True`` still redacts the error, feedback comment and metadata (what
    ``store_text = "none"`` stores). ``redact_extras`` defaults to ``redact``.

    >>> from types import SimpleNamespace as R
    >>> chain = DetectorChain([PiiDetector(), SecretsDetector()], redact=True)
    >>> ann = chain.run([R(prompt="I am bob@corp.com", response="ok", error="quota of ann@corp.com")])[0]
    >>> ann.redacted_prompt, ann.redacted_error, ann.signals["pii_count"]
    ('I am [EMAIL]', 'quota of [EMAIL]', 2)
    """

    def __init__(self, detectors: Sequence[Detector], redact: bool = True, redact_extras: bool | None = None) -> None:
        names = [d.name for d in detectors]
        if len(set(names)) != len(names):
            raise ValueError(f"detector names must be unique, got {names}")
        if redact_extras is None:
            redact_extras = redact
        if (redact or redact_extras) and not {"pii", "secrets"} <= set(names):
            raise ValueError("redaction needs the pii and secrets detectors: enable both, or store_text "
                             "'none' or 'full'")
        self.detectors = list(detectors)
        self.redact = redact
        self.redact_extras = redact_extras

    @classmethod
    def from_config(cls, cfg: DetectorsConfig, store_text: str = "redacted") -> DetectorChain:
        """The chain ``[detectors]`` describes; it redacts when ``store_text`` (``pipeline.store_text``)
        is ``redacted``, and redacts the error, feedback comment and metadata alone when it is ``none`` and
        the PII and secrets detectors are on."""
        detectors: list[Detector] = []
        if cfg.toxicity.enabled:
            backend = toxicity_backend(cfg.toxicity)
            detectors.append(ToxicityDetector(backend, "response", cfg.toxicity.threshold))
            if cfg.toxicity.prompt:
                detectors.append(ToxicityDetector(backend, "prompt", cfg.toxicity.threshold))
        if cfg.pii.enabled:
            detectors.append(PiiDetector(cfg.pii.kinds, cfg.pii.phone_regions))
        if cfg.secrets.enabled:
            detectors.append(SecretsDetector())
        if cfg.refusal.enabled:
            detectors.append(RefusalDetector(cfg.refusal.token_limit, cfg.refusal.patterns))
        if cfg.injection.enabled:
            detectors.append(InjectionDetector(cfg.injection.threshold))
        extras = store_text == "redacted" or (store_text == "none" and cfg.pii.enabled and cfg.secrets.enabled)
        return cls(detectors, redact=store_text == "redacted", redact_extras=extras)

    def run(self, records: Sequence[Recordlike]) -> list[Annotation]:
        """One annotation per record, in order."""
        # Every record gets ~25 small objects here, none of them in a reference cycle: the cyclic garbage
        # collector would scan them again and again while the batch grows (~20% of the chain's time), so
        # it is paused until the batch is annotated (whatever it was, it is restored).
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._run(records)
        finally:
            if collecting:
                gc.enable()

    def _run(self, records: Sequence[Recordlike]) -> list[Annotation]:
        columns: list[list[Detection]] = []
        for detector in self.detectors:
            detections = detector.detect(records)
            if len(detections) != len(records):
                raise RuntimeError(f"detector {detector.name!r} returned {len(detections)} detections "
                                   f"for {len(records)} records")
            columns.append(detections)
        names = [d.name for d in self.detectors]
        # Each record's row of detections, plus None for a detector that is not configured: `pick` takes the
        # ones `signals_of` reads, in its argument order.
        pick = itemgetter(*(names.index(n) if n in names else len(names) for n in _SIGNAL_SOURCES))
        rows = zip(*columns, repeat(None)) if columns else repeat((None,), len(records))
        redact_texts, redact_extras = self.redact, self.redact_extras
        annotations = []
        for record, row in zip(records, rows):  # noqa: B905 (every column has len(records) detections)
            toxicity, prompt_toxicity, refusal, pii, secrets, injection = pick(row)
            signals = signals_of(record, toxicity, prompt_toxicity, refusal, pii, secrets, injection)
            if not redact_extras:
                annotation = Annotation(list(row[:-1]), signals)
            elif pii.findings or secrets.findings:
                annotation = Annotation(list(row[:-1]), signals)
                _redact(annotation, record, [*pii.findings, *secrets.findings], redact_texts)
            else:  # the vast majority: nothing to redact, every value is stored as it came
                error, comment, metadata = extra_fields(record)
                if redact_texts:
                    annotation = Annotation(list(row[:-1]), signals, record.prompt, record.response, error, comment,
                                            metadata)
                else:
                    annotation = Annotation(list(row[:-1]), signals, None, None, error, comment, metadata)
            annotations.append(annotation)
        return annotations


def _redact(annotation: Annotation, record: Recordlike, findings: list[Finding], texts: bool) -> None:
    """Fill ``annotation``'s redacted values from the record's findings (prompt and response only if ``texts``)."""
    if texts:
        annotation.redacted_prompt = redact(record.prompt, [f for f in findings if f.field == "prompt"])
        annotation.redacted_response = redact(record.response, [f for f in findings if f.field == "response"])
    error, comment, metadata = extra_fields(record)
    if error:
        error = redact(error, [f for f in findings if f.field == "error"])
    if comment:
        comment = redact(comment, [f for f in findings if f.field == "feedback_comment"])
    if metadata:
        in_metadata = [f for f in findings if f.field == "metadata"]
        if in_metadata:
            metadata = redact_metadata(metadata, in_metadata)
    annotation.redacted_error, annotation.redacted_feedback_comment = error, comment
    annotation.redacted_metadata = metadata


# The detectors `signals_of` reads, in its argument order.
_SIGNAL_SOURCES = ("toxicity", "prompt_toxicity", "refusal", "pii", "secrets", "prompt_injection")
