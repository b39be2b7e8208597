"""The drum encoder: A/B quadrature counted by the ESP32 pulse counter, or by pin IRQs.

Both kinds give the same interface: `read()` returns the cumulative signed
count (4 per encoder line, counting up when A leads B, as the ESP32 port's
`machine.Encoder(phases=4)` does), `errors` counts detected missed edges
(always 0 for the pulse counter), `counts_per_mm` comes from the settings,
`kind` is "pcnt" or "irq", and `deinit()` releases the hardware.

`open_encoder(settings)` picks `machine.Encoder` where the port has it
(ESP32, S2, S3: the PCNT counts every edge in hardware, up to tens of MHz, with
a glitch filter) and falls back to the pin-IRQ decoder on chips without a
pulse counter (ESP32-C3).

Rate limit of the IRQ decoder. ESP32 pin IRQs are soft: an edge only queues
the handler in MicroPython's 8-entry schedule queue; the VM runs it between
bytecodes (not while native/viper code runs, nor during a GC pause of ~2 ms)
and drops the edge when the queue is full. A Python quadrature handler costs
about 50 us on a 240 MHz ESP32, so it saturates near 20 k edges/s of CPU and
has been seen failing near 3.7 k edges/s in practice. With the reference
drum (400 counts per revolution, 18 mm: 7.1 counts/mm) 2 k edges/s is
280 mm/s of rolling, several times faster than a derma roller moves; keep
counts_per_rev x speed below that on IRQ-only chips. A handler that runs late
sees the pins as they are *then*: two steps at once is an illegal transition,
counted in `errors` instead of guessed; a whole missed cycle (4 edges) is
invisible to any decoder, which is why the pulse counter is preferred.

Counts stay small ints on the ESP32 (31-bit): 2**30 counts is 150 km of
rolling at 7 counts/mm.
"""

from array import array

import machine
from micropython import const

# State = (A << 1) | B. Index (previous << 2) | current -> step: +1 forward
# (A leads B: 00 -> 10 -> 11 -> 01 -> 00), -1 backward, 0 no change, and
# _ILLEGAL when both lines changed (at least one edge was missed).
_ILLEGAL = const(2)
# fmt: off
_TRANSITION = array("b", (
    0, -1, 1, _ILLEGAL,   # from 00
    1, 0, _ILLEGAL, -1,   # from 01
    -1, _ILLEGAL, 0, 1,   # from 10
    _ILLEGAL, 1, -1, 0,   # from 11
))
# fmt: on


def _input(gpio):
    # Optical and magnetic encoder modules often have open-collector outputs.
    return machine.Pin(gpio, machine.Pin.IN, machine.Pin.PULL_UP)


class PcntEncoder:
    """The pulse counter through machine.Encoder(phases=4)."""

    kind = "pcnt"

    def __init__(self, unit, gpio_a, gpio_b, filter_ns=1000, counts_per_mm=1.0):
        a = _input(gpio_a)
        b = _input(gpio_b)
        self.hw = machine.Encoder(unit, a, b, phases=4, filter_ns=filter_ns)
        self.hw.value(0)
        # The bound method itself: one call per tick, no attribute chain.
        self.read = self.hw.value
        self.errors = 0
        self.counts_per_mm = counts_per_mm

    def deinit(self):
        self.hw.deinit()


class IrqEncoder:
    """Quadrature decoder on pin IRQs (both edges of A and B), for chips without a PCNT."""

    kind = "irq"

    def __init__(self, gpio_a, gpio_b, counts_per_mm=1.0):
        a = _input(gpio_a)
        b = _input(gpio_b)
        self._a = a
        self._b = b
        self._av = a.value
        self._bv = b.value
        self.count = 0
        self.errors = 0
        self.counts_per_mm = counts_per_mm
        self._state = (a.value() << 1) | b.value()
        self.read = self._read
        edge = self._edge  # one bound method object, made once
        both = machine.Pin.IRQ_RISING | machine.Pin.IRQ_FALLING
        a.irq(edge, both)
        b.irq(edge, both)

    def _edge(self, pin):
        # Soft IRQ handler: allocation-free (small-int arithmetic, array lookup).
        s = (self._av() << 1) | self._bv()
        step = _TRANSITION[(self._state << 2) | s]
        self._state = s
        if step == _ILLEGAL:
            self.errors += 1
        else:
            self.count += step

    def _read(self):
        return self.count

    def deinit(self):
        self._a.irq(None)
        self._b.irq(None)


def open_encoder(settings, pcnt=None):
    """The drum encoder on the settings' pins: PCNT where machine.Encoder exists (or pcnt=True)."""
    cpm = settings.counts_per_mm()
    if pcnt is None:
        pcnt = getattr(machine, "Encoder", None) is not None
    if pcnt:
        return PcntEncoder(
            settings["enc_id"],
            settings["enc_a"],
            settings["enc_b"],
            settings["enc_filter_ns"],
            cpm,
        )
    return IrqEncoder(settings["enc_a"], settings["enc_b"], cpm)
