"""`Evidence`: the numbers that prove an alert, as a rule hands them to the rest of the alert chain.

Its own module because everything downstream of the rules (lifecycle, render, outbox) stores, renders or
sends it without needing the rules or their SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Evidence:
    """The numbers that prove an alert: what was seen, against what, over which window and sample.

    Never holds record text — only ids, counts and statistics — so it is safe to send to a chat channel.
    """

    summary: str
    value: float
    threshold: float
    window_s: float
    sample_size: int
    before: Mapping[str, float] | None = None
    after: Mapping[str, float] | None = None
    examples: tuple[str, ...] = ()
    look: str = ""
    """Where to look next: a SQL query or a CLI command."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["examples"] = list(self.examples)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evidence:
        return cls(**{**data, "examples": tuple(data.get("examples", ()))})
