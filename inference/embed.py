"""Semantic similarity of two answers, from static embeddings that ship inside the ``wordllama`` wheel.

WordLlama's 16 MB model lives in the installed package, so it is loaded with the package folder as its cache
and downloads disabled: nothing is fetched at run time, and a missing model fails loudly instead of reaching for
the network. It embeds a few thousand short texts a second on one CPU core, cheap next to a replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


class AnswerEmbedder:
    """Cosine similarity of answers, pairwise. The model loads on first use (about a second).

    >>> embedder = AnswerEmbedder()
    >>> same, different = embedder.similarity(
    ...     ["Paris is the capital of France.", "Paris is the capital of France."],
    ...     ["The capital of France is Paris.", "I can't help with that."])
    >>> bool(same > 0.8 > different)
    True
    """

    def __init__(self, config: str = "l2_supercat", dim: int = 256) -> None:
        self.config = config
        self.dim = dim
        self._model: Any = None

    def load(self) -> Any:
        """Load the model now (about a second of CPU) rather than on the first comparison."""
        if self._model is None:
            import wordllama
            from wordllama import WordLlama

            package_dir = Path(wordllama.__file__).parent
            self._model = WordLlama.load(self.config, cache_dir=package_dir, dim=self.dim, disable_download=True)
        return self._model

    def similarity(self, left: Sequence[str], right: Sequence[str]) -> np.ndarray:
        """Cosine similarity of ``left[i]`` and ``right[i]`` for each i; 0.0 where either text is blank."""
        if len(left) != len(right):
            raise ValueError("left and right must be aligned")
        sims = np.zeros(len(left))
        keep = [i for i, (x, y) in enumerate(zip(left, right, strict=True)) if x.strip() and y.strip()]
        if keep:
            model = self.load()
            a = np.asarray(model.embed([left[i] for i in keep], norm=True), dtype=np.float64)
            b = np.asarray(model.embed([right[i] for i in keep], norm=True), dtype=np.float64)
            sims[keep] = np.clip(np.nan_to_num(np.einsum("ij,ij->i", a, b)), -1.0, 1.0)
        return sims
