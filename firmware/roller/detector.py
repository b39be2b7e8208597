"""Pass detection: the contract of DESIGN.md section 5, one sample at a time.

Feed samples in time order: `accel()` for each IMU sample (roller frame,
milli-g) and `enc()` for each encoder sample (cumulative counts, current zone
index); `accel` goes first when both share a time. Each finished pass goes to
`sink.on_pass(zone, direction, t_start_ms, t_end_ms, length_01mm)`.

Everything on the per-sample path is integer arithmetic, O(1) and allocation
free. Values stay within +-2**30 for sensor input within the chip's +-4 g
range, because an ESP32's small ints are 31-bit: beyond that an int becomes a
heap object. That also makes the output bit-identical on MicroPython (device,
unix port) and CPython (host replay).

Sign conventions: a stroke's direction `s` is +1 or -1 as the encoder count
rises or falls; "travel" is always (count - start) * s >= 0.
"""

import math

import micropython
from micropython import const

VERTICAL = const(0)
HORIZONTAL = const(1)
DIAGONAL = const(2)
DIRECTIONS = ("vertical", "horizontal", "diagonal")

# The gravity estimate is held in 1/16 milli-g: enough resolution for a slow
# filter, and (8000 * 16) * 4096 still fits a 31-bit small int.
_G_SHIFT = const(4)
# First-order low-pass gain alpha = dt / (tau + dt), in Q12.
_ALPHA_SHIFT = const(12)
# Per-stroke gravity sums hold at most this many samples (8192 * 64000 < 2**30);
# past it (a stroke over 40 s at 200 Hz) the sums and counts are halved.
_MAX_N = const(8192)
# Mean gravity components are scaled below 2**9 for the elevation test, so
# their squares times a Q10 threshold stay below 2**30.
_DIR_LIMIT = const(512)
_SIN2_SHIFT = const(10)
# counts_per_mm is held as an integer in 1/10000 counts per mm for lengths.
_CPM_SCALE = const(10000)


def _ceil_counts(mm, cpm):
    # The float product can land a hair above a whole number (10 * 0.8 =
    # 8.000000000000002); such a threshold means that whole number.
    return int(math.ceil(mm * cpm - 1e-9))


def _sin2_q10(deg):
    s = math.sin(math.radians(deg))
    return int(round(s * s * (1 << _SIN2_SHIFT)))


class Detector:
    """Streaming stroke and pass detector with direction from gravity.

    The per-sample methods are @micropython.native: as bytecode their frames
    exceed 11 words, which MicroPython takes from the heap at every call
    (a locked heap hides this by falling back to the C stack); native frames
    live on the C stack, and run faster too (bench/motion).
    """

    def __init__(self, settings, sink):
        self.sink = sink
        self.configure(settings)
        self.reset()

    def configure(self, settings):
        """Take thresholds from the settings (converted once to counts and integers)."""
        cpm = settings.counts_per_mm()
        self.cpm_e4 = int(round(cpm * _CPM_SCALE))
        self.min_pass = max(1, _ceil_counts(settings["min_pass_mm"], cpm))
        self.reverse = max(1, _ceil_counts(settings["reverse_mm"], cpm))
        self.pause = settings["pause_ms"]
        self.jitter = settings["jitter_counts"]
        self.tau = settings["gravity_tau_ms"]
        self.sin2_v = _sin2_q10(settings["vertical_max_deg"])
        self.sin2_h = _sin2_q10(settings["horizontal_min_deg"])

    def reset(self):
        """Forget all motion: the next encoder sample becomes the resting point."""
        self.started = False
        self.dir = 0  # 0 while resting, else the open stroke's direction s
        self.start = 0  # count at the resting or turning point
        self.t_start = 0  # time of the last sample still at that point
        self.zone_start = 0
        self.far = 0  # furthest count of the open stroke
        self.t_far = 0  # time it was first reached
        self.t_left = 0  # time of the last sample still at it (within jitter)
        self.zone_left = 0
        self.have_g = False
        self.t_g = 0
        self.gx = 0
        self.gy = 0
        self.gz = 0
        # Gravity sums over the open stroke's IMU samples; their value when
        # the furthest point was reached (the pass's samples end there), and
        # at the last sample still at it (the next stroke's samples start).
        self.n = 0
        self.sx = 0
        self.sy = 0
        self.sz = 0
        self.fn = 0
        self.fx = 0
        self.fy = 0
        self.fz = 0
        self.ln = 0
        self.lx = 0
        self.ly = 0
        self.lz = 0

    @micropython.native
    def accel(self, t, ax, ay, az):
        """One accelerometer sample (milli-g, roller frame) at time t (ms)."""
        if self.have_g:
            dt = t - self.t_g
            if dt > 0:
                a = (dt << _ALPHA_SHIFT) // (self.tau + dt)
                self.gx += ((ax << _G_SHIFT) - self.gx) * a >> _ALPHA_SHIFT
                self.gy += ((ay << _G_SHIFT) - self.gy) * a >> _ALPHA_SHIFT
                self.gz += ((az << _G_SHIFT) - self.gz) * a >> _ALPHA_SHIFT
        else:
            self.have_g = True
            self.gx = ax << _G_SHIFT
            self.gy = ay << _G_SHIFT
            self.gz = az << _G_SHIFT
        self.t_g = t
        n = self.n + 1
        if n > _MAX_N:
            self._halve_sums()
            n = self.n + 1
        self.n = n
        self.sx += self.gx
        self.sy += self.gy
        self.sz += self.gz

    def _halve_sums(self):
        self.n >>= 1
        self.sx >>= 1
        self.sy >>= 1
        self.sz >>= 1
        self.fn >>= 1
        self.fx >>= 1
        self.fy >>= 1
        self.fz >>= 1
        self.ln >>= 1
        self.lx >>= 1
        self.ly >>= 1
        self.lz >>= 1

    @micropython.native
    def enc(self, t, count, zone):
        """One encoder sample: cumulative count at time t (ms), with the current zone index."""
        s = self.dir
        if s:
            back = (self.far - count) * s
            if back < 0:
                self._new_far(t, count, zone)
                return
            if back <= self.jitter:
                self._at_far(t, zone)
            elif back >= self.reverse:
                # The next stroke starts at the furthest point and already runs the other way.
                self._close()
                self.dir = -s
                self._new_far(t, count, zone)
                return
            if t - self.t_far < self.pause:
                return
            self._close()
        elif not self.started:
            self.started = True
            self.start = count
        d = count - self.start
        if -self.jitter <= d <= self.jitter:
            # Still at the resting point: the stroke, when it comes, starts here.
            self.t_start = t
            self.zone_start = zone
            self.n = 0
            self.sx = 0
            self.sy = 0
            self.sz = 0
            return
        self.dir = 1 if d > 0 else -1
        self._new_far(t, count, zone)

    @micropython.native
    def _new_far(self, t, count, zone):
        # Runs on most ticks of a stroke: _at_far's work is inlined, a call costs more.
        self.far = count
        self.t_far = t
        self.t_left = t
        self.zone_left = zone
        n = self.n
        x = self.sx
        y = self.sy
        z = self.sz
        self.fn = n
        self.fx = x
        self.fy = y
        self.fz = z
        self.ln = n
        self.lx = x
        self.ly = y
        self.lz = z

    def _at_far(self, t, zone):
        self.t_left = t
        self.zone_left = zone
        self.ln = self.n
        self.lx = self.sx
        self.ly = self.sy
        self.lz = self.sz

    @micropython.native
    def _close(self):
        """End the open stroke at its furthest point; report it if it is a pass."""
        s = self.dir
        travel = (self.far - self.start) * s
        if travel >= self.min_pass:
            length = (travel * (10 * _CPM_SCALE) + (self.cpm_e4 >> 1)) // self.cpm_e4
            self.sink.on_pass(self.zone_start, self._direction(), self.t_start, self.t_far, length)
        # Whatever comes next starts from the furthest point, at the last
        # sample still there, with the IMU samples after that one.
        self.dir = 0
        self.start = self.far
        self.t_start = self.t_left
        self.zone_start = self.zone_left
        self.n -= self.ln
        self.sx -= self.lx
        self.sy -= self.ly
        self.sz -= self.lz

    @micropython.native
    def _direction(self):
        """Classify the stroke by the axle's elevation: asin(|g_x| / |g|) of mean gravity."""
        n = self.fn
        if n == 0:
            return DIAGONAL  # no IMU sample during the stroke: direction unknown
        x = abs(self.fx) // n
        y = abs(self.fy) // n
        z = abs(self.fz) // n
        m = x if x > y else y
        if z > m:
            m = z
        while m >= _DIR_LIMIT:
            x >>= 1
            y >>= 1
            z >>= 1
            m >>= 1
        q = x * x
        total = q + y * y + z * z
        if total == 0:
            return DIAGONAL
        q <<= _SIN2_SHIFT
        # Compare sin^2(e) = q / total with sin^2 of the two limits.
        if q <= self.sin2_v * total:
            return VERTICAL
        if q >= self.sin2_h * total:
            return HORIZONTAL
        return DIAGONAL

    def flush(self):
        """End of data: a stroke still open is closed at its furthest point."""
        if self.dir:
            self._close()
