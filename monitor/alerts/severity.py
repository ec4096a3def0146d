"""Severities, most severe first: the one ranking that routing, grouping and rendering share.

>>> most_severe(["info", "critical", "warning"]), RANK["warning"]
('critical', 1)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import get_args

from monitor.config import Severity

SEVERITIES: tuple[str, ...] = get_args(Severity)
"""``critical``, ``warning``, ``info``: the order of the configuration's `Severity`."""
RANK = {severity: i for i, severity in enumerate(SEVERITIES)}


def most_severe(severities: Iterable[str]) -> str:
    return min(severities, key=RANK.__getitem__)
