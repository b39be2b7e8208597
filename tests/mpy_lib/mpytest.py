"""Small helpers for tests that run inside MicroPython."""

import gc
import os

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


_GARBAGE = 4096  # larger than any allocation a watched call could keep


def _garbage(size):
    junk = bytearray(size)
    return len(junk)


class HeapWatch:
    """Catches any heap use inside watched calls, which a locked heap can miss.

    A bytecode call whose arguments, locals and stack exceed about 11 words
    takes its frame from the heap, and only falls back to the C stack while
    the heap is locked (no_alloc). Here the heap stays open: before each
    watched call an unreachable block is left behind, and during the call
    every allocation first runs a collection (gc.threshold(0)). If the call
    allocates at all, the block is freed and gc.mem_alloc() drops across it;
    `used()` adds those drops up. Collections between watched calls (code
    that is not watched, such as the simulated hardware) do not count.
    """

    def __init__(self):
        self.freed = 0
        self.before = 0

    def start(self):
        """Begin watching the code that follows (in the caller's own frame)."""
        _garbage(_GARBAGE)
        self.before = gc.mem_alloc()
        gc.threshold(0)

    def stop(self):
        """End watching; returns the bytes freed since start() (0: nothing allocated)."""
        gc.threshold(-1)
        drop = self.before - gc.mem_alloc()
        if drop < 0:
            drop = 0
        self.freed += drop
        return drop

    def call(self, func, arg=None):
        """Call func() (or func(arg)) under watch; returns its result."""
        self.start()
        try:
            result = func() if arg is None else func(arg)
        finally:
            self.stop()
        return result

    def used(self):
        """Bytes collections freed during watched calls (0: none of them allocated)."""
        return self.freed


def heap_used(func, arg=None):
    """Heap use of one call of func() (or func(arg)), frames included: see HeapWatch."""
    watch = HeapWatch()
    watch.call(func, arg)
    return watch.used()


def raises(exc, func, *args):
    """Assert that func(*args) raises `exc`; return the exception."""
    try:
        func(*args)
    except exc as e:
        return e
    raise AssertionError("%s not raised by %r" % (exc.__name__, func))


def rmtree(path):
    """Remove a flat directory of files (MicroPython's os has no shutil)."""
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        os.remove(path + "/" + name)
    os.rmdir(path)
