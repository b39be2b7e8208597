"""Run every benchmark of the repo: `make bench` (full) or `python bench/run.py --quick`.

Each area keeps its benchmark in bench/<area>/bench_*.py and its recorded
results in bench/<area>/README.md. Numbers are printed, never judged: a
benchmark fails only if it cannot run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks() -> list[Path]:
    """Every bench/<area>/bench_*.py, in a stable order."""
    return sorted(HERE.glob("*/bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (CI smoke run)")
    args = ap.parse_args(argv)
    failed = []
    for script in benchmarks():
        print("== %s" % script.relative_to(HERE.parent), flush=True)
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        if subprocess.call(cmd) != 0:
            failed.append(script.name)
    if failed:
        print("benchmarks that did not run: %s" % ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
