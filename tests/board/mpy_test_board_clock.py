"""The virtual board's clock, `select`, and the machine functions added for the board (MicroPython).

Each test runs in a fresh interpreter (tests/conftest.py), so changing the
clock's speed here does not leak into other tests.
"""

import asyncio
import os
import time

import machine
import utime
import vboard
from mpytest import raises


def _real_ms(fn):
    t = utime.ticks_ms()
    fn()
    return utime.ticks_diff(utime.ticks_ms(), t)


def test_shadows_are_the_board_modules():
    assert hasattr(time, "configure") and hasattr(time, "_wait")
    import select

    assert hasattr(select, "_Poll")
    assert time.ticks_diff is utime.ticks_diff  # the built-in arithmetic, fast and alloc-free


def test_speed_scales_sleeps_and_ticks():
    time.configure(20000, False)  # 20x
    v0 = time.ticks_ms()
    real = _real_ms(lambda: time.sleep_ms(1000))
    v = time.ticks_diff(time.ticks_ms(), v0)
    assert 1000 <= v < 1100, v
    assert 35 <= real < 150, real  # 1000 / 20 = 50 ms


def test_skip_jumps_over_idle_waits_and_asyncio_follows():
    time.configure(1000, True)
    v0 = time.ticks_ms()
    real = _real_ms(lambda: time.sleep(30))
    assert time.ticks_diff(time.ticks_ms(), v0) >= 30000
    assert real < 50, real
    stamps = []

    async def ticker():
        for _ in range(100):
            await asyncio.sleep_ms(250)
            stamps.append(time.ticks_ms())

    v0 = time.ticks_ms()
    real = _real_ms(lambda: asyncio.run(ticker()))
    assert real < 200, real
    gaps = [time.ticks_diff(b, a) for a, b in zip(stamps, stamps[1:])]
    assert min(gaps) >= 250 and max(gaps) <= 252, (min(gaps), max(gaps))
    assert time.ticks_diff(stamps[-1], v0) >= 25000


def test_busy_wait_ends_in_skip_mode():
    time.configure(1000, True)
    t = time.ticks_ms()
    n = 0
    while time.ticks_diff(time.ticks_ms(), t) < 20:  # no wait: real time passes at speed 1
        n += 1
    assert n > 0


def test_timer_fires_on_virtual_time_in_sleep_and_asyncio():
    time.configure(1000, True)
    vboard.reset()
    hits = []
    tim = machine.Timer(0, mode=machine.Timer.PERIODIC, period=100, callback=hits.append)
    time.sleep_ms(1000)
    assert len(hits) == 10 and hits[0] is tim, len(hits)
    one = []
    machine.Timer(1, mode=machine.Timer.ONE_SHOT, period=50, callback=one.append)

    async def idle():
        await asyncio.sleep_ms(1000)

    asyncio.run(idle())
    assert len(one) == 1 and len(hits) == 20, (len(one), len(hits))
    tim.deinit()
    time.sleep_ms(500)
    assert len(hits) == 20
    raises(ValueError, machine.Timer, 4)


def test_watchdog_resets_when_not_fed():
    time.configure(1000, True)
    vboard.reset()
    wdt = machine.WDT(timeout=2000)
    for _ in range(5):
        time.sleep_ms(1500)
        wdt.feed()
    # Without a board runner the reset request ends the program (SystemExit).
    e = raises(SystemExit, time.sleep_ms, 2500)
    assert "W" in str(e), str(e)


def test_adc_reads_the_pad_voltage_within_the_attenuation_range():
    vboard.reset()
    vboard.set_adc(35, 1950000)  # a 3.9 V battery through a 1:2 divider
    adc = machine.ADC(machine.Pin(35), atten=machine.ADC.ATTN_11DB)
    assert adc.read_uv() == 1950000
    assert adc.read() == 1950000 * 4095 // 3100000
    assert adc.read_u16() == 1950000 * 65535 // 3100000
    adc.atten(machine.ADC.ATTN_0DB)
    assert adc.read_uv() == 950000  # saturates at the range's top
    raises(ValueError, machine.ADC, machine.Pin(5))


def test_chip_functions():
    assert len(machine.unique_id()) == 6
    assert machine.freq() == 160000000
    machine.freq(240000000)
    assert machine.freq() == 240000000
    raises(ValueError, machine.freq, 123)
    assert machine.reset_cause() == machine.PWRON_RESET
    time.configure(1000, True)
    v0 = time.ticks_ms()
    machine.lightsleep(5000)
    assert time.ticks_diff(time.ticks_ms(), v0) >= 5000
    assert machine.wake_reason() == machine.TIMER_WAKE
    raises(SystemExit, machine.reset)
    raises(SystemExit, machine.deepsleep, 1000)


def test_glitch_filter_of_the_pulse_counter():
    vboard.reset()
    Pin = machine.Pin
    enc = machine.Encoder(0, Pin(32), Pin(33), phases=4, filter_ns=1000)
    vboard.set_drum(10)
    assert enc.value() == 10
    assert vboard.glitch(32, 500) == 0  # shorter than the filter: not counted
    assert vboard.glitch(32, 1000) == 2  # both edges counted: +1 and -1
    assert enc.value() == 10  # a whole pulse leaves the count where it was
    edges = []
    Pin(33).irq(lambda p: edges.append(p.value()), Pin.IRQ_RISING | Pin.IRQ_FALLING)
    vboard.glitch(33, 100)
    assert len(edges) == 2  # a pin IRQ sees even a filtered pulse


def test_os_lists_sizes_like_the_esp32():
    with open("_vb_size.txt", "w") as f:
        f.write("12345")
    try:
        entry = [e for e in os.ilistdir() if e[0] == "_vb_size.txt"][0]
        assert len(entry) == 4 and entry[3] == 5, entry
        assert "_vb_size.txt" in os.listdir()
    finally:
        os.remove("_vb_size.txt")


def _world_file(path, rows):
    from array import array

    a = array("i")
    for r in rows:
        a.extend(r)
    with open(path, "wb") as f:
        f.write(a)


def test_world_follows_the_virtual_clock_lazily():
    time.configure(1000, True)
    vboard.reset()
    path = "_vb_world.bin"
    # 100 Hz rows: the drum moves 1 count per row for 1 s, accel x = t_ms.
    _world_file(path, [(t * 10, t, t * 10, 0, 1000, 0, 0, 0, 1) for t in range(101)])
    try:
        t0 = 5000000
        w = vboard.World(
            {
                "trace": path,
                "start_ms": 5100,
                "imu": {"kind": "mpu6050"},
                "button": {"gpio": 0, "presses": [[5300, 5400]]},
            },
            t0,
        )
        Pin = machine.Pin
        enc = machine.Encoder(0, Pin(32), Pin(33), phases=4, filter_ns=1000)
        button = Pin(0, Pin.IN, Pin.PULL_UP)

        def world_ms():
            return (time.ticks_us() - machine.board.world_off) // 1000

        assert 5000 <= world_ms() < 5100 and button.value() == 1
        assert enc.value() == 0  # before the trace starts: its first row
        for until in (5150, 5250, 5333):
            time.sleep_ms(until - world_ms())
            count = enc.value()
            assert count == (world_ms() - 5100) // 10, (count, world_ms())
        assert button.value() == 0  # pressed 5300..5400
        time.sleep_ms(5450 - world_ms())
        assert button.value() == 1
        time.sleep_ms(2000)  # past the end: the last row holds
        assert enc.value() == 100
        # The IMU is fed at the rate its registers set: 100 Hz (DLPF on, divider 9).
        i2c = machine.I2C(0)
        i2c.writeto_mem(0x68, 0x1A, b"\x01")
        i2c.writeto_mem(0x68, 0x19, b"\x09")
        n0, t0 = w.pushed, time.ticks_us()
        time.sleep_ms(1000)
        enc.value()  # a read brings the world up to now
        expect = time.ticks_diff(time.ticks_us(), t0) // 10000
        assert abs(w.pushed - n0 - expect) <= 1, (w.pushed - n0, expect)
    finally:
        os.remove(path)


def test_the_boards_mount_parsing_is_the_firmwares():
    from roller.settings import parse_mount

    for m in ("x,y,z", "x,-z,y", "-y,x,-z", "z,y,x"):
        assert vboard.parse_mount(m) == parse_mount(m), m
    raises(ValueError, vboard.parse_mount, "x,x,z")
