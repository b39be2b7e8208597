"""Zone ids and their wire/array indices (DESIGN.md section 4).

Index 0 is `unassigned`; 1..6 are the default zones in treatment order.
Session arrays are sized for MAX_ZONES so a trace may bring extra zone ids.
"""

from micropython import const

UNASSIGNED = const(0)
MAX_ZONES = const(16)

NAMES = ("unassigned", "forehead", "nose", "left_cheek", "right_cheek", "upper_lip", "chin")
FIRST = const(1)
LAST = const(6)


def next_zone(zone):
    """The zone after `zone` in the default order; wraps, and leaves unassigned to the first."""
    if zone < FIRST or zone >= LAST:
        return FIRST
    return zone + 1
