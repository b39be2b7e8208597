"""pytest set-up: collects `mpy_test_*.py` files and runs their tests inside MicroPython.

A file named `mpy_test_*.py` is MicroPython code. Each top-level `def test_*`
in it becomes a pytest item that imports the file in the real `micropython`
interpreter and calls the function; a MicroPython exception fails the item
and shows MicroPython's own traceback.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from tests import micropython_harness as harness


def _is_micropython_test(path: Path) -> bool:
    return path.suffix == ".py" and path.name.startswith("mpy_test_")


def pytest_collect_file(parent, file_path: Path):
    # A file named on the command line is collected through the hook below.
    if _is_micropython_test(file_path) and not parent.session.isinitpath(file_path):
        return MicroPythonFile.from_parent(parent, path=file_path)
    return None


def pytest_pycollect_makemodule(module_path: Path, parent):
    if _is_micropython_test(module_path):
        return MicroPythonFile.from_parent(parent, path=module_path)
    return None


class MicroPythonFile(pytest.File):
    def collect(self):
        tree = ast.parse(self.path.read_text(encoding="utf-8"), str(self.path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                yield MicroPythonItem.from_parent(self, name=node.name)


class MicroPythonItem(pytest.Item):
    def runtest(self):
        if harness.find_micropython() is None:
            if os.environ.get("CI"):
                pytest.fail(harness.MISSING + "; CI must run the MicroPython tests")
            pytest.skip(harness.MISSING)
        module = self.path.stem
        code = "import %s\n%s.%s()\n" % (module, module, self.name)
        harness.run(code, path=[self.path.parent])

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, harness.MicroPythonFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, "micropython: %s" % self.name
