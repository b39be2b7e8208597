"""dermaroll application (minimal, until the BLE service exists).

Settings from settings.json, the drum encoder and the IMU through
roller.drivers, the Sampler feeding the Detector and the Session under
asyncio. Each pass is printed on the console as one line:

    PASS seq zone direction t_start_ms t_end_ms length_mm

(times in ms since the SESSION line, zone and direction by name, length with
one decimal), after these lines at start:

    dermaroll fw VERSION imu NAME|none encoder KIND button GPIO
    SESSION ticks_ms          the ticks_ms value the pass times count from

plus `ZONE name` when the zone changes and `STAT key=value ...` every 60 s.
A short press of the button (active low, 30..999 ms) selects the next zone of
the default order; the first press selects the forehead.
"""

import asyncio
import time
from array import array

import machine
from micropython import const

from roller import zones
from roller.detector import DIRECTIONS, Detector
from roller.drivers.encoder import open_encoder
from roller.drivers.imu import ImuNotFound, open_imu
from roller.sampler import Sampler
from roller.session import Session
from roller.settings import Settings

VERSION = "0.1.0"
_SHORT_MIN_MS = const(30)
_SHORT_MAX_MS = const(1000)
_STAT_MS = const(60000)


class Button:
    """Short presses of an active-low button, counted in a soft IRQ handler."""

    def __init__(self, gpio):
        self.pin = machine.Pin(gpio, machine.Pin.IN, machine.Pin.PULL_UP)
        self.down = False
        self.down_at = time.ticks_ms()
        self.presses = 0
        self.pin.irq(self._edge, machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING)

    def _edge(self, pin):
        now = time.ticks_ms()
        if pin.value() == 0:
            if not self.down:
                self.down = True
                self.down_at = now
        elif self.down:
            held = time.ticks_diff(now, self.down_at)
            self.down = False
            if _SHORT_MIN_MS <= held < _SHORT_MAX_MS:
                self.presses += 1


def report(ses, out):
    while ses.pop(out):
        length = out[5]
        print(
            "PASS %d %s %s %d %d %d.%d"
            % (
                out[0],
                zones.NAMES[out[1]] if out[1] < len(zones.NAMES) else str(out[1]),
                DIRECTIONS[out[2]],
                out[3],
                out[4],
                length // 10,
                length % 10,
            )
        )


async def sample(sampler, ses, button):
    """The device loop: tick the sampler on time, apply button presses, print passes."""
    out = array("i", (0, 0, 0, 0, 0, 0))
    start = time.ticks_ms()
    sampler.start(start)
    print("SESSION", start)
    seen = 0
    stat_at = _STAT_MS
    while True:
        wait = sampler.tick(time.ticks_ms())
        if button.presses != seen:
            seen = button.presses
            ses.next_zone()
            print("ZONE", zones.NAMES[ses.zone])
        if ses.pending:
            report(ses, out)
        if sampler.t >= stat_at:
            stat_at += _STAT_MS
            st = sampler.stats()
            print("STAT " + " ".join("%s=%s" % (k, st[k]) for k in sorted(st)))
        await asyncio.sleep_ms(wait if wait > 0 else 0)


def main():
    settings = Settings().load()
    for e in settings.errors:
        print("settings:", e)
    encoder = open_encoder(settings)
    try:
        imu = open_imu(settings)
        imu_name = imu.name
    except (ImuNotFound, OSError) as e:
        print("imu:", e)
        imu = None
        imu_name = "none"
    ses = Session(settings)
    det = Detector(settings, ses)
    sampler = Sampler(settings, det, encoder, imu, ses)
    button = Button(settings["button"])
    print(
        "dermaroll fw %s imu %s encoder %s button %d"
        % (VERSION, imu_name, encoder.kind, settings["button"])
    )
    ses.start()
    asyncio.run(sample(sampler, ses, button))


main()
