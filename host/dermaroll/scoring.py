"""Scoring detected passes against ground truth (motion model sessions, labelled recordings).

A detected pass matches a true pass when both have the same zone and their
``[t_start_ms, t_end_ms]`` intervals overlap; pairs are taken greedily by
largest overlap, each pass in at most one pair.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dermaroll.passes import Pass

DIRECTIONS = ("vertical", "horizontal", "diagonal")


@dataclass
class Score:
    """Pass-level and count-level agreement of detections with the truth."""

    truth: int = 0
    detected: int = 0
    matched: int = 0
    same_dir: int = 0
    cells: int = 0  # (session, zone, direction) cells
    exact_cells: int = 0
    sessions: int = 0
    exact_sessions: int = 0
    start_err_ms: list[int] = field(default_factory=list)
    end_err_ms: list[int] = field(default_factory=list)
    length_err_mm: list[float] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.matched / self.detected if self.detected else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.truth if self.truth else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def direction_accuracy(self) -> float:
        return self.same_dir / self.matched if self.matched else 1.0

    @property
    def exact_cell_fraction(self) -> float:
        return self.exact_cells / self.cells if self.cells else 1.0

    @property
    def exact_session_fraction(self) -> float:
        return self.exact_sessions / self.sessions if self.sessions else 1.0

    def add(self, truth: Sequence[Pass], detected: Sequence[Pass]) -> None:
        """Score one session and add it to the totals."""
        pairs = match(truth, detected)
        self.truth += len(truth)
        self.detected += len(detected)
        self.matched += len(pairs)
        for i, j in pairs:
            t, d = truth[i], detected[j]
            self.same_dir += t.dir == d.dir
            self.start_err_ms.append(abs(t.t_start_ms - d.t_start_ms))
            self.end_err_ms.append(abs(t.t_end_ms - d.t_end_ms))
            self.length_err_mm.append(abs(t.length_mm - d.length_mm))
        tc = counts(truth)
        dc = counts(detected)
        zones = {z for z, _ in tc} | {z for z, _ in dc}
        exact = True
        for z in zones:
            for direction in DIRECTIONS:
                self.cells += 1
                if tc[(z, direction)] == dc[(z, direction)]:
                    self.exact_cells += 1
                else:
                    exact = False
        self.sessions += 1
        self.exact_sessions += exact

    def report(self) -> str:
        def median(values: list) -> float:
            s = sorted(values)
            return float(s[len(s) // 2]) if s else 0.0

        return (
            "%d sessions, %d true passes, %d detected, %d matched: precision %.4f, recall %.4f, "
            "F1 %.4f; direction accuracy %.4f; exact (zone, direction) counts %.4f of %d cells; "
            "all-exact sessions %.4f; median |error| start %.0f ms, end %.0f ms, length %.1f mm"
            % (
                self.sessions,
                self.truth,
                self.detected,
                self.matched,
                self.precision,
                self.recall,
                self.f1,
                self.direction_accuracy,
                self.exact_cell_fraction,
                self.cells,
                self.exact_session_fraction,
                median(self.start_err_ms),
                median(self.end_err_ms),
                median(self.length_err_mm),
            )
        )


def counts(passes: Iterable[Pass]) -> Counter[tuple[str, str]]:
    """Passes per (zone, direction)."""
    return Counter((p.zone, p.dir) for p in passes)


def match(truth: Sequence[Pass], detected: Sequence[Pass]) -> list[tuple[int, int]]:
    """Pairs (truth index, detected index): same zone, overlapping time, largest overlap first."""
    candidates = []
    for i, t in enumerate(truth):
        for j, d in enumerate(detected):
            if t.zone != d.zone:
                continue
            if d.t_start_ms > t.t_end_ms:
                continue
            overlap = min(t.t_end_ms, d.t_end_ms) - max(t.t_start_ms, d.t_start_ms)
            if overlap > 0:
                candidates.append((-overlap, i, j))
    candidates.sort()
    used_t: set[int] = set()
    used_d: set[int] = set()
    pairs = []
    for _, i, j in candidates:
        if i in used_t or j in used_d:
            continue
        used_t.add(i)
        used_d.add(j)
        pairs.append((i, j))
    pairs.sort()
    return pairs
