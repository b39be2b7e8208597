"""`dermaroll sim` and `dermaroll demo` on the virtual board, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dermaroll.board import runner
from tests.board.boardtest import MPREMOTE, need_micropython


def _procs_in(directory: Path) -> list[int]:
    """Processes whose working directory is `directory` (the board's interpreters)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink("/proc/%s/cwd" % entry) == str(directory):
                    out.append(int(entry))
            except OSError:
                pass
    return out


def _read_until(proc: subprocess.Popen, text: str, timeout: float = 60) -> str:
    assert proc.stdout is not None
    seen = ""
    end = time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < end, "no %r in sim output:\n%s" % (text, seen)
        line = proc.stdout.readline()
        assert line, "sim ended early:\n%s" % seen
        seen += line
    return seen


def test_sim_prints_how_to_reach_the_board_serves_mpremote_and_stops_on_ctrl_c(tmp_path):
    need_micropython()
    script = tmp_path / "session.json"
    script.write_text(json.dumps(runner.board_demo_script(5)))
    flash = tmp_path / "flash"
    link = tmp_path / "roller-console"
    cmd = [sys.executable, "-m", "dermaroll.cli", "sim", "--script", str(script)]
    cmd += ["--speed", "max", "--fs", str(flash), "--port-link", str(link), "--no-radio"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        head = _read_until(proc, "Ctrl-C stops the board.")
        assert "console: /dev/pts/" in head and str(link) in head, head
        assert (flash / "main.py").exists() and (flash / "roller" / "detector.py").exists()
        assert os.path.realpath(link).startswith("/dev/pts/")
        done = _read_until(proc, "script done:")
        assert "F1 1.0000" in done and "| PASS 1 forehead vertical" in done, done
        out = subprocess.run(
            [
                str(MPREMOTE),
                "connect",
                str(link),
                "exec",
                "print(sorted(__import__('os').listdir()))",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0 and "'main.py'" in out.stdout, out
        assert _procs_in(flash)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, rest
        assert "board stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not link.exists()
    assert _procs_in(flash) == []  # the interpreter went with it


def test_sim_rejects_bad_arguments_in_one_line(tmp_path):
    for args in (["--speed", "0.5"], ["--fault", "boom@3"], ["--script", str(tmp_path / "none")]):
        proc = subprocess.run(
            [sys.executable, "-m", "dermaroll.cli", "sim", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode in (1, 2) and proc.stdout == "", (args, proc)
        assert proc.stderr.count("\n") == 1, proc.stderr


def test_fault_arguments_name_the_runner_faults():
    from dermaroll.cli import _parse_fault

    assert _parse_fault("tear@5000:7") == runner.torn_write(5000, 7)
    assert _parse_fault("cut@10") == runner.power_cut(10)
    assert _parse_fault("unplug@1:2") == runner.imu_unplug(1, 2)


def test_demo_runs_on_the_virtual_board_and_shows_passes_live():
    need_micropython()
    proc = subprocess.run(
        [sys.executable, "-m", "dermaroll.cli", "demo", "--speed", "max"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "virtual board" in proc.stdout and "MicroPython" in proc.stdout
    passes = [line for line in proc.stdout.splitlines() if "] PASS " in line]
    assert len(passes) == 21, proc.stdout
    assert "per-zone counts match" in proc.stdout
