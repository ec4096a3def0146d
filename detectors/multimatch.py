"""Where any of many fixed patterns occurs in a text, found in one pass (``hyperscan`` when installed).

The secrets detector knows dozens of credential formats; each has a fixed opening (``AKIA``, ``ghp_``,
``sk-ant-``, ``xapp-``…) or a context word (``password``, ``aws``…). Looking for each one with `str.find`
or a Python regex alternation costs ~100 µs per 1 KB text; a `hyperscan` database of all of them costs
~3 µs, which is what lets every record be checked. Without `hyperscan` (a platform without its wheel) the
same triggers are found with Python's `re`, one pattern at a time: the same hits, ~20x slower.

Contract: `MultiMatch.hits` returns, for every occurrence of every trigger, ``(trigger index, start, end)``
in character offsets of the text (not bytes), sorted by end. A trigger is a regular expression in the
syntax both engines share (literals, classes, bounded repeats; no lookaround, no backreferences); a
trigger's hits may overlap. `MultiMatch.any` says whether there is at least one hit where ``accept`` is true,
stopping at the first.

`Presence` is for prefilters that can say more in the patterns themselves: which patterns occur at all, each
reported once (no positions), stopping at the first *decisive* one. The Python binding of hyperscan calls back
into Python on every hit (~0.3 µs each), and a common word (``password``) can hit several times per text, so a
prefilter that tests each hit in Python pays for every one; `Presence` pays for a pattern once.

A scan call costs ~1 µs of Python and binding whatever the text, more than scanning a prompt does: `hits_many`
and `Presence.scan_many` scan a batch's ASCII texts as one buffer, joined by the byte 0xff (never in UTF-8), so
a pattern that cannot match that byte — a literal, a class of ASCII characters — cannot match across two texts.
"""

from __future__ import annotations

import contextlib
import re
import threading
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

try:
    import hyperscan
except ImportError:  # pragma: no cover - exercised by forcing engine="re" in the tests
    hyperscan = None


@dataclass(frozen=True, slots=True)
class Trigger:
    """A pattern to look for: ``pattern`` is a regex (escape literals), ``caseless`` ignores ASCII case."""

    pattern: str
    caseless: bool = False


class MultiMatch:
    """All hits of a fixed set of triggers, one scan per text.

    >>> mm = MultiMatch([Trigger("ghp_"), Trigger("passw", caseless=True)])
    >>> mm.hits("PASSWORD=x ghp_y")
    [(1, 0, 5), (0, 11, 15)]
    """

    def __init__(self, triggers: Sequence[Trigger], engine: str = "auto") -> None:
        if engine not in ("auto", "hyperscan", "re"):
            raise ValueError(f"unknown engine {engine!r}: auto, hyperscan or re")
        if engine == "hyperscan" and hyperscan is None:
            raise RuntimeError("engine 'hyperscan' asked for, but the hyperscan package is not installed")
        self.triggers = tuple(triggers)
        self.engine = "re" if engine == "re" or hyperscan is None else "hyperscan"
        self._compiled = [re.compile(t.pattern, re.IGNORECASE if t.caseless else 0) for t in self.triggers]
        self._local = threading.local()  # a hyperscan scratch space serves one scan at a time: one per thread
        if self.engine == "hyperscan":
            flags = [hyperscan.HS_FLAG_SOM_LEFTMOST | (hyperscan.HS_FLAG_CASELESS if t.caseless else 0)
                     for t in self.triggers]
            self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            self._db.compile(expressions=[t.pattern.encode() for t in self.triggers],
                             ids=list(range(len(self.triggers))), flags=flags)

    def _scratch(self):  # type: ignore[no-untyped-def]
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        return scratch

    def hits(self, text: str) -> list[tuple[int, int, int]]:
        """Every ``(trigger, start, end)`` in ``text``, sorted by end (then trigger)."""
        if self.engine == "re":
            found = [(i, m.start(), m.end()) for i, rx in enumerate(self._compiled) for m in rx.finditer(text)]
            found.sort(key=lambda h: (h[2], h[0]))
            return found
        out: list[tuple[int, int, int]] = []
        data = text.encode("utf-8", "surrogatepass")
        self._db.scan(data, match_event_handler=lambda i, s, e, _f, _c: out.append((i, s, e)),
                      scratch=self._scratch())
        if len(data) != len(text) and out:  # byte offsets -> character offsets (triggers are ASCII)
            out = [(i, len(data[:s].decode("utf-8", "surrogatepass")), len(data[:e].decode("utf-8", "surrogatepass")))
                   for i, s, e in out]
        return out

    def hits_many(self, texts: Sequence[str]) -> list[list[tuple[int, int, int]]]:
        """`hits` of each of ``texts`` (in end order), the ASCII ones found in one scan: no trigger may be able
        to match the byte 0xff (see the module's docstring)."""
        if self.engine == "re":
            return [self.hits(text) for text in texts]
        out: list[list[tuple[int, int, int]]] = [[] for _ in texts]
        ascii_at = []
        for k, text in enumerate(texts):
            if text.isascii():
                ascii_at.append(k)
            elif text:
                out[k] = self.hits(text)
        if ascii_at:
            data, starts = _joined(texts, ascii_at)

            def on_hit(i: int, s: int, e: int, _flags: int, _ctx: object) -> None:
                j = bisect_right(starts, s) - 1  # the text the hit starts in, and so ends in
                out[ascii_at[j]].append((i, s - starts[j], e - starts[j]))

            self._db.scan(data, match_event_handler=on_hit, scratch=self._scratch())
        return out

    def any(self, text: str, accept: Callable[[str, int, int, int], bool]) -> bool:
        """Whether some hit ``(trigger, start, end)`` of ``text`` has ``accept(text, trigger, start, end)``."""
        if self.engine == "re" or not text.isascii():
            return any(accept(text, i, s, e) for i, s, e in self.hits(text))
        found = False

        def on_hit(i: int, s: int, e: int, _flags: int, _ctx: object) -> bool:
            nonlocal found
            found = accept(text, i, s, e)
            return found  # True stops the scan

        with contextlib.suppress(hyperscan.ScanTerminated):  # how hyperscan says a callback stopped it
            self._db.scan(text.encode("ascii"), match_event_handler=on_hit, scratch=self._scratch())
        return found


class Presence:
    """Which of some patterns occur in a text: one hyperscan scan, each pattern reported once at most
    (``HS_FLAG_SINGLEMATCH``, no start offsets), stopping as soon as one of the ``decisive`` ones occurs.

    Needs hyperscan (a prefilter without it keeps its per-hit test). Patterns are in hyperscan's syntax and
    see the UTF-8 bytes of the text.

    >>> presence = Presence([Trigger("ghp_")], [Trigger("passw", caseless=True), Trigger("aws", caseless=True)])
    >>> presence.scan("PASSWORD, Password and aws"), presence.scan("ghp_ and aws"), presence.scan("nothing")
    ({0, 1}, None, set())
    """

    def __init__(self, decisive: Sequence[Trigger], others: Sequence[Trigger]) -> None:
        if hyperscan is None:
            raise RuntimeError("Presence needs the hyperscan package")
        patterns = [*decisive, *others]
        expressions = [t.pattern.encode() for t in patterns]
        flags = [hyperscan.HS_FLAG_CASELESS if t.caseless else 0 for t in patterns]
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=expressions, ids=list(range(len(patterns))),
                         flags=[f | hyperscan.HS_FLAG_SINGLEMATCH for f in flags])
        # for a batch: every match reported (a single match would be one per buffer, not per text)
        self._many = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._many.compile(expressions=expressions, ids=list(range(len(patterns))), flags=flags)
        self._decisive = len(decisive)
        self._local = threading.local()

    def _on_match(self, i: int, _s: int, _e: int, _flags: int, found: list[int]) -> bool:
        found.append(i)
        return i < self._decisive  # True stops the scan

    def _scratch(self, db: hyperscan.Database, name: str) -> hyperscan.Scratch:
        scratch = getattr(self._local, name, None)
        if scratch is None:
            scratch = hyperscan.Scratch(db)
            setattr(self._local, name, scratch)
        return scratch

    def scan(self, text: str) -> set[int] | None:
        """None when a decisive pattern occurs in ``text``, else the indexes (in ``others``) of those that do."""
        scratch = self._scratch(self._db, "scratch")
        found: list[int] = []
        try:
            self._db.scan(text.encode("utf-8", "surrogatepass"), match_event_handler=self._on_match, context=found,
                          scratch=scratch)
        except hyperscan.ScanTerminated:  # how hyperscan says a callback stopped it
            return None
        decisive = self._decisive
        return {i - decisive for i in found}

    def scan_many(self, texts: Sequence[str]) -> list[set[int] | None]:
        """`scan` of each of ``texts``, the ASCII ones in one scan. No decisive pattern may be able to match the
        byte 0xff (see the module's docstring); another pattern that can may be reported for a text it is not
        in (the next one), never missed in one it is in."""
        out: list[set[int] | None] = []
        ascii_at = []
        for k, text in enumerate(texts):
            if text.isascii():
                out.append(set())
                ascii_at.append(k)
            else:
                out.append(self.scan(text))
        if not ascii_at:
            return out
        data, starts = _joined(texts, ascii_at)
        found: list[tuple[int, int]] = []
        self._many.scan(data, match_event_handler=_append_end, context=found,
                        scratch=self._scratch(self._many, "scratch_many"))
        decisive = self._decisive
        for i, e in found:
            k = ascii_at[bisect_right(starts, e - 1) - 1]  # the text the match ends in
            seen = out[k]
            if i < decisive:
                out[k] = None
            elif seen is not None:
                seen.add(i - decisive)
        return out


def _append_end(i: int, _s: int, e: int, _flags: int, found: list[tuple[int, int]]) -> None:
    found.append((i, e))


def _joined(texts: Sequence[str], at: Sequence[int]) -> tuple[bytes, list[int]]:
    """The ASCII texts ``texts[k]`` for ``k`` in ``at`` as one buffer, separated by the byte 0xff, and where in
    it each starts."""
    starts, offset = [], 0
    for k in at:
        starts.append(offset)
        offset += len(texts[k]) + 1
    return "\xff".join([texts[k] for k in at]).encode("latin-1"), starts
