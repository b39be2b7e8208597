"""roller.feedback on the virtual board: patterns by time, pin levels, priorities, pass rules."""

import asyncio
import time

import machine
import vboard
from mpytest import HeapWatch

from roller import feedback
from roller.detector import DIAGONAL, HORIZONTAL, VERTICAL
from roller.feedback import ERROR, LOW_BATTERY, NONE, ORDER, OVER, PAIRING, TARGET, Feedback
from roller.session import Session
from roller.settings import Settings

LED_GPIO = 2
MOTOR_GPIO = 25


def levels():
    return machine.Pin(LED_GPIO).value(), machine.Pin(MOTOR_GPIO).value()


def trace(fb, start, end, every=5):
    """Step fb from start to end ms; the (t, led, motor) points where the outputs change."""
    out = []
    last = None
    for t in range(start, end, every):
        fb.step(t)
        lv = levels()
        if lv != last:
            out.append((t, lv[0], lv[1]))
            last = lv
    return out


def test_pins_start_off_and_one_shot_plays_its_steps_then_stops():
    vboard.reset()
    fb = Feedback(Settings())
    assert machine.Pin(LED_GPIO).mode() == machine.Pin.OUT
    assert machine.Pin(MOTOR_GPIO).mode() == machine.Pin.OUT
    assert levels() == (0, 0)
    assert fb.show(OVER, 1000)
    assert levels() == (1, 1)  # show() starts at once: no wait for the task
    got = trace(fb, 1000, 1600)
    # Three 80 ms buzzes 80 ms apart, then off for good.
    assert got == [
        (1000, 1, 1),
        (1080, 0, 0),
        (1160, 1, 1),
        (1240, 0, 0),
        (1320, 1, 1),
        (1400, 0, 0),
    ], got
    assert fb.playing == NONE and fb.step(2000) == -1


def test_each_pattern_has_its_own_shape():
    vboard.reset()
    shapes = {}
    for p in (TARGET, OVER, ORDER, LOW_BATTERY):
        fb = Feedback(Settings())
        fb.show(p, 0)
        shapes[p] = tuple(trace(fb, 0, 3000))
    assert len(set(shapes.values())) == 4, shapes
    assert shapes[TARGET] == ((0, 1, 1), (300, 0, 0))
    assert shapes[ORDER] == ((0, 1, 1), (500, 0, 0), (750, 1, 1), (1250, 0, 0))
    assert all(m == 0 for _, _, m in shapes[LOW_BATTERY])  # LED only: saves the battery


def test_repeating_pattern_keeps_rhythm_until_cleared():
    vboard.reset()
    fb = Feedback(Settings())
    fb.show(PAIRING, 0)
    got = trace(fb, 0, 3050, every=10)
    assert got == [(t, (t // 500 + 1) % 2, 0) for t in range(0, 3001, 500)], got
    # Stepped coarsely (every 30 ms): each edge is seen within 30 ms of its
    # slot on the 500 ms grid; steps are timed from the plan, so nothing drifts.
    got = trace(fb, 3050, 9000, every=30)
    assert len(got) >= 11, got
    for t, led, _ in got[1:]:  # got[0] is where the trace starts, not an edge
        assert t % 500 < 30 and led == (t // 500 + 1) % 2, got
    # Stepped a whole step late (a busy loop): timed from now, no burst of steps.
    assert fb.step(12730) == 500
    fb.clear(PAIRING, 12800)
    assert levels() == (0, 0) and fb.playing == NONE and fb.step(5000) == -1


def test_priorities_error_and_pairing_win_over_pass_feedback():
    vboard.reset()
    fb = Feedback(Settings())
    fb.show(PAIRING, 0)
    assert not fb.show(TARGET, 100) and fb.playing == PAIRING and fb.dropped == 1
    assert not fb.show(LOW_BATTERY, 150) and fb.dropped == 2
    assert fb.show(ERROR, 200) and fb.playing == ERROR
    assert not fb.show(PAIRING, 250)  # wanted, waits under ERROR (not dropped)
    assert fb.dropped == 2
    fb.clear(ERROR, 300)
    assert fb.playing == PAIRING and levels() == (1, 0)  # pairing again, from its start
    fb.clear(PAIRING, 400)
    assert fb.playing == NONE and levels() == (0, 0)
    # A one-shot under nothing plays; a higher one-shot replaces it; a lower is dropped.
    assert fb.show(TARGET, 500) and fb.show(ORDER, 510) and fb.playing == ORDER
    assert not fb.show(OVER, 520) and fb.playing == ORDER


def test_one_shot_ends_back_into_the_repeat_and_a_cut_off_one_is_dropped():
    vboard.reset()
    fb = Feedback(Settings())
    fb.show(LOW_BATTERY, 1000)
    assert fb.show(PAIRING, 1010) and fb.playing == PAIRING  # higher: takes over now
    assert fb.dropped == 1  # the low-battery blink was cut off, and is not replayed
    fb.clear(PAIRING, 1020)
    assert fb.playing == NONE and levels() == (0, 0)
    # ERROR over PAIRING and back: the pairing blink starts again from its first step.
    fb.show(PAIRING, 2000)
    fb.show(ERROR, 2100)
    assert fb.playing == ERROR
    trace(fb, 2100, 3000)  # error keeps repeating
    assert fb.playing == ERROR
    fb.clear(ERROR, 3000)
    assert fb.playing == PAIRING and fb.index == 0 and levels() == (1, 0)


def test_absent_outputs_are_skipped():
    vboard.reset()
    s = Settings()
    s.update({"led": -1})
    fb = Feedback(s)
    assert LED_GPIO not in machine.board.pins  # never touched
    fb.show(TARGET, 0)
    assert machine.Pin(MOTOR_GPIO).value() == 1
    fb.step(300)
    assert machine.Pin(MOTOR_GPIO).value() == 0
    s.update({"led": 2, "motor": -1})
    vboard.reset()
    fb = Feedback(s)
    assert MOTOR_GPIO not in machine.board.pins
    fb.show(OVER, 0)
    assert machine.Pin(LED_GPIO).value() == 1


def _ses_pass(ses, fb, zone, direction):
    ses.on_pass(zone, direction, 0, 0, 100)
    return fb.on_pass(ses, zone, direction, 0)


def test_on_pass_target_over_order_rules():
    vboard.reset()
    s = Settings()
    ses = Session(s)
    fb = Feedback(s)
    z = 1
    got = [_ses_pass(ses, fb, z, VERTICAL) for _ in range(7)]
    # 4th vertical reaches the target, 5th is still ok (nothing), 6th and 7th are over.
    assert got == [NONE, NONE, NONE, TARGET, NONE, OVER, OVER], got
    assert _ses_pass(ses, fb, z, DIAGONAL) == NONE
    h = [_ses_pass(ses, fb, z, HORIZONTAL) for _ in range(4)]
    assert h == [NONE, NONE, NONE, TARGET], h  # vertical done first: no remark
    # Horizontal first in another zone: the order remark, once.
    z2 = 2
    assert _ses_pass(ses, fb, z2, HORIZONTAL) == ORDER
    assert ses.order(z2)
    assert _ses_pass(ses, fb, z2, HORIZONTAL) == NONE
    # Targets follow the settings.
    s.update({"target_min": 2, "target_max": 3})
    ses = Session(s)
    got = [_ses_pass(ses, fb, 3, VERTICAL) for _ in range(4)]
    assert got == [NONE, TARGET, NONE, OVER], got


async def _drive(fb, seen):
    t0 = time.ticks_ms()
    fb.show(OVER)
    assert time.ticks_diff(time.ticks_ms(), t0) == 0  # show() never waits
    last = None
    for _ in range(120):
        lv = levels()
        if lv != last:
            seen.append((time.ticks_diff(time.ticks_ms(), t0), lv[0]))
            last = lv
        await asyncio.sleep_ms(5)


def test_run_task_plays_patterns_beside_other_tasks():
    time.configure(1000, True)  # virtual time jumps over the waits
    vboard.reset()
    fb = Feedback(Settings())
    seen = []

    async def main():
        player = asyncio.create_task(fb.run())
        await _drive(fb, seen)
        player.cancel()

    asyncio.run(main())
    edges = [lv for _, lv in seen]
    assert edges == [1, 0, 1, 0, 1, 0], seen
    for (t0, _), (t1, _) in zip(seen, seen[1:]):
        assert 75 <= t1 - t0 <= 90, seen  # 80 ms steps, within a poll of the watcher


def _steps():
    fb = _fb
    t = 0
    fb.show(OVER, t)
    while t < 1000:
        fb.step(t)
        t += 10
    fb.show(PAIRING, t)
    fb.step(t + 600)
    fb.clear(PAIRING, t + 700)
    return fb.shown


_fb = None


class _Sink:
    """Stands in for a Pin: the simulated Pin's Python frames would count as the firmware's."""

    def __init__(self):
        self.v = 0
        self.writes = 0

    def value(self, x):
        self.v = x
        self.writes += 1


def test_show_and_step_allocate_nothing():
    global _fb
    vboard.reset()
    _fb = Feedback(Settings())
    _fb.led = _Sink()
    _fb.motor = _Sink()
    _steps()  # warm up
    watch = HeapWatch()
    writes = _fb.led.writes
    watch.call(_steps)
    assert watch.used() == 0, watch.used()
    assert _fb.led.writes - writes >= 8  # the patterns did run


def test_pattern_table_is_well_formed():
    assert len(feedback.STEPS) == len(feedback.NAMES) == ERROR + 1
    for steps in feedback.STEPS:
        assert len(steps) % 2 == 0 and len(steps) >= 2
        for i in range(0, len(steps), 2):
            assert steps[i] > 0 and steps[i + 1] & ~3 == 0


_ses = None


def _passes():
    n = 0
    for _ in range(8):
        _ses.on_pass(1, VERTICAL, 0, 0, 100)
        if _fb.on_pass(_ses, 1, VERTICAL, 0) != NONE:
            n += 1
    return n


def test_on_pass_allocates_nothing():
    global _fb, _ses
    vboard.reset()
    s = Settings()
    _fb = Feedback(s)
    _fb.led = _Sink()
    _fb.motor = _Sink()
    _ses = Session(s)
    watch = HeapWatch()
    shown = watch.call(_passes)
    assert watch.used() == 0, watch.used()
    assert shown == 4  # TARGET at 4, OVER at 6, 7, 8
