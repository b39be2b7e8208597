"""Cost of the motion core per encoder tick and per IMU sample, in unix MicroPython.

    python bench/motion/bench_core.py [--quick]

Run with CPython it starts itself in the `micropython` interpreter (next to
this Python, or on PATH) with the firmware and the virtual board on
MICROPYPATH; results are recorded in bench/motion/README.md.

What is timed (each the median of repeated runs, every run under
micropython.heap_lock(), so a GC pause cannot land in a measurement and an
allocation would stop the benchmark):

- encoder tick: Sampler.tick() at 200 Hz with its share of the drains that
  feed det.enc() (real Detector + Session over a back-and-forth motion that
  makes passes), the encoder read being a Python method returning the next
  count (about what machine.Encoder.value() costs in bytecode on an ESP32);
- IMU sample, per chip family: a drain of 8 samples (80 ms at 100 Hz) through
  the real driver with the bus replaced by a stub that answers the status
  registers and leaves the FIFO bytes in place: pending() + burst read() +
  decode + timestamps + det.accel() (gravity filter), divided by 8. The I2C
  wire time (about 0.7 ms per transaction on an ESP32, 2-3 per drain) is not
  CPU work of ours and is reported apart;
- the parts: det.enc, det.accel, decode per sample (bytecode and viper), an
  empty loop iteration; each also as a ratio to the empty loop of the same
  run, which is what carries over between machines.

The ESP32 projection multiplies by 50-100 (unix MicroPython on a desktop
core runs bytecode roughly that much faster than a 240 MHz ESP32).
"""

import sys

if sys.implementation.name != "micropython":
    import os
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    exe = Path(sys.executable).with_name("micropython")
    exe = str(exe) if exe.exists() else shutil.which("micropython")
    if exe is None:
        sys.exit("bench_core: the `micropython` interpreter is not installed")
    paths = ["firmware", "host/dermaroll/board/device", "tests/firmware", "tests/mpy_lib"]
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([str(root / p) for p in paths] + [".frozen"])
    sys.exit(subprocess.call([exe, __file__] + sys.argv[1:], env=env, cwd=str(root)))

import gc  # noqa: E402
import time  # noqa: E402
from array import array  # noqa: E402

import micropython  # noqa: E402
import vboard  # noqa: E402

from roller.detector import Detector  # noqa: E402
from roller.drivers.imu import decode, open_imu  # noqa: E402
from roller.sampler import Sampler  # noqa: E402
from roller.session import Session  # noqa: E402
from roller.settings import Settings  # noqa: E402

QUICK = "--quick" in sys.argv
RUNS = 3 if QUICK else 9
TICKS = 2000 if QUICK else 20000  # encoder ticks per run (100 s of rolling at full size)
DRAINS = 200 if QUICK else 2000  # IMU drains per run
PER_DRAIN = 8
ESP32_SLOW = (50, 100)


def decode_bytecode(buf, n, conf, out):
    """roller.drivers.imu.decode (viper there) as plain bytecode with cached locals, to compare."""
    h0 = conf[0]
    l0 = conf[1]
    k0 = conf[2]
    h1 = conf[3]
    l1 = conf[4]
    k1 = conf[5]
    h2 = conf[6]
    l2 = conf[7]
    k2 = conf[8]
    h3 = conf[9]
    l3 = conf[10]
    k3 = conf[11]
    h4 = conf[12]
    l4 = conf[13]
    k4 = conf[14]
    h5 = conf[15]
    l5 = conf[16]
    k5 = conf[17]
    sa = conf[18]
    sg = conf[19]
    ra = (1 << sa) >> 1
    rg = (1 << sg) >> 1
    q = 0
    for p in range(0, n * 12, 12):
        v = (buf[p + h0] << 8) | buf[p + l0]
        out[q] = (((v ^ 0x8000) - 0x8000) * k0 + ra) >> sa
        v = (buf[p + h1] << 8) | buf[p + l1]
        out[q + 1] = (((v ^ 0x8000) - 0x8000) * k1 + ra) >> sa
        v = (buf[p + h2] << 8) | buf[p + l2]
        out[q + 2] = (((v ^ 0x8000) - 0x8000) * k2 + ra) >> sa
        v = (buf[p + h3] << 8) | buf[p + l3]
        out[q + 3] = (((v ^ 0x8000) - 0x8000) * k3 + rg) >> sg
        v = (buf[p + h4] << 8) | buf[p + l4]
        out[q + 4] = (((v ^ 0x8000) - 0x8000) * k4 + rg) >> sg
        v = (buf[p + h5] << 8) | buf[p + l5]
        out[q + 5] = (((v ^ 0x8000) - 0x8000) * k5 + rg) >> sg
        q += 6
    return n


def timed(func, arg):
    """Median microseconds of func(arg) over RUNS runs, each with the heap locked."""
    results = []
    for _ in range(RUNS):
        gc.collect()
        micropython.heap_lock()
        try:
            t0 = time.ticks_us()
            func(arg)
            dt = time.ticks_diff(time.ticks_us(), t0)
        finally:
            micropython.heap_unlock()
        results.append(dt)
    results.sort()
    return results[len(results) // 2]


def empty_loop(n):
    for _ in range(n):
        pass


def motion(n):
    """Counts of a back-and-forth roll: 30 mm strokes (212 counts) in 120 ticks, 60-tick pauses."""
    counts = array("i", bytes(4 * n))
    pos = 0
    for i in range(n):
        phase = i % 360
        if phase < 120:
            pos += 2 if phase % 4 else 1
        elif 180 <= phase < 300:
            pos -= 2 if phase % 4 else 1
        counts[i] = pos
    return counts


class BenchEncoder:
    def __init__(self, counts):
        self.counts = counts
        self.i = 0
        self.errors = 0
        self.read = self._read

    def _read(self):
        i = self.i
        self.i = i + 1
        return self.counts[i]


class Zone:
    zone = 1


class StubBus:
    """Answers status/count registers from a register file; FIFO reads leave the buffer alone."""

    def __init__(self, fifo_reg):
        self.regs = bytearray(256)
        self.fifo_reg = fifo_reg

    def readfrom_mem_into(self, addr, reg, buf):
        if reg == self.fifo_reg:
            return
        r = self.regs
        for i in range(len(buf)):
            buf[i] = r[reg + i]

    def writeto_mem(self, addr, reg, buf):
        pass


def settings():
    s = Settings()
    s.update({"mount": "-y,x,z"})
    return s


def bench_tick():
    s = settings()
    counts = motion(TICKS + 1)
    runs = []
    results = {}

    def one(n):
        ses = Session(s)
        det = Detector(s, ses)
        enc = BenchEncoder(counts)
        smp = Sampler(s, det, enc, None, Zone())
        smp.start(0)  # the bench's clock starts at 0
        runs.append((smp, ses))
        return smp

    def run(smp):
        now = 0
        for _ in range(TICKS):
            smp.tick(now)  # a method call; `f = smp.tick` would allocate a bound method
            now += 5
        smp.flush()

    # Build every run's objects first: the timed part only ticks.
    gc.collect()
    total = []
    for _ in range(RUNS):
        smp = one(0)
        gc.collect()
        micropython.heap_lock()
        try:
            t0 = time.ticks_us()
            run(smp)
            dt = time.ticks_diff(time.ticks_us(), t0)
        finally:
            micropython.heap_unlock()
        total.append(dt)
    total.sort()
    smp, ses = runs[-1]
    results["tick"] = total[len(total) // 2] / TICKS
    results["passes"] = ses.seq
    results["late"] = smp.late

    enc = BenchEncoder(counts)

    def reads(n):
        r = enc.read
        for _ in range(n):
            enc.i = 0
            r()

    results["read"] = timed(reads, TICKS) / TICKS

    def enc_only(n):
        det = det_enc
        for i in range(n):
            det.enc(5 * i, counts[i], 1)

    det_enc = Detector(s, Session(s))
    results["det.enc"] = timed(enc_only, TICKS) / TICKS
    return results


def bench_imu(kind):
    s = settings()
    vboard.reset()
    model = vboard.attach_imu(kind)
    imu = open_imu(s)
    frame = vboard.ChipFrame("-y,x,z")
    for i in range(PER_DRAIN):
        frame.push(model, 30 * i, 600 - i, 800, 1000 * i, -500, 20000)
    assert imu.read(imu.pending()) == PER_DRAIN  # the raw buffer now holds real FIFO bytes
    fifo_reg = {"mpu6050": 0x74, "lsm6ds3": 0x3E, "lsm6dso": 0x78}[kind]
    bus = StubBus(fifo_reg)
    if kind == "mpu6050":
        bus.regs[0x73] = PER_DRAIN * 12  # FIFO_COUNT; INT_STATUS 0: no overflow
    elif kind == "lsm6ds3":
        bus.regs[0x3A] = PER_DRAIN * 6  # FIFO_STATUS1: words; pattern 0
    else:
        bus.regs[0x3A] = PER_DRAIN * 2  # two tagged words per sample
    imu.i2c = bus
    ses = Session(s)
    det = Detector(s, ses)
    smp = Sampler(s, det, BenchEncoder(motion(4)), imu, Zone())
    smp.start(0)
    results = {}

    def drains(n):
        t = 0
        for _ in range(n):
            t += 80
            smp._drain(t)

    results["sample"] = timed(drains, DRAINS) / (DRAINS * PER_DRAIN)
    assert smp.imu_samples >= DRAINS * PER_DRAIN

    def reads(n):
        for _ in range(n):
            imu.read(PER_DRAIN)

    results["read+decode"] = timed(reads, DRAINS) / (DRAINS * PER_DRAIN)
    if kind != "lsm6dso":
        raw = imu.raw
        conf = imu.conf
        out = imu.out

        def dec(n):
            for _ in range(n):
                decode(raw, PER_DRAIN, conf, out)

        results["decode viper"] = timed(dec, DRAINS) / (DRAINS * PER_DRAIN)
        ref = array("i", out)
        for i in range(len(out)):
            out[i] = 0

        def dec_b(n):
            for _ in range(n):
                decode_bytecode(raw, PER_DRAIN, conf, out)

        results["decode bytecode"] = timed(dec_b, DRAINS) / (DRAINS * PER_DRAIN)
        assert out == ref, "the bytecode and viper decoders differ"
    return results


def bench_accel():
    s = settings()
    det = Detector(s, Session(s))

    def accel(n):
        for i in range(n):
            det.accel(10 * i, 12, 600 - (i & 63), 800)

    return timed(accel, TICKS) / TICKS


def line(name, us, base, note=""):
    print("%-50s %8.3f µs %6.1fx  %s" % (name, us, us / base, note))


def esp32(us, budget_us):
    lo = us * ESP32_SLOW[0]
    hi = us * ESP32_SLOW[1]
    return "ESP32 ~%.0f-%.0f µs (%.1f-%.1f%% of %d ms)" % (
        lo,
        hi,
        100 * lo / budget_us,
        100 * hi / budget_us,
        budget_us // 1000,
    )


def main():
    print(
        "motion core on %s %s; median of %d runs%s"
        % (
            sys.implementation.name,
            ".".join(str(v) for v in sys.implementation.version[:3]),
            RUNS,
            " (quick)" if QUICK else "",
        )
    )
    n = TICKS * 10
    base = timed(empty_loop, n) / n
    line("empty loop iteration", base, base)
    t = bench_tick()
    line("encoder read (Python method, stands in for PCNT)", t["read"], base)
    line("det.enc", t["det.enc"], base)
    line("ENCODER TICK (sampler + ring + det.enc)", t["tick"], base)
    print("%52s %s" % ("", esp32(t["tick"], 5000) + " at 200 Hz"))
    accel = bench_accel()
    line("det.accel (gravity filter)", accel, base)
    imu = {}
    for kind in ("mpu6050", "lsm6ds3", "lsm6dso"):
        r = bench_imu(kind)
        imu[kind] = r["sample"]
        if "decode viper" in r:
            line("  %s decode, bytecode (not used)" % kind, r["decode bytecode"], base)
            line("  %s decode, viper (the driver's)" % kind, r["decode viper"], base)
        line("  %s read() + decode, stub bus" % kind, r["read+decode"], base)
        line("IMU SAMPLE %s (drain, merge, det.accel)" % kind, r["sample"], base)
        print("%52s %s" % ("", esp32(r["sample"], 10000) + " at 100 Hz"))
    worst = max(imu.values())
    print("passes detected while ticking: %d; late ticks: %d" % (t["passes"], t["late"]))
    # CPU per second at 200 Hz ticks + 100 Hz IMU, projected.
    per_s = 200 * t["tick"] + 100 * worst
    print(
        "projected ESP32 CPU at 200 Hz + 100 Hz IMU: %.1f-%.1f%% (plus I2C: 2-3 transactions of"
        " ~0.7 ms per 80 ms drain, about 2-3%%)"
        % (per_s * ESP32_SLOW[0] / 1e4, per_s * ESP32_SLOW[1] / 1e4)
    )


main()
