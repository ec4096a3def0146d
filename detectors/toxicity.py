"""Toxicity of a record's response (``toxicity``) or prompt (``prompt_toxicity``): a probability per text.

The score comes from a `ToxicityBackend`, chosen by configuration so that a deployment can swap the default
for a heavier model without code changes:

- ``profanity-check`` (default, offline): the linear model that ships inside the `alt-profanity-check` wheel
  (TF-IDF unigrams + calibrated linear SVM). `ProfanityCheckBackend` evaluates that same model with its
  own word counting (`detectors.wordcount`), because the wheel's scikit-learn vectorizer alone is slower
  than the whole detector chain may be; its probabilities equal the wheel's `predict_prob` (tested).
- ``hf-pipeline``: a Hugging Face text-classification model loaded from a local directory only (no hub
  download), on any device transformers supports (``cuda:0`` on a GPU host). Tested for real with a tiny
  BERT the test trains and saves itself (`tests/detectors/test_toxicity_hf.py`, transformers 5 + torch CPU).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from detectors.base import Detection, Recordlike
from detectors.config import TOXIC_AT
from detectors.wordcount import WordCounter

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

    def __init__(self) -> None:
        arrays = _profanity_model()
        self._counter = WordCounter(dict(zip(arrays["words"].tolist(), arrays["columns"].tolist(), strict=True)))
        self._idf, self._coef, self._intercept = arrays["idf"], arrays["coef"], arrays["intercept"]
        self._a, self._b = arrays["a"], arrays["b"]

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        tfidf = self._counter.counts(texts)
        tfidf.data *= self._idf[tfidf.indices]
        norms = np.sqrt(np.add.reduceat(np.append(tfidf.data ** 2, 0.0), tfidf.indptr[:-1])
                        * (np.diff(tfidf.indptr) > 0))
        norms[norms == 0] = 1.0
        decision = np.asarray(tfidf @ self._coef) / norms[:, None] + self._intercept
        return (1.0 / (1.0 + np.exp(self._a * decision + self._b))).mean(axis=1)


_MODEL_ARRAYS = ("words", "columns", "idf", "coef", "intercept", "a", "b")
_CACHE_FORMAT = 1  # bump when the arrays below change meaning


def cache_dir() -> Path:
    """Where one-time builds are kept between processes: ``$WATCHKEEPER_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/watchkeeper``, else ``~/.cache/watchkeeper``."""
    if env := os.environ.get("WATCHKEEPER_CACHE_DIR"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "watchkeeper"


def _profanity_model() -> dict[str, np.ndarray]:
    """The wheel's model as the plain arrays `ProfanityCheckBackend` evaluates.

    Unpickling it imports scikit-learn (with scipy.stats and pandas): ~1 s of every daemon's start, for a
    few arrays. So they are kept in `cache_dir`, in a file named by a hash of the wheel's model files and
    the scikit-learn version that reads them: a changed model is a new file, never a stale one. A cache
    that cannot be read or written only costs the slow path."""
    try:
        path = _profanity_cache_path()
    except (OSError, ImportError):  # the wheel is not laid out as expected: no cache, its own import
        return _unpickle_profanity_model()
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in _MODEL_ARRAYS}
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):  # absent or damaged: build it again
        pass
    arrays = _unpickle_profanity_model()
    _save_atomically(path, arrays)
    return arrays


def _profanity_cache_path() -> Path:
    spec = importlib.util.find_spec("profanity_check")  # where the wheel is, without running its import
    if spec is None or spec.origin is None:
        raise ImportError("profanity_check is not installed")
    digest = hashlib.sha256(f"{_CACHE_FORMAT} {importlib.metadata.version('scikit-learn')}".encode())
    data = Path(spec.origin).parent / "data"
    for name in ("vectorizer.joblib", "model.joblib"):
        digest.update((data / name).read_bytes())
    return cache_dir() / f"profanity-check-{digest.hexdigest()[:24]}.npz"


def _save_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``arrays`` to ``path`` (npz), whole or not at all, whichever process writes it; a cache folder that
    cannot be written (a read-only home) leaves nothing behind and every start takes the slow path."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.stem, suffix=".tmp", delete=False) as f:
            tmp = f.name
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _unpickle_profanity_model() -> dict[str, np.ndarray]:
    """The model's arrays, read from the wheel's pickles (scikit-learn objects)."""
    from profanity_check import profanity_check  # loads the pickled model (~1 s, scikit-learn included)

    vectorizer, model = profanity_check.vectorizer, profanity_check.model
    if vectorizer.ngram_range != (1, 1) or vectorizer.sublinear_tf or vectorizer.norm != "l2" \
            or model.method != "sigmoid" or vectorizer.token_pattern != r"(?u)\b\w\w+\b" \
            or not vectorizer.lowercase or vectorizer.analyzer != "word" or vectorizer.preprocessor \
            or vectorizer.tokenizer or vectorizer.strip_accents:
        raise RuntimeError("unsupported alt-profanity-check model layout; pin alt-profanity-check 1.x")
    members = model.calibrated_classifiers_
    vocabulary: dict[str, int] = vectorizer.vocabulary_
    return {
        "words": np.array(list(vocabulary), dtype=str),
        "columns": np.array(list(vocabulary.values()), dtype=np.int64),
        "idf": np.asarray(vectorizer.idf_, dtype=float),
        "coef": np.vstack([m.estimator.coef_.ravel() for m in members]).T,
        "intercept": np.array([m.estimator.intercept_[0] for m in members]),
        "a": np.array([m.calibrators[0].a_ for m in members]),
        "b": np.array([m.calibrators[0].b_ for m in members]),
    }


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
            from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
        except ImportError:
            raise RuntimeError("the hf-pipeline toxicity backend needs `pip install transformers torch`") from None
        # Model and tokenizer are loaded here, from the directory only; handing `pipeline` the path with
        # ``model_kwargs={"local_files_only": True}`` fails on transformers 5 (the pipeline passes that key too).
        model = AutoModelForSequenceClassification.from_pretrained(model_path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        self._pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=device, top_k=None)
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

    def __init__(self, backend: ToxicityBackend, field: Field = "response", threshold: float = TOXIC_AT,
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
        details, threshold, name = {"field": self.field, "threshold": self.threshold}, self.threshold, self.name
        return [Detection(name, s, s >= threshold, details) for s in scores.tolist()]
