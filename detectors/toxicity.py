"""Toxicity of a record's response (``toxicity``) or prompt (``prompt_toxicity``): a probability per text.

The score comes from a `ToxicityBackend`, chosen by configuration so that a deployment can swap the default
for a heavier model without code changes:

- ``profanity-check`` (default, offline): the linear model that ships inside the `alt-profanity-check` wheel
  (TF-IDF unigrams + calibrated linear SVM). `ProfanityCheckBackend` evaluates that same model with a
  faster tokenizer for ASCII text, because the wheel's scikit-learn vectorizer alone is slower than the
  whole detector chain may be; its probabilities equal the wheel's `predict_prob` (tested).
- ``hf-pipeline``: a Hugging Face text-classification model loaded from a local directory only (no hub
  download), on any device transformers supports (``cuda:0`` on a GPU host).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from scipy.sparse import csr_matrix

from detectors.base import Detection, Recordlike

Field = Literal["prompt", "response"]


class ToxicityBackend(Protocol):
    """Scores texts in bulk: a probability in [0, 1] per text that it is toxic."""

    def predict(self, texts: Sequence[str]) -> np.ndarray: ...


class ProfanityCheckBackend:
    """The `alt-profanity-check` model, evaluated in bulk.

    >>> backend = ProfanityCheckBackend()
    >>> [round(float(p), 2) for p in backend.predict(["have a lovely day", "you stupid idiot"])]
    [0.05, 1.0]
    """

    _TOKEN = re.compile(r"(?u)\b\w\w+\b")  # the wheel's vectorizer token_pattern
    # ASCII fast path: every byte that is not a word character becomes a space, so `bytes.split()` yields
    # exactly the regex's maximal \w runs; one-character runs are never in the vocabulary.
    _ASCII_WORD = bytes(c if chr(c).isalnum() or c == 0x5F else 0x20 for c in range(128)) + b" " * 128
    # Other text: ASCII separators still split, UTF-8 bytes stay, and only the few words holding non-ASCII
    # characters go through the wheel's regex (a word is bounded by ASCII separators, so this is exact).
    _KEEP_NON_ASCII = _ASCII_WORD[:128] + bytes(range(128, 256))
    _HIGH_BYTES = re.compile(rb"[\x80-\xff]+")

    def __init__(self) -> None:
        from profanity_check import profanity_check  # loads the pickled model (~2 s): do it once

        vectorizer, model = profanity_check.vectorizer, profanity_check.model
        if vectorizer.ngram_range != (1, 1) or vectorizer.sublinear_tf or vectorizer.norm != "l2" \
                or model.method != "sigmoid":
            raise RuntimeError("unsupported alt-profanity-check model layout; pin alt-profanity-check 1.x")
        vocabulary: dict[str, int] = vectorizer.vocabulary_
        self._unknown = len(vocabulary)  # one extra column with zero weight for out-of-vocabulary words
        self._vocab = vocabulary
        self._bytes_vocab = {word.encode(): i for word, i in vocabulary.items() if word.isascii()}
        self._idf = np.append(vectorizer.idf_, 0.0)
        members = model.calibrated_classifiers_
        self._coef = np.vstack([np.append(m.estimator.coef_.ravel(), 0.0) for m in members]).T
        self._intercept = np.array([m.estimator.intercept_[0] for m in members])
        self._a = np.array([m.calibrators[0].a_ for m in members])
        self._b = np.array([m.calibrators[0].b_ for m in members])

    def _word_ids(self, text: str) -> list[int]:
        if text.isascii():
            words = text.encode().translate(self._ASCII_WORD).lower().split()
            return list(map(self._bytes_vocab.get, words, repeat(self._unknown)))
        kept = text.encode("utf-8", "surrogatepass").translate(self._KEEP_NON_ASCII).lower()
        # Words with non-ASCII bytes miss the ASCII vocabulary and land on the zero-weight unknown column.
        ids = list(map(self._bytes_vocab.get, kept.split(), repeat(self._unknown)))
        done = -1
        for m in self._HIGH_BYTES.finditer(kept):
            if m.start() < done:
                continue  # same word as the previous run of non-ASCII bytes
            start, done = kept.rfind(b" ", 0, m.start()) + 1, kept.find(b" ", m.end())
            done = len(kept) if done < 0 else done
            tokens = self._TOKEN.findall(kept[start:done].decode("utf-8", "surrogatepass").lower())
            ids.extend(map(self._vocab.get, tokens, repeat(self._unknown)))
        return ids

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        indptr = np.zeros(len(texts) + 1, dtype=np.int64)
        ids: list[int] = []
        for i, text in enumerate(texts):
            ids.extend(self._word_ids(text))
            indptr[i + 1] = len(ids)
        counts = csr_matrix(
            (np.ones(len(ids)), np.asarray(ids, dtype=np.int32), indptr),
            shape=(len(texts), self._unknown + 1),
        )
        counts.sum_duplicates()
        counts.data *= self._idf[counts.indices]
        norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        decision = np.asarray(counts @ self._coef) / norms[:, None] + self._intercept
        return (1.0 / (1.0 + np.exp(self._a * decision + self._b))).mean(axis=1)


class HuggingFaceBackend:
    """A transformers text-classification model from a local directory (never downloaded).

    ``toxic_labels`` names the model's labels whose probabilities add up to "toxic" (e.g. ``toxic`` for
    unitary/toxic-bert, ``LABEL_1`` for a plain binary fine-tune).
    """

    def __init__(self, model_path: str, device: str = "cpu", batch_size: int = 64,
                 toxic_labels: Sequence[str] = ("toxic", "TOXIC", "LABEL_1"), max_length: int = 512) -> None:
        if not Path(model_path).is_dir():
            raise FileNotFoundError(f"toxicity model directory not found: {model_path}")
        try:
            from transformers import pipeline
        except ImportError:
            raise RuntimeError("the hf-pipeline toxicity backend needs `pip install transformers torch`") from None
        self._pipe = pipeline("text-classification", model=model_path, tokenizer=model_path, device=device,
                              top_k=None, model_kwargs={"local_files_only": True})
        self._batch_size = batch_size
        self._max_length = max_length
        self._toxic = {label.lower() for label in toxic_labels}

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        outputs: list[Any] = self._pipe(list(texts), batch_size=self._batch_size, truncation=True,
                                        max_length=self._max_length)
        return np.array([sum(s["score"] for s in scores if s["label"].lower() in self._toxic)
                         for scores in outputs], dtype=float)


class ToxicityDetector:
    """Flags a record whose ``field`` text is toxic with probability >= ``threshold``.

    Score: the probability. Empty text scores 0 (nothing was said). Details: the field, and the threshold.

    >>> from types import SimpleNamespace as R
    >>> det = ToxicityDetector(ProfanityCheckBackend())
    >>> [d.flagged for d in det.detect([R(prompt="hi", response="you are a moron"), R(prompt="hi", response="")])]
    [True, False]
    """

    def __init__(self, backend: ToxicityBackend, field: Field = "response", threshold: float = 0.5,
                 name: str | None = None) -> None:
        self.backend = backend
        self.field = field
        self.threshold = threshold
        self.name = name or ("toxicity" if field == "response" else f"{field}_toxicity")

    def detect(self, records: Sequence[Recordlike]) -> list[Detection]:
        texts = [getattr(r, self.field) or "" for r in records]
        scores = np.zeros(len(texts))
        nonempty = [i for i, text in enumerate(texts) if text.strip()]
        if nonempty:
            scores[nonempty] = self.backend.predict([texts[i] for i in nonempty])
        return [Detection(self.name, s, s >= self.threshold, {"field": self.field, "threshold": self.threshold})
                for s in scores.tolist()]
