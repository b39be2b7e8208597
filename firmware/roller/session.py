"""The treatment session: per-zone x per-direction pass counts and the guidance verdicts.

A `Session` is the detector's sink. It numbers each pass, counts it, keeps
the `order` remark of DESIGN.md section 5 and queues the pass for whoever
reports it (console, log, BLE), all in preallocated arrays.
"""

from array import array

import micropython
from micropython import const

from roller import zones
from roller.detector import HORIZONTAL, VERTICAL

UNDER = const(0)
OK = const(1)
OVER = const(2)
VERDICTS = ("under", "ok", "over")

# One queued pass: seq, zone, direction, t_start_ms, t_end_ms, length_01mm.
PASS_FIELDS = const(6)
_COUNT_MAX = const(65535)
_ID_MAX = const(65535)  # session ids travel as u16 and 0 means "no session"


class Session:
    """Counts, verdicts and the queue of passes not yet reported."""

    def __init__(self, settings, queue_len=32):
        self.target_min = settings["target_min"]
        self.target_max = settings["target_max"]
        self.counts = array("H", bytes(2 * 3 * zones.MAX_ZONES))
        self.order_flags = bytearray(zones.MAX_ZONES)
        self.zone = zones.UNASSIGNED
        self.seq = 0  # of the last pass; the pass log (device) sets where it continues
        self.id = 0  # the open session's, or the last one's (ids are never reused)
        self.active = False
        self.outside = False  # the counts are session 0's: passes since the last END
        self.queue = array("i", bytes(4 * PASS_FIELDS * queue_len))
        self.queue_len = queue_len
        self.head = 0
        self.pending = 0
        self.dropped = 0  # passes that fell off a full queue: reported, never hidden

    @micropython.native  # a bytecode frame this wide would come from the heap
    def on_pass(self, zone, direction, t_start, t_end, length):
        """Count one pass from the detector and queue it.

        With no session open the first pass clears the ended session's counts:
        from here on they are session 0's (SPEC 6.4, "passes outside a session").
        """
        if not self.active and not self.outside:
            self.reset()
            self.outside = True
        counts = self.counts
        base = zone * 3
        if (
            direction == HORIZONTAL
            and counts[base + HORIZONTAL] == 0
            and counts[base + VERTICAL] < self.target_min
        ):
            self.order_flags[zone] = 1
        if counts[base + direction] < _COUNT_MAX:
            counts[base + direction] += 1
        self.seq += 1
        if self.pending == self.queue_len:
            self.head = (self.head + 1) % self.queue_len
            self.pending -= 1
            self.dropped += 1
        i = (self.head + self.pending) % self.queue_len * PASS_FIELDS
        q = self.queue
        q[i] = self.seq
        q[i + 1] = zone
        q[i + 2] = direction
        q[i + 3] = t_start
        q[i + 4] = t_end
        q[i + 5] = length
        self.pending += 1

    def pop(self, out):
        """Move the oldest queued pass into `out` (PASS_FIELDS ints); False when none."""
        if not self.pending:
            return False
        i = self.head * PASS_FIELDS
        q = self.queue
        for k in range(PASS_FIELDS):
            out[k] = q[i + k]
        self.head = (self.head + 1) % self.queue_len
        self.pending -= 1
        return True

    def count(self, zone, direction):
        """Passes in `zone` in `direction` this session."""
        return self.counts[zone * 3 + direction]

    def verdict(self, zone, direction):
        """UNDER, OK or OVER against the 4-5 passes guidance (target_min..target_max)."""
        c = self.counts[zone * 3 + direction]
        if c < self.target_min:
            return UNDER
        if c <= self.target_max:
            return OK
        return OVER

    def order(self, zone):
        """True when the zone's first horizontal pass came before its vertical target."""
        return bool(self.order_flags[zone])

    def used(self, zone):
        """True when the zone has any pass this session."""
        base = zone * 3
        c = self.counts
        return bool(c[base] or c[base + 1] or c[base + 2])

    def set_zone(self, zone):
        """Select the current zone (an index of roller.zones)."""
        if not 0 <= zone < zones.MAX_ZONES:
            raise ValueError("zone index %r outside 0..%d" % (zone, zones.MAX_ZONES - 1))
        self.zone = zone

    def next_zone(self):
        """Advance to the next zone of the default order; returns it."""
        self.zone = zones.next_zone(self.zone)
        return self.zone

    def reset(self):
        """Zero the counts and remarks; the pass numbering goes on."""
        for i in range(len(self.counts)):
            self.counts[i] = 0
        for i in range(len(self.order_flags)):
            self.order_flags[i] = 0

    def current(self):
        """The id passes count under now: the open session's, 0 when none is open."""
        return self.id if self.active else 0

    def start(self):
        """Begin a new session: counts from zero, a new session id."""
        self.reset()
        self.id = self.id % _ID_MAX + 1
        self.active = True
        self.outside = False

    def end(self):
        """Close the session; its counts stay readable until the next start."""
        self.active = False
