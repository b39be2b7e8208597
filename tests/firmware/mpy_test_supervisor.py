"""roller.supervisor on the virtual board: restarts, the crash file, the watchdog, safe mode."""

import asyncio
import os
import time

import vboard
from mpytest import raises

from roller import supervisor
from roller.supervisor import ENTRY_MAX, Supervisor, safe_mode


def tmpfile(tag):
    """A new file name under /tmp, unique to this run."""
    return "/tmp/dermaroll-sup-%s-%08x" % (tag, int.from_bytes(os.urandom(4), "little"))


def rm(path):
    for p in (path, path + ".tmp"):
        try:
            os.remove(p)
        except OSError:
            pass


def read(path):
    with open(path, "rb") as f:
        return f.read()


def entries(path):
    data = read(path)
    assert data.startswith(b"=== "), data[:40]
    return [b"=== " + e if not e.startswith(b"=== ") else e for e in data.split(b"\n=== ")]


def explode(n):
    raise ValueError("boom %d" % n)


def test_crashed_task_is_logged_and_restarted_with_backoff():
    time.configure(1000, True)
    vboard.reset()
    path = tmpfile("restart")
    sup = Supervisor(crash_path=path, wdt_ms=0, backoff_ms=500, max_backoff_ms=4000)
    starts = []

    async def flaky(beat):
        starts.append(time.ticks_ms())
        n = len(starts)
        beat.tick()
        await asyncio.sleep_ms(10)
        if n <= 4:
            explode(n)
        sup.stop()
        while True:
            beat.tick()
            await asyncio.sleep_ms(10)

    beat = sup.add("flaky", flaky)
    asyncio.run(sup.run())
    assert len(starts) == 5 and beat.crashes == 4
    gaps = [time.ticks_diff(b, a) for a, b in zip(starts, starts[1:])]
    # 10 ms of running plus a backoff doubling from 500 ms.
    for gap, backoff in zip(gaps, (500, 1000, 2000, 4000)):
        assert backoff + 10 <= gap <= backoff + 30, gaps
    es = entries(path)
    assert len(es) == 4, es
    for n, e in enumerate(es, 1):
        head = e.split(b"\n")[0]
        assert head.startswith(b"=== t=") and head.endswith(b" crash flaky"), head
        assert b"Traceback (most recent call last)" in e
        assert b"in explode" in e and (b"ValueError: boom %d" % n) in e, e
    rm(path)


def test_crash_file_keeps_the_last_entries_and_bounds_size():
    path = tmpfile("bound")
    for n in range(10):
        supervisor.append_entry(path, 3, "crash", "t", "Traceback\nValueError: boom %d\n" % n)
    es = entries(path)
    assert len(es) == 3 and b"boom 7" in es[0] and b"boom 9" in es[2], es
    # A huge traceback: cut to ENTRY_MAX bytes, keeping the header and the end.
    supervisor.append_entry(path, 3, "crash", "big", "x" * 5000 + "\nValueError: the end\n")
    es = entries(path)
    assert len(es) == 3 and len(es[2]) <= ENTRY_MAX, len(es[2])
    assert es[2].startswith(b"=== t=") and b"crash big" in es[2]
    assert es[2].endswith(b"ValueError: the end\n")
    assert len(read(path)) <= 3 * ENTRY_MAX
    assert not exists(path + ".tmp")  # renamed over the old file
    rm(path)


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def test_corrupt_crash_file_is_survived():
    path = tmpfile("corrupt")
    cases = (
        bytes(range(256)) * 20,  # foreign bytes, invalid UTF-8, no entry at all
        b"\xff\xfe garbage\n=== t=1 ms=2 crash old\nTraceback\nKept: yes\n=== t=3 ms=4 cr",
        b"",
        b"=== " + b"\xc3" * 9000,  # one torn, oversized entry
    )
    for case in cases:
        with open(path, "wb") as f:
            f.write(case)
        supervisor.append_entry(path, 4, "crash", "new", "ValueError: fresh\n")
        es = entries(path)
        assert es[-1].startswith(b"=== t=") and b"ValueError: fresh" in es[-1], es
        assert all(len(e) <= ENTRY_MAX for e in es)
        assert len(read(path)) <= 4 * ENTRY_MAX
        if case is cases[1]:
            assert len(es) == 3 and b"Kept: yes" in es[0], es
    # A file bigger than the bound is only read at its end.
    with open(path, "wb") as f:
        f.write(b"=== t=0 ms=0 crash ancient\n" + b"y\n" * 50000)
    assert len(supervisor.read_entries(path, 4)) <= 1
    supervisor.append_entry(path, 4, "crash", "new", "ValueError: fresh\n")
    assert len(read(path)) <= 4 * ENTRY_MAX
    rm(path)


def test_keyboard_interrupt_is_not_swallowed():
    time.configure(1000, True)
    path = tmpfile("kbd")
    sup = Supervisor(crash_path=path, wdt_ms=0)

    async def ctrl_c(beat):
        await asyncio.sleep_ms(5)
        raise KeyboardInterrupt

    sup.add("ctrl_c", ctrl_c)
    raises(KeyboardInterrupt, asyncio.run, sup.run())
    assert not exists(path)


def _run_two(stall_after_ms, wdt_ms=2000, run_ms=30000, resume_ms=-1):
    """Task 'steady' ticks; 'worker' ticks until stall_after_ms (-1: never), then only waits
    (until resume_ms, if given)."""
    time.configure(1000, True)
    vboard.reset()
    path = tmpfile("wdt")
    sup = Supervisor(crash_path=path, wdt_ms=wdt_ms)
    t0 = time.ticks_ms()

    async def steady(beat):
        while True:
            beat.tick()
            await asyncio.sleep_ms(100)

    async def worker(beat):
        while True:
            now = time.ticks_diff(time.ticks_ms(), t0)
            if stall_after_ms < 0 or now < stall_after_ms or 0 <= resume_ms <= now:
                beat.tick()
            if now >= run_ms:
                sup.stop()
            await asyncio.sleep_ms(50)

    sup.add("steady", steady, stall_ms=1000)
    sup.add("worker", worker, stall_ms=1000)
    try:
        asyncio.run(sup.run())
        fired = None
    except SystemExit as e:  # the simulated WDT without a board runner
        fired = str(e)
    return sup, path, fired, time.ticks_diff(time.ticks_ms(), t0)


def test_watchdog_is_fed_while_every_task_ticks():
    sup, path, fired, elapsed = _run_two(-1)
    assert fired is None and elapsed >= 30000
    assert sup.feeds >= 30000 // 500 - 1 and sup.stalled is None
    assert not exists(path)


def test_a_stalled_task_stops_the_feeding_and_the_watchdog_fires():
    sup, path, fired, elapsed = _run_two(5000)
    assert fired is not None and "watchdog" in fired, fired
    # Stalled at 5 s: noticed after its 1 s stall_ms (checks every 500 ms), then
    # the 2 s watchdog from the last feed.
    assert 7000 <= elapsed <= 8100, elapsed
    assert sup.stalled is not None and sup.stalled.name == "worker"
    es = entries(path)
    assert len(es) == 1 and b" stall worker" in es[0] and b"no tick for" in es[0], es
    rm(path)


def test_a_stall_that_ends_before_the_watchdog_resumes_the_feeding():
    # Stalled 5.0..6.3 s: noticed at the 6.0 s check (nothing fed after 5.5 s),
    # ticking again by the 6.5 s check, well before the 7.5 s reset.
    sup, path, fired, elapsed = _run_two(5000, resume_ms=6300)
    assert fired is None and elapsed >= 30000, fired
    assert sup.stalled is None
    es = entries(path)
    assert len(es) == 1 and b" stall worker" in es[0], es
    rm(path)


def test_safe_mode_by_flag_file():
    vboard.reset()
    flag = tmpfile("flag")
    assert not safe_mode(-1, flag)
    with open(flag, "w") as f:
        f.write("")
    assert safe_mode(-1, flag)
    assert safe_mode(0, flag)
    os.remove(flag)  # what `mpremote rm :safe_mode` does
    assert not safe_mode(-1, flag)


def test_safe_mode_by_held_button():
    time.configure(1000, True)
    vboard.reset()
    flag = tmpfile("noflag")
    vboard.drive(0, -1)  # released: the pull-up holds it high
    t0 = time.ticks_ms()
    assert not safe_mode(0, flag, hold_ms=200, window_ms=600)
    assert 600 <= time.ticks_diff(time.ticks_ms(), t0) <= 650
    vboard.drive(0, 0)  # held from boot
    t0 = time.ticks_ms()
    assert safe_mode(0, flag, hold_ms=200, window_ms=600)
    assert 200 <= time.ticks_diff(time.ticks_ms(), t0) <= 250
    # A press that starts inside the window and lasts hold_ms also counts.
    vboard.drive(0, -1)
    machine_timer_press(400, 300)
    assert safe_mode(0, flag, hold_ms=200, window_ms=600)
    # A short blip does not, nor do two short presses hold_ms apart.
    vboard.drive(0, -1)
    machine_timer_press(100, 50)
    assert not safe_mode(0, flag, hold_ms=200, window_ms=600)
    machine_timer_press(100, 100)
    machine_timer_press(350, 100, 2)
    assert not safe_mode(0, flag, hold_ms=200, window_ms=600)


def machine_timer_press(at_ms, for_ms, timer=0):
    """Press the button (GPIO0 low) at_ms from now for for_ms, on the virtual clock."""
    import machine

    def release(t):
        vboard.drive(0, -1)

    def press(t):
        vboard.drive(0, 0)
        machine.Timer(timer + 1, mode=machine.Timer.ONE_SHOT, period=for_ms, callback=release)

    machine.Timer(timer, mode=machine.Timer.ONE_SHOT, period=at_ms, callback=press)


def test_backoff_and_finished_tasks_do_not_starve_the_watchdog():
    time.configure(1000, True)
    vboard.reset()
    path = tmpfile("backoffwdt")
    # Backoff (3 s) longer than both the stall limit (1 s) and the watchdog (2 s).
    sup = Supervisor(crash_path=path, wdt_ms=2000, backoff_ms=3000, max_backoff_ms=3000)
    runs = []

    async def crashy(beat):
        runs.append(time.ticks_ms())
        await asyncio.sleep_ms(10)
        if len(runs) < 4:
            explode(len(runs))
        sup.stop()
        while True:
            beat.tick()
            await asyncio.sleep_ms(10)

    async def once(beat):
        beat.tick()

    sup.add("crashy", crashy, stall_ms=1000)
    done = sup.add("once", once, stall_ms=1000)
    asyncio.run(sup.run())  # a watchdog reset would raise SystemExit here
    assert len(runs) == 4 and done.done and sup.stalled is None
    assert time.ticks_diff(runs[-1], runs[0]) >= 9000
    assert len(entries(path)) == 3
    rm(path)
