"""Motion model: a scripted rolling session -> a sensor trace plus its ground-truth passes.

The script format is documented in docs/motion-script.md. In short, a script
lists zones in order; each zone lists stroke groups (passes in one direction,
small adjustments, rests), and global keys set the sample rate, the encoder
resolution, noise, tremor and the seed. Every number may be given as a range
``[low, high]``, drawn per use from the script's seeded random generator, so a
script plus its seed always renders to the same trace.

Physics (DESIGN.md section 3 frames and units): the face is a roughly vertical
plane (world Z up, the face's normal points at the user and may pitch by a few
degrees). The drum sits on the face with its axle in the face plane, at right
angles to the stroke; the handle stands off the face, leaning by a varying
tilt along the stroke. Roller frame: +x along the axle, +y along the handle
(drum to grip), +z = x × y. The accelerometer reads (stroke or hand
acceleration - gravity) in the roller frame, in milli-g; the gyroscope reads
the roller's angular velocity in milli-degrees per second; the encoder counts
``round(travel_mm * counts_per_mm)`` plus a one-count flicker while the drum
rests on a quadrature edge.

The ground truth follows DESIGN.md section 5 for each scripted pass: the zone
current when it started, its direction, ``t_start_ms`` (the last sample before
the drum's noise-free count leaves its start value), ``t_end_ms`` (the first
sample where the noise-free count reaches its final value) and the scripted
travel ``length_mm``. Scripts are checked (``strict``) so that every scripted
pass, adjustment and pause is unambiguous under the contract with the default
settings; see docs/motion-script.md for the margins.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
from dataclasses import dataclass, field
from typing import Any

from dermaroll.passes import Pass
from dermaroll.trace import Trace

DIRECTIONS = ("vertical", "horizontal", "diagonal")
STYLES = ("back_and_forth", "lift", "pause")
DEFAULT_ZONES = ("forehead", "nose", "left_cheek", "right_cheek", "upper_lip", "chin")
G_MM_S2 = 9806.65  # 1 g in mm/s^2
RAD = math.pi / 180.0
MDPS_PER_RAD_S = 180000.0 / math.pi

# Margins that keep a script unambiguous under the pass contract with the
# default settings (min_pass_mm 10, reverse_mm 1.5, pause_ms 400,
# vertical_max_deg 30, horizontal_min_deg 60, gravity filter 0.2-0.5 s).
STRICT: dict[str, float] = {
    "pass_min_mm": 20.0,  # real passes: twice min_pass_mm
    "adjust_max_mm": 5.0,  # adjustments: half of min_pass_mm
    # ... and at least 3.5 encoder counts, so that even from a turning point one
    # count off (a flicker that extended the last stroke) the drum moves more
    # than the one-count jitter and the detector's turning point follows it.
    "adjust_min_counts": 3.5,
    "gap_min_ms": 700.0,  # pauses and lifts between separate passes: pause_ms + 300
    "settle_min_ms": 1200.0,  # hold still after turning the roller: ~4 filter time constants
    "tremor_max_mm": 0.3,  # drum tremor amplitude: back-rolls <= 0.6 mm << reverse_mm
    "wobble_max_deg": 8.0,  # stroke line wobble of vertical/horizontal passes
    "face_pitch_max_deg": 15.0,
}
STRICT_DIAGONAL_DEG = (35.0, 55.0)  # stroke elevation of diagonal passes
STRICT_SPEED_MM_S = (15.0, 250.0)


class ScriptError(ValueError):
    """A motion script that is malformed, or ambiguous under the pass contract."""


# ---------------------------------------------------------------------------
# Results


@dataclass
class TruthPass(Pass):
    """One scripted pass, as DESIGN.md section 5 defines it."""

    # The contract's axle elevation measured on the rendered accelerometer
    # data (0.3 s gravity filter): shows how far from the thresholds it is.
    e_deg: float = math.nan


@dataclass
class Rendered:
    """A rendered session: the script, its trace and its ground truth."""

    name: str
    script: dict[str, Any]
    trace: Trace
    truth: list[TruthPass]
    # Counts the scripted adjustments (short strokes that must not count).
    adjustments: int = 0

    def summary(self, target_min: int = 4, target_max: int = 5) -> dict[str, Any]:
        return summarize(self.truth, target_min, target_max)


def summarize(
    passes: list[TruthPass], target_min: int = 4, target_max: int = 5
) -> dict[str, dict[str, Any]]:
    """Per-zone counts, verdicts and the `order` remark (DESIGN.md section 5) of passes."""
    zones: dict[str, dict[str, Any]] = {}
    order: dict[str, bool] = {}
    for p in passes:
        z = zones.setdefault(p.zone, {"vertical": 0, "horizontal": 0, "diagonal": 0})
        if p.dir == "horizontal" and z["horizontal"] == 0 and z["vertical"] < target_min:
            order[p.zone] = True
        z[p.dir] += 1
    out: dict[str, dict[str, Any]] = {}
    for name, z in zones.items():
        verdict = {}
        for d in ("vertical", "horizontal"):
            n = z[d]
            verdict[d] = "under" if n < target_min else ("ok" if n <= target_max else "over")
        out[name] = dict(z, verdict=verdict, remarks=["order"] if order.get(name) else [])
    return out


# ---------------------------------------------------------------------------
# Script checking


def load_script(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON motion script (not yet checked: render() checks it)."""
    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ScriptError("%s: cannot read: %s" % (name, e.strerror or e)) from None
    except ValueError as e:
        raise ScriptError("%s: not valid JSON: %s" % (name, e)) from None
    if not isinstance(data, dict):
        raise ScriptError("%s: want a JSON object at the top" % name)
    return data


Range = tuple[float, float]


def _range(where: str, value: Any, default: Any, lo: float, hi: float) -> Range:
    """A number or [low, high] within lo..hi, as a (low, high) pair."""
    if value is None:
        value = default
    if isinstance(value, bool):
        raise ScriptError("%s: want a number or [low, high], got %r" % (where, value))
    if isinstance(value, (int, float)):
        a = b = float(value)
    elif (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        a, b = float(value[0]), float(value[1])
    else:
        raise ScriptError("%s: want a number or [low, high], got %r" % (where, value))
    if not (math.isfinite(a) and math.isfinite(b)) or a > b:
        raise ScriptError("%s: want low <= high, got %r" % (where, value))
    if a < lo or b > hi:
        raise ScriptError("%s: %r is outside %g..%g" % (where, value, lo, hi))
    return (a, b)


def _int(where: str, value: Any, default: int, lo: int, hi: int) -> int:
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScriptError("%s: want a whole number, got %r" % (where, value))
    if value < lo or value > hi:
        raise ScriptError("%s: %r is outside %d..%d" % (where, value, lo, hi))
    return value


def _keys(where: str, obj: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ScriptError("%s: want an object, got %r" % (where, obj))
    extra = sorted(set(obj) - allowed)
    if extra:
        raise ScriptError(
            "%s: unknown key %r (known: %s)" % (where, extra[0], ", ".join(sorted(allowed)))
        )
    return obj


@dataclass
class _Group:
    kind: str  # "passes" | "adjust" | "rest"
    where: str
    dir: str = ""
    angle: Range = (45.0, 45.0)
    count: int = 0
    style: str = "lift"
    length: Range = (25.0, 40.0)
    speed: Range = (40.0, 100.0)
    gap: Range = (800.0, 1300.0)
    turn: Range = (0.0, 200.0)
    travel: str = "random"
    wobble: Range = (0.0, 5.0)


@dataclass
class _Zone:
    zone: str  # "" = none selected
    groups: list[_Group]


@dataclass
class _Script:
    seed: int
    sample_hz: float
    t_jitter_ms: float
    counts_per_mm: float
    accel_mg: float
    gyro_mdps: float
    enc_flicker: float
    tremor_mm: float
    tremor_hz: Range
    tremor_mg: float
    tremor_deg: float
    face_pitch: Range
    handle_tilt: Range
    lead_in: Range
    tail: Range
    transition: Range
    zones: list[_Zone] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)


_TOP = {
    "seed",
    "sample_hz",
    "t_jitter_ms",
    "counts_per_mm",
    "noise",
    "tremor",
    "face_pitch_deg",
    "handle_tilt_deg",
    "lead_in_ms",
    "tail_ms",
    "transition_ms",
    "zones",
    "note",
    "device",
    "name",
}
_NOISE = {"accel_mg", "gyro_mdps", "enc_flicker"}
_TREMOR = {"mm", "hz", "accel_mg", "deg"}
_PASSES = {
    "dir",
    "angle_deg",
    "passes",
    "style",
    "length_mm",
    "speed_mm_s",
    "pause_ms",
    "turn_ms",
    "travel",
    "wobble_deg",
}
_ADJUST = {"adjust", "length_mm", "speed_mm_s", "pause_ms"}
_REST = {"rest_ms"}


def check_script(data: dict[str, Any], strict: bool = True) -> _Script:
    """Validate a script; with `strict`, also the margins that keep it unambiguous."""
    s = STRICT
    top = _keys("script", data, _TOP)
    seed = _int("seed", top.get("seed"), 0, 0, 2**63)
    hz = _range("sample_hz", top.get("sample_hz"), 100, 10, 1000)[0]
    period = 1000.0 / hz
    jitter = _range("t_jitter_ms", top.get("t_jitter_ms"), 0, 0, period / 3)[0]
    cpm = _range("counts_per_mm", top.get("counts_per_mm"), 7.07, 0.01, 200)[0]
    noise = _keys("noise", top.get("noise", {}), _NOISE)
    tremor = _keys("tremor", top.get("tremor", {}), _TREMOR)
    tremor_cap = s["tremor_max_mm"] if strict else 50.0
    pitch_cap = s["face_pitch_max_deg"] if strict else 80.0
    sc = _Script(
        seed=seed,
        sample_hz=hz,
        t_jitter_ms=jitter,
        counts_per_mm=cpm,
        accel_mg=_range("noise.accel_mg", noise.get("accel_mg"), 5, 0, 500)[0],
        gyro_mdps=_range("noise.gyro_mdps", noise.get("gyro_mdps"), 200, 0, 50000)[0],
        enc_flicker=_range("noise.enc_flicker", noise.get("enc_flicker"), 0.5, 0, 1)[0],
        tremor_mm=_range("tremor.mm", tremor.get("mm"), 0.0, 0, tremor_cap)[0],
        tremor_hz=_range("tremor.hz", tremor.get("hz"), [7, 11], 1, 30),
        tremor_mg=_range("tremor.accel_mg", tremor.get("accel_mg"), 0, 0, 1000)[0],
        tremor_deg=_range("tremor.deg", tremor.get("deg"), 0, 0, 10)[0],
        face_pitch=_range(
            "face_pitch_deg", top.get("face_pitch_deg"), [-5, 10], -pitch_cap, pitch_cap
        ),
        handle_tilt=_range("handle_tilt_deg", top.get("handle_tilt_deg"), [15, 45], 0, 70),
        lead_in=_range("lead_in_ms", top.get("lead_in_ms"), [1500, 2500], 0, 60000),
        tail=_range("tail_ms", top.get("tail_ms"), [800, 1500], 0, 60000),
        transition=_range("transition_ms", top.get("transition_ms"), [1800, 2600], 0, 60000),
    )
    for key in ("note", "device", "name"):
        if key in top:
            sc.meta[key] = str(top[key])
    if strict and sc.transition[0] < s["settle_min_ms"] + 500:
        raise ScriptError(
            "transition_ms: at least %g ms (the roller turns, then settles)"
            % (s["settle_min_ms"] + 500)
        )
    if strict and sc.lead_in[0] < s["settle_min_ms"]:
        raise ScriptError("lead_in_ms: at least %g ms" % s["settle_min_ms"])
    zones = top.get("zones")
    if not isinstance(zones, list) or not zones:
        raise ScriptError("zones: want a non-empty list of zone blocks")
    for zi, zb in enumerate(zones):
        where = "zones[%d]" % zi
        zb = _keys(where, zb, {"zone", "strokes"})
        zone = zb.get("zone")
        if zone is None or zone == "unassigned":
            zone = ""
        if not isinstance(zone, str) or zone != zone.strip() or "," in zone or "\n" in zone:
            raise ScriptError("%s.zone: want a zone id without commas or outer spaces" % where)
        strokes = zb.get("strokes")
        if not isinstance(strokes, list) or not strokes:
            raise ScriptError("%s.strokes: want a non-empty list" % where)
        groups = [
            _check_group("%s.strokes[%d]" % (where, gi), g, strict, cpm)
            for gi, g in enumerate(strokes)
        ]
        sc.zones.append(_Zone(zone, groups))
    return sc


def _check_group(where: str, g: Any, strict: bool, cpm: float) -> _Group:
    s = STRICT
    if not isinstance(g, dict):
        raise ScriptError("%s: want an object" % where)
    gap_lo = s["gap_min_ms"] if strict else 0.0
    if "dir" in g:
        g = _keys(where, g, _PASSES)
        d = g["dir"]
        if d not in DIRECTIONS:
            raise ScriptError("%s.dir: want one of %s, got %r" % (where, ", ".join(DIRECTIONS), d))
        style = g.get("style", "lift")
        if style not in STYLES:
            raise ScriptError(
                "%s.style: want one of %s, got %r" % (where, ", ".join(STYLES), style)
            )
        travel = g.get("travel", "random")
        if travel not in ("random", "positive", "negative"):
            raise ScriptError("%s.travel: want random, positive or negative" % where)
        if d == "diagonal":
            lo, hi = STRICT_DIAGONAL_DEG if strict else (1.0, 89.0)
            angle = _range(where + ".angle_deg", g.get("angle_deg"), 45, lo, hi)
        else:
            if "angle_deg" in g:
                raise ScriptError("%s.angle_deg: only for diagonal passes" % where)
            angle = (90.0, 90.0) if d == "vertical" else (0.0, 0.0)
        wob_hi = s["wobble_max_deg"] if strict else 30.0
        speed_lo, speed_hi = STRICT_SPEED_MM_S if strict else (1.0, 2000.0)
        return _Group(
            kind="passes",
            where=where,
            dir=d,
            angle=angle,
            count=_int(where + ".passes", g.get("passes"), 5, 1, 200),
            style=style,
            length=_range(
                where + ".length_mm",
                g.get("length_mm"),
                [25, 40],
                s["pass_min_mm"] if strict else 0.1,
                200,
            ),
            speed=_range(where + ".speed_mm_s", g.get("speed_mm_s"), [40, 100], speed_lo, speed_hi),
            gap=_range(where + ".pause_ms", g.get("pause_ms"), [800, 1300], gap_lo, 60000),
            turn=_range(where + ".turn_ms", g.get("turn_ms"), [0, 200], 0, 60000),
            travel=travel,
            wobble=_range(where + ".wobble_deg", g.get("wobble_deg"), [0, 5], 0, wob_hi),
        )
    if "adjust" in g:
        g = _keys(where, g, _ADJUST)
        lo_counts = s["adjust_min_counts"]
        if strict and lo_counts / cpm > s["adjust_max_mm"]:
            raise ScriptError(
                "%s: at %g counts/mm no adjustment is both below %g mm and %g counts"
                % (where, cpm, s["adjust_max_mm"], lo_counts)
            )
        return _Group(
            kind="adjust",
            where=where,
            count=_int(where + ".adjust", g.get("adjust"), 1, 1, 200),
            length=_range(
                where + ".length_mm",
                g.get("length_mm"),
                [max(1.0, math.ceil(10 * lo_counts / cpm) / 10), s["adjust_max_mm"]],
                lo_counts / cpm if strict else 0.1,
                s["adjust_max_mm"] if strict else 200,
            ),
            speed=_range(where + ".speed_mm_s", g.get("speed_mm_s"), [10, 30], 1.0, 2000.0),
            gap=_range(where + ".pause_ms", g.get("pause_ms"), [800, 1200], gap_lo, 60000),
        )
    if "rest_ms" in g:
        g = _keys(where, g, _REST)
        return _Group(
            kind="rest", where=where, gap=_range(where + ".rest_ms", g["rest_ms"], 0, 0, 600000)
        )
    raise ScriptError(
        "%s: want a pass group (dir), an adjustment group (adjust) or a rest (rest_ms)" % where
    )


# ---------------------------------------------------------------------------
# Planning: the script -> phases on a time line


@dataclass
class _Phase:
    kind: str  # "roll" | "hold" | "air"
    t0: float  # ms
    t1: float
    s0: float  # drum travel, mm (cumulative, signed)
    s1: float
    theta0: float  # stroke line's elevation in the face plane, rad
    theta1: float
    beta0: float  # handle tilt along the stroke line, rad
    beta1: float
    pitch: float  # face pitch, rad
    move: tuple[float, float] = (0.0, 0.0)  # in-air move along the face (u, v), mm
    lift_mm: float = 0.0
    truth: TruthPass | None = None  # the pass this roll is, if it is one


def _pick(rng: random.Random, r: Range) -> float:
    return r[0] if r[0] == r[1] else rng.uniform(r[0], r[1])


class _Planner:
    def __init__(self, sc: _Script, rng: random.Random) -> None:
        self.sc = sc
        self.rng = rng
        self.phases: list[_Phase] = []
        self.zone_changes: list[tuple[float, str]] = []
        self.truth: list[TruthPass] = []
        self.adjustments = 0
        self.t = 0.0
        self.s = 0.0
        self.theta = 0.0
        self.beta = 0.0
        self.pitch = 0.0
        self.zone = ""
        self.heading = 1.0  # sign of the next stroke's travel along the stroke line
        self._last_length = 0.0

    # -- primitives --------------------------------------------------------

    def hold(self, ms: float) -> None:
        if ms <= 0:
            return
        self.phases.append(
            _Phase(
                "hold",
                self.t,
                self.t + ms,
                self.s,
                self.s,
                self.theta,
                self.theta,
                self.beta,
                self.beta,
                self.pitch,
            )
        )
        self.t += ms

    def roll(self, length: float, speed: float, truth: TruthPass | None = None) -> None:
        ms = max(abs(length) / speed * 1000.0, 1.0)
        ph = _Phase(
            "roll",
            self.t,
            self.t + ms,
            self.s,
            self.s + length,
            self.theta,
            self.theta,
            self.beta,
            self.beta,
            self.pitch,
            truth=truth,
        )
        self.phases.append(ph)
        self.t += ms
        self.s += length

    def air(
        self, ms: float, theta: float, beta: float, move: tuple[float, float], lift: float
    ) -> None:
        self.phases.append(
            _Phase(
                "air",
                self.t,
                self.t + ms,
                self.s,
                self.s,
                self.theta,
                theta,
                self.beta,
                beta,
                self.pitch,
                move=move,
                lift_mm=lift,
            )
        )
        self.t += ms
        self.theta = theta
        self.beta = beta

    # -- script elements ----------------------------------------------------

    def run(self) -> None:
        sc, rng = self.sc, self.rng
        first = self._first_pass_group()
        self.theta = self._theta_for(first) if first else math.pi / 2
        self.beta = self._new_beta()
        self.pitch = _pick(rng, sc.face_pitch) * RAD
        self.zone = sc.zones[0].zone
        self.zone_changes.append((0.0, self.zone))
        self.hold(_pick(rng, sc.lead_in))
        for zi, zb in enumerate(sc.zones):
            if zi:
                self.transition(zone=zb.zone)
            for gi, g in enumerate(zb.groups):
                if gi and g.kind == "passes":
                    self.transition(zone=None, group=g)
                if g.kind == "passes":
                    self.passes(g)
                elif g.kind == "adjust":
                    self.adjust(g)
                else:
                    self.hold(_pick(rng, g.gap))
        self.hold(_pick(rng, sc.tail))

    def _first_pass_group(self) -> _Group | None:
        for zb in self.sc.zones:
            for g in zb.groups:
                if g.kind == "passes":
                    return g
        return None

    def _theta_for(self, g: _Group) -> float:
        rng = self.rng
        wob = _pick(rng, g.wobble) * rng.choice((-1, 1))
        if g.dir == "vertical":
            return (90.0 + wob) * RAD
        if g.dir == "horizontal":
            return (rng.choice((0.0, 180.0)) + wob) * RAD
        a = _pick(rng, g.angle)
        return rng.choice((a, 180.0 - a)) * RAD  # up-right or up-left diagonal

    def _new_beta(self) -> float:
        return _pick(self.rng, self.sc.handle_tilt) * RAD * self.rng.choice((-1, 1))

    def transition(self, zone: str | None, group: _Group | None = None) -> None:
        """Lift, (turn for the next group), move, set down, settle; a zone change mid-air."""
        sc, rng = self.sc, self.rng
        total = _pick(rng, sc.transition)
        settle = STRICT["settle_min_ms"] + rng.uniform(0, 200)
        air_ms = max(total - settle - 200, 300.0)
        self.hold(150.0)
        theta = self._theta_for(group) if group else self.theta
        if group is None:  # a new zone: its first pass group decides the angle
            nxt = self._next_group_after_zone_change(zone)
            theta = self._theta_for(nxt) if nxt else self.theta
            self.pitch = _pick(rng, sc.face_pitch) * RAD
        move = (rng.uniform(-40, 40), rng.uniform(-40, 40))
        t_mid = self.t + air_ms / 2
        self.air(air_ms, theta, self._new_beta(), move, rng.uniform(8, 20))
        if zone is not None:
            self.zone_changes.append((t_mid, zone))
            self.zone = zone
        self.hold(50.0 + settle)

    def _next_group_after_zone_change(self, zone: str | None) -> _Group | None:
        # The zone block being entered is the one after the last completed.
        done = len(self.zone_changes)  # zones entered so far
        if done < len(self.sc.zones):
            for g in self.sc.zones[done].groups:
                if g.kind == "passes":
                    return g
        return None

    def passes(self, g: _Group) -> None:
        rng = self.rng
        if g.travel == "random":
            self.heading = rng.choice((-1.0, 1.0))
        else:
            self.heading = 1.0 if g.travel == "positive" else -1.0
        for k in range(g.count):
            if k:
                if g.style == "back_and_forth":
                    self.heading = -self.heading
                    self.hold(_pick(rng, g.turn))
                elif g.style == "pause":
                    self.hold(_pick(rng, g.gap))
                else:  # lift and return through the air, drum still
                    gap = _pick(rng, g.gap)
                    back = -self._last_length
                    u, v = math.cos(self.theta) * back, math.sin(self.theta) * back
                    self.hold(60.0)
                    self.air(
                        max(gap - 120.0, 200.0), self.theta, self.beta, (u, v), rng.uniform(5, 15)
                    )
                    self.hold(60.0)
            length = _pick(rng, g.length)
            self._last_length = length * self.heading
            tp = TruthPass(0, self.zone or "unassigned", g.dir, 0, 0, round(length, 1))
            self.truth.append(tp)
            self.roll(length * self.heading, _pick(rng, g.speed), truth=tp)
        self.hold(_pick(rng, g.gap) if g.style != "back_and_forth" else STRICT["gap_min_ms"] + 100)

    def adjust(self, g: _Group) -> None:
        rng = self.rng
        self.hold(_pick(rng, g.gap))
        for _ in range(g.count):
            self.roll(_pick(rng, g.length) * rng.choice((-1.0, 1.0)), _pick(rng, g.speed))
            self.adjustments += 1
            self.hold(_pick(rng, g.gap))


# ---------------------------------------------------------------------------
# Rendering: phases -> samples


def _min_jerk(x: float) -> tuple[float, float]:
    """Position and acceleration (per unit duration squared) of a minimum-jerk move."""
    x2 = x * x
    return x2 * x * (10.0 - 15.0 * x + 6.0 * x2), 60.0 * x - 180.0 * x2 + 120.0 * x2 * x


def render(script: dict[str, Any], *, strict: bool = True, name: str = "") -> Rendered:
    """Render a script into a trace and its ground-truth passes."""
    sc = check_script(script, strict)
    rng = random.Random(sc.seed)
    plan = _Planner(sc, rng)
    plan.run()
    trace, truth = _sample(sc, plan, random.Random(sc.seed * 7919 + 17))
    _measure_elevation(trace, truth)
    for i, tp in enumerate(truth, 1):
        tp.seq = i
    return Rendered(name or str(script.get("name", "")), script, trace, truth, plan.adjustments)


def _sample(sc: _Script, plan: _Planner, rng: random.Random) -> tuple[Trace, list[TruthPass]]:
    phases = plan.phases
    end = phases[-1].t1
    period = 1000.0 / sc.sample_hz
    n = int(end / period) + 1
    cpm = sc.counts_per_mm
    gauss = rng.gauss
    uniform = rng.uniform
    sin, cos = math.sin, math.cos
    two_pi = 2.0 * math.pi

    # Slow wander of the hand and the head, and tremor (all per session).
    def wave(amp_deg: float, f_lo: float, f_hi: float) -> tuple[float, float, float]:
        return amp_deg * RAD, two_pi * uniform(f_lo, f_hi) / 1000.0, uniform(0, two_pi)

    wander_beta = (wave(4.0, 0.15, 0.3), wave(2.0, 0.3, 0.5))
    wander_psi = wave(2.5, 0.08, 0.2)
    wander_theta = wave(1.5, 0.1, 0.25)
    wander_pitch = wave(2.0, 0.03, 0.08)
    trem_w = two_pi * uniform(*sc.tremor_hz) / 1000.0
    trem_p = [uniform(0, two_pi) for _ in range(6)]
    trem_amp = sc.tremor_deg * RAD
    trem_mm = sc.tremor_mm
    trem_acc_drum = trem_mm * (trem_w * 1000.0) ** 2 / G_MM_S2  # g per unit envelope
    # Hand tremor acceleration along a fixed random direction (g).
    tv = [gauss(0, 1) for _ in range(3)]
    tnorm = math.sqrt(sum(c * c for c in tv)) or 1.0
    trem_vec = [c / tnorm * sc.tremor_mg / 1000.0 for c in tv]
    sigma = rng.choice((-1.0, 1.0))  # which way round the roller is held
    acc_bias = [gauss(0, 8.0) for _ in range(3)]
    gyro_bias = [gauss(0, 300.0) for _ in range(3)]
    acc_sd = sc.accel_mg
    gyro_sd = sc.gyro_mdps

    cols: list[list[int]] = [[] for _ in range(8)]
    t_col, e_col, ax_col, ay_col, az_col, gx_col, gy_col, gz_col = cols
    zone_col: list[str] = []
    zc = plan.zone_changes
    zi = 0
    zone = zc[0][1]

    pi = 0
    ph = phases[0]
    prev_axes: tuple[float, ...] | None = None
    prev_t = 0.0
    last_t_int = 0
    # Encoder flicker while the drum rests on a quadrature edge.
    rest_start = 0.0
    flicker_side = 0
    flicker_from = 0.0
    in_roll = False
    # Truth tracking for the current roll.
    roll_c0 = roll_c1 = 0
    last_t_at_start = 0
    roll_started = False
    roll_ended = False
    jitter = sc.t_jitter_ms

    for k in range(n):
        t = k * period
        if jitter and k:
            t += uniform(-jitter, jitter)
        t_int = int(t + 0.5)
        if t_int < last_t_int:
            t_int = last_t_int
        last_t_int = t_int
        while t >= ph.t1 and pi + 1 < len(phases):
            if ph.truth is not None:
                # A roll shorter than the sample grid: this sample is the first
                # at its end (and its start was the last sample before it).
                if not roll_started:
                    ph.truth.t_start_ms = last_t_at_start
                    roll_started = True
                if not roll_ended:
                    ph.truth.t_end_ms = t_int
                    roll_ended = True
            pi += 1
            ph = phases[pi]
            if ph.kind == "roll":
                roll_c0 = math.floor(ph.s0 * cpm + 0.5)
                roll_c1 = math.floor(ph.s1 * cpm + 0.5)
                roll_started = roll_ended = False
        while zi + 1 < len(zc) and t >= zc[zi + 1][0]:
            zi += 1
            zone = zc[zi][1]

        dur = ph.t1 - ph.t0
        x = (t - ph.t0) / dur if dur > 0 else 1.0
        if x < 0.0:
            x = 0.0
        elif x > 1.0:
            x = 1.0
        # World linear acceleration in the face frame: along u (right), v (up
        # the face) and n (out of the face), in g.
        au = av = an = 0.0
        theta = ph.theta0
        beta = ph.beta0
        if ph.kind == "roll":
            in_roll = True
            delta = ph.s1 - ph.s0
            tx = two_pi * x
            s = ph.s0 + delta * (x - sin(tx) / two_pi)
            acc = delta * two_pi * sin(tx) / (dur / 1000.0) ** 2 / G_MM_S2
            if trem_mm:
                env = sin(math.pi * x)
                env *= env
                env *= env
                tw = sin(trem_w * t + trem_p[0]) * env
                s += trem_mm * tw
                acc -= trem_acc_drum * tw
            au = acc * cos(theta)
            av = acc * sin(theta)
        else:
            if in_roll:
                in_roll = False
                rest_start = ph.t0
                if uniform(0, 1) < sc.enc_flicker:
                    flicker_side = rng.choice((-1, 1))
                    flicker_from = rest_start + uniform(0, 100.0)
                else:
                    flicker_side = 0
            s = ph.s0
            if ph.kind == "air":
                pos, mj_acc = _min_jerk(x)
                theta = ph.theta0 + (ph.theta1 - ph.theta0) * pos
                beta = ph.beta0 + (ph.beta1 - ph.beta0) * pos
                d2 = (dur / 1000.0) ** 2 * G_MM_S2
                au = ph.move[0] * mj_acc / d2
                av = ph.move[1] * mj_acc / d2
                an = ph.lift_mm * 2.0 * math.pi**2 * cos(two_pi * x) / d2
        # Encoder.
        c_true = math.floor(s * cpm + 0.5)
        c = c_true
        if not in_roll and flicker_side and t >= flicker_from and uniform(0, 1) < 0.5:
            c += flicker_side
        if in_roll and ph.truth is not None:
            if not roll_started:
                if c_true == roll_c0:
                    last_t_at_start = t_int
                else:
                    roll_started = True
                    ph.truth.t_start_ms = last_t_at_start
            if not roll_ended and c_true == roll_c1 and roll_started:
                roll_ended = True
                ph.truth.t_end_ms = t_int
        elif not in_roll:
            last_t_at_start = t_int

        # Orientation: wander and tremor on top of the planned angles.
        ts = t
        beta += sum(a * sin(w * ts + p) for a, w, p in wander_beta)
        a, w, p = wander_theta
        theta += a * sin(w * ts + p)
        a, w, p = wander_psi
        psi = a * sin(w * ts + p)
        a, w, p = wander_pitch
        phi = ph.pitch + a * sin(w * ts + p)
        if trem_amp:
            beta += trem_amp * sin(trem_w * ts + trem_p[1])
            psi += trem_amp * sin(trem_w * ts + trem_p[2])
            theta += 0.5 * trem_amp * sin(trem_w * ts + trem_p[3])
        st, ct = sin(theta), cos(theta)
        sp, cp = sin(phi), cos(phi)
        ss, cs = sin(psi), cos(psi)
        sb, cb = sin(beta), cos(beta)
        # Face frame in world coordinates (X right, Y toward the user, Z up).
        # u = (1, 0, 0); v = (0, -sp, cp); n = (0, cp, sp)
        # stroke line r = ct u + st v; in-face axle a = -st u + ct v
        rx, ry, rz = ct, -st * sp, st * cp
        axx, axy, axz = -st, -ct * sp, ct * cp
        nx, ny, nz = 0.0, cp, sp
        # x: axle, tilted out of the face plane by psi
        xx = sigma * (cs * axx + ss * nx)
        xy = sigma * (cs * axy + ss * ny)
        xz = sigma * (cs * axz + ss * nz)
        # handle: off the face (n' = n tilted with the axle), leaning along r by beta
        n2x = cs * nx - ss * axx
        n2y = cs * ny - ss * axy
        n2z = cs * nz - ss * axz
        yx = cb * n2x + sb * rx
        yy = cb * n2y + sb * ry
        yz = cb * n2z + sb * rz
        zx = xy * yz - xz * yy
        zy = xz * yx - xx * yz
        zz = xx * yy - xy * yx
        # Specific force in world coordinates, g: linear acceleration + 1 g up.
        fx = au + trem_vec[0] * sin(trem_w * ts + trem_p[4])
        fy = an * cp - av * sp + trem_vec[1] * sin(trem_w * ts + trem_p[5])
        fz = 1.0 + an * sp + av * cp + trem_vec[2] * sin(trem_w * ts + trem_p[4])
        t_col.append(t_int)
        e_col.append(c)
        ax_col.append(
            round((xx * fx + xy * fy + xz * fz) * 1000.0 + acc_bias[0] + gauss(0, acc_sd))
        )
        ay_col.append(
            round((yx * fx + yy * fy + yz * fz) * 1000.0 + acc_bias[1] + gauss(0, acc_sd))
        )
        az_col.append(
            round((zx * fx + zy * fy + zz * fz) * 1000.0 + acc_bias[2] + gauss(0, acc_sd))
        )
        axes = (xx, xy, xz, yx, yy, yz, zx, zy, zz)
        if prev_axes is None or t <= prev_t:
            wx = wy = wz = 0.0
        else:
            pxx, pxy, pxz, pyx, pyy, pyz, pzx, pzy, pzz = prev_axes
            k2 = MDPS_PER_RAD_S / (2.0 * (t - prev_t) / 1000.0)
            # R_prev^T R: element (i, j) = prev axis i . current axis j
            wx = ((pzx * yx + pzy * yy + pzz * yz) - (pyx * zx + pyy * zy + pyz * zz)) * k2
            wy = ((pxx * zx + pxy * zy + pxz * zz) - (pzx * xx + pzy * xy + pzz * xz)) * k2
            wz = ((pyx * xx + pyy * xy + pyz * xz) - (pxx * yx + pxy * yy + pxz * yz)) * k2
        prev_axes = axes
        prev_t = t
        gx_col.append(round(wx + gyro_bias[0] + gauss(0, gyro_sd)))
        gy_col.append(round(wy + gyro_bias[1] + gauss(0, gyro_sd)))
        gz_col.append(round(wz + gyro_bias[2] + gauss(0, gyro_sd)))
        zone_col.append(zone)

    meta = {
        "sample_hz": "%g" % sc.sample_hz,
        "device": "dermaroll motion model",
        "seed": str(sc.seed),
    }
    meta.update(sc.meta)
    meta.setdefault("note", "synthetic session, seed %d" % sc.seed)
    trace = Trace.from_rows(cpm, cols, zone_col, meta)
    return trace, plan.truth


def _measure_elevation(trace: Trace, truth: list[TruthPass], tau_ms: float = 300.0) -> None:
    """The contract's e for each truth pass, on the rendered accelerometer data."""
    if not truth or not len(trace):
        return
    t = trace.t_ms
    ax, ay, az = trace.ax, trace.ay, trace.az
    gx, gy, gz = float(ax[0]), float(ay[0]), float(az[0])
    ti = 0
    prev = t[0]
    for tp in truth:
        while ti < len(t) and t[ti] < tp.t_start_ms:
            dt = t[ti] - prev
            prev = t[ti]
            k = 1.0 - math.exp(-dt / tau_ms) if dt > 0 else 0.0
            gx += (ax[ti] - gx) * k
            gy += (ay[ti] - gy) * k
            gz += (az[ti] - gz) * k
            ti += 1
        sx = sy = sz = 0.0
        m = 0
        while ti < len(t) and t[ti] <= tp.t_end_ms:
            dt = t[ti] - prev
            prev = t[ti]
            k = 1.0 - math.exp(-dt / tau_ms) if dt > 0 else 0.0
            gx += (ax[ti] - gx) * k
            gy += (ay[ti] - gy) * k
            gz += (az[ti] - gz) * k
            sx += gx
            sy += gy
            sz += gz
            m += 1
            ti += 1
        norm = math.sqrt(sx * sx + sy * sy + sz * sz)
        if m and norm:
            tp.e_deg = math.degrees(math.asin(min(1.0, abs(sx) / norm)))


def write_truth(path: str | os.PathLike[str], rendered: Rendered) -> None:
    """Ground truth as JSON Lines: the passes, then the summary (as `dermaroll replay --json`)."""
    with open(path, "w", encoding="utf-8") as f:
        for tp in rendered.truth:
            f.write(json.dumps(tp.to_json()) + "\n")
        f.write(json.dumps({"type": "summary", "zones": rendered.summary()}) + "\n")


# ---------------------------------------------------------------------------
# Corpus and demo

CORPUS_HZ = (50, 100, 200)
CORPUS_CPM = (0.8, 1.0, 1.53, 2.5, 4.0, 7.07, 10.0, 14.0, 20.0)
NOISE_LEVELS: dict[str, dict[str, Any]] = {
    "quiet": {
        "noise": {"accel_mg": 2, "gyro_mdps": 50, "enc_flicker": 0.2},
        "tremor": {"mm": 0.0, "accel_mg": 0, "deg": 0.0},
    },
    "normal": {
        "noise": {"accel_mg": 8, "gyro_mdps": 300, "enc_flicker": 0.5},
        "tremor": {"mm": 0.1, "accel_mg": 20, "deg": 0.15},
    },
    "heavy": {
        "noise": {"accel_mg": 40, "gyro_mdps": 3000, "enc_flicker": 0.9},
        "tremor": {"mm": 0.25, "accel_mg": 80, "deg": 0.5},
    },
}
CUSTOM_ZONES = ("neck", "left_temple", "right_temple", "jawline")


def corpus_scripts(n: int = 32, seed: int = 0) -> list[dict[str, Any]]:
    """`n` varied session scripts covering every case the model knows.

    Cycles through 50/100/200 Hz and 0.8..20 counts/mm (every pair within 27
    sessions) and quiet/normal/heavy noise and tremor; mixes back-and-forth,
    lift-and-return and pause-separated passes, diagonal passes, adjustments,
    rests, zone changes, revisits, custom zone ids, passes with no zone, and
    zones rolled horizontally first (the `order` remark).
    """
    out = []
    for i in range(n):
        rng = random.Random(seed * 1_000_003 + i)
        hz = CORPUS_HZ[i % 3]
        cpm = CORPUS_CPM[(i // 3) % len(CORPUS_CPM)]
        level = ("normal", "heavy", "quiet")[(i // 2) % 3] if i % 7 != 6 else "heavy"
        period = 1000.0 / hz
        script: dict[str, Any] = {
            "name": "corpus-%02d" % i,
            "seed": seed * 1000 + i,
            "sample_hz": hz,
            "t_jitter_ms": round(period / 4 if level != "quiet" else 0.0, 2),
            "counts_per_mm": cpm,
            "noise": dict(NOISE_LEVELS[level]["noise"]),
            "tremor": dict(NOISE_LEVELS[level]["tremor"]),
            "note": "corpus session %d (%s noise)" % (i, level),
        }
        ids = [z for z in DEFAULT_ZONES if rng.random() < 0.45] or [rng.choice(DEFAULT_ZONES)]
        ids = ids[:4]
        if i % 5 == 0 or rng.random() < 0.15:
            ids.insert(rng.randrange(len(ids) + 1), rng.choice(CUSTOM_ZONES))
        if i % 4 == 1 or rng.random() < 0.2:
            ids.insert(rng.randrange(len(ids) + 1), "")
        if i % 6 == 4 and len(ids) > 1:
            ids.append(ids[0])  # a revisit: counts add up
        zones = []
        for zi, zone in enumerate(ids):
            strokes: list[dict[str, Any]] = []
            order_case = (i % 6 == 2 and zi == 0) or rng.random() < 0.15
            dirs = ["horizontal", "vertical"] if order_case else ["vertical", "horizontal"]
            if rng.random() < 0.2:
                dirs.pop()  # only one direction in this zone
            if (i % 4 == 3 and zi == 0) or rng.random() < 0.2:
                dirs.insert(rng.randrange(len(dirs) + 1), "diagonal")
            for d in dirs:
                style = rng.choice(STYLES)
                if i % 3 == 0 and zi == 0:
                    style = STYLES[(i // 3 + len(strokes)) % 3]
                group: dict[str, Any] = {
                    "dir": d,
                    "passes": rng.randint(2, 6),
                    "style": style,
                    "length_mm": [20 + rng.randint(0, 10), 35 + rng.randint(0, 25)],
                    "speed_mm_s": [25 + rng.randint(0, 20), 70 + rng.randint(0, 60)],
                }
                if d == "diagonal":
                    group["angle_deg"] = [40, 50]
                if style == "back_and_forth" and rng.random() < 0.3:
                    group["turn_ms"] = [300, 900]  # some turns outlast pause_ms
                if style != "back_and_forth":
                    group["pause_ms"] = [700 + rng.randint(0, 300), 1000 + rng.randint(0, 600)]
                strokes.append(group)
                if rng.random() < 0.3 or (i % 3 == 1 and zi == 0 and len(strokes) == 1):
                    strokes.append({"adjust": rng.randint(1, 3)})
            if rng.random() < 0.15:
                strokes.append({"rest_ms": rng.randint(1000, 3000)})
            zones.append({"zone": zone or None, "strokes": strokes})
        script["zones"] = zones
        out.append(script)
    return out


def generate_corpus(n: int = 32, seed: int = 0) -> list[Rendered]:
    """Render `n` corpus sessions (see corpus_scripts)."""
    return [render(s, name=s["name"]) for s in corpus_scripts(n, seed)]


def everyday_script(name: str, seed: int, zones: list[dict[str, Any]]) -> dict[str, Any]:
    """A script with the reference hardware and an ordinary hand: 100 Hz, 7.07 counts/mm,
    light sensor noise and tremor."""
    return {
        "name": name,
        "seed": seed,
        "sample_hz": 100,
        "t_jitter_ms": 2,
        "counts_per_mm": 7.07,
        "noise": {"accel_mg": 8, "gyro_mdps": 300, "enc_flicker": 0.5},
        "tremor": {"mm": 0.1, "accel_mg": 20, "deg": 0.15},
        "zones": zones,
    }


_DEMO_ZONES: list[dict[str, Any]] = [
    {
        "zone": "forehead",
        "strokes": [
            {"dir": "vertical", "passes": 5, "style": "back_and_forth"},
            {"adjust": 2},
            {"dir": "horizontal", "passes": 4, "style": "lift"},
        ],
    },
    {
        "zone": "nose",
        "strokes": [
            {"dir": "horizontal", "passes": 2, "style": "pause"},
            {"dir": "vertical", "passes": 4, "style": "back_and_forth"},
        ],
    },
    {"zone": None, "strokes": [{"dir": "diagonal", "passes": 2, "style": "lift"}]},
]


def demo_script(seed: int = 1) -> dict[str, Any]:
    """A short session: forehead done right, nose out of order, some unassigned rolling."""
    script = everyday_script("demo", seed, copy.deepcopy(_DEMO_ZONES))
    script["note"] = "dermaroll demo session"
    return script
