"""What ``[detectors]`` in `monitor.toml` may say: the per-record detector chain's settings.

They live here, beside the detectors, so that `detectors` imports nothing from `monitor`; the daemon's
configuration (`monitor.config.Config`) embeds `DetectorsConfig` as its ``detectors`` section. Unknown keys
are refused, as everywhere in the configuration.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TOXIC_AT = 0.3
"""The default of ``[detectors.toxicity] threshold``; code that is not given the configured value uses this.

Chosen from the precision-recall curve (``python -m bench.detector_quality``): on the hand-labelled comments
precision stays flat between 0.2 and 0.5 (0.69-0.72) while recall falls from 0.84 at 0.3 to 0.70 at 0.5, and
an independent human-labelled evaluation found recall 0.48 at 0.5. At 0.3 none of 4,955 generated benign
answers nor 434 Python standard-library docstrings (real technical prose) is flagged."""


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


DEFAULT_PHONE_REGIONS = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "BR", "MX", "AU", "JP"]


class PiiConfig(Section):
    enabled: bool = True
    kinds: list[Literal["EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP"]] = [
        "EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP"]
    phone_regions: list[str] = DEFAULT_PHONE_REGIONS
    """ISO 3166 codes of the regions whose *national* phone formats count (``020 7946 0958`` in ``GB``,
    ``06 12 34 56 78`` in ``FR``); a number written with its ``+`` or ``00`` country code counts for every
    region. More regions find more numbers and cost a little precision on digit groups (order numbers)."""

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, regions: list[str]) -> list[str]:
        import phonenumbers  # only when a configuration is validated

        unknown = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown phone regions {unknown}: use ISO 3166 codes such as 'GB', 'DE', 'IN'")
        return regions


class SecretsConfig(Section):
    enabled: bool = True


class RefusalConfig(Section):
    enabled: bool = True
    token_limit: Annotated[int, Field(ge=1)] | None = None
    """A response with ``tokens_out`` at this limit counts as truncated (when the record has no
    finish reason and no ``metadata.max_tokens``)."""
    patterns: list[str] = []
    """Extra refusal regexes, matched against the lower-cased opening of the response."""


class InjectionConfig(Section):
    """``[detectors.injection]``: prompt-injection and jailbreak attempts in prompts (detector
    ``prompt_injection``, `detectors.injection`)."""

    enabled: bool = True
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    """A prompt whose score reaches this is flagged (and sampled at ``[sampling.risk_rates] prompt_injection``).
    The score is ``1 - Π(1 - w)`` over the matched signals' weights: 0.5 flags any one signal but the weakest."""


class DetectorsConfig(Section):
    """``[detectors]``: the per-record detector chain every accepted record passes through."""

    toxicity: ToxicityConfig = ToxicityConfig()
    pii: PiiConfig = PiiConfig()
    secrets: SecretsConfig = SecretsConfig()
    refusal: RefusalConfig = RefusalConfig()
    injection: InjectionConfig = InjectionConfig()
