"""The whole motion path is allocation-free: sampler tick, FIFO drain, decode, detector, session.

The locked tests play a scripted session on the virtual board (3 zones, 10 vertical
and 10 horizontal strokes each) with the heap locked for the entire run:
every encoder tick, every burst read and decode, every detector update and
every pass counted and popped from the session queue happens under
`micropython.heap_lock()`, so any allocation raises MemoryError and fails.
Each run is > 10,000 encoder ticks plus > 5,000 IMU samples; then the passes
are checked (all 60 counted, in the right zone and direction, in time order).

A locked heap hides one kind of allocation: a bytecode call whose frame is
over 11 words takes it from the heap, falling back to the C stack only while
the heap is locked. `test_*_no_heap_frames` therefore also watch every
firmware tick with the heap open (mpytest.heap_used); the simulated chips'
own Python, which is hardware on a real board, is left out of that count.
"""

from array import array

from mpytest import HeapWatch, no_alloc
from simworld import World, strokes_plan

from roller.detector import HORIZONTAL, VERTICAL
from roller.session import PASS_FIELDS

ZONES = (1, 2, 3)
STROKES = 10
COUNTS = 212  # 30 mm at the default 7.07 counts/mm


class PassLog:
    """Pops passes off the session queue while the heap is locked (preallocated storage)."""

    def __init__(self, cap=128):
        self.rec = array("i", bytes(4 * PASS_FIELDS))
        self.log = array("i", bytes(4 * PASS_FIELDS * cap))
        self.n = 0
        self.cap = cap

    def __call__(self, world):
        ses = world.session
        if not ses.pending:
            return
        rec = self.rec
        while ses.pop(rec):
            if self.n < self.cap:
                base = self.n * PASS_FIELDS
                for k in range(PASS_FIELDS):
                    self.log[base + k] = rec[k]
            self.n += 1

    def passes(self):
        out = []
        for i in range(min(self.n, self.cap)):
            out.append(tuple(self.log[i * PASS_FIELDS : (i + 1) * PASS_FIELDS]))
        return out


def _run_locked(kind, pcnt, mount):
    w = World(kind, mount=mount, pcnt=pcnt)
    plan = strokes_plan(ZONES, STROKES, COUNTS)
    log = PassLog()
    no_alloc(lambda: w.run(plan, log))
    w.det.flush()
    log(w)
    return w, log


def _check(w, log):
    st = w.sampler.stats()
    assert st["ticks"] >= 10000, st
    assert st["imu_samples"] >= 5000, st
    assert st["late"] == 0 and st["imu_overflows"] == 0 and st["imu_errors"] == 0, st
    assert st["enc_errors"] == 0, st
    assert w.session.pending == 0 and w.session.dropped == 0
    passes = log.passes()
    assert len(passes) == len(ZONES) * 2 * STROKES, passes
    for z in ZONES:
        assert w.session.count(z, VERTICAL) == STROKES, (z, passes)
        assert w.session.count(z, HORIZONTAL) == STROKES, (z, passes)
    last_end = -1
    for _, _, _, t0, t1, length in passes:
        assert t0 < t1 and t0 >= last_end, passes
        last_end = t1
        assert 295 <= length <= 305, passes  # 212 counts / 7.07 per mm = 30.0 mm
    # The first stroke starts after the 1500 ms settle and ends 600 ms later.
    seq, zone, direction, t0, t1, length = passes[0]
    assert zone == 1 and direction == VERTICAL, passes[0]
    assert 1495 <= t0 <= 1505 and 2095 <= t1 <= 2105, passes[0]


def test_mpu6050_pcnt_locked():
    _check(*_run_locked("mpu6050", True, "x,y,z"))


def test_lsm6dso_irq_decoder_locked():
    _check(*_run_locked("lsm6dso", False, "-y,x,z"))


def test_lsm6ds3_pcnt_locked():
    _check(*_run_locked("lsm6ds3", True, "z,-x,-y"))


def test_mpu6500_irq_decoder_locked():
    _check(*_run_locked("mpu6500", False, "y,z,x"))


class WatchedWorld(World):
    """A World whose every firmware tick runs under a HeapWatch."""

    def tick(self, now):
        if self.ms <= 1:
            self.sampler.tick(now)  # the constructor's first tick, before the watch exists
            self.watch = None
            return
        if self.watch is None:
            self.watch = HeapWatch()
            self._tick = self.sampler.tick
        self.watch.call(self._tick, now)


def _watched(kind, pcnt):
    # Every firmware code path (tick, drain, decode, turn, pause, pass), in a
    # shorter session than the locked runs: each watched tick costs a heap scan.
    w = WatchedWorld(kind, pcnt=pcnt)
    log = PassLog()
    w.run(strokes_plan((1,), 3, COUNTS), log)
    assert w.watch.used() == 0, w.watch.used()
    w.det.flush()
    log(w)
    assert w.session.count(1, VERTICAL) == 3 and w.session.count(1, HORIZONTAL) == 3, log.passes()
    assert w.sampler.stats()["imu_samples"] > 300


def test_mpu6050_pcnt_no_heap_frames():
    _watched("mpu6050", True)


def test_lsm6dso_irq_decoder_no_heap_frames():
    _watched("lsm6dso", False)


def test_the_watch_sees_a_heap_frame_in_a_tick():
    # The same run with the pre-fix sampler shape: a tick that calls a
    # bytecode function with a wide frame must be caught.
    def wide(a, b, c, d, e, f, g, h, i, j, k, m):
        return a + b + c + d + e + f + g + h + i + j + k + m

    class Widened(WatchedWorld):
        def tick(self, now):
            WatchedWorld.tick(self, now)
            if self.watch is not None and self.ms == 700:
                self.watch.call(lambda: wide(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12))

    w = Widened("mpu6050")
    w.hold(1000)
    assert w.watch.used() > 0
