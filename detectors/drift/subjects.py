"""Fixed subject cells for topic drift: every prompt goes to the nearest of 16 subject anchors.

Topic drift is watched per stream from bucket counts that many daemons write (`monitor.ingest.steps.drift`),
so every daemon must put a prompt in the same cell without learning anything from its own share of the
traffic: clusters learnt per process would not share ids. The cells are therefore fixed: one anchor per
broad subject people ask LLMs about, each the embedding (`detectors.drift.embedding.PromptEmbedder`, the
WordLlama model shipped in its wheel) of a few words typical of it. A prompt's subject is the anchor with
the highest cosine similarity to its embedding. The anchors are a coarse, deterministic partition of prompt
space, not a classifier: a change in what users ask about moves prompts between cells even where the
names are not what a human would call the subject.

Changing `SUBJECTS` changes the cells: a stream's topic chart then sees a new mix once, and re-arms.

>>> cells = SubjectCells()
>>> [cells.names[i] for i in cells.assign(["my python function throws a TypeError",
...                                        "book a cheap flight and hotel in Rome"])]
['coding', 'travel']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.drift.embedding import PromptEmbedder

SUBJECTS: dict[str, str] = {
    "coding": "python code function bug error compile javascript programming software debug class api",
    "travel": "flight hotel trip travel vacation itinerary airport visa tourist booking destination",
    "cooking": "recipe cook bake dinner ingredients oven kitchen meal chicken sauce vegetarian",
    "finance": "money budget invest stock loan tax bank savings mortgage interest credit retirement",
    "health": "doctor symptoms pain medicine sleep diet exercise health headache blood pressure",
    "support": "order refund account password login subscription delivery cancel billing customer help",
    "science": "physics chemistry biology experiment theory energy molecules planet quantum evolution",
    "writing": "write essay story poem email letter paragraph rewrite grammar blog draft tone",
    "legal": "contract law lawyer court lease tenant legal rights lawsuit clause liability agreement",
    "gaming": "game gaming level player console quest boss multiplayer build character strategy",
    "education": "homework exam study school student teacher lesson learn course math explain",
    "sports": "football soccer basketball training match team score coach tennis running fitness",
    "entertainment": "movie film music song album series show actor recommend watch band",
    "news": "election government politics president policy war economy news country vote",
    "relationships": "friend partner family relationship dating advice feelings parents wedding kids",
    "shopping": "buy product price cheap best brand review compare shop discount gift laptop phone",
}
"""Subject -> the words its anchor is embedded from. Sixteen broad subjects of LLM traffic."""


class SubjectCells:
    """Assigns prompts to the nearest of the fixed subject anchors (`SUBJECTS`), identically in every process.

    ``embedder`` defaults to a fresh `PromptEmbedder`; ``names[i]`` is the subject of cell ``i``.
    """

    def __init__(self, embedder: PromptEmbedder | None = None,
                 subjects: dict[str, str] | None = None) -> None:
        self.embedder = embedder or PromptEmbedder()
        chosen = subjects or SUBJECTS
        self.names: tuple[str, ...] = tuple(chosen)
        self.anchors = self.embedder.embed([chosen[name] for name in self.names]).T.copy()

    def assign(self, prompts: Sequence[str]) -> np.ndarray:
        """The cell (an index into `names`) of each prompt, in order; an empty prompt goes to cell 0."""
        if not prompts:
            return np.zeros(0, dtype=np.intp)
        return np.argmax(self.embedder.embed(prompts) @ self.anchors, axis=1)
