"""A plain, float reading of the pass contract (DESIGN.md section 5), for tests only.

It is independent of the firmware's detector: the tests use it to show that
the motion model's ground truth is what the contract says about the rendered
samples, so that a disagreement between the firmware and the truth can be told
apart from a fault in the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dermaroll.trace import Trace


@dataclass
class RefPass:
    zone: str
    dir: str
    t_start_ms: int
    t_end_ms: int
    length_mm: float
    e_deg: float


def gravity(trace: Trace, tau_ms: float = 300.0) -> list[tuple[float, float, float]]:
    """The accelerometer through a first-order low-pass filter, per sample."""
    t, ax, ay, az = trace.t_ms, trace.ax, trace.ay, trace.az
    out = []
    if not len(t):
        return out
    gx, gy, gz = float(ax[0]), float(ay[0]), float(az[0])
    prev = t[0]
    for i in range(len(t)):
        dt = t[i] - prev
        prev = t[i]
        if dt > 0:
            k = 1.0 - math.exp(-dt / tau_ms)
            gx += (ax[i] - gx) * k
            gy += (ay[i] - gy) * k
            gz += (az[i] - gz) * k
        out.append((gx, gy, gz))
    return out


def detect(
    trace: Trace,
    *,
    min_pass_mm: float = 10.0,
    reverse_mm: float = 1.5,
    pause_ms: int = 400,
    vertical_max_deg: float = 30.0,
    horizontal_min_deg: float = 60.0,
    jitter_counts: int = 1,
    tau_ms: float = 300.0,
) -> list[RefPass]:
    cpm = trace.counts_per_mm
    t, enc = trace.t_ms, trace.enc
    zones = trace.zone_ids()
    g = gravity(trace, tau_ms)
    out: list[RefPass] = []
    n = len(t)
    if not n:
        return out
    point, i_point = enc[0], 0  # resting/turning point, last sample still at it
    direction = 0
    start = far = 0
    i_start = i_far = i_last_far = 0

    def close() -> None:
        travel = abs(far - start) / cpm
        if travel < min_pass_mm:
            return
        sx = sy = sz = 0.0
        for j in range(i_start, i_far + 1):
            sx += g[j][0]
            sy += g[j][1]
            sz += g[j][2]
        norm = math.sqrt(sx * sx + sy * sy + sz * sz)
        e = math.degrees(math.asin(min(1.0, abs(sx) / norm))) if norm else 0.0
        if e <= vertical_max_deg:
            d = "vertical"
        elif e >= horizontal_min_deg:
            d = "horizontal"
        else:
            d = "diagonal"
        zone = zones[i_start] or "unassigned"
        out.append(RefPass(zone, d, t[i_start], t[i_far], round(travel, 1), e))

    for i in range(n):
        c = enc[i]
        if direction:
            if (c - far) * direction > 0:
                far, i_far, i_last_far = c, i, i
            elif c == far:
                i_last_far = i
            elif (far - c) * direction >= reverse_mm * cpm:
                close()
                direction = 0
                point, i_point = far, i_last_far
            if direction and t[i] - t[i_far] >= pause_ms:
                close()
                direction = 0
                point, i_point = far, i_last_far
        if not direction:
            if abs(c - point) > jitter_counts:
                direction = 1 if c > point else -1
                start, i_start = point, i_point
                far, i_far, i_last_far = c, i, i
            elif c == point:
                i_point = i
    if direction:
        close()
    return out
