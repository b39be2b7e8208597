"""`dermaroll replay` throughput, file to summary, in both runtimes.

Renders a 10-minute 200 Hz session with the motion model (a 1-minute one with
--quick), writes it as a trace file, then times the whole command
(`dermaroll replay TRACE --json --runtime R`, a fresh process each run, so
interpreter start-up, imports, reading and validating the CSV, the detector
and the output all count) and, in this process, the parts: CSV parsing,
packing the pipe records, and the replay itself. Prints samples/s and the
share the CSV parse takes; never judges a time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from dermaroll import motion, replay
from dermaroll.trace import read_trace, records, write_trace


def session_script(minutes: float, seed: int = 7) -> dict[str, Any]:
    """Zone after zone, vertical then horizontal, styles and noise varying, ~`minutes` long."""
    zones = []
    styles = motion.STYLES
    k = 0
    # about 20 s per zone block at these settings
    for i in range(max(1, int(minutes * 3))):
        zone = motion.DEFAULT_ZONES[i % len(motion.DEFAULT_ZONES)]
        strokes: list[dict[str, Any]] = []
        for d in ("vertical", "horizontal"):
            strokes.append({"dir": d, "passes": 4 + (k % 3), "style": styles[k % 3]})
            k += 1
        if i % 3 == 0:
            strokes.append({"adjust": 2})
        if i % 4 == 1:
            strokes.append({"dir": "diagonal", "passes": 2, "style": "lift"})
        zones.append({"zone": zone if i % 7 != 6 else None, "strokes": strokes})
    return {
        "name": "bench",
        "seed": seed,
        "sample_hz": 200,
        "t_jitter_ms": 1.0,
        "counts_per_mm": 7.07,
        "noise": {"accel_mg": 8, "gyro_mdps": 300, "enc_flicker": 0.5},
        "tremor": {"mm": 0.1, "accel_mg": 20, "deg": 0.15},
        "zones": zones,
    }


def render_minutes(minutes: float) -> motion.Rendered:
    """A session of exactly `minutes` (a final rest pads it)."""
    script = session_script(minutes)
    r = motion.render(script)
    want = minutes * 60000
    while r.trace.duration_ms > want and len(script["zones"]) > 1:
        script["zones"].pop()
        r = motion.render(script)
    pad = want - r.trace.duration_ms
    if pad > 0:
        script["zones"][-1]["strokes"].append({"rest_ms": pad})
        r = motion.render(script)
    return r


def best(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def empty_loop_ns() -> float:
    n = 1_000_000
    t0 = time.perf_counter()
    for _ in range(n):
        pass
    return (time.perf_counter() - t0) / n * 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1-minute session, one run each")
    ap.add_argument("--minutes", type=float, help="session length (default 10, quick 1)")
    args = ap.parse_args(argv)
    minutes = args.minutes or (1.0 if args.quick else 10.0)
    reps = 1 if args.quick else 5

    rendered = render_minutes(minutes)
    t0 = time.perf_counter()
    motion.render(rendered.script)  # once more, timed: the motion model's own speed
    render_s = time.perf_counter() - t0
    n = len(rendered.trace)
    exe = replay.find_micropython()
    print(
        "session: %.1f min at 200 Hz, %d samples, %d passes (motion model: %.1f s, %.0f samples/s)"
        % (rendered.trace.duration_ms / 60000, n, len(rendered.truth), render_s, n / render_s)
    )
    print("python %s; micropython: %s" % (sys.version.split()[0], exe or "not installed"))
    loop_ns = empty_loop_ns()
    print("empty CPython loop iteration: %.1f ns" % loop_ns)

    with tempfile.TemporaryDirectory(prefix="dermaroll-bench-") as tmp:
        path = os.path.join(tmp, "session.csv")
        write_trace(path, rendered.trace)
        size = os.path.getsize(path)
        print("trace file: %.1f MB" % (size / 1e6))

        parse_s = best(lambda: read_trace(path), reps)
        trace = read_trace(path)
        zone_map, _ = replay.zone_table(trace)
        pack_s = best(lambda: records(trace, zone_map), reps)
        cpy_s = best(lambda: replay.replay(trace, "cpython"), reps)
        print()
        print("in-process parts (best of %d):" % reps)
        print(
            "  CSV parse + validation : %8.3f s  %10.0f samples/s  %6.2f us/sample  (%.0f x loop)"
            % (parse_s, n / parse_s, parse_s / n * 1e6, parse_s / n * 1e9 / loop_ns)
        )
        print(
            "  pack pipe records      : %8.3f s  %10.0f samples/s  %6.2f us/sample"
            % (pack_s, n / pack_s, pack_s / n * 1e6)
        )
        print(
            "  replay, CPython        : %8.3f s  %10.0f samples/s  %6.2f us/sample  (%.0f x loop)"
            % (cpy_s, n / cpy_s, cpy_s / n * 1e6, cpy_s / n * 1e9 / loop_ns)
        )
        if exe:
            mpy_s = best(lambda: replay.replay(trace, "micropython"), reps)
            print(
                "  replay, MicroPython    : %8.3f s  %10.0f samples/s  %6.2f us/sample"
                " (pack + pipe + subprocess)" % (mpy_s, n / mpy_s, mpy_s / n * 1e6)
            )

        print()
        print(
            "whole command, file to summary (`dermaroll replay TRACE --json`), best of %d:" % reps
        )
        cmd = [sys.executable, "-m", "dermaroll.cli", "replay", path, "--json", "--runtime"]
        for runtime in ("cpython", "micropython"):
            if runtime == "micropython" and not exe:
                print("  %-11s: skipped (interpreter not installed)" % runtime)
                continue

            def run(rt: str = runtime) -> None:
                proc = subprocess.run(cmd + [rt], capture_output=True)
                if proc.returncode != 0:
                    raise SystemExit("replay failed: %s" % proc.stderr.decode()[-300:])

            whole = best(run, reps)
            print(
                "  %-11s: %8.3f s  %10.0f samples/s  (CSV parse share %.0f%%)"
                % (runtime, whole, n / whole, 100 * parse_s / whole)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
