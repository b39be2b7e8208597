"""The pass contract (DESIGN.md section 5), clause by clause, on the firmware detector.

Runs inside MicroPython (as mpy_test_*) and again under CPython
(tests/firmware/test_core_on_cpython.py), from this one file.
"""

import math

from mpytest import heap_used, no_alloc

from roller.detector import DIAGONAL, HORIZONTAL, VERTICAL, Detector
from roller.settings import Settings

LEVEL = (0, 600, 800)  # axle level: a vertical stroke
UPRIGHT = (1000, 0, 0)  # axle vertical: a horizontal stroke


class Sink:
    def __init__(self):
        self.passes = []

    def on_pass(self, zone, direction, t_start, t_end, length):
        self.passes.append((zone, direction, t_start, t_end, length))


class Run:
    """Drives a detector with a 100 Hz stream of (position mm, gravity, zone)."""

    def __init__(self, cpm=5.0, **overrides):
        s = Settings()
        overrides["counts_per_mm"] = cpm
        s.update(overrides)
        self.cpm = cpm
        self.sink = Sink()
        self.det = Detector(s, self.sink)
        self.t = 0
        self.pos = 0.0
        self.g = LEVEL
        self.zone = 1

    def hold(self, ms):
        self.move(0, ms)

    def move(self, mm, ms):
        steps = ms // 10
        for _ in range(steps):
            self.step(self.pos + mm / steps)

    def step(self, pos):
        self.pos = pos
        self.det.accel(self.t, self.g[0], self.g[1], self.g[2])
        self.det.enc(self.t, int(round(pos * self.cpm)), self.zone)
        self.t += 10

    def passes(self):
        self.det.flush()
        return self.sink.passes


def test_back_and_forth_counts_one_pass_each_way():
    r = Run()
    r.hold(500)
    for k in range(6):
        r.move(30 if k % 2 == 0 else -30, 600)
    p = r.passes()
    assert len(p) == 6, p
    assert [x[4] for x in p] == [300] * 6, p
    # Each stroke ends where the next starts: at the turning point.
    for a, b in zip(p, p[1:]):
        assert a[3] == b[2], (a, b)


def test_short_back_roll_is_jitter_not_a_reversal():
    r = Run()
    r.hold(500)
    r.move(20, 400)
    r.move(-1.2, 50)  # below reverse_mm = 1.5
    r.move(15, 300)
    p = r.passes()
    assert len(p) == 1, p
    assert abs(p[0][4] - 338) <= 2, p  # 20 - 1.2 + 15 = 33.8 mm


def test_back_roll_of_reverse_mm_ends_the_stroke():
    r = Run(cpm=10.0)
    r.hold(500)
    r.move(20, 400)
    r.move(-12, 300)
    p = r.passes()
    assert [x[4] for x in p] == [200, 120], p


def test_pause_ends_stroke_at_time_furthest_point_was_reached():
    r = Run()
    r.hold(500)
    r.move(25, 500)
    t_far = r.t - 10
    r.hold(450)  # longer than pause_ms = 400
    t_rest = r.t - 10
    r.move(25, 500)
    p = r.passes()
    assert len(p) == 2, p
    assert p[0][3] == t_far, (p, t_far)
    assert p[0][2] == 490, p  # the last sample still at the resting point
    # The next stroke starts from the furthest point, at its last sample there.
    assert p[1][2] == t_rest and p[1][4] == 250, (p, t_rest)


def test_stroke_after_lingering_turn_starts_at_last_sample_there():
    r = Run()
    r.hold(500)
    r.move(30, 600)
    t_far = r.t - 10
    r.hold(190)  # lingers at the turn, shorter than pause_ms
    r.zone = 4  # the zone changed while lingering: the next pass is the new zone's
    r.hold(10)
    t_left = r.t - 10
    r.move(-30, 600)
    p = r.passes()
    assert [(x[0], x[2], x[3]) for x in p] == [(1, 490, t_far), (4, t_left, r.t - 10)], p


def test_pause_shorter_than_pause_ms_keeps_one_stroke():
    r = Run()
    r.hold(500)
    r.move(25, 500)
    r.hold(300)
    r.move(25, 500)
    assert len(r.passes()) == 1


def test_short_strokes_are_adjustments():
    r = Run()
    r.hold(500)
    r.move(8, 300)  # below min_pass_mm = 10
    r.hold(600)
    r.move(-9.5, 300)
    r.hold(600)
    r.move(10, 300)  # exactly min_pass_mm counts
    assert [x[4] for x in r.passes()] == [100]


def test_open_stroke_is_closed_at_end_of_data():
    r = Run()
    r.hold(200)
    r.move(40, 800)
    p = r.passes()
    assert len(p) == 1 and p[0][4] == 400 and p[0][3] == r.t - 10, p


def test_jitter_at_rest_starts_nothing():
    r = Run(cpm=20.0)
    for i in range(300):
        r.step(0.05 if i % 2 else 0.0)  # one count back and forth
    assert r.passes() == []


def _direction_at(deg):
    r = Run()
    e = math.radians(deg)
    r.g = (int(1000 * math.sin(e)), int(600 * math.cos(e)), int(800 * math.cos(e)))
    r.hold(1000)  # let the gravity filter settle on the new orientation
    r.move(30, 600)
    p = r.passes()
    assert len(p) == 1, p
    return p[0][1]


def test_direction_from_axle_elevation():
    assert _direction_at(0) == VERTICAL
    assert _direction_at(25) == VERTICAL
    assert _direction_at(35) == DIAGONAL
    assert _direction_at(55) == DIAGONAL
    assert _direction_at(65) == HORIZONTAL
    assert _direction_at(90) == HORIZONTAL
    assert _direction_at(-80) == HORIZONTAL  # the axle's sign does not matter


def test_direction_limits_are_settings():
    r = Run(vertical_max_deg=10.0, horizontal_min_deg=20.0)
    r.g = (375, 556, 741)  # 22 degrees: horizontal only under the changed limits
    r.hold(1000)
    r.move(30, 600)
    assert r.passes()[0][1] == HORIZONTAL


def test_zone_is_the_one_current_when_the_pass_started():
    r = Run()
    r.zone = 2
    r.hold(500)
    r.move(15, 300)
    r.zone = 3  # pressed mid-stroke
    r.move(15, 300)
    r.hold(600)
    r.move(-30, 600)
    p = r.passes()
    assert [x[0] for x in p] == [2, 3], p


def test_length_is_rounded_to_a_tenth_mm():
    r = Run(cpm=1.53)
    r.hold(200)
    r.move(21, 400)  # 32 counts = 20.915 mm
    p = r.passes()
    assert p[0][4] == 209, p


class CountingSink:
    def __init__(self):
        self.n = 0

    def on_pass(self, zone, direction, t_start, t_end, length):
        self.n += 1


def test_detector_allocates_nothing_per_sample():
    r = Run()
    sink = CountingSink()
    det = r.det
    det.sink = sink

    def run():
        # 12,000 samples at 200 Hz of back-and-forth rolling, passes included.
        t = 0
        pos = 0
        for i in range(12000):
            det.accel(t, 10, 600, 800)
            pos += 3 if (i // 200) % 2 == 0 else -3
            det.enc(t, pos, 1)
            t += 5
        det.flush()

    no_alloc(run)
    assert sink.n == 60, sink.n
    det.reset()
    assert heap_used(run) == 0  # no call frame from the heap either (native methods)
    assert sink.n == 120, sink.n
