"""ROUGE-L: how much of one answer's wording, in order, the other answer shares.

The F-measure of the longest common subsequence of lower-cased word tokens (Lin, 2004). It rewards the
same words in the same order, unlike embedding similarity, which rewards the same meaning. Both answers are
cut to ``max_tokens`` words first so that one huge answer cannot stall the replay worker (LCS is quadratic).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens; punctuation is dropped."""
    return _WORD.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, in O(len(a)·len(b)) time and O(len(b)) memory."""
    if len(b) > len(a):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str, max_tokens: int = 1000) -> float:
    """ROUGE-L F1 in [0, 1]; 1.0 for two empty texts, 0.0 when only one is empty.

    >>> rouge_l("The capital of France is Paris.", "Paris is the capital of France.")
    0.6666666666666666
    >>> rouge_l("", "")
    1.0
    """
    a, b = tokens(candidate)[:max_tokens], tokens(reference)[:max_tokens]
    if not a and not b:
        return 1.0
    if not a or not b:
        return 0.0
    common = lcs_length(a, b)
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)
