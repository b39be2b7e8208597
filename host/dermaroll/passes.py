"""A pass as hosts see it: DESIGN.md section 5's record, and its JSON Lines form (section 6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Pass:
    """One pass: from the detector (replay, the board's console) or from a script's truth."""

    seq: int
    zone: str  # "unassigned" when no zone was selected
    dir: str  # vertical, horizontal or diagonal
    t_start_ms: int
    t_end_ms: int
    length_mm: float

    def to_json(self) -> dict[str, Any]:
        """The pass object of DESIGN.md section 6, keys in its order."""
        return {
            "type": "pass",
            "seq": self.seq,
            "zone": self.zone,
            "dir": self.dir,
            "t_start_ms": self.t_start_ms,
            "t_end_ms": self.t_end_ms,
            "length_mm": self.length_mm,
        }
