"""Prompt embeddings for topic drift, from the static WordLlama model that ships inside its wheel.

WordLlama is a bag of token vectors: no network, no GPU, a 16 MB file, and tens of thousands of short
prompts per second on one core with 64 dimensions (its vectors are Matryoshka-trained, so truncating to 64
keeps most of the topic signal at a quarter of the cost). Even so the drift step embeds only a
deterministic sample of records (`sampled`): a hash of the record id decides, so a replayed batch embeds
the same prompts and every stream gets the same fraction.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MAX_PROMPT_CHARS = 500
"""The topic of a prompt is in its beginning; retrieved documents after it mostly add cost."""


def sampled(record_id: str, rate: float) -> bool:
    """Whether this record's prompt is embedded: a stable hash of its id below ``rate``."""
    return zlib.crc32(record_id.encode()) < rate * 0x1_0000_0000


class PromptEmbedder:
    """Unit-length prompt embeddings (``dim`` columns) from the bundled WordLlama model.

    >>> emb = PromptEmbedder().embed(["how do I bake bread", "book me a flight to Rome"])
    >>> emb.shape, bool(abs(np.linalg.norm(emb[0]) - 1) < 1e-5)
    ((2, 64), True)
    """

    def __init__(self, dim: int = 64) -> None:
        import wordllama

        self.dim = dim
        self._model = wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True,
                                                trunc_dim=dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self._model.embed([t[:MAX_PROMPT_CHARS] for t in texts], norm=True), dtype=np.float32)
