"""The steps between decode and persist, and their one contract.

Which steps run, and in what order, is decided in one place: `monitor.ingest.chain.build_steps`. Each step
is a `Step`: it adds to the batch in place and never writes to the database itself, so the batch is stored
whole, in one transaction, or not at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.ingest.batch import Batch

Partition = tuple[str, int]


class Step:
    """One stage of the chain. Contract:

    * `process` adds to the batch in place (rows, upserts, tallies, annotations); it never writes to the
      database (reads are allowed);
    * `process` may raise: the pipeline then discards what it added and finds the culprits by bisection —
      calls it again on halves of the records, then halves of the halves that raised (without offsets), down
      to single records, which become dead letters — and calls it once with the batch's offsets and no
      records. So `process` must not assume it sees a record once. Records handed to it are bounded
      (`monitor.ingest.record.MAX_DEPTH`, `MAX_NUMBER`), so a step may recurse over a record's metadata;
    * state kept across batches (online detectors) must be put into ``batch.upserts`` so it is checkpointed
      atomically with the batch it reflects; counts of records go into ``batch.tallies`` (`Tally`), which
      the store adds only for the records it really inserted;
    * `on_assigned` / `on_revoked` are called on rebalance, on the consumer's thread, for the partitions that
      change hands; they must not block on the broker. The defaults do nothing.
    * `close` is called once at shutdown, after the last batch was stored.
    """

    def process(self, batch: Batch) -> None:
        raise NotImplementedError

    def on_assigned(self, partitions: set[Partition]) -> None:
        """Partitions this process now consumes."""

    def on_revoked(self, partitions: set[Partition]) -> None:
        """Partitions this process no longer consumes."""

    def close(self) -> None:
        """Release what the step holds; called once at shutdown."""
