"""The sampler: fixed-rate encoder ticks, IMU drains, a time-ordered feed, no hidden losses."""

import asyncio
import gc
import time
from array import array

import micropython
import vboard
from simworld import LEVEL, UPRIGHT, World


class Rec:
    """A detector that records what it is fed."""

    def __init__(self):
        self.ev = []

    def accel(self, t, ax, ay, az):
        self.ev.append(("a", t, ax, ay, az))

    def enc(self, t, count, zone):
        self.ev.append(("e", t, count, zone))

    def flush(self):
        pass

    def kind(self, k):
        return [e for e in self.ev if e[0] == k]


def _in_time_order(ev):
    for prev, cur in zip(ev, ev[1:]):
        assert prev[1] <= cur[1], (prev, cur)
        if prev[1] == cur[1]:
            assert not (prev[0] == "e" and cur[0] == "a"), (prev, cur)  # accel first at equal times


def test_samples_reach_the_detector_in_time_order_with_their_times():
    rec = Rec()
    w = World("lsm6ds3", mount="-y,x,z", det=rec)
    pos_at = {0: 0}
    push_ms = []

    def watch(world):
        pos_at[world.ms] = vboard.drum()
        while len(push_ms) < world.pushed:
            push_ms.append(world.ms)

    plan = array("i", [600, 300, LEVEL, 1, 200, 0, LEVEL, 1])
    plan += array("i", [400, -300, UPRIGHT, 2, 300, 0, UPRIGHT, 2])
    w.run(plan, watch)
    w.sampler.flush()
    ev = rec.ev
    _in_time_order(ev)
    encs = rec.kind("e")
    assert [e[1] for e in encs] == list(range(0, 1501, 5)), [e[1] for e in encs][:10]
    for _, t, count, zone in encs:
        assert count == pos_at[t], (t, count, pos_at[t])
        # The session's zone when the tick was taken (none yet at t = 0; 2 from ms 801).
        assert zone == (0 if t == 0 else 1 if t <= 800 else 2), (t, zone)
    accs = rec.kind("a")
    assert len(accs) == len(push_ms) > 140, (len(accs), len(push_ms))
    for (_, t, ax, ay, az), pushed in zip(accs, push_ms):
        # Each burst is anchored at the drain: the timestamp is within one chip period.
        assert abs(t - pushed) <= 10, (t, pushed)
        g = (0, 600, 800) if pushed <= 800 else (1000, 0, 0)
        assert (ax, ay, az) == g, (t, pushed, ax, ay, az)


def test_late_ticks_are_counted_not_hidden():
    rec = Rec()
    w = World("mpu6050", det=rec)
    s = w.sampler
    n0 = w.now  # World ticked once at t=0
    add = time.ticks_add
    assert s.tick(add(n0, 5)) == 5
    s.tick(add(n0, 10))
    assert s.late == 0 and s.max_lag_ms == 0
    s.tick(add(n0, 27))  # the 15 and 20 ms slots were missed: a 12 ms lag
    assert (s.late, s.missed, s.max_lag_ms) == (1, 2, 12)
    assert s.tick(add(n0, 30)) == 2 and s.stats()["ticks"] == 4  # next slot at 32, not 30
    s.tick(add(n0, 33))
    assert s.stats()["ticks"] == 5 and s.late == 1 and s.max_lag_ms == 12
    assert s.stats()["late"] == 1 and s.stats()["missed"] == 2


def test_ticks_ms_wrap_around():
    rec = Rec()
    start = time.ticks_add(0, -50)  # 50 ms before ticks_ms wraps (2**30 on an ESP32)
    w = World("mpu6050", det=rec, start=start)
    w.hold(300)
    w.sampler.flush()
    assert w.now < start and time.ticks_diff(w.now, start) == 300  # the clock did wrap
    encs = rec.kind("e")
    assert [e[1] for e in encs] == list(range(0, 301, 5)), [e[1] for e in encs]
    _in_time_order(rec.ev)
    assert w.sampler.late == 0 and len(rec.kind("a")) >= 25


def test_fifo_overflow_during_a_stall_is_counted_and_no_travel_is_lost():
    rec = Rec()
    w = World("mpu6050", det=rec)
    w.hold(100)
    # A 1.5 s stall (a blocking flash write, say): the world goes on, nobody ticks.
    for i in range(1500):
        vboard.set_drum(i // 3)
        w.us += 1000
        while w.us >= w.imu_next:
            w.frame.push(w.model, 0, 600, 800, 0, 0, 0)
            w.imu_next += w.imu_period
        w.now = time.ticks_add(w.now, 1)
    w.pos = vboard.drum()
    w.hold(300)
    st = w.sampler.stats()
    assert st["imu_overflows"] == 1 and st["late"] == 1 and st["missed"] == 299, st
    assert 1490 <= st["max_lag_ms"] <= 1500, st
    _in_time_order(rec.ev)
    accs = rec.kind("a")
    # Nothing misaligned reached the detector.
    assert all(a[2:] == (0, 600, 800) for a in accs), accs
    after = [e for e in rec.kind("e") if e[1] > 100]
    assert after[0][2] == 499, after[0]  # the encoder count is cumulative: the stall lost no travel
    assert any(a[1] > 1700 for a in accs)  # and the IMU is back


def test_unplugged_imu_the_encoder_goes_on_and_the_imu_comes_back():
    rec = Rec()
    w = World("mpu6050", det=rec)
    w.hold(200)
    vboard.unplug(0, 0x68)
    w.run(array("i", [500, 100, LEVEL, 1]))
    vboard.plug(0, 0x68)  # power-cycled: the chip is back in its reset state
    w.hold(1500)
    w.sampler.flush()
    st = w.sampler.stats()
    assert st["imu_errors"] >= 1, st
    encs = rec.kind("e")
    assert len(encs) == 2200 // 5 + 1 and encs[-1][2] == 100, (len(encs), encs[-1])
    accs = rec.kind("a")
    assert not [a for a in accs if 300 < a[1] < 1100], accs
    assert len([a for a in accs if a[1] > 1300]) >= 30, st  # set up again and sampling
    _in_time_order(rec.ev)


def test_a_full_tick_buffer_forces_a_drain():
    rec = Rec()
    w = World("mpu6050", det=rec, imu_drain_ms=250)
    w.sampler._end = 3 * 3  # room for 3 ticks (the real buffer never fills: see Sampler.cap)
    w.hold(40)
    assert w.sampler.forced_drains == 2, w.sampler.forced_drains
    w.hold(300)
    w.sampler.flush()
    _in_time_order(rec.ev)
    assert [e[1] for e in rec.kind("e")] == list(range(0, 341, 5))


def test_async_run_ticks_on_the_device_clock_without_allocating():
    w = World("mpu6050")  # the real Detector and Session
    s = w.sampler
    state = {}

    async def main():
        task = asyncio.create_task(s.run())
        await asyncio.sleep_ms(20)  # the loop is running
        gc.collect()
        micropython.heap_lock()  # an allocation in the device loop now kills its task
        await asyncio.sleep_ms(200)
        micropython.heap_unlock()
        state["ticks"] = s.stats()["ticks"]
        state["alive"] = s.running and not task.done()
        s.stop()
        await task

    asyncio.run(main())
    assert state["alive"], state
    assert 40 <= state["ticks"] <= 60, state  # 220 ms at 5 ms
