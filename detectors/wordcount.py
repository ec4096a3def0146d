"""Bag-of-words counts of a batch of texts over a fixed vocabulary, tokenized exactly like scikit-learn's
default (``(?u)\\b\\w\\w+\\b`` on lower-cased text).

Why not the vectorizer, or ``split()`` and a dict: both create a Python object and do a dict lookup per
word, ~100 ns each, and a 1 KB answer has ~170 words: most of what the whole detector chain may spend on a
record. Here a batch's texts are lowered and split as ONE buffer with numpy; every word of up to 16 bytes is
packed into two 64-bit integers (its bytes, zero-padded) and looked up in an open-addressing table of the
vocabulary's packed words. The lookup compares the packed words themselves, not a hash of them, so the
counts are exact. Only the rare words that are longer, or hold non-ASCII characters (whose ``\\w`` is
Unicode's), take a per-word Python path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.sparse import csr_matrix

# ASCII word characters (letters, digits, ``_``) stay, upper case is lowered, other ASCII bytes become
# spaces; UTF-8 bytes (>= 0x80) stay, so that a word holding non-ASCII characters stays in one piece.
_LOWER_WORD = bytes(
    c + 32 if 65 <= c <= 90 else c if chr(c).isalnum() or c == 0x5F else 0x20 for c in range(128)
) + bytes(range(128, 256))
_TOKEN = re.compile(r"(?u)\b\w\w+\b")

_PACKED = 16  # bytes of a word packed into the table's two uint64 keys
_MASK = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)  # the low k bytes
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd constants (golden ratio, Murmur3) that spread keys over slots
_SPREAD = np.uint64(0xC2B2AE3D27D4EB4F)
_CHUNK = 1 << 18  # characters tokenized at once: keeps the intermediate arrays in cache


def _pack(word: bytes) -> tuple[int, int]:
    padded = word.ljust(_PACKED, b"\0")
    return int.from_bytes(padded[:8], "little"), int.from_bytes(padded[8:], "little")


class WordCounter:
    """Counts, per text, how often each vocabulary word occurs (a CSR matrix, one row per text).

    ``vocabulary`` maps words (lower case, as a scikit-learn vectorizer's ``vocabulary_``) to columns.

    >>> counter = WordCounter({"cat": 0, "sat": 1, "café": 2})
    >>> counter.counts(["The CAT sat, the cat slept.", "a Café", ""]).toarray().astype(int).tolist()
    [[2, 1, 0], [0, 0, 1], [0, 0, 0]]
    """

    def __init__(self, vocabulary: Mapping[str, int]) -> None:
        self.columns = max(vocabulary.values(), default=-1) + 1
        self._vocab = dict(vocabulary)
        ascii_words = {w.encode(): i for w, i in vocabulary.items() if w.isascii()}
        self._long = {w: i for w, i in ascii_words.items() if len(w) > _PACKED}
        self._max_long = max(map(len, self._long), default=0)
        short = {w: i for w, i in ascii_words.items() if len(w) <= _PACKED}
        # Load factor <= 1/16: most words, found or not, are settled by their first slot (~5 MB of tables).
        bits = max(10, (16 * len(short)).bit_length())
        size = 1 << bits
        self._shift = np.uint64(64 - bits)
        self._slot_mask = size - 1
        self._key0 = np.zeros(size, dtype=np.uint64)  # 0 marks an empty slot: a packed word is never 0
        self._key1 = np.zeros(size, dtype=np.uint64)
        self._column = np.full(size, -1, dtype=np.int32)
        self._probes = 1  # the longest probe sequence of any vocabulary word
        packed = [_pack(word) for word in short]
        k0s = np.array([k0 for k0, _ in packed], dtype=np.uint64)
        k1s = np.array([k1 for _, k1 in packed], dtype=np.uint64)
        # Every word's home slot in one numpy call, then linear probing in plain Python, in the vocabulary's
        # order (a daemon builds this at start: one numpy call per word took ~60 ms for 15k words).
        taken: set[int] = set()
        slots: list[int] = []
        for slot in self._home(k0s, k1s).tolist():
            probes = 1
            while slot in taken:
                slot, probes = (slot + 1) & self._slot_mask, probes + 1
            taken.add(slot)
            slots.append(slot)
            self._probes = max(self._probes, probes)
        self._key0[slots], self._key1[slots] = k0s, k1s
        self._column[slots] = np.fromiter(short.values(), dtype=np.int32, count=len(short))

    def counts(self, texts: Sequence[str]) -> csr_matrix:
        """A ``len(texts) x columns`` matrix of word counts (duplicates summed, indices sorted)."""
        columns: list[np.ndarray] = []
        per_text: list[np.ndarray] = []
        start = 0
        while start < len(texts):
            end, size = start, 0
            while end < len(texts) and size < _CHUNK:
                size += len(texts[end]) + 1
                end += 1
            found, counts = self._columns(texts[start:end])
            columns.append(found)
            per_text.append(counts)
            start = end
        indptr = np.zeros(len(texts) + 1, dtype=np.int64)
        if per_text:
            np.cumsum(np.concatenate(per_text), out=indptr[1:])
        indices = np.concatenate(columns) if columns else np.zeros(0, dtype=np.int32)
        matrix = csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(texts), self.columns))
        matrix.sum_duplicates()
        return matrix

    def _home(self, k0: np.ndarray, k1: np.ndarray, tail: np.ndarray | None = None) -> np.ndarray:
        """Each packed word's first slot; ``tail``: the indexes of the words longer than 8 bytes (the others
        have ``k1 == 0``), when the caller knows them."""
        home = k0 * _SPREAD
        if tail is None:
            home += k1 * _MIX
        else:
            home[tail] += k1[tail] * _MIX
        home >>= self._shift
        return home.view(np.intp)  # < 2**bits: a free cast

    def _columns(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The column of every in-vocabulary word of ``texts`` in order, and how many each text has."""
        joined = " ".join(texts)
        ascii_only = joined.isascii()
        if ascii_only:
            buf = b" " + joined.encode("ascii").translate(_LOWER_WORD) + b" " * _PACKED
            sizes = [len(t) + 1 for t in texts]
        else:
            buf = b" " + joined.encode("utf-8", "surrogatepass").translate(_LOWER_WORD) + b" " * _PACKED
            sizes = [len(t) + 1 if t.isascii() else len(t.encode("utf-8", "surrogatepass")) + 1 for t in texts]
        data = np.frombuffer(buf, dtype=np.uint8)
        is_word = data != 0x20
        # Word starts and ends, alternating (int32: half the memory traffic of numpy's default int64).
        edges = np.add(np.flatnonzero(is_word[1:] != is_word[:-1]), 1, dtype=np.int32, casting="unsafe")
        starts, ends = edges[0::2], edges[1::2]
        lengths = ends - starts
        short = np.flatnonzero((lengths - 2).view(np.uint32) <= _PACKED - 2)  # 2 <= length <= 16
        at, size = starts[short], lengths[short]
        # Element i: the 8 bytes of the buffer from offset i on, as a little-endian integer (unaligned).
        words = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))
        k0 = words[at]
        tail = np.flatnonzero(size > 8)
        k0 &= _MASK[np.minimum(size, 8)]
        k1 = np.zeros_like(k0)
        k1[tail] = words[at[tail] + 8] & _MASK[size[tail] - 8]
        found = self._lookup(k0, k1, tail)  # a word with a non-ASCII byte is never found: the table is ASCII
        hit = np.flatnonzero(found >= 0)
        positions, columns = at[hit], found[hit]
        extra = self._long_words(buf, starts, lengths)
        if not ascii_only:
            extra += self._unicode_words(buf, np.flatnonzero(data >= 0x80), starts, edges[1::2])
        if extra:
            extra.sort()
            where = np.searchsorted(positions, [p for p, _ in extra])
            positions = np.insert(positions, where, [p for p, _ in extra])
            columns = np.insert(columns, where, [c for _, c in extra])
        # Text i starts at buffer offset 1 + sum(sizes[:i]); its words are those before text i + 1's.
        offsets = np.cumsum([1, *sizes])
        return columns, np.diff(np.searchsorted(positions, offsets))

    def _lookup(self, k0: np.ndarray, k1: np.ndarray, tail: np.ndarray) -> np.ndarray:
        """The column of each packed word, -1 when it is not in the vocabulary."""
        slot = self._home(k0, k1, tail)
        t0 = self._key0[slot]
        match = (t0 == k0) & (self._key1[slot] == k1)
        found = np.where(match, self._column[slot], -1).astype(np.int32, copy=False)
        go_on = ~match & (t0 != 0)  # neither found nor at an empty slot: probe the next slot
        pending = np.flatnonzero(go_on)
        for _ in range(self._probes - 1):
            if not len(pending):
                break
            slot, k0, k1 = (slot[go_on] + 1) & self._slot_mask, k0[go_on], k1[go_on]
            t0 = self._key0[slot]
            match = (t0 == k0) & (self._key1[slot] == k1)
            found[pending[match]] = self._column[slot[match]]
            go_on = ~match & (t0 != 0)
            pending = pending[go_on]
        return found

    def _long_words(self, buf: bytes, starts: np.ndarray, lengths: np.ndarray) -> list[tuple[int, int]]:
        """(position, column) of the in-vocabulary ASCII words longer than the packed keys."""
        if not self._long:
            return []
        candidates = np.flatnonzero((lengths > _PACKED) & (lengths <= self._max_long))
        pairs = zip(starts[candidates].tolist(), lengths[candidates].tolist(), strict=True)
        return [(s, c) for s, n in pairs if (c := self._long.get(buf[s:s + n])) is not None]

    def _unicode_words(self, buf: bytes, high: np.ndarray, starts: np.ndarray, ends: np.ndarray
                       ) -> list[tuple[int, int]]:
        """(position, column) of the vocabulary words inside the pieces that hold non-ASCII characters.

        A piece is bounded by ASCII separators, which are separators for the Unicode token pattern too,
        so tokenizing each piece alone gives the same tokens as tokenizing the whole text.
        """
        found: list[tuple[int, int]] = []
        pieces = np.unique(np.searchsorted(starts, high, "right") - 1)  # the words holding a byte >= 0x80
        for s, e in zip(starts[pieces].tolist(), ends[pieces].tolist(), strict=True):
            for token in _TOKEN.findall(buf[s:e].decode("utf-8", "surrogatepass").lower()):
                column = self._vocab.get(token)
                if column is not None:
                    found.append((s, column))
        return found
