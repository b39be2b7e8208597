"""The firmware core's MicroPython tests, run again under CPython.

The motion core runs unchanged in both interpreters (the host replays traces
with it), so its contract tests run in both. `micropython` is the host's shim
(dermaroll.mpcompat). Tests about allocation (named `*alloc*`) are skipped
here: allocation is a MicroPython property, proved inside MicroPython.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from dermaroll import mpcompat

HERE = Path(__file__).parent
CORE_TEST_FILES = ["mpy_test_detector", "mpy_test_session", "mpy_test_settings"]

mpcompat.install()
sys.path[:0] = [str(HERE), str(HERE.parent / "mpy_lib")]


def _cases():
    for name in CORE_TEST_FILES:
        module = importlib.import_module(name)
        for attr in sorted(vars(module)):
            if attr.startswith("test_"):
                yield pytest.param(getattr(module, attr), id="%s.%s" % (name, attr))


@pytest.mark.parametrize("test", list(_cases()))
def test_core_under_cpython(test):
    if "alloc" in test.__name__:
        pytest.skip("allocation is a MicroPython property; this test runs there")
    test()
