"""Pass log properties under CPython: random appends, reboots, deletes and power cuts.

The same firmware module as on the device (its `micropython` names come from
dermaroll.mpcompat). A model remembers every record the log acknowledged;
after every step the log must agree with it:

- no seq is ever reused: whatever the log holds under a seq is what was
  first acknowledged under it, and new seqs are above every acknowledged one;
- every acknowledged record is there unless deleted, pushed out of the ring
  by newer seqs, or in the slot a power cut hit;
- oldest, newest and count describe exactly what `seqs()` yields;
- seqs are burned only for writes that were attempted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from array import array

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from dermaroll import mpcompat

mpcompat.install()

from roller import passlog  # noqa: E402
from roller.passlog import FIELDS, RECORD_SIZE, PassLog, tear_reach  # noqa: E402

fields = st.tuples(
    st.integers(0, 15),  # zone
    st.integers(0, 2),  # direction
    st.integers(0, 2**30 - 1),  # t_start
    st.integers(0, 2**30 - 1),  # t_end
    st.integers(0, 0xFFFF),  # length
    st.integers(0, 0xFFFF),  # session
    st.integers(0, 0xFF),  # flags
)


class PassLogMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="dermaroll-passlog-props-")
        self.path = os.path.join(self.dir, "log")
        self.log: PassLog | None = None
        self.acked: dict[int, tuple] = {}  # seq -> the record the log acknowledged
        self.kept: set[int] = set()  # acknowledged seqs no power cut has touched
        # A cut write may still have landed whole (or its CRC may match):
        # then it is there, unannounced, as it was meant to be written.
        self.torn: dict[int, tuple] = {}
        self.attempted = 0  # highest seq ever handed to a write
        self.boot = 0

    def teardown(self):
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _boot(self, clean=True):
        if self.log is not None:
            self.log.close()
        self.log = PassLog(self.path, self.segments, self.per_segment).open()
        assert self.log.boot > self.boot or self.boot == passlog.BOOT_MAX
        self.boot = self.log.boot
        if clean:
            assert not self.log.error, self.log.errors

    # A ring of one record cannot survive a torn write over its only record.
    @initialize(segments=st.integers(1, 3), per_segment=st.integers(2, 5))
    def start(self, segments, per_segment):
        self.segments = segments
        self.per_segment = per_segment
        self._boot()

    @rule(records=st.lists(st.tuples(st.integers(0, 2), fields), min_size=1, max_size=6))
    def append(self, records):
        """Passes from the session queue (a gap: passes that fell off it)."""
        log = self.log
        for gap, (zone, direction, t0, t1, length, session, flags) in records:
            seq = log.last_seq + 1 + gap
            assert seq > max(self.acked, default=0)
            self.attempted = max(self.attempted, seq)
            assert log.append(array("i", [seq, zone, direction, t0, t1, length]), session, flags)
            self.acked[seq] = (seq, zone, direction, t0, t1, length, session, log.boot, flags)
            self.kept.add(seq)
            self.torn.pop(seq, None)

    @rule()
    def reboot(self):
        self._boot()

    @rule(k=st.integers(0, RECORD_SIZE - 1), record=fields, sector=st.booleans())
    def power_cut(self, k, record, sector):
        """The next append stops after k bytes; with `sector`, as on a FAT
        sector torn mid-write, the newest record's bytes go bad too."""
        log = self.log
        cap = log.capacity
        seq = log.last_seq + 1
        zone, direction, t0, t1, length, session, flags = record
        rec = bytearray(RECORD_SIZE)
        p = array("i", [seq, zone, direction, t0, t1, length])
        passlog._pack(rec, p, session, log.boot, flags)
        log.close()
        self._poke(seq % cap, rec[:k])
        self.attempted = max(self.attempted, seq)
        self.torn[seq] = (seq, zone, direction, t0, t1, length, session, log.boot, flags)
        self.kept.discard(seq - cap)  # the slot's old record may be half overwritten
        newest = log.newest
        if sector and newest and cap > 1:
            others = [s for s in log.seqs(1, True) if s not in (newest, seq - cap)]
            # The guarantee: damage within TEAR_REACH of a surviving record.
            if others and seq - max(others) <= tear_reach(cap):
                self._poke(newest % cap, b"\xa5" * RECORD_SIZE)
                self.kept.discard(newest)
        self._boot(clean=False)

    def _poke(self, slot, data):
        name = "%s/s%02d" % (self.path, slot // self.per_segment)
        with open(name, "r+b") as f:
            f.seek((slot % self.per_segment) * RECORD_SIZE)
            f.write(data)

    @precondition(lambda self: self.acked)
    @rule(data=st.data())
    def delete(self, data):
        """The host commits and deletes up to a seq it has seen."""
        log = self.log
        upto = data.draw(st.integers(0, max(self.acked)))
        held = set(log.seqs())
        n = log.delete(upto)
        assert n == len({s for s in held if s <= upto}), (n, upto, held)

    @precondition(lambda self: self.acked and self.log.present(max(self.acked)))
    @rule()
    def lose_state(self):
        """The state file is gone: the boot counter and seq come back from the records
        (the newest of them still there: without it and the state, nothing is left)."""
        self.log.close()
        os.remove(self.path + "/state")
        self.boot = 0
        self._boot(clean=False)

    @invariant()
    def agrees_with_the_model(self):
        log = self.log
        out = array("i", bytes(4 * FIELDS))
        for seq in log.seqs(1, True):
            assert log.read(seq, out), seq
            want = self.acked.get(seq) or self.torn.get(seq)
            assert tuple(out) == want, (seq, tuple(out), want)
        held = list(log.seqs())
        assert held == sorted(held)
        low = max(log.watermark, log.last_seq - log.capacity)
        assert {s for s in self.kept if s > low} <= set(held)
        assert log.oldest == (held[0] if held else 0)
        assert log.newest == (held[-1] if held else 0)
        assert log.count() == len(held)
        assert max(self.acked, default=0) <= log.last_seq <= self.attempted


TestPassLog = PassLogMachine.TestCase
TestPassLog.settings = settings(max_examples=150, stateful_step_count=25, deadline=None)
