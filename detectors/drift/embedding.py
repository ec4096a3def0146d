"""Prompt embeddings for topic drift, from the static WordLlama model that ships inside its wheel.

WordLlama is a bag of token vectors: no network, no GPU, a 16 MB file, 64 dimensions kept (its vectors
are Matryoshka-trained, so truncating keeps most of the topic signal). A prompt's embedding is the mean of
its token vectors, unit length. Its tokenizer (SentencePiece-style BPE, every token inside one
space-separated word) costs ~25 µs a prompt, mostly fixed per-call overhead, so the embedder tokenizes
each distinct *word* once and keeps the sum of its token vectors: a prompt is then a
few dictionary lookups and one sparse matrix product, and its embedding is the same mean of the same token
vectors as WordLlama's own ``embed`` (tested; only a run of several spaces, which WordLlama merges into one
token, comes out slightly different). The word table is bounded (`max_words`; it starts afresh
when full).

The drift step embeds only a deterministic sample of records (`sampled`): a hash of the record id
decides, so a replayed batch embeds the same prompts and every stream gets the same fraction.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.sparse import csr_matrix

if TYPE_CHECKING:
    from tokenizers import Tokenizer

MAX_PROMPT_CHARS = 500
"""The topic of a prompt is in its beginning; retrieved documents after it mostly add cost."""


def sampled(record_id: str, rate: float) -> bool:
    """Whether this record's prompt is embedded: a stable hash of its id below ``rate``."""
    return zlib.crc32(record_id.encode()) < rate * 0x1_0000_0000


@functools.cache
def _wordllama(dim: int) -> tuple[np.ndarray, Tokenizer]:
    """WordLlama's token vectors (``dim`` columns, read-only) and its tokenizer, padding and truncation off:
    loaded once per process (~0.2 s) and shared by its embedders, which only read them (a tokenizer's encode
    keeps no state, so threads may share it)."""
    import wordllama

    model = wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True,
                                     trunc_dim=dim)
    tokens = np.ascontiguousarray(model.embedding, dtype=np.float32)
    tokens.flags.writeable = False
    tokenizer = model.tokenizer  # the model's own (it is dropped here), not a copy: copying cost ~0.2 s more
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokens, tokenizer


class PromptEmbedder:
    """Unit-length prompt embeddings (``dim`` columns) from the bundled WordLlama model.

    >>> emb = PromptEmbedder().embed(["how do I bake bread", "book me a flight to Rome"])
    >>> emb.shape, bool(abs(np.linalg.norm(emb[0]) - 1) < 1e-5)
    ((2, 64), True)
    """

    def __init__(self, dim: int = 64, max_words: int = 200_000) -> None:
        self.dim = dim
        self.max_words = max_words
        self._tokens, self._tokenizer = _wordllama(dim)
        self._reset_words()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit row per text, in order (an empty text gives a zero row, where WordLlama gives NaN)."""
        words: list[str] = []
        counts = np.empty(len(texts), dtype=np.intp)
        for i, text in enumerate(texts):
            split = text[:MAX_PROMPT_CHARS].split(" ") if text else []
            words += split
            counts[i] = len(split)
        if not words:
            return np.zeros((len(texts), self.dim), dtype=np.float32)
        unique = set(words)
        new = unique.difference(self._index)
        if len(self._index) + len(new) > self.max_words:  # full: start afresh with this batch's words
            self._reset_words()
            new = unique
        if new:
            self._learn(new)
        rows = np.fromiter(map(self._index.__getitem__, words), dtype=np.intp, count=len(words))
        bounds = np.zeros(len(texts) + 1, dtype=np.intp)
        np.cumsum(counts, out=bounds[1:])
        # Row i of this sparse matrix counts the words of text i: times the word sums, the text sums.
        counting = csr_matrix((np.ones(len(words), dtype=np.float32), rows, bounds),
                              shape=(len(texts), len(self._index)))
        sums = np.asarray(counting @ self._sums[: len(self._index)])
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        return sums / np.maximum(norms, 1e-12)

    def _learn(self, words: set[str]) -> None:
        """Tokenize words never seen before, each on its own, and store their summed token vectors."""
        ordered = list(words)
        # An empty word (a space next to a space or at an end) is the lone "▁" token in the whole text.
        space = self._tokenizer.token_to_id("\u2581")
        encodings = self._tokenizer.encode_batch_fast(ordered, add_special_tokens=False)
        start = len(self._index)
        end = start + len(ordered)
        if end > len(self._sums):
            grown = np.zeros((max(end, 2 * len(self._sums)), self.dim), dtype=np.float32)
            grown[:start] = self._sums[:start]
            self._sums = grown
        top = len(self._tokens) - 1
        for row, (word, encoding) in enumerate(zip(ordered, encodings, strict=True), start):
            ids = np.minimum(np.asarray(encoding.ids if word else [space], dtype=np.intp), top)
            self._sums[row] = self._tokens[ids].sum(axis=0)
            self._index[word] = row

    def _reset_words(self) -> None:
        self._index: dict[str, int] = {}
        self._sums = np.zeros((4096, self.dim), dtype=np.float32)
