"""Whether a counter grew lately: Status bits about now, not about ever (SPEC 5.3)."""

import time


class Recent:
    """Tracks one ever-growing counter; `grew()` says if it grew within `hold_ms`."""

    def __init__(self, hold_ms):
        self.hold_ms = hold_ms
        self.n = 0
        self.at = 0
        self.seen = False

    def grew(self, n, now):
        """Feed the counter's value at ticks_ms `now`; True if it grew in the last hold_ms."""
        if n > self.n:
            self.at = now
            self.seen = True
        self.n = n  # a counter that restarted (the sampler after a wake) is no news
        return self.seen and time.ticks_diff(now, self.at) < self.hold_ms
