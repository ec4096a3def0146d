"""What ``[detectors]`` in `monitor.toml` may say: the per-record detector chain's settings.

They live here, beside the detectors, so that `detectors` imports nothing from `monitor`; the daemon's
configuration (`monitor.config.Config`) embeds `DetectorsConfig` as its ``detectors`` section. Unknown keys
are refused, as everywhere in the configuration.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TOXIC_AT = 0.5
"""The default of ``[detectors.toxicity] threshold``; code that is not given the configured value uses this."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToxicityConfig(Section):
    """``[detectors.toxicity]``: which model scores toxicity. The default works offline; ``hf-pipeline``
    loads a transformers text-classification model from a local directory (e.g. on a GPU host)."""

    enabled: bool = True
    prompt: bool = True
    """Also score prompts (detector ``prompt_toxicity``), not only responses (``toxicity``)."""
    backend: Literal["profanity-check", "hf-pipeline"] = "profanity-check"
    model_path: str | None = None
    """Local model directory for ``hf-pipeline``; never downloaded."""
    device: str = "cpu"
    """transformers device for ``hf-pipeline``: ``cpu``, ``cuda:0``…"""
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    threshold: Annotated[float, Field(ge=0, le=1)] = TOXIC_AT
    """The one toxic cut-off: it decides ``flagged``, the per-minute ``toxic`` counters, the toxic-rate drift
    signal and the ``toxicity_rate`` alert rule."""
    toxic_labels: list[str] = ["toxic", "TOXIC", "LABEL_1"]
    """The ``hf-pipeline`` model's labels that mean toxic; their probabilities are summed."""

    @model_validator(mode="after")
    def _model_path_for_hf(self) -> ToxicityConfig:
        if self.enabled and self.backend == "hf-pipeline" and not self.model_path:
            raise ValueError("backend 'hf-pipeline' needs model_path (a local model directory)")
        return self


class PiiConfig(Section):
    enabled: bool = True
    kinds: list[Literal["EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP"]] = [
        "EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP"]


class SecretsConfig(Section):
    enabled: bool = True


class RefusalConfig(Section):
    enabled: bool = True
    token_limit: Annotated[int, Field(ge=1)] | None = None
    """A response with ``tokens_out`` at this limit counts as truncated (when the record has no
    finish reason and no ``metadata.max_tokens``)."""
    patterns: list[str] = []
    """Extra refusal regexes, matched against the lower-cased opening of the response."""


class DetectorsConfig(Section):
    """``[detectors]``: the per-record detector chain every accepted record passes through."""

    toxicity: ToxicityConfig = ToxicityConfig()
    pii: PiiConfig = PiiConfig()
    secrets: SecretsConfig = SecretsConfig()
    refusal: RefusalConfig = RefusalConfig()
