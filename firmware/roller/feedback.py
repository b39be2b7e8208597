"""LED and vibration-motor patterns (docs/feedback.md), played without blocking.

A pattern is a fixed list of steps: for each step, how long it lasts and
which outputs are on. `show(pattern)` starts one at once (it only writes
pins; it never sleeps), and `step(now_ms)` moves it on when a step's time is
up; `run()` is an asyncio task that calls `step` at the right times. The app
may instead call `step(time.ticks_ms())` from its own loop.

Priorities decide what plays when several are wanted: ERROR > PAIRING >
LOW_BATTERY > ORDER > OVER > TARGET. ERROR and PAIRING repeat until
`clear()`ed; the others play once. A pattern asked for while one of higher
priority plays is dropped if it is a one-shot (counted in `dropped`: pass
feedback that comes late is misleading) and waits if it repeats; one of
equal or higher priority replaces what plays.
A one-shot cut off by a repeating pattern is dropped too. When a one-shot
ends, or the repeating pattern playing is cleared, the highest repeating
pattern still wanted starts again from its first step.

`on_pass(session, zone, direction)` is called by the app after each pass has
been counted and picks the pass pattern: ORDER on the horizontal pass that
set the zone's `order` remark, else OVER for each pass above target_max,
else TARGET on the pass that reaches target_min; diagonal passes and passes
below target give nothing.

Outputs: `led` and `motor` settings are GPIOs driven high for "on" (the
reference build: LED to GND through a resistor, motor through an N-MOSFET);
-1 means not fitted and that output is skipped. Nothing here allocates after
construction (patterns are bytes constants, state is small ints).
"""

import asyncio
import time

import machine
import micropython
from micropython import const

from roller.detector import HORIZONTAL, VERTICAL

# Pattern ids, in increasing priority.
NONE = const(-1)
TARGET = const(0)
OVER = const(1)
ORDER = const(2)
LOW_BATTERY = const(3)
PAIRING = const(4)
ERROR = const(5)
NAMES = ("target", "over", "order", "low_battery", "pairing", "error")

LED = const(1)
MOTOR = const(2)
_UNIT_MS = const(10)  # step durations are in 10 ms units
_IDLE_MS = const(20)  # run(): how often an idle player looks for a new pattern

# Steps: pairs of (duration in 10 ms units, outputs: LED | MOTOR bits).
# The outputs go off when a one-shot ends.
STEPS = (
    bytes((30, LED | MOTOR)),  # TARGET: one 300 ms buzz with the LED on
    bytes((8, LED | MOTOR, 8, 0, 8, LED | MOTOR, 8, 0, 8, LED | MOTOR)),  # OVER: three short
    bytes((50, LED | MOTOR, 25, 0, 50, LED | MOTOR)),  # ORDER: two long buzzes
    bytes((10, LED, 15, 0, 10, LED, 15, 0)),  # LOW_BATTERY: LED double blink, no motor
    bytes((50, LED, 50, 0)),  # PAIRING: LED 1 Hz blink, repeats
    bytes((10, LED, 10, 0, 10, LED, 10, 0, 10, LED, 50, 0)),  # ERROR: LED triple flash, repeats
)
_REPEATS = const((1 << PAIRING) | (1 << ERROR))


class Feedback:
    """Plays one pattern at a time on the LED and motor pins from settings."""

    def __init__(self, settings):
        self.led = _output(settings["led"])
        self.motor = _output(settings["motor"])
        self.playing = NONE
        self.shot = NONE  # the one-shot pattern wanted (or NONE)
        self.loops = 0  # bit set of the repeating patterns wanted
        self.index = 0  # byte offset of the current step in STEPS[playing]
        self.due = time.ticks_ms()  # when the current step ends
        self.dropped = 0
        self.shown = 0
        self._outputs(0)

    def _outputs(self, bits):
        if self.led is not None:
            self.led.value(bits & LED)
        if self.motor is not None:
            self.motor.value(bits & MOTOR)

    def _start(self, now):
        """Play the highest pattern wanted from its first step (or turn everything off)."""
        best = self.shot
        p = ERROR
        while p > best:
            if self.loops & (1 << p):
                best = p
                break
            p -= 1
        self.playing = best
        self.index = 0
        if best == NONE:
            self._outputs(0)
            return
        steps = STEPS[best]
        self._outputs(steps[1])
        self.due = time.ticks_add(now, steps[0] * _UNIT_MS)

    def show(self, pattern, now=None):
        """Ask for a pattern; returns True if it plays now, False if a higher one keeps playing."""
        if now is None:
            now = time.ticks_ms()
        bit = 1 << pattern
        if bit & _REPEATS:
            if self.loops & bit and self.playing == pattern:
                return True  # already playing: keep its rhythm
            self.loops |= bit  # wanted until cleared, even if it has to wait
            if self.playing > pattern:
                return False
            if self.shot != NONE:  # an interrupted one-shot is stale by the time it could resume
                self.shot = NONE
                self.dropped += 1
        elif self.playing > pattern:
            self.dropped += 1
            return False
        else:
            self.shot = pattern
        self.shown += 1
        self._start(now)
        return True

    def clear(self, pattern, now=None):
        """Stop wanting a repeating pattern (PAIRING, ERROR); what is left plays on."""
        bit = 1 << pattern
        if not self.loops & bit:
            return
        self.loops &= ~bit
        if self.playing == pattern:
            self._start(time.ticks_ms() if now is None else now)

    @micropython.native  # a bytecode frame this wide would come from the heap
    def step(self, now):
        """Advance the pattern to ticks_ms `now`; returns ms until the next change (-1: idle)."""
        p = self.playing
        if p == NONE:
            return -1
        left = time.ticks_diff(self.due, now)
        if left > 0:
            return left
        steps = STEPS[p]
        i = self.index + 2
        if i >= len(steps):
            if not (1 << p) & _REPEATS:
                self.shot = NONE
                self._start(now)
                return self.step_left(now)
            i = 0
        self.index = i
        self._outputs(steps[i + 1])
        # From the step's planned end, so a repeating pattern keeps its rhythm;
        # from now if the caller was a whole step late.
        due = time.ticks_add(self.due, steps[i] * _UNIT_MS)
        if time.ticks_diff(due, now) <= 0:
            due = time.ticks_add(now, steps[i] * _UNIT_MS)
        self.due = due
        return time.ticks_diff(due, now)

    def step_left(self, now):
        """ms until the current step ends (-1: nothing plays)."""
        if self.playing == NONE:
            return -1
        left = time.ticks_diff(self.due, now)
        return left if left > 0 else 0

    def on_pass(self, session, zone, direction, now=None):
        """Pass feedback after `session` counted a pass; returns the pattern asked for or NONE."""
        if direction != VERTICAL and direction != HORIZONTAL:
            return NONE
        n = session.count(zone, direction)
        if direction == HORIZONTAL and n == 1 and session.order(zone):
            pattern = ORDER
        elif n > session.target_max:
            pattern = OVER
        elif n == session.target_min:
            pattern = TARGET
        else:
            return NONE
        self.show(pattern, now)
        return pattern

    async def run(self):
        """The player task: steps patterns on time, looks for new ones every 20 ms when idle."""
        while True:
            wait = self.step(time.ticks_ms())
            await asyncio.sleep_ms(_IDLE_MS if wait < 0 or wait > _IDLE_MS else wait)


def _output(gpio):
    if gpio < 0:
        return None
    return machine.Pin(gpio, machine.Pin.OUT, value=0)
