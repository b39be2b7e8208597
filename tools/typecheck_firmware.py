"""Type-check the device code against the ESP32 MicroPython stubs, not CPython's.

mypy gets the MicroPython stdlib stubs as its typeshed and the ESP32 board
stubs (machine, bluetooth, micropython, esp32, ...) on its search path, so the
firmware can only call APIs an ESP32_GENERIC board has. Function bodies are
checked even without annotations (--check-untyped-defs).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVICE_CODE = ["firmware", "protocol"]


def board_stubs(site: Path) -> tuple[Path, list[str]]:
    """A folder holding only the ESP32 board stubs (links into site-packages), and their names."""
    out = ROOT / "build" / "esp32-stubs"
    out.mkdir(parents=True, exist_ok=True)
    tops = set()
    for dist in ("micropython-esp32-stubs", "micropython-stdlib-stubs"):
        tops |= {Path(str(f)).parts[0] for f in metadata.distribution(dist).files or []}
    names = []
    for top in sorted(tops):
        src = site / top
        if top in ("stdlib", "stubs") or not (src.suffix == ".pyi" or src.is_dir()):
            continue
        if top.endswith(".dist-info"):
            continue
        link = out / top
        if not link.exists():
            link.symlink_to(src)
        names.append(top.removesuffix(".pyi"))
    return out, names


def config(stub_names: list[str]) -> Path:
    """mypy settings: errors inside the third-party stubs are theirs, not ours."""
    path = ROOT / "build" / "mypy-firmware.ini"
    sections = ["[mypy]", "warn_unused_ignores = True"]
    for name in stub_names:
        sections += ["[mypy-%s.*]" % name, "ignore_errors = True"]
        sections += ["[mypy-%s]" % name, "ignore_errors = True"]
    path.write_text("\n".join(sections) + "\n")
    return path


def main() -> int:
    site = Path(sysconfig.get_paths()["purelib"])
    if not (site / "stdlib" / "VERSIONS").exists():
        print(
            "typecheck: the MicroPython stubs are not installed; run `make setup`", file=sys.stderr
        )
        return 2
    stub_dir, stub_names = board_stubs(site)
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(config(stub_names)),
        "--custom-typeshed-dir",
        str(site),
        "--python-version",
        "3.11",
        "--no-site-packages",
        "--explicit-package-bases",
        "--check-untyped-defs",
        "--no-error-summary" if "-q" in sys.argv else "--pretty",
        *[p for p in DEVICE_CODE if any((ROOT / p).rglob("*.py"))],
    ]
    env_path = [str(stub_dir), *(str(ROOT / p) for p in DEVICE_CODE)]
    env = dict(os.environ, MYPYPATH=os.pathsep.join(env_path))
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
