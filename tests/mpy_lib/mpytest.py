"""Small helpers for tests that run inside MicroPython."""

import gc

import micropython


def no_alloc(func, arg=None):
    """Call func() (or func(arg)) with the heap locked; a MemoryError means it allocated.

    No *args here: a star-call allocates in MicroPython even when empty.
    """
    gc.collect()
    micropython.heap_lock()
    try:
        result = func() if arg is None else func(arg)
    finally:
        micropython.heap_unlock()
    return result


def raises(exc, func, *args):
    """Assert that func(*args) raises `exc`; return the exception."""
    try:
        func(*args)
    except exc as e:
        return e
    raise AssertionError("%s not raised by %r" % (exc.__name__, func))
