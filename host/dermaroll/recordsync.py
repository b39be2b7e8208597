"""Host-side bookkeeping of one device's pass records (protocol/SPEC.md 5.3 and 6.6).

Pure logic, no I/O: the caller feeds it what arrives and persists what it
commits. One `RecordSync` per device (records are keyed by (device, seq)).

    sync = RecordSync()
    sync.add(record)              # any PassRecord, live or a record access reply
    ge = sync.begin(status)       # after connecting: Status read; ask REPORT_RECORDS >= ge
    sync.complete()               # its SUCCESS / NO_RECORDS_FOUND: commit, report gaps
    sync.committed                # DELETE_RECORDS <= this is safe once persisted

A transfer cut by a disconnect is simply not completed: nothing is committed
and the next `begin` asks again from the same place. Records are stored in
any arrival order; one received again with the same content is a duplicate
(harmless, counted); one with the same seq and other content is a conflict
(a device bug: the first is kept, the pair reported).
"""

from __future__ import annotations

from collections import Counter

from dermaroll_protocol import PASS_RECORD_FIELDS

# The fields that make a record; equal fields = the same record (SPEC 5.1).
FIELDS = PASS_RECORD_FIELDS


class RecordSync:
    """Records of one device keyed by seq, the committed mark and the gaps found."""

    def __init__(self) -> None:
        self.records: dict[int, dict[str, int]] = {}
        self.committed = 0  # every seq <= this is stored or declared lost
        self.lost: set[int] = set()
        self.duplicates = 0
        self.conflicts: list[tuple[dict[str, int], dict[str, int]]] = []
        self.completed = 0  # transfers completed
        self._target: int | None = None  # Status.newest read before the running request

    def add(self, record: dict[str, int]) -> bool:
        """Store one PassRecord (a decoded dict); True when its seq was new."""
        rec = {k: record[k] for k in FIELDS}
        seq = rec["seq"]
        old = self.records.get(seq)
        if old is not None:
            if old == rec:
                self.duplicates += 1
            else:
                self.conflicts.append((old, rec))
            return False
        self.records[seq] = rec
        self.lost.discard(seq)  # it was not lost after all: never hide a record we hold
        return True

    def begin(self, status: dict[str, int]) -> int:
        """A new connection read Status: report the overflow gap below `oldest` and
        return the seq to ask REPORT_RECORDS >= from (1 means all)."""
        c = self.committed
        oldest = status["oldest"]
        if oldest > c + 1:
            self._declare_lost(c + 1, oldest - 1)
            self.committed = oldest - 1
        self._target = status["newest"]
        return self.committed + 1

    def complete(self) -> list[int]:
        """The REPORT_RECORDS asked after `begin` answered SUCCESS or NO_RECORDS_FOUND:
        every seq up to the Status.newest read before it is now stored or lost. Commits
        and returns the seqs newly declared lost."""
        if self._target is None:
            raise RuntimeError("complete() without begin()")
        target, self._target = self._target, None
        self.completed += 1
        if target <= self.committed:
            return []
        lost = self._declare_lost(self.committed + 1, target)
        self.committed = target
        return lost

    def _declare_lost(self, first: int, last: int) -> list[int]:
        lost = [s for s in range(first, last + 1) if s not in self.records]
        self.lost.update(lost)
        return lost

    def newest(self) -> int:
        """The highest seq stored, 0 if none."""
        return max(self.records, default=0)

    def missing(self, upto: int) -> list[int]:
        """Seqs in 1..upto that are not stored (lost or not asked for yet)."""
        return [s for s in range(1, upto + 1) if s not in self.records]

    def tally(self, session: int | None = None) -> dict[tuple[int, int], int]:
        """Stored passes per (zone, direction), of one session or of all."""
        return dict(
            Counter(
                (r["zone"], r["direction"])
                for r in self.records.values()
                if session is None or r["session"] == session
            )
        )
