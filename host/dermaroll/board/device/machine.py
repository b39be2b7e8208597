"""Simulated ESP32 peripherals for the virtual board.

`Pin`, `I2C`, `Encoder`, `Timer`, `ADC`, `WDT`, and the chip functions (`reset`,
`soft_reset`, `reset_cause`, `unique_id`, `freq`, `lightsleep`, `deepsleep`, `idle`).

This file shadows the unix port's built-in `machine` when its folder is on
MICROPYPATH, so the firmware's drivers run unmodified. The classes follow the
ESP32 port of MicroPython 1.28 where the firmware can tell the difference:

- `Pin` objects are per-GPIO singletons; input levels come from the outside
  world (`vboard.drive`) or the pull resistor; `irq()` handlers are *soft*:
  an edge queues the handler in an 8-entry schedule queue and, when the queue
  is full, the edge is dropped (counted in `board.dropped_irqs`). By default
  the queue runs right after each edge; `vboard.defer_irqs(True)` holds it
  until `vboard.run_irqs()`, which is how a late handler sees several edges
  at once. `hard=True` is refused as on the ESP32.
- `I2C` routes transactions to register models attached to the bus; an
  address with no (or an unplugged) device raises OSError(ENODEV) as the
  ESP32 port does for a NACK. Each bus counts transactions and bytes so tests
  can check that drivers read in bursts.
- `Encoder` is the pulse counter (PCNT) as configured by the ESP32 port's
  machine.py: channel rules per edge of the A/B pins (`phases` 1, 2 or 4),
  the filter rounded to APB ticks and capped at 1023, `value([v])` read and
  set. The drum drives the pins (`vboard.set_drum`), so a miswired or
  swapped pin counts wrong exactly as on hardware.

- `Timer` (hardware timers 0..3), `WDT` and the board's scheduled events
  run on the virtual clock (this folder's `time.py`): `board.due_us` is the
  next event, which every wait of the firmware (time.sleep*, asyncio's poll)
  is cut at, and `board.fire(now)` runs what is due. Timer callbacks are soft
  (queued like pin IRQs), as on the ESP32. The watchdog is checked at the
  firmware's waits: a firmware stuck in a loop that never waits is not reset.
- `ADC` reads the voltage the world put on the pad (`vboard.set_adc`), within
  the range of the attenuation, as 12-bit `read()`, `read_u16()` and
  `read_uv()`.
- `reset()` (hard), `soft_reset()`, `deepsleep()` and power states ask the
  board runner through `board.ctl` (see vrepl.py) and wait to be replaced by
  the next boot; `lightsleep(ms)` sleeps on the virtual clock until ms or a
  wake pin set by this folder's `esp32` module (EXT0/EXT1) reaches its level;
  asleep, the PCNT and pin IRQs see no edge and Timers and the watchdog
  stand still.
- The world (the motion model playing a script, vboard.World) is advanced
  lazily: to the current virtual time whenever the firmware reads the
  encoder or an I2C device, and at its own events.

The world's state (pins, buses, encoders, the IRQ queue, events) is `board`; only
`vboard` and tests reach into it. Nothing here allocates on the paths a
running firmware uses (pin edges, IRQ delivery, register reads and writes),
so firmware loops can be checked under `micropython.heap_lock()`.
"""

import errno
import sys
import time

import utime

# Soft IRQs on the ESP32 go through MicroPython's schedule queue (8 entries).
SCHEDULE_DEPTH = 8
# PCNT channel actions, as esp32.PCNT names them.
_INCREMENT = 1
_DECREMENT = -1
_HOLD = 0
_REVERSE = 2
# GPIO numbers an ESP32-S3 has (the classic ESP32 stops at 39).
_MAX_GPIO = 48


class _Board:
    """Everything the simulated chip is connected to."""

    def __init__(self):
        self.reset()

    def reset(self):
        """A fresh board: no pins configured, empty buses, no encoders, empty IRQ queue."""
        self.pins = {}
        self.buses = {}
        self.encoders = {}
        self.defer = False
        self.dropped_irqs = 0
        self.handled_irqs = 0
        self._qf = [None] * SCHEDULE_DEPTH
        self._qa = [None] * SCHEDULE_DEPTH
        self._qh = 0
        self._qn = 0
        self.timers = []
        self.wdt_due = -1
        self.wdt_ms = 0
        self.adc_uv = {}
        self.world = None
        self.due_us = -1
        self.cpu_hz = 160000000
        # Light-sleep wake sources (set by the `esp32` module) and the sleep itself.
        self.ext0_pin = -1
        self.ext0_level = False
        self.ext1_pins = ()
        self.ext1_level = False
        self.asleep = False
        self.woke = 0  # what ended the light sleep (EXT0_WAKE, EXT1_WAKE)
        time._hook = self

    # --- events on the virtual clock ---

    def reschedule(self):
        """Recompute due_us, the earliest pending event (-1: none)."""
        d = self.wdt_due
        for t in self.timers:
            if t._due >= 0 and (d < 0 or t._due < d):
                d = t._due
        w = self.world
        if w is not None and w.due_us >= 0 and (d < 0 or w.due_us < d):
            d = w.due_us
        self.due_us = d

    def fire(self, now):
        """Run the events due at virtual time `now` (us): timers, watchdog, the world."""
        for t in self.timers:
            if 0 <= t._due <= now:
                t._expire(now)
        if 0 <= self.wdt_due <= now:
            self.wdt_due = -1
            request("W", "watchdog")
        w = self.world
        if w is not None and 0 <= w.due_us <= now:
            w.on_time(now)
        self.reschedule()

    def sync(self):
        """Bring the world up to now (before the firmware reads a sensor)."""
        w = self.world
        if w is not None:
            w.advance(time.ticks_us())

    def pin(self, gpio):
        """The singleton Pin for a GPIO number (created unconfigured if new)."""
        p = self.pins.get(gpio)
        if p is None:
            if not isinstance(gpio, int) or not 0 <= gpio <= _MAX_GPIO:
                raise ValueError("invalid pin")
            p = object.__new__(Pin)
            p._create(gpio)
            self.pins[gpio] = p
        return p

    def bus(self, bus_id):
        b = self.buses.get(bus_id)
        if b is None:
            b = _Bus(bus_id)
            self.buses[bus_id] = b
        return b

    def schedule(self, handler, arg):
        """Queue a soft IRQ handler like mp_sched_schedule; False (and counted) when full."""
        if self._qn == SCHEDULE_DEPTH:
            self.dropped_irqs += 1
            return False
        i = (self._qh + self._qn) % SCHEDULE_DEPTH
        self._qf[i] = handler
        self._qa[i] = arg
        self._qn += 1
        if not self.defer:
            self.run_scheduled()
        return True

    def run_scheduled(self):
        """Run the queued handlers in order (what the VM does between bytecodes)."""
        while self._qn:
            i = self._qh
            handler = self._qf[i]
            arg = self._qa[i]
            self._qf[i] = None
            self._qa[i] = None
            self._qh = (i + 1) % SCHEDULE_DEPTH
            self._qn -= 1
            self.handled_irqs += 1
            handler(arg)

    @property
    def pending_irqs(self):
        return self._qn


board = _Board()

# machine.reset_cause() values of the ESP32 port.
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
# machine.wake_reason() values.
PIN_WAKE = EXT0_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4
TOUCHPAD_WAKE = 5
ULP_WAKE = 6
# Set by the boot (vrepl) from the runner's configuration.
_reset_cause = PWRON_RESET
_wake_reason = 0
_unique_id = b"\x24\x0a\xc4\x00\x00\x01"


def request(kind, arg=""):
    """Ask the board runner for a power state change and wait to be replaced (never returns).

    kind: "H" hard reset, "S" soft reset, "W" watchdog reset, "D" deep sleep
    (arg: ms). Without a runner (plain tests) it raises SystemExit instead.
    """
    ctl = getattr(board, "ctl", None)
    if ctl is None:
        raise SystemExit("machine: %s %s (no board runner)" % (kind, arg))
    try:
        sys.stdout.flush()
    except AttributeError:
        pass
    ctl.write("%s %s %d\n" % (kind, arg, board.world_us()))
    while True:  # the runner ends this interpreter; nothing else runs meanwhile
        try:
            utime.sleep_ms(1000)
        except KeyboardInterrupt:
            pass


def _world_us():
    return time.ticks_us() - board.world_off


board.world_off = 0
board.world_us = _world_us
board.ctl = None
board.repl_mode = "friendly"


def idle():
    """Wait for the next event (at most 1 ms of virtual time), as the ESP32 waits for an IRQ."""
    time.sleep_us(1000)


def reset():
    """Hard reset: the chip restarts, boot.py and main.py run again (reset_cause SOFT_RESET)."""
    request("H", "reset")


def soft_reset():
    """Soft reset: a new interpreter, as Ctrl-D at the REPL."""
    request("S", board.repl_mode)


def reset_cause():
    return _reset_cause


def wake_reason():
    return _wake_reason


def unique_id():
    """The chip's id: its base MAC address (6 bytes), as on the ESP32."""
    return _unique_id


def freq(hz=None):
    """The CPU clock: 20, 40, 80, 160 or 240 MHz (the simulation does not run any slower)."""
    if hz is None:
        return board.cpu_hz
    if hz not in (20000000, 40000000, 80000000, 160000000, 240000000):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    board.cpu_hz = hz
    return None


def lightsleep(time_ms=None):
    """Light sleep until time_ms (virtual) passes or a wake pin is at its level.

    Wake pins: `esp32.wake_on_ext0` / `wake_on_ext1` (level-triggered: a pin
    already at its level wakes at once). The world goes on (the drum, the
    button, the trace); the chip's clocks do not: the pulse counter counts no
    edge and pin IRQs see none (the edges that wake it are lost), and the
    machine Timers and the watchdog stand still, resuming with the time they
    had left. `wake_reason()` is then EXT0_WAKE, EXT1_WAKE or TIMER_WAKE.
    Without time_ms and wake pins it sleeps for good, as the chip does.
    """
    global _wake_reason
    b = board
    if b.ctl is not None:
        b.ctl.write("P light %d\n" % b.world_us())
    t0 = time.ticks_us()
    end = t0 + time_ms * 1000 if time_ms is not None and time_ms > 0 else -1
    paused = [(t, t._due) for t in b.timers]
    for t, _due in paused:
        t._due = -1
    wdt = b.wdt_due
    b.wdt_due = -1
    b.reschedule()
    b.woke = _pin_wake(b)  # level-triggered: a pin already at its level wakes at once
    b.asleep = not b.woke
    try:
        while b.asleep:  # a waking edge (Pin._update) clears it
            v = time.ticks_us()
            if 0 <= end <= v:
                b.woke = TIMER_WAKE
                break
            # Up to the next board event (time._wait cuts there and runs it), then look again.
            real = time._wait((end - v + 999) // 1000 if end >= 0 else -1)
            if real != 0:
                utime.sleep_ms(real if real > 0 else 1000)
    finally:
        b.asleep = False
        slept = time.ticks_us() - t0
        for t, due in paused:
            if due >= 0:
                t._due = due + slept
        if wdt >= 0:
            b.wdt_due = wdt + slept
        b.reschedule()
    _wake_reason = b.woke
    if b.ctl is not None:
        b.ctl.write("P on %d\n" % b.world_us())


def _pin_wake(b):
    """EXT0_WAKE or EXT1_WAKE when a configured wake pin is at its level, else 0."""
    if b.ext0_pin >= 0 and b.pin(b.ext0_pin)._level == b.ext0_level:
        return EXT0_WAKE
    pins = b.ext1_pins
    if pins:
        if b.ext1_level:
            for g in pins:
                if b.pin(g)._level:
                    return EXT1_WAKE
        else:
            for g in pins:
                if b.pin(g)._level:
                    return 0
            return EXT1_WAKE
    return 0


def deepsleep(time_ms=0):
    """Deep sleep: the chip powers down and, after time_ms (virtual), boots with DEEPSLEEP_RESET."""
    request("D", "%d" % (time_ms if time_ms else 0))


class Timer:
    """Hardware timer 0..3 on the virtual clock; the callback is a soft IRQ, as on the ESP32."""

    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id, **kwargs):
        if id not in (0, 1, 2, 3):
            raise ValueError("Timer(%r) doesn't exist" % (id,))
        self.id = id
        self._due = -1
        self._period_us = 0
        self._cb = None
        self._start = time.ticks_us()
        if kwargs:
            self.init(**kwargs)

    def init(self, *, mode=1, period=-1, freq=-1, callback=None):
        if freq > 0:
            us = 1000000 // freq
        elif period >= 0:
            us = period * 1000
        else:
            raise ValueError("period or freq required")
        self.deinit()
        self._mode = mode
        self._period_us = max(us, 1)
        self._cb = callback
        self._start = time.ticks_us()
        self._due = self._start + self._period_us
        board.timers.append(self)
        board.reschedule()

    def deinit(self):
        if self in board.timers:
            board.timers.remove(self)
        self._due = -1
        board.reschedule()

    def value(self):
        """Milliseconds since the timer was started."""
        return (time.ticks_us() - self._start) // 1000

    def _expire(self, now):
        if self._mode == Timer.PERIODIC:
            self._due += self._period_us
            if self._due <= now:  # fell far behind: keep the rate from now
                self._due = now + self._period_us
        else:
            self._due = -1
        if self._cb is not None:
            board.schedule(self._cb, self)


class WDT:
    """The task watchdog: feed() within `timeout` ms of virtual time or the board resets."""

    def __init__(self, id=0, timeout=5000):
        if timeout < 1:
            raise ValueError("timeout")
        board.wdt_ms = timeout
        self.feed()

    def feed(self):
        board.wdt_due = time.ticks_us() + board.wdt_ms * 1000
        board.reschedule()


# ADC full scale per attenuation (ESP32 datasheet, recommended ranges), microvolts.
_ADC_FULL_UV = (950000, 1250000, 1750000, 3100000)
_ADC_PINS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)


class ADC:
    """An ADC channel on a pad; the world sets the pad voltage with vboard.set_adc()."""

    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12

    def __init__(self, pin, *, atten=0):
        gpio = _pin_id(pin)
        if gpio not in _ADC_PINS:
            raise ValueError("invalid Pin for ADC")
        self.gpio = gpio
        self._atten = atten
        self._bits = 12

    def init(self, *, atten=None):
        if atten is not None:
            self.atten(atten)

    def atten(self, atten):
        if atten not in (0, 1, 2, 3):
            raise ValueError("invalid attenuation")
        self._atten = atten

    def width(self, bits):
        if bits not in (9, 10, 11, 12):
            raise ValueError("invalid width")
        self._bits = bits

    def read_uv(self):
        board.sync()
        uv = board.adc_uv.get(self.gpio, 0)
        full = _ADC_FULL_UV[self._atten]
        return full if uv > full else (uv if uv > 0 else 0)

    def read_u16(self):
        return self.read_uv() * 65535 // _ADC_FULL_UV[self._atten]

    def read(self):
        return self.read_uv() * ((1 << self._bits) - 1) // _ADC_FULL_UV[self._atten]


class _PinIRQ:
    """What Pin.irq() returns."""

    def __init__(self, pin):
        self._pin = pin

    def trigger(self):
        return self._pin._trigger

    def flags(self):
        return self._pin._flags


class Pin:
    """A GPIO; Pin(n) returns the same object for the same n, as on the ESP32."""

    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    def __new__(cls, id, *args, **kwargs):
        return board.pin(id)

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        self.init(mode, pull, value=value, drive=drive, hold=hold)

    def _create(self, gpio):
        self.id = gpio
        self._mode = Pin.IN
        self._pull = None
        self._out = 0
        self._ext = -1  # level driven from outside, -1 while nothing drives it
        self._level = 0
        self._handler = None
        self._trigger = 0
        self._flags = 0
        self._irq = _PinIRQ(self)
        self._watchers = []  # PCNT channels that count this pin's edges
        self._update()

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        """Reconfigure; arguments left out keep their current setting (drive/hold are accepted)."""
        if value is not None:
            self._out = 1 if value else 0
        if mode != -1:
            if mode not in (Pin.IN, Pin.OUT, Pin.OPEN_DRAIN):
                raise ValueError("invalid pin mode")
            self._mode = mode
        if pull != -1:
            if pull not in (None, Pin.PULL_UP, Pin.PULL_DOWN):
                raise ValueError("invalid pull")
            self._pull = pull
        self._update()

    def value(self, x=None):
        """Read the pin level, or set the output latch."""
        if x is None:
            return self._level
        self._out = 1 if x else 0
        self._update()
        return None

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def mode(self, mode=-1):
        if mode == -1:
            return self._mode
        self.init(mode)
        return None

    def pull(self, pull=-1):
        if pull == -1:
            return self._pull
        self.init(-1, pull)
        return None

    def irq(self, handler=None, trigger=3, *, priority=1, wake=None, hard=False):
        """Set a soft edge handler (IRQ_RISING and/or IRQ_FALLING); hard IRQs are refused."""
        if hard:
            raise ValueError("hard IRQ not supported on ESP32 pins")
        self._handler = handler
        self._trigger = trigger if handler is not None else 0
        return self._irq

    def __repr__(self):
        return "Pin(%d)" % self.id

    # --- the simulation side (vboard) ---

    def _drive(self, level):
        """Drive the pad from outside: 0, 1, or -1 to let it float."""
        self._ext = level
        self._update()

    def _glitch(self, width_ns):
        """A noise pulse of width_ns on the pad: two edges; a PCNT counts them only if
        the pulse is at least its glitch filter long. Returns the edges counted."""
        lvl = self._level
        counted = 0
        for ch in self._watchers:
            if width_ns * 80 // 1000 >= ch.unit.filter_ticks:
                ch.edge(not lvl)
                ch.edge(bool(lvl))
                counted += 2
        if self._handler is not None:
            for edge in (
                (Pin.IRQ_FALLING, Pin.IRQ_RISING) if lvl else (Pin.IRQ_RISING, Pin.IRQ_FALLING)
            ):
                if self._trigger & edge:
                    self._flags = edge
                    board.schedule(self._handler, self)
        return counted

    def _update(self):
        mode = self._mode
        ext = self._ext
        if mode == Pin.OUT or (mode == Pin.OPEN_DRAIN and self._out == 0):
            level = self._out
        elif ext >= 0:
            level = ext
        else:
            level = 1 if self._pull == Pin.PULL_UP else 0
        old = self._level
        if level == old:
            return
        self._level = level
        ctl = board.ctl
        if ctl is not None and mode != Pin.IN:  # an output: the LED, the motor (runner events)
            ctl.write("O %d %d %d\n" % (self.id, level, board.world_us()))
        if board.asleep:
            # Light sleep: this edge wakes the chip or not, but nothing clocked sees it.
            board.woke = _pin_wake(board)
            board.asleep = not board.woke
            return
        rising = level == 1
        for ch in self._watchers:
            ch.edge(rising)
        edge = Pin.IRQ_RISING if rising else Pin.IRQ_FALLING
        if self._trigger & edge:
            self._flags = edge
            board.schedule(self._handler, self)


class _Bus:
    """One I2C bus: devices by 7-bit address, some of them unplugged."""

    def __init__(self, bus_id):
        self.id = bus_id
        self.devices = {}
        self.unplugged = set()
        self.freq = 0
        self.scl = None
        self.sda = None
        self.transactions = 0
        self.bytes = 0

    def device(self, addr):
        dev = self.devices.get(addr)
        if dev is None or addr in self.unplugged:
            raise OSError(errno.ENODEV)
        return dev


def _pin_id(p):
    if p is None or isinstance(p, int):
        return p
    return p.id


class I2C:
    """Hardware I2C controller 0 or 1, connected to the simulated bus of that id."""

    def __init__(self, id=0, *, scl=None, sda=None, freq=400000, timeout=50000):
        if id not in (0, 1):
            raise ValueError("I2C(%r) doesn't exist" % (id,))
        self.id = id
        self._bus = board.bus(id)
        self.init(scl=scl, sda=sda, freq=freq, timeout=timeout)

    def init(self, *, scl=None, sda=None, freq=400000, timeout=50000):
        bus = self._bus
        bus.freq = freq
        if scl is not None:
            bus.scl = _pin_id(scl)
        if sda is not None:
            bus.sda = _pin_id(sda)
        self.timeout = timeout

    def deinit(self):
        pass

    def scan(self):
        """Addresses that acknowledge, in ascending order."""
        bus = self._bus
        return sorted(a for a in bus.devices if a not in bus.unplugged)

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        board.sync()
        bus = self._bus
        dev = bus.device(addr)
        dev.read(memaddr, buf)
        bus.transactions += 1
        bus.bytes += len(buf) + 2

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf, addrsize=addrsize)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        board.sync()
        bus = self._bus
        dev = bus.device(addr)
        dev.write(memaddr, buf)
        bus.transactions += 1
        bus.bytes += len(buf) + 2

    def writeto(self, addr, buf, stop=True):
        """Write; the first byte sets the device's register pointer, the rest are written."""
        board.sync()
        bus = self._bus
        dev = bus.device(addr)
        if len(buf):
            dev.pointer = buf[0]
            if len(buf) > 1:
                dev.write(buf[0], memoryview(buf)[1:])
        bus.transactions += 1
        bus.bytes += len(buf) + 1
        return 1 + len(buf)  # ACKs: address and every byte

    def readfrom_into(self, addr, buf, stop=True):
        """Read from the device's register pointer (set by a previous writeto)."""
        board.sync()
        bus = self._bus
        dev = bus.device(addr)
        dev.read(dev.pointer, buf)
        bus.transactions += 1
        bus.bytes += len(buf) + 1

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf, stop)
        return bytes(buf)


class _Channel:
    """One PCNT channel: count edges of `pin`, direction gated by `mode_pin`."""

    def __init__(self, unit, pin, falling, rising, mode_pin, mode_low):
        self.unit = unit
        self.pin = pin
        self.falling = falling
        self.rising = rising
        self.mode_pin = mode_pin
        self.mode_low = mode_low

    def edge(self, rising):
        if board.asleep:
            return  # light sleep: the PCNT's APB clock is off
        step = self.rising if rising else self.falling
        if not self.mode_pin._level:
            if self.mode_low == _HOLD:
                return
            step = -step  # _REVERSE
        self.unit._count += step


class Encoder:
    """Quadrature counter on a PCNT unit, as the ESP32 port builds it (singleton per id)."""

    def __new__(cls, id, *args, **kwargs):
        enc = board.encoders.get(id)
        if enc is None:
            if not isinstance(id, int) or not 0 <= id <= 7:
                raise ValueError("PCNT unit %r doesn't exist" % (id,))
            enc = object.__new__(cls)
            enc._channels = []
            enc._configured = False
            board.encoders[id] = enc
        return enc

    def __init__(self, id, *args, filter_ns=0, **kwargs):
        self.id = id
        if self._configured and not (args or kwargs):
            return  # Encoder(id) returns the running counter untouched
        self._configure(*args, **kwargs)
        self.filter_ticks = min(max(0, filter_ns * 80 // 1000), 1023)
        self.filter_ns = self.filter_ticks * 1000 // 80
        self._count = 0
        self._configured = True

    def _configure(self, phase_a, phase_b, phases=1):
        if phases not in (1, 2, 4):
            raise ValueError("phases")
        self._release()
        a = board.pin(_pin_id(phase_a))
        b = board.pin(_pin_id(phase_b))
        mode_low = _HOLD if phases == 1 else _REVERSE
        chans = [_Channel(self, a, _INCREMENT, _DECREMENT, b, mode_low)]
        if phases == 4:
            chans.append(_Channel(self, b, _DECREMENT, _INCREMENT, a, _REVERSE))
        for ch in chans:
            ch.pin._watchers.append(ch)
        self._channels = chans
        self._phases = phases

    def _release(self):
        for ch in self._channels:
            ch.pin._watchers.remove(ch)
        self._channels = []

    def init(self, *args, **kwargs):
        self.__init__(self.id, *args, **kwargs)

    def value(self, value=None):
        """The count; with an argument, also set it (returns the count before)."""
        if not self._configured:
            raise RuntimeError("not initialised")
        board.sync()
        result = self._count
        if value is not None:
            self._count = value
        return result

    def phases(self):
        return self._phases

    def deinit(self):
        self._release()
        self._configured = False
