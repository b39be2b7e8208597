"""The virtual board's clock: a `time` module whose time is virtual.

This file shadows the unix port's built-in `time` when its folder is on
MICROPYPATH; the firmware and the frozen asyncio (`from time import
ticks_ms, ...`) use it unchanged. The real clock is `utime`.

Virtual time, in microseconds since this interpreter started (a boot of the
board), is

    virtual_us = skipped_us + real_elapsed_us * speed

- `speed` (set by `configure`, thousandths: 20000 = 20x): virtual time runs
  that many times faster than real time; a sleep of N virtual ms takes N /
  speed real ms.
- `skip` ("as fast as allowed"): whenever the firmware waits (time.sleep*,
  or asyncio waiting in select.poll, see this folder's `select.py`), virtual
  time jumps to the end of the wait at once (`skipped_us` grows) instead of
  the process sleeping. Busy code still costs virtual time at `speed` x its
  real duration, so a busy-wait on ticks_ms() ends. The radio's calls are
  not charged (`_uncharge`) as far as the clock is ahead of the real one.

Waits are also cut short at the board's next event (`_hook.due_us`: machine
Timers, the watchdog, scheduled faults, the world's next button edge, the
heartbeat to the board runner); `_hook.fire(now_us)` runs what is due. So
those happen at their virtual time whether the firmware sleeps in
time.sleep_ms or in asyncio.

ticks_ms/ticks_us start from the host's monotonic clock (utime's), not 0
as on an ESP32: the C task queue of asyncio stamps a new task with the real
clock, so virtual time must never be behind it (hence speed >= 1; `boot_us()`
is the virtual time at this boot). ticks_add/ticks_diff are the built-in
ones: the unix port's ticks period is 2**62, not the ESP32's 2**30, and
asyncio's C task queue compares ticks with that period, so the 12.4-day
wrap-around of an ESP32 is not simulated here.
time() and friends are the host's epoch clock at boot plus virtual seconds.
Everything here is integer arithmetic: nothing allocates on the firmware's
paths (a tick under heap_lock stays allocation-free).
"""

import utime
from utime import sleep_us as _real_sleep_us
from utime import ticks_add, ticks_diff  # noqa: F401  (re-exported, as `time` has them)
from utime import ticks_us as _real_us

_speed = 1000  # virtual us per real ms (thousandths of the speed factor)
_skip = False
_real0 = _real_us()
_skipped = _real0  # virtual time starts at the real clock (see above)
_boot = _real0
_epoch0 = utime.time()
# The board's event source (machine.board): due_us (-1 none) and fire(now_us).
_hook = None


def configure(speed=1000, skip=False):
    """Set the speed (thousandths, at least 1000 = real time) and idle skipping; keeps the time."""
    global _speed, _skip, _skipped, _real0
    now = _vus()
    _real0 = _real_us()
    _skipped = now
    _speed = speed if speed >= 1000 else 1000
    _skip = bool(skip)


def boot_us():
    """Virtual time (ticks_us) when this interpreter started: the board's boot."""
    return _boot


def settings():
    """(speed in thousandths, skip)."""
    return _speed, _skip


def _vus():
    return _skipped + ticks_diff(_real_us(), _real0) * _speed // 1000


def _uncharge(real_us):
    """Give back the virtual time of `real_us` real microseconds the chip would not spend.

    The radio's calls (bluetooth.py) are round trips to the board runner's
    process here, a local NimBLE call of tens of microseconds on an ESP32;
    charging them would make the app look slower than it is. Never further
    back than the real clock (see the module doc): at speed 1 without skips
    nothing can be given back.
    """
    global _skipped
    floor = _real_us()
    give = real_us * _speed // 1000
    room = _vus() - floor
    if give > room:
        give = room
    if give > 0:
        _skipped -= give


def _check():
    # Run the board's due events (if any) at the current time.
    h = _hook
    if h is not None and h.due_us >= 0:
        v = _vus()
        if v >= h.due_us:
            h.fire(v)


def _wait(ms):
    """asyncio / poll wants to wait `ms` virtual ms (-1: until I/O); the real ms to poll for.

    Runs due board events first; cuts the wait at the next one; with `skip`
    jumps virtual time instead of waiting (and returns 0).
    """
    global _skipped
    v = _vus()
    h = _hook
    due = -1
    if h is not None:
        due = h.due_us
        if 0 <= due <= v:
            h.fire(v)
            return 0
    if ms < 0:
        if due < 0:
            return -1
        us = due - v
    else:
        us = ms * 1000
        if due >= 0 and v + us > due:
            us = due - v
    if _skip:
        _skipped += us
        if due >= 0 and v + us >= due:
            h.fire(v + us)
        return 0
    real = us * 1000 // _speed
    if real < 2000:
        if real > 0:
            _real_sleep_us(real)
        _check()
        return 0
    return real // 1000


def sleep_us(us):
    """Sleep `us` virtual microseconds (board events keep firing meanwhile)."""
    end = _vus() + us
    while True:
        left = end - _vus()
        if left <= 0:
            break
        ms = (left + 999) // 1000
        real = _wait(ms)
        if real > 0:
            _real_sleep_us(real * 1000)
    _check()


def sleep_ms(ms):
    if ms > 0:
        sleep_us(ms * 1000)


def sleep(s):
    if s > 0:
        sleep_us(int(s * 1000000))


def ticks_ms():
    return _vus() // 1000


def ticks_us():
    return _vus()


def ticks_cpu():
    return _vus()


def time():
    return _epoch0 + _vus() // 1000000


def time_ns():
    return (_epoch0 * 1000000 + _vus()) * 1000


def localtime(secs=None):
    return utime.localtime(time() if secs is None else secs)


def gmtime(secs=None):
    return utime.gmtime(time() if secs is None else secs)


def mktime(t):
    return utime.mktime(t)
