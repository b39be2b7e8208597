"""Fixed-rate encoder tick plus IMU FIFO drain, feeding the detector in time order.

The encoder is read every 1000/sample_hz ms (5 ms at the default 200 Hz); the
IMU FIFO is drained every imu_drain_ms (80 ms by default) in one burst. IMU
samples therefore arrive up to a drain interval late, so encoder ticks wait
in a small preallocated buffer and, at each drain, the detector gets both
merged in time order: `det.accel(t, ax, ay, az)` before `det.enc(t, count,
zone)` at equal times. The zone is the session's when the tick was taken.

Times given to the detector are milliseconds since `start()`, built from
`time.ticks_diff` of successive calls, so the ticks_ms wrap-around (2**30 ms
on the ESP32) never shows. They stay small ints (< 2**30) for 12 days of
continuous running; restart the sampler and detector per session.

IMU timestamps: the newest sample in the FIFO is taken to be `now`, earlier
ones one chip period apart (the chip's period_us), never before what the
detector already got. The chip clock and ticks_ms drift apart, so anchoring
each burst to the drain time keeps the error within one IMU period.

Nothing is hidden: `late` counts ticks that ran a whole period or more after
their slot (`missed` the slots skipped, `max_lag_ms` the worst lag), the
IMU driver counts FIFO overflows, `forced_drains` counts drains brought
forward because the tick buffer was full, `imu_errors` counts failed I2C
drains (the encoder goes on; the IMU is set up again once it answers).

`tick(now_ms)` does whatever is due at now_ms and returns the milliseconds
until the next thing is due; tests and benchmarks call it with their own
clock, `run()` is the device loop. The tick and the drain allocate nothing.
"""

import asyncio
import time
from array import array
from time import ticks_diff

import micropython
from micropython import const

# Retry a failed IMU this often (set-up blocks ~100 ms on an MPU).
_IMU_RETRY_MS = const(1000)


class Sampler:
    """Reads the encoder at a fixed rate and drains the IMU, feeding `det` in time order."""

    def __init__(self, settings, det, encoder, imu, zone_source):
        hz = settings["sample_hz"]
        self.period = max(1, (1000 + hz // 2) // hz)
        self.drain_ms = settings["imu_drain_ms"]
        self.det = det
        self.encoder = encoder
        self.imu = imu
        self.zones = zone_source  # anything with a `.zone` (the Session)
        # Bound methods made once: `det.enc` in the loop would allocate one per use.
        self._read = encoder.read
        self._enc = det.enc
        self._accel = det.accel
        # Ticks waiting for the next drain: time, count, zone each. tick() drains
        # on time, so drain_ms / period + 1 is the most it holds; the margin and
        # `forced_drains` guard against that reasoning ever being wrong.
        self.cap = 2 * (self.drain_ms // self.period) + 8
        self._ring = array("i", bytes(4 * 3 * self.cap))
        self._end = 3 * self.cap
        self.running = False
        self.start(time.ticks_ms())

    def start(self, now):
        """Restart the clock at 0 (the detector should be new or reset) and empty the FIFO."""
        self.t = 0
        self._last = now
        self._due = 0
        self._drain_due = self.drain_ms
        self._n = 0
        self._fed = 0
        self._retry_at = 0
        self._fed_ticks = 0
        self.late = 0
        self.missed = 0
        self.max_lag_ms = 0
        self.forced_drains = 0
        self.imu_samples = 0
        self.imu_errors = 0
        self._imu_ok = True
        if self.imu is not None:
            try:
                self.imu.reset_fifo()
            except OSError:
                self.imu_errors += 1
                self._imu_ok = False

    # Native: as bytecode, tick's and _drain's frames are over 11 words and
    # MicroPython would take them from the heap at every call.
    @micropython.native
    def tick(self, now):
        """Do what is due at now (a time.ticks_ms() value); returns ms until the next due time."""
        t = self.t + ticks_diff(now, self._last)
        self._last = now
        self.t = t
        due = self._due
        if t >= due:
            lag = t - due
            due += self.period
            if lag:
                due = self._lagged(t, lag, due)
            self._due = due
            k = self._n
            if k == self._end:
                self.forced_drains += 1
                self._drain(t)
                k = 0
            r = self._ring
            r[k] = t
            r[k + 1] = self._read()
            r[k + 2] = self.zones.zone
            self._n = k + 3
        if t >= self._drain_due:
            self._drain(t)
            d = self._drain_due + self.drain_ms
            self._drain_due = d if d > t else t + self.drain_ms
        a = self._due - t
        b = self._drain_due - t
        return a if a < b else b

    def _lagged(self, t, lag, due):
        # Off the common path: a tick that ran after its slot.
        if lag > self.max_lag_ms:
            self.max_lag_ms = lag
        p = self.period
        if lag < p:
            return due
        # Slots were skipped: count them and keep the rate from now on (the
        # count is cumulative, so a skipped slot loses no travel).
        self.late += 1
        self.missed += lag // p
        return t + p

    @micropython.native
    def _drain(self, t):
        """Read the IMU FIFO and feed the detector its samples merged with the buffered ticks."""
        enc = self._enc
        r = self._ring
        nt = self._n
        j = 0
        fed = self._fed
        imu = self.imu
        if imu is not None and (self._imu_ok or self._retry_imu(t)):
            try:
                total = imu.pending()
                accel = self._accel
                out = imu.out
                pus = imu.period_us
                cap = imu.cap
                k = 0
                while k < total:
                    chunk = total - k
                    if chunk > cap:
                        chunk = cap
                    m = imu.read(chunk)
                    self.imu_samples += m
                    # Age of sample i: (total - 1 - (k + i)) periods before t, in us.
                    # At most a full FIFO (682 samples) x 80,000 us (12.5 Hz) = 5.5e7,
                    # a small int on the ESP32 (< 2**30) like every value here.
                    age = (total - 1 - k) * pus
                    q = 0
                    for _ in range(m):
                        ts = t - (age + 500) // 1000
                        if ts < fed:
                            ts = fed
                        while j < nt and r[j] < ts:
                            fed = r[j]
                            enc(fed, r[j + 1], r[j + 2])
                            j += 3
                        accel(ts, out[q], out[q + 1], out[q + 2])
                        fed = ts
                        age -= pus
                        q += 6
                    k += chunk
            except OSError:
                # I2C error (loose wire, chip reset): the encoder goes on without the IMU.
                self.imu_errors += 1
                self._imu_ok = False
                self._retry_at = t + _IMU_RETRY_MS
        while j < nt:
            fed = r[j]
            enc(fed, r[j + 1], r[j + 2])
            j += 3
        self._fed_ticks += nt // 3
        self._n = 0
        self._fed = fed

    def imu_present(self):
        """False while there is no IMU or it stopped answering (retried every few seconds)."""
        return self.imu is not None and self._imu_ok

    def flush(self):
        """Drain now: the detector gets every tick and IMU sample taken so far (session end)."""
        self._drain(self.t)

    def _retry_imu(self, t):
        if t < self._retry_at:
            return False
        try:
            self.imu.setup()
        except OSError:
            self.imu_errors += 1
            self._retry_at = t + _IMU_RETRY_MS
            return False
        self._imu_ok = True
        return True

    def stats(self):
        """The counters as a dict (allocates: for status reports, not the hot path)."""
        imu = self.imu
        return {
            "t_ms": self.t,
            "ticks": self._fed_ticks + self._n // 3,
            "late": self.late,
            "missed": self.missed,
            "max_lag_ms": self.max_lag_ms,
            "forced_drains": self.forced_drains,
            "imu_samples": self.imu_samples,
            "imu_overflows": imu.overflows if imu is not None else 0,
            "imu_resyncs": imu.resyncs if imu is not None else 0,
            "imu_errors": self.imu_errors,
            "enc_errors": self.encoder.errors,
        }

    async def run(self):
        """The device loop: tick on time with asyncio until stop()."""
        self.running = True
        self.start(time.ticks_ms())
        while self.running:
            wait = self.tick(time.ticks_ms())
            await asyncio.sleep_ms(wait if wait > 0 else 0)

    def stop(self):
        self.running = False
