"""A reviewer's queue: which samples they are given, what they see of one, and how a label is kept.

Assignment is lazy: when a reviewer opens their queue it is topped up to ``queue_size`` records from the
samples that still want a reviewer (``reviews_wanted`` is 2 for the share picked for agreement). Samples are
handed out newest window first and, within a window, in arrival order, so which uniform samples get
labelled does not depend on what they contain. All samples of one record go to the same reviewer together
and one label answers them all (labels are unique per record and reviewer). Two reviewers filling their
queues at the same instant may both take a sample that wanted one reviewer: it then gets two labels, which
only adds agreement data.

Every read is scoped to the reviewer: a sample that is not assigned to them does not exist for them, and
they never see another reviewer's label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite

from detectors.redact import seal, seal_json
from monitor.config import ReviewConfig
from monitor.review.highlight import Segment, highlight
from monitor.storage.crypto import Cipher, open_texts
from monitor.storage.db import as_utc, insert_ignore
from monitor.storage.schema import detections, labels, records, sample_assignments, samples, shadow_comparisons

MAX_NOTE_CHARS = 4000


class LabelError(ValueError):
    """A label the configuration does not allow (unknown verdict or tag, note too long)."""


@dataclass(frozen=True, slots=True)
class QueueItem:
    sample_id: int
    record_id: str
    model: str
    app: str | None
    ts: datetime
    reasons: tuple[str, ...]
    verdict: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    detector: str
    score: float
    flagged: bool
    kinds: tuple[str, ...]


@dataclass(slots=True)
class SampleView:
    """Everything the page shows for one sample."""

    sample_id: int
    record_id: str
    reasons: tuple[str, ...]
    record: dict[str, Any] | None
    prompt: list[Segment]
    response: list[Segment]
    findings: list[Finding]
    shadow: dict[str, Any] | None
    verdict: str | None = None
    tags: list[str] = field(default_factory=list)
    note: str = ""


_SEALED_TEXT = ("error", "feedback_comment", "reference_answer")


def _sealed(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the page may show it: every credential in its free text and metadata masked
    (`detectors.redact.seal`), whatever ``store_text`` the data was written with and whatever this server's
    own configuration says. Prompt and response are sealed segment by segment in `highlight`."""
    for key in _SEALED_TEXT:
        if isinstance(row.get(key), str):
            row[key] = seal(row[key])
    if row.get("metadata") is not None:
        row["metadata"] = seal_json(row["metadata"])
    return row


class ReviewQueue:
    """The queue logic behind the review page; every method takes the signed-in reviewer's id."""

    def __init__(self, engine: Engine, config: ReviewConfig, full_text: bool = False,
                 cipher: Cipher | None = None) -> None:
        """``cipher`` opens records stored encrypted; without it (or the right key) the page shows their clear
        columns, which hold redacted text only."""
        self._engine = engine
        self._config = config
        self._full_text = full_text
        self._cipher = cipher

    def _unlabelled(self, reviewer_id: int):  # type: ignore[no-untyped-def]
        return ~exists().where(labels.c.record_id == samples.c.record_id, labels.c.reviewer_id == reviewer_id)

    def fill(self, reviewer_id: int, now: datetime | None = None) -> int:
        """Top the reviewer's queue up to ``queue_size`` records; returns how many records were added."""
        now = now or datetime.now(UTC)
        with self._engine.begin() as conn:
            waiting = len(self._pending_rows(conn, reviewer_id))
            want = self._config.queue_size - waiting
            if want <= 0:
                return 0
            taken = select(func.count()).where(sample_assignments.c.sample_id == samples.c.id).scalar_subquery()
            mine = exists().where(
                sample_assignments.c.reviewer_id == reviewer_id,
                sample_assignments.c.sample_id == samples.c.id,
            )
            other = samples.alias("other")
            mine_for_record = exists().where(
                sample_assignments.c.reviewer_id == reviewer_id,
                sample_assignments.c.sample_id == other.c.id,
                other.c.record_id == samples.c.record_id,
            )
            query = (
                select(samples.c.id, samples.c.record_id)
                .where(taken < samples.c.reviews_wanted, ~mine, ~mine_for_record, self._unlabelled(reviewer_id))
                .order_by(samples.c.window_start.desc(), samples.c.id)
                .limit(want * 4)
            )
            chosen: dict[str, list[int]] = {}
            for sample_id, record_id in conn.execute(query):
                if record_id in chosen:
                    chosen[record_id].append(sample_id)
                elif len(chosen) < want:
                    chosen[record_id] = [sample_id]
            rows = [{"sample_id": sid, "reviewer_id": reviewer_id, "assigned_at": now}
                    for ids in chosen.values() for sid in ids]
            insert_ignore(conn, sample_assignments, rows)
        return len(chosen)

    def _pending_rows(self, conn: Connection, reviewer_id: int) -> list[QueueItem]:
        query = (
            select(samples.c.id, samples.c.record_id, samples.c.model, samples.c.app, samples.c.ts,
                   samples.c.reason)
            .join(sample_assignments, and_(sample_assignments.c.sample_id == samples.c.id,
                                           sample_assignments.c.reviewer_id == reviewer_id))
            .where(self._unlabelled(reviewer_id))
            .order_by(samples.c.window_start.desc(), samples.c.id)
        )
        return _by_record(conn.execute(query).all())

    def pending(self, reviewer_id: int) -> list[QueueItem]:
        """Records waiting for this reviewer's label, in the order they should be done."""
        with self._engine.connect() as conn:
            return self._pending_rows(conn, reviewer_id)

    def done(self, reviewer_id: int, limit: int = 20) -> list[QueueItem]:
        """This reviewer's most recent labels."""
        query = (
            select(labels.c.sample_id, labels.c.record_id, samples.c.model, samples.c.app, samples.c.ts,
                   samples.c.reason, labels.c.verdict)
            .join(samples, samples.c.id == labels.c.sample_id)
            .where(labels.c.reviewer_id == reviewer_id)
            .order_by(labels.c.labelled_at.desc(), labels.c.id.desc())
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [QueueItem(r[0], r[1], r[2], r[3], as_utc(r[4]), (r[5],), r[6]) for r in conn.execute(query)]

    def _assigned(self, conn: Connection, reviewer_id: int, sample_id: int) -> Any:
        return conn.execute(
            select(samples)
            .join(sample_assignments, sample_assignments.c.sample_id == samples.c.id)
            .where(samples.c.id == sample_id, sample_assignments.c.reviewer_id == reviewer_id)
        ).first()

    def sample_of(self, reviewer_id: int, record_id: str) -> int | None:
        """This reviewer's sample of ``record_id`` (the first one), or None if none was assigned to them."""
        with self._engine.connect() as conn:
            return conn.execute(
                select(samples.c.id).join(sample_assignments, sample_assignments.c.sample_id == samples.c.id)
                .where(samples.c.record_id == record_id, sample_assignments.c.reviewer_id == reviewer_id)
                .order_by(samples.c.id).limit(1)
            ).scalar()

    def view(self, reviewer_id: int, sample_id: int) -> SampleView | None:
        """The sample as this reviewer may see it, or None if it is not theirs."""
        with self._engine.connect() as conn:
            sample = self._assigned(conn, reviewer_id, sample_id)
            if sample is None:
                return None
            reasons = conn.execute(
                select(samples.c.reason).join(sample_assignments, sample_assignments.c.sample_id == samples.c.id)
                .where(samples.c.record_id == sample.record_id, sample_assignments.c.reviewer_id == reviewer_id)
                .order_by(samples.c.id)
            ).scalars().all()
            record = conn.execute(select(records).where(records.c.id == sample.record_id)).mappings().first()
            found = conn.execute(
                select(detections).where(detections.c.record_id == sample.record_id)
                .order_by(detections.c.detector)
            ).mappings().all()
            shadow = conn.execute(
                select(shadow_comparisons).where(shadow_comparisons.c.record_id == sample.record_id)
                .order_by(shadow_comparisons.c.created_at.desc()).limit(1)
            ).mappings().first()
            own = conn.execute(
                select(labels.c.verdict, labels.c.tags, labels.c.note)
                .where(labels.c.record_id == sample.record_id, labels.c.reviewer_id == reviewer_id)
            ).first()
        texts: dict[str, Any] = {}
        full_text = self._full_text
        record_dict = None
        if record is not None:
            record_dict, texts, full_text = self._opened(dict(record))
            record_dict = _sealed(record_dict)
        findings = [
            Finding(d["detector"], float(d["score"]), bool(d["flagged"]),
                    tuple(sorted(((d["details"] or {}).get("kinds") or {}) if isinstance(d["details"], dict)
                                 else ())))
            for d in found
        ]
        return SampleView(
            sample_id=sample.id,
            record_id=sample.record_id,
            reasons=tuple(reasons),
            record=record_dict,
            prompt=highlight(texts.get("prompt"), "prompt", found, full_text),
            response=highlight(texts.get("response"), "response", found, full_text),
            findings=findings,
            shadow=_sealed(dict(shadow)) if shadow is not None else None,
            verdict=own.verdict if own else None,
            tags=list(own.tags or []) if own else [],
            note=(own.note or "") if own else "",
        )

    def _opened(self, record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """The record without its ciphertext, its extras (error, comment, metadata) opened; its prompt and
        response to highlight; and whether those are raw (findings masked by position) or redacted
        (placeholders). The record's own prompt and response stay the clear columns, never raw text."""
        token, key = record.pop("text_encrypted", None), record.pop("text_key", None)
        clear = {"prompt": record.get("prompt"), "response": record.get("response")}
        if token is None:
            return record, clear, self._full_text
        opened = open_texts(self._cipher, token, key)
        if opened is None:
            return record, clear, False  # the clear columns of an encrypted record are redacted
        record.update({k: opened.get(k) for k in ("error", "feedback_comment", "metadata")})
        return record, {"prompt": opened.get("prompt"), "response": opened.get("response")}, bool(opened.get("full"))

    def label(self, reviewer_id: int, sample_id: int, verdict: str, tags: Sequence[str] = (),
              note: str = "", now: datetime | None = None) -> bool:
        """Record (or replace) this reviewer's label for the sample's record. False if not theirs."""
        if verdict not in self._config.verdicts:
            raise LabelError(f"unknown verdict (choose one of {', '.join(self._config.verdicts)})")
        unknown = set(tags) - set(self._config.tags)
        if unknown:
            raise LabelError(f"unknown tags (choose from {', '.join(self._config.tags)})")
        note = note.strip() if self._config.note else ""
        if len(note) > MAX_NOTE_CHARS:
            raise LabelError(f"note longer than {MAX_NOTE_CHARS} characters")
        ordered_tags = [t for t in self._config.tags if t in set(tags)]
        row = {
            "sample_id": sample_id, "reviewer_id": reviewer_id, "verdict": verdict, "tags": ordered_tags,
            "note": note or None, "labelled_at": now or datetime.now(UTC),
        }
        with self._engine.begin() as conn:
            sample = self._assigned(conn, reviewer_id, sample_id)
            if sample is None:
                return False
            row["record_id"] = sample.record_id
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(labels).values(row)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=[labels.c.record_id, labels.c.reviewer_id],
                set_={k: stmt.excluded[k] for k in ("sample_id", "verdict", "tags", "note", "labelled_at")},
            ))
        return True

    def next_after(self, reviewer_id: int, sample_id: int | None) -> int | None:
        """The pending sample after ``sample_id`` in queue order (wrapping), or the first one."""
        items = self.pending(reviewer_id)
        if not items:
            return None
        ids = [item.sample_id for item in items]
        if sample_id in ids:
            i = ids.index(sample_id)
            return ids[(i + 1) % len(ids)] if len(ids) > 1 else None
        return ids[0]


def _by_record(rows: Sequence[Any]) -> list[QueueItem]:
    """One queue item per record (its first sample), with all the reasons it was sampled for."""
    items: dict[str, list[Any]] = {}
    for sample_id, record_id, model, app, ts, reason in rows:
        if record_id in items:
            items[record_id][5].append(reason)
        else:
            items[record_id] = [sample_id, record_id, model, app, as_utc(ts), [reason]]
    return [QueueItem(s, r, m, a, t, tuple(reasons)) for s, r, m, a, t, reasons in items.values()]
