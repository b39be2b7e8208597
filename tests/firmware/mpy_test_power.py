"""roller.power on the virtual board: battery through the ADC, the LiPo curve, idle, policies."""

import time

import machine
import vboard
from mpytest import HeapWatch

from roller import power
from roller.power import Battery, Idle, percent
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
    assert not idle.update(61010, 7)  # two counts of movement restart the wait
    assert not idle.update(121000, 8)  # one count (jitter_counts) is a flicker at rest
    assert idle.update(121010, 6)
    idle.poke(121020)  # the button, say
    assert not idle.due(150000) and idle.due(181020)
    assert idle.idle_ms(181020) == 60000
    s.update({"idle_sleep_s": 0})
    never = Idle(s, 0)
    assert not never.update(10**8, 0)


def test_advertising_slows_when_still_and_no_link_changed_lately():
    assert not power.adv_idle(0, -1)  # rolling
    assert not power.adv_idle(9999, -1)
    assert power.adv_idle(10000, -1)  # still for 10 s
    assert not power.adv_idle(600000, 0)  # just (dis)connected
    assert not power.adv_idle(600000, 29999)
    assert power.adv_idle(600000, 30000)
    assert power.adv_idle(-1, -1)


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


class _Roll:
    """A world that turns the drum by `steps` counts at virtual time `at_us` (one event)."""

    def __init__(self, at_us, steps):
        self.due_us = at_us
        self.steps = steps

    def advance(self, v):
        pass

    def on_time(self, v):
        self.due_us = -1
        vboard.set_drum(vboard.drum() + self.steps)


def _asleep_board():
    """A fresh board on a skipping clock: button pad pulled up, the PCNT on the drum."""
    vboard.reset()
    time.configure(1000, True)
    machine.Pin(0, machine.Pin.IN, machine.Pin.PULL_UP)
    return machine.Encoder(0, machine.Pin(32), machine.Pin(33), phases=4)


def _world_at(world, ms):
    world.due_us = time.ticks_us() + ms * 1000
    machine.board.world = world
    machine.board.reschedule()


def test_light_sleep_wakes_on_its_timer_and_pauses_the_watchdog():
    _asleep_board()
    wdt = machine.WDT(timeout=1000)  # would reset the board 1 s in, were it running
    s = Settings()
    t0 = time.ticks_ms()
    reason = power.light_sleep(s, 5000)
    assert reason == machine.TIMER_WAKE
    assert 5000 <= time.ticks_diff(time.ticks_ms(), t0) < 5100
    # The watchdog kept the second it had left.
    assert 990000 <= machine.board.wdt_due - time.ticks_us() <= 1000000
    wdt.feed()


def test_light_sleep_wakes_on_the_drum_either_way_losing_at_most_two_counts():
    s = Settings()
    for start in range(4):
        for direction in (1, -1):
            enc = _asleep_board()
            vboard.set_drum(start)
            enc.value(0)
            _world_at(_Roll(0, 10 * direction), 3000)
            t0 = time.ticks_us()
            reason = power.light_sleep(s)
            slept = time.ticks_us() - t0
            assert reason == machine.EXT1_WAKE, (start, direction, reason)
            assert 3000000 <= slept < 3100000, slept
            # The edges up to the waking one came with the PCNT's clock off.
            lost = 10 - enc.value() * direction
            assert 1 <= lost <= 2, (start, direction, enc.value())


def test_light_sleep_wakes_on_the_button_and_its_irq_misses_the_press():
    enc = _asleep_board()
    edges = []
    machine.Pin(0).irq(lambda p: edges.append(p.value()))

    class Press(_Roll):
        def on_time(self, v):
            self.due_us = -1
            vboard.drive(0, 0)

    _world_at(Press(0, 0), 2000)
    assert power.light_sleep(Settings()) == machine.EXT0_WAKE
    assert edges == [] and machine.Pin(0).value() == 0
    vboard.drive(0, 1)  # awake: the release is seen
    assert edges == [1] and enc.value() == 0


def test_a_pad_already_at_its_wake_level_wakes_at_once():
    _asleep_board()
    vboard.drive(0, 0)  # the button held down
    t0 = time.ticks_us()
    assert power.light_sleep(Settings(), 5000) == machine.EXT0_WAKE
    assert time.ticks_us() - t0 < 100000


def test_wake_pins_are_rtc_gpios_as_on_the_esp32():
    import esp32

    esp32.wake_on_ext1([machine.Pin(33)], esp32.WAKEUP_ANY_HIGH)
    for gpio in (5, 16, 23):
        try:
            esp32.wake_on_ext0(machine.Pin(gpio), esp32.WAKEUP_ALL_LOW)
        except ValueError:
            pass
        else:
            raise AssertionError("GPIO%d cannot wake an ESP32" % gpio)
    esp32.wake_on_ext1(None)  # None keeps the pins, as the port's modesp32.c does
    assert machine.board.ext1_pins == (33,) and machine.board.ext1_level


_idle = None


def _idle_loop():
    moved = 0
    for t in range(0, 400000, 1000):
        if _idle.update(t, t // 50000 * 2):  # two counts: beyond jitter_counts
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
