"""roller.power on the virtual board: battery through the ADC, the LiPo curve, idle, policies."""

import time

import machine
import vboard
from mpytest import HeapWatch

from roller import power
from roller.power import ADV_FAST_US, ADV_SLOW_US, Battery, Idle, percent
from roller.settings import Settings

BAT_GPIO = 34


def test_curve_is_a_rising_table_from_3v3_to_4v2():
    c = power.CURVE
    assert c[0] == (3300, 0) and c[-1] == (4200, 100)
    for (v0, p0), (v1, p1) in zip(c, c[1:]):
        assert v1 > v0 and p1 > p0, (v0, v1)
    last = -1
    for mv in range(3000, 4500, 3):
        p = percent(mv)
        assert 0 <= p <= 100 and p >= last, (mv, p, last)
        last = p
    assert percent(2500) == 0 and percent(4350) == 100
    # Exact at the points, linear between them.
    for v, p in c:
        assert percent(v) == p, (v, p)
    assert percent(3890) == 62  # 60 % at 3870 mV, 65 % at 3910 mV
    assert percent(3455) == 2  # halfway 3300..3610 is 2.5 %, rounded down


def _battery(uv, divider=None):
    vboard.set_adc(BAT_GPIO, uv)
    s = Settings()
    if divider is not None:
        s.update({"battery_divider": divider})
    b = Battery(s)
    b.update()
    return b


def test_battery_voltage_through_the_adc_and_divider():
    vboard.reset()
    b = _battery(1950000)  # 3.90 V cell on the default 1:2 divider
    assert abs(b.mv - 3900) <= 1, b.mv
    assert b.pct == percent(b.mv) and 62 <= b.pct <= 63 and not b.low
    # A full cell reads 2.1 V on the pad: only 11 dB attenuation reaches that far
    # (6 dB stops at 1.75 V, which would read as 3.5 V).
    b = _battery(2100000)
    assert abs(b.mv - 4200) <= 1 and b.pct == 100, b.mv
    b = _battery(1300000, divider=3.0)
    assert abs(b.mv - 3900) <= 1, b.mv
    # The largest divider at full scale stays in small ints (and right).
    b = _battery(3100000, divider=10.0)
    assert b.mv == 31000, b.mv


def test_low_battery_threshold_has_hysteresis():
    vboard.reset()
    b = Battery(Settings())
    seen = []
    for mv in (3900, 3720, 3690, 3700, 3705, 3720, 3800, 3650):
        vboard.set_adc(BAT_GPIO, mv * 500)
        seen.append(b.update())
    # Low at 10 % (3690 mV), stays low until 15 % (3710 mV) is passed.
    assert seen == [False, False, True, True, True, False, False, True], seen
    assert b.pct == percent(3650)


def test_no_battery_adc_fitted():
    vboard.reset()
    s = Settings()
    s.update({"battery_adc": -1})
    b = Battery(s)
    assert b.adc is None and not b.update() and b.mv == -1 and b.pct == -1


def test_battery_read_allocates_nothing_but_the_adc():
    vboard.reset()
    vboard.set_adc(BAT_GPIO, 1900000)
    b = Battery(Settings())

    class Adc:  # the simulated ADC is Python; on the chip read_uv is C
        def read_uv(self):
            return 1900000

    b.adc = Adc()
    b.update()
    watch = HeapWatch()
    watch.call(b.update)
    assert watch.used() == 0 and b.mv == 3800


def test_idle_tracker():
    s = Settings()
    s.update({"idle_sleep_s": 60})
    idle = Idle(s, 1000, count=5)
    assert not idle.update(30000, 5)
    assert not idle.update(60999, 5)
    assert idle.update(61000, 5)  # 60 s without movement
    assert not idle.update(61010, 6)  # one count of movement restarts the wait
    assert not idle.update(121000, 6)
    assert idle.update(121010, 6)
    idle.poke(121020)  # the button, say
    assert not idle.due(150000) and idle.due(181020)
    assert idle.idle_ms(181020) == 60000
    s.update({"idle_sleep_s": 0})
    never = Idle(s, 0)
    assert not never.update(10**8, 0)


def test_advertising_interval_policy():
    assert power.adv_interval_us(0, -1) == ADV_FAST_US  # rolling
    assert power.adv_interval_us(9999, -1) == ADV_FAST_US
    assert power.adv_interval_us(10000, -1) == ADV_SLOW_US  # idle
    assert power.adv_interval_us(600000, 0) == ADV_FAST_US  # just (dis)connected
    assert power.adv_interval_us(600000, 29999) == ADV_FAST_US
    assert power.adv_interval_us(600000, 30000) == ADV_SLOW_US
    assert power.adv_interval_us(-1, -1) == ADV_SLOW_US
    assert ADV_FAST_US < ADV_SLOW_US
    # Both are whole 625 us units within BLE's 20 ms .. 10.24 s.
    for us in (ADV_FAST_US, ADV_SLOW_US):
        assert us % 625 == 0 and 20000 <= us <= 10240000


GRAY = (0, 2, 3, 1)  # (A << 1) | B at drum positions 0..3, as vboard rolls it


def _wakes(use, any_high, a, b):
    levels = [lv for lv, u in ((a, use[0]), (b, use[1])) if u]
    if any_high:
        return any(levels)
    return bool(levels) and not any(levels)


def test_encoder_wake_catches_two_counts_either_way_from_every_rest():
    for d in range(4):
        s = GRAY[d]
        a0, b0 = s >> 1, s & 1
        use, any_high = power.encoder_wake(a0, b0)
        assert not _wakes(use, any_high, a0, b0), (d, use, any_high)  # no wake at rest
        for direction in (1, -1):
            woke = 0
            for k in (1, 2):
                s = GRAY[(d + direction * k) & 3]
                if _wakes(use, any_high, s >> 1, s & 1):
                    woke = k
                    break
            assert woke, (d, direction)


def test_light_sleep_on_the_virtual_board_wakes_on_its_timer():
    vboard.reset()
    time.configure(1000, True)
    s = Settings()
    t0 = time.ticks_ms()
    reason = power.light_sleep(s, 5000)
    assert reason == machine.TIMER_WAKE
    assert 5000 <= time.ticks_diff(time.ticks_ms(), t0) < 5100
    try:
        import esp32  # noqa: F401
    except ImportError:
        pass
    else:
        raise AssertionError("the virtual board grew an esp32 module: test the wake sources")


_idle = None


def _idle_loop():
    moved = 0
    for t in range(0, 400000, 1000):
        if _idle.update(t, t // 50000):
            moved += 1
    return moved


def test_idle_update_allocates_nothing():
    global _idle
    s = Settings()
    s.update({"idle_sleep_s": 30})
    _idle = Idle(s, 0)
    watch = HeapWatch()
    due = watch.call(_idle_loop)
    assert watch.used() == 0, watch.used()
    assert due == 8 * 20  # 30..49 s of every 50 s stretch
