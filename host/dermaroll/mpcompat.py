"""Lets the firmware's core modules import under CPython.

The firmware is written as ordinary MicroPython (`from micropython import
const`). Under CPython we register a minimal `micropython` module with the
same names before importing it; nothing in the firmware knows the difference.
"""

import sys
import types


def _identity(func):
    return func


def install() -> None:
    """Register the `micropython` shim unless a real or shim module is already there."""
    if "micropython" in sys.modules:
        return
    shim = types.ModuleType("micropython")
    shim.const = lambda value: value  # type: ignore[attr-defined]
    shim.native = _identity  # type: ignore[attr-defined]
    shim.viper = _identity  # type: ignore[attr-defined]
    shim.heap_lock = lambda: 0  # type: ignore[attr-defined]
    shim.heap_unlock = lambda: 0  # type: ignore[attr-defined]
    shim.schedule = lambda func, arg: func(arg)  # type: ignore[attr-defined]
    shim.__doc__ = "CPython stand-in for MicroPython's micropython module (dermaroll.mpcompat)."
    sys.modules["micropython"] = shim
