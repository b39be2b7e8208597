"""Runs the app's asyncio tasks: crash log, restart with backoff, watchdog, safe mode.

    sup = Supervisor(wdt_ms=8000)
    sup.add("sampler", lambda beat: sample(..., beat), stall_ms=2000)
    sup.add("ble", lambda beat: serve(..., beat), stall_ms=5000)
    asyncio.run(sup.run())

Each task is made by its factory, called with the task's `Beat`; the task
calls `beat.tick()` whenever it makes progress (allocation-free). When a task
raises an Exception (never KeyboardInterrupt or SystemExit: Ctrl-C still
stops the app), its traceback is printed and appended to the crash file,
and the task is made again after a backoff (0.5 s, doubling to 30 s; back to
0.5 s once a run lasted longer than the longest backoff). A task that
returns is done and no longer watched.

Watchdog: `run()` starts `machine.WDT(timeout=wdt_ms)` and feeds it every
wdt_ms / 4 only while every watched task has ticked within its stall_ms
(a task waiting out its backoff counts as alive). When one stalls, a
"stall" entry goes to the crash file and feeding stops: the WDT resets the
chip wdt_ms after the last feed (reset_cause() WDT_RESET), unless the task
ticks again before that, which resumes the feeding (the stall entry stays).
Once started, an ESP32 WDT cannot be stopped: when run() ends (Ctrl-C from
mpremote or a person at the REPL), a hardware timer (FEED_TIMER) takes over
the feeding, its soft-IRQ callback running while the REPL waits for input,
so the board stays at the REPL instead of resetting wdt_ms later. A soft
reset stops that timer but (on the ESP32) not the watchdog: main.py starts
again and feeds it; after a soft reset into the raw REPL, where main.py does
not run, the board resets wdt_ms later (use safe mode for long repairs).

Crash file (`crash.log` on flash): entries, oldest first, each
`=== t=<time.time()> ms=<ticks_ms> <kind> <task>` then the traceback; at most
`keep` entries of at most ENTRY_MAX bytes, so the file stays below
keep * ENTRY_MAX bytes. It is rewritten whole to `crash.log.tmp` and renamed
over the old one, so a power cut leaves the old or the new file. A damaged
file (torn, foreign bytes) is read as far as it makes sense, never fatal.

Safe mode (`safe_mode()`, for main.py): the flag file `safe_mode` on flash,
or the button held low for hold_ms within window_ms of boot, returns True
and main.py then returns at once, leaving the REPL to mpremote.
"""

import asyncio
import io
import os
import sys
import time

import machine
from micropython import const

CRASH_FILE = "crash.log"
FEED_TIMER = const(0)  # the hardware timer that feeds the WDT after run() ends
SAFE_FLAG = "safe_mode"
ENTRY_MAX = const(1024)  # bytes per crash entry, header included
_MARK = b"=== "
_SEP = b"\n=== "


class Beat:
    """One supervised task's heartbeat and counters."""

    def __init__(self, name, stall_ms):
        self.name = name
        self.stall_ms = stall_ms
        self.t = time.ticks_ms()
        self.crashes = 0
        self.waiting = False  # in its backoff: alive, not ticking
        self.done = False

    def tick(self):
        """The task made progress (call it from the task's loop)."""
        self.t = time.ticks_ms()


def read_entries(path, keep):
    """The last `keep` well-formed entries of the crash file, as bytes; [] if none/unreadable."""
    try:
        size = os.stat(path)[6]
        with open(path, "rb") as f:
            limit = keep * ENTRY_MAX
            if size > limit:
                f.seek(size - limit)
            data = f.read()
    except OSError:
        return []
    if not data.startswith(_MARK):
        i = data.find(_SEP)
        if i < 0:
            return []
        data = data[i + 1 :]
    out = []
    for part in data.split(_SEP):
        if not part:
            continue
        if not part.startswith(_MARK):
            part = _MARK + part
        if len(part) > ENTRY_MAX:
            part = part[:ENTRY_MAX]
        if not part.endswith(b"\n"):
            part += b"\n"
        out.append(part)
    return out[-keep:] if keep > 0 else []


def append_entry(path, keep, kind, name, text):
    """Append one entry (header + text) keeping the last `keep`; write-then-rename."""
    head = "=== t=%d ms=%s %s %s\n" % (time.time(), time.ticks_ms(), kind, name)
    body = head.encode() + text.encode()
    if len(body) > ENTRY_MAX:
        # Keep the header and the end of the traceback (where the error is).
        tail = ENTRY_MAX - len(head) - 4
        body = head.encode() + b"...\n" + body[len(body) - tail :]
    if not body.endswith(b"\n"):
        body += b"\n"
    entries = read_entries(path, keep - 1) if keep > 1 else []
    entries.append(body)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        for e in entries:
            f.write(e)
    os.rename(tmp, path)


def traceback_text(exc):
    """The traceback as sys.print_exception writes it."""
    buf = io.StringIO()
    sys.print_exception(exc, buf)
    return buf.getvalue()


class Supervisor:
    """Restarts crashed tasks, logs crashes, feeds the watchdog while all tasks tick."""

    def __init__(
        self,
        crash_path=CRASH_FILE,
        keep=4,
        wdt_ms=8000,
        backoff_ms=500,
        max_backoff_ms=30000,
    ):
        self.crash_path = crash_path
        self.keep = keep
        self.wdt_ms = wdt_ms
        self.check_ms = max(wdt_ms // 4, 10) if wdt_ms > 0 else 1000
        self.backoff_ms = backoff_ms
        self.max_backoff_ms = max_backoff_ms
        self.beats = []
        self.factories = []
        self.tasks = []
        self.wdt = None
        self.feeds = 0
        self.stalled = None  # the Beat that stopped the feeding, if any
        self.feeder = None  # the Timer feeding the WDT once run() has ended
        self._stop = False

    def add(self, name, factory, stall_ms=5000):
        """Supervise a task: factory(beat) returns its coroutine; returns the Beat."""
        beat = Beat(name, stall_ms)
        self.beats.append(beat)
        self.factories.append(factory)
        return beat

    def crash(self, kind, name, text):
        """Write a crash entry; a flash error is printed, never raised."""
        try:
            append_entry(self.crash_path, self.keep, kind, name, text)
        except OSError as e:
            print("supervisor: crash file:", e)

    async def _guard(self, i):
        beat = self.beats[i]
        factory = self.factories[i]
        backoff = self.backoff_ms
        while True:
            started = time.ticks_ms()
            beat.tick()
            try:
                await factory(beat)
                beat.done = True
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any task error is logged and restarted
                text = traceback_text(e)
                beat.crashes += 1
                print("supervisor: task %s crashed (%d)" % (beat.name, beat.crashes))
                print(text, end="")
                self.crash("crash", beat.name, text)
            if time.ticks_diff(time.ticks_ms(), started) > self.max_backoff_ms:
                backoff = self.backoff_ms
            beat.waiting = True
            await asyncio.sleep_ms(backoff)
            beat.waiting = False
            backoff = min(backoff * 2, self.max_backoff_ms)

    def check(self, now):
        """The first watched task that has not ticked within its stall_ms, or None."""
        for beat in self.beats:
            if beat.done or beat.waiting:
                continue
            if time.ticks_diff(now, beat.t) > beat.stall_ms:
                return beat
        return None

    def stop(self):
        """Make run() cancel the tasks and return (tests; the device never stops)."""
        self._stop = True

    async def run(self, wdt=None):
        """Start the tasks and watch them; feeds `wdt` (default: a new machine.WDT)."""
        if wdt is None and self.wdt_ms > 0:
            wdt = machine.WDT(timeout=self.wdt_ms)
        self.wdt = wdt
        self.tasks = [asyncio.create_task(self._guard(i)) for i in range(len(self.beats))]
        try:
            while not self._stop:
                stalled = self.check(time.ticks_ms())
                if stalled is None:
                    self.stalled = None
                    if wdt is not None:
                        wdt.feed()
                        self.feeds += 1
                elif self.stalled is None:
                    self.stalled = stalled
                    msg = "no tick for %d ms\n" % time.ticks_diff(time.ticks_ms(), stalled.t)
                    print("supervisor: task %s stalled: %s" % (stalled.name, msg), end="")
                    self.crash("stall", stalled.name, msg)
                await asyncio.sleep_ms(self.check_ms)
        finally:
            for t in self.tasks:
                t.cancel()
            if wdt is not None:
                self.feeder = machine.Timer(FEED_TIMER)
                self.feeder.init(period=self.check_ms, callback=lambda _t: wdt.feed())


def safe_mode(button=-1, flag=SAFE_FLAG, hold_ms=200, window_ms=600):
    """True when main.py should not start the app: the flag file, or the button held.

    The button (active low, pull-up) counts as held when it reads low for
    hold_ms without a break within window_ms of the call. On boards where
    the button is GPIO0, holding it through reset enters the ROM bootloader,
    so press it just after reset. Clear the flag with `mpremote rm :safe_mode`.
    """
    try:
        os.stat(flag)
        return True
    except OSError:
        pass
    if button < 0 or window_ms <= 0:
        return False
    pin = machine.Pin(button, machine.Pin.IN, machine.Pin.PULL_UP)
    start = time.ticks_ms()
    low_since = start
    held = False
    while True:
        now = time.ticks_ms()
        if pin.value() == 0:
            if not held:
                held = True
                low_since = now
            if time.ticks_diff(now, low_since) >= hold_ms:
                return True
        else:
            held = False
            if time.ticks_diff(now, start) >= window_ms:
                return False
        time.sleep_ms(10)
