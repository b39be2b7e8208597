"""Every benchmark runs (quickly) and prints numbers; none is judged on time."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import run as bench_run  # noqa: E402


@pytest.mark.parametrize("script", bench_run.benchmarks(), ids=lambda p: p.parent.name)
def test_benchmark_runs_quick_and_prints_numbers(script):
    proc = subprocess.run(
        [sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"\d+(\.\d+)?\s*(µs|us|/s|samples/s|x)", proc.stdout), proc.stdout
