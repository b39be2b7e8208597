"""A scripted roller on the virtual board, for the MicroPython motion tests (not a test file).

`World` wires the real firmware (drivers, Sampler, Detector, Session) to the
simulated board and advances everything one millisecond at a time: the drum
position (A/B edges, PCNT, pin IRQs), IMU samples at the chip's configured
rate (pushed in the roller frame through the mounting), and the ticks_ms
clock given to `Sampler.tick`. Stepping allocates nothing, so a whole run can
go under `micropython.heap_lock()`.

A plan is an array of segments, PLAN_FIELDS ints each: duration ms, drum
travel in counts (spread evenly), orientation (LEVEL or UPRIGHT), zone.
"""

import time
from array import array

import vboard
from micropython import const

from roller.detector import Detector
from roller.drivers.encoder import open_encoder
from roller.drivers.imu import open_imu
from roller.sampler import Sampler
from roller.session import Session
from roller.settings import Settings

PLAN_FIELDS = const(4)
LEVEL = const(0)  # axle level: vertical strokes; gravity (0, 600, 800) mg in the roller frame
UPRIGHT = const(1)  # axle vertical: horizontal strokes; gravity (1000, 0, 0)


class World:
    """The firmware's motion path on a simulated board, stepped 1 ms at a time."""

    def __init__(self, kind="mpu6050", mount="x,y,z", pcnt=True, start=None, det=None, **overrides):
        vboard.reset()
        self.model = vboard.attach_imu(kind)
        s = Settings()
        overrides["mount"] = mount
        s.update(overrides)
        self.settings = s
        self.frame = vboard.ChipFrame(mount)
        self.imu = open_imu(s)
        self.encoder = open_encoder(s, pcnt=pcnt)
        self.session = Session(s)
        self.det = det if det is not None else Detector(s, self.session)
        self.now = time.ticks_add(0, -1000) if start is None else start
        self.sampler = Sampler(s, self.det, self.encoder, self.imu, self.session)
        self.sampler.start(self.now)
        self.sampler.tick(self.now)  # the first encoder sample, at t = 0
        self.ms = 0
        self.us = 0
        self.imu_period = self.model.period_us()
        self.imu_next = self.imu_period
        self.pos = 0
        self.set_gravity(LEVEL)
        self.pushed = 0

    def set_gravity(self, orientation):
        if orientation == LEVEL:
            self.gx, self.gy, self.gz = 0, 600, 800
        else:
            self.gx, self.gy, self.gz = 1000, 0, 0

    def step(self, pos):
        """1 ms: roll to pos, push the IMU samples that fall due, tick the sampler."""
        vboard.set_drum(pos)
        self.us += 1000
        while self.us >= self.imu_next:
            self.frame.push(self.model, self.gx, self.gy, self.gz, 100, -200, 300)
            self.pushed += 1
            self.imu_next += self.imu_period
        self.ms += 1
        self.now = time.ticks_add(self.now, 1)
        self.tick(self.now)

    def tick(self, now):
        """The firmware's part of a millisecond (a subclass may watch it)."""
        self.sampler.tick(now)

    def hold(self, ms):
        for _ in range(ms):
            self.step(self.pos)

    def run(self, plan, on_ms=None):
        """Play a plan; on_ms(world) is called after every millisecond if given."""
        ses = self.session
        for seg in range(0, len(plan), PLAN_FIELDS):
            dur = plan[seg]
            delta = plan[seg + 1]
            self.set_gravity(plan[seg + 2])
            zone = plan[seg + 3]
            if zone != ses.zone:
                ses.set_zone(zone)
            start = self.pos
            for i in range(1, dur + 1):
                self.step(start + delta * i // dur)
                if on_ms is not None:
                    on_ms(self)
            self.pos = start + delta


def strokes_plan(zones, per_direction, counts, move_ms=600, gap_ms=300, settle_ms=1500):
    """Per zone: settle, vertical strokes back and forth; settle upright, as many horizontal."""
    segs = []
    for zone in zones:
        for orientation in (LEVEL, UPRIGHT):
            segs += [settle_ms, 0, orientation, zone]
            sign = 1
            for _ in range(per_direction):
                segs += [move_ms, sign * counts, orientation, zone]
                segs += [gap_ms, 0, orientation, zone]
                sign = -sign
    segs += [settle_ms, 0, UPRIGHT, zones[-1]]
    return array("i", segs)
