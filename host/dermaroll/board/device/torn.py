"""Torn writes: a power cut in the middle of a flash write (the `tear` fault).

The unix port writes a file with one write(2) per call, unbuffered, and a
power cut (SIGKILL at a firmware wait) falls between two writes: a record is
on the flash whole or not at all. On a real flash a write is programmed page
by page, and the power can go in the middle of it. With a `tear` fault in
its world, vboard.World calls install(): `open` (the builtin) then wraps
every file opened for writing. Once the fault is due, World calls arm(), and
the next write to such a file puts only its first `keep` bytes on the flash,
reports the tear on the fault log, and cuts the power there: nothing after
it reaches the file, the interpreter is killed as by any power cut.

Files opened before install() (the control pipe, the world trace) and files
opened for reading stay the built-in file objects.
"""

import builtins

import machine

_open = builtins.open
_armed = None  # (keep, report): the next write tears


def install():
    """Wrap the files the firmware opens for writing from now on."""
    builtins.open = _open_flash


def arm(keep, report):
    """The next write keeps `keep` bytes, calls report(text), and cuts the power."""
    global _armed
    _armed = (keep, report)


def _open_flash(name, mode="r", *args, **kw):
    f = _open(name, mode, *args, **kw)
    if "w" in mode or "a" in mode or "+" in mode:
        return _File(f, name)
    return f


class _File:
    """A file opened for writing; write() is where a tear lands."""

    def __init__(self, f, name):
        self._f = f
        self._name = name

    def write(self, data):
        if _armed is None:
            return self._f.write(data)
        keep, report = _armed
        at = self._f.tell()
        n = min(keep, len(data))
        if n:
            self._f.write(memoryview(data)[:n])
            self._f.flush()
        report("tear %s at %d kept %d of %d" % (self._name, at, n, len(data)))
        machine.request("C", "tear")  # never returns: the runner kills this interpreter

    def __getattr__(self, attr):  # seek, flush, read, readinto, tell, close, ...
        return getattr(self._f, attr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
