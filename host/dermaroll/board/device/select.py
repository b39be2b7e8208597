"""`select` for the virtual board: poll() whose timeouts are in virtual time.

Shadows the built-in `select` (the real one is `uselect`). The frozen asyncio
waits for its next task in `select.poll().ipoll(ms)`; here that wait goes
through the virtual clock (`time._wait`): scaled by the board's speed,
skipped when the board runs as fast as allowed, and cut short when a board
event (Timer, watchdog, fault, button edge) is due.
"""

import time as _time

import uselect
from uselect import POLLERR, POLLHUP, POLLIN, POLLOUT  # noqa: F401


class _Poll:
    def __init__(self):
        self._p = uselect.poll()

    def register(self, obj, eventmask=POLLIN | POLLOUT):
        self._p.register(obj, eventmask)

    def unregister(self, obj):
        self._p.unregister(obj)

    def modify(self, obj, eventmask):
        self._p.modify(obj, eventmask)

    def poll(self, timeout=-1):
        return self._p.poll(_time._wait(timeout))

    def ipoll(self, timeout=-1, flags=0):
        return self._p.ipoll(_time._wait(timeout), flags)


def poll():
    return _Poll()
