"""The prompt embedder caches words, not prompts: what it returns is still WordLlama's own embedding."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import wordllama

from detectors.drift.embedding import MAX_PROMPT_CHARS, PromptEmbedder
from monitor.ingest.record import decode
from monitor.synthetic.generator import TrafficGenerator


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # WordLlama on the empty prompt
def test_generated_prompts_embed_as_wordllama_embeds_them_even_when_the_word_table_overflows():
    gen = TrafficGenerator(seed=9, start=datetime(2026, 5, 1, tzinfo=UTC))
    prompts = [decode(g.value).prompt for g in gen.generate(3000)]
    prompts += ["", "  double  spaces ", "tabs\tand\nnewlines", "ünïcödé and emoji 🚀"]
    model = wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True, trunc_dim=64)
    reference = model.embed([p[:MAX_PROMPT_CHARS] for p in prompts], norm=True)
    small = PromptEmbedder(max_words=600)  # forced to start its word table afresh several times
    ours = np.concatenate([small.embed(prompts[i:i + 100]) for i in range(0, len(prompts), 100)])
    assert ours.shape == reference.shape
    cosine = np.sum(ours * reference, axis=1)
    spaced = prompts.index("  double  spaces ")  # WordLlama merges a run of spaces into one token; we don't
    exact = [i for i, p in enumerate(prompts) if p.strip() and i != spaced]
    assert np.min(cosine[exact]) > 0.9999 and cosine[spaced] > 0.95
    assert not np.any(ours[prompts.index("")])  # WordLlama gives NaN here: a zero row sits far from every topic
    assert len(small._index) <= 600 < len({w for p in prompts for w in p[:MAX_PROMPT_CHARS].split(" ")})


def test_embedders_in_threads_share_the_loaded_model_and_embed_as_one_alone():
    """Every embedder of a process shares WordLlama's vectors and tokenizer (loaded once); each keeps its own
    word table, so two daemons' pipelines in one process (the tests run several) do not disturb each other."""
    from concurrent.futures import ThreadPoolExecutor

    gen = TrafficGenerator(seed=4, start=datetime(2026, 5, 1, tzinfo=UTC))
    prompts = [decode(g.value).prompt for g in gen.generate(2000)]
    alone = PromptEmbedder().embed(prompts)
    embedders = [PromptEmbedder(max_words=500) for _ in range(4)]
    assert all(e._tokenizer is embedders[0]._tokenizer for e in embedders)

    def embed_all(embedder: PromptEmbedder) -> np.ndarray:
        return np.concatenate([embedder.embed(prompts[i:i + 50]) for i in range(0, len(prompts), 50)])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(embed_all, embedders))
    for result in results:
        assert np.allclose(result, alone, atol=1e-6)
