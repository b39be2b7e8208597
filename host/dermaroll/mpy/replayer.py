"""The replay loop: the firmware's own Detector and Session over trace samples.

One implementation for both runtimes. Inside MicroPython, `main()` reads the
pipe of docs/ARCHITECTURE.md (a JSON line of setting overrides, then int32
records) from stdin; under CPython the host feeds a `Replay` directly. Both
write the same text lines:

    P seq zone dir t_start t_end length_01mm      one per pass, in order
    Z zone vertical horizontal diagonal verdict_v verdict_h order
    E samples
"""

from array import array

from roller.detector import DIAGONAL, HORIZONTAL, VERTICAL, Detector
from roller.session import PASS_FIELDS, Session
from roller.settings import Settings
from roller.zones import MAX_ZONES

RECORD_INTS = 6  # t_ms, enc, ax, ay, az, zone
CHUNK_RECORDS = 4096


class Replay:
    """Runs samples through a Detector into a Session and writes the result lines."""

    def __init__(self, overrides, write):
        settings = Settings()
        settings.update(overrides)
        self.session = Session(settings)
        self.detector = Detector(settings, self.session)
        self.write = write
        self.samples = 0
        self._rec = array("i", bytes(4 * PASS_FIELDS))

    def feed(self, ts, encs, axs, ays, azs, zones, n=None):
        """Replay the first `n` samples of the given columns (all of them by default)."""
        det = self.detector
        ses = self.session
        accel = det.accel
        enc = det.enc
        if n is None:
            n = len(ts)
        for i in range(n):
            t = ts[i]
            accel(t, axs[i], ays[i], azs[i])
            enc(t, encs[i], zones[i])
            if ses.pending:
                self._report()
        self.samples += n

    def feed_records(self, buf, n):
        """Replay `n` packed records (RECORD_INTS ints each) from the array `buf`."""
        det = self.detector
        ses = self.session
        accel = det.accel
        enc = det.enc
        for i in range(0, n * RECORD_INTS, RECORD_INTS):
            t = buf[i]
            accel(t, buf[i + 2], buf[i + 3], buf[i + 4])
            enc(t, buf[i + 1], buf[i + 5])
            if ses.pending:
                self._report()
        self.samples += n

    def _report(self):
        rec = self._rec
        while self.session.pop(rec):
            self.write("P %d %d %d %d %d %d\n" % (rec[0], rec[1], rec[2], rec[3], rec[4], rec[5]))

    def finish(self):
        """End of data: close the open stroke and write the summary lines."""
        self.detector.flush()
        self._report()
        ses = self.session
        for zone in range(MAX_ZONES):
            if not ses.used(zone):
                continue
            self.write(
                "Z %d %d %d %d %d %d %d\n"
                % (
                    zone,
                    ses.count(zone, VERTICAL),
                    ses.count(zone, HORIZONTAL),
                    ses.count(zone, DIAGONAL),
                    ses.verdict(zone, VERTICAL),
                    ses.verdict(zone, HORIZONTAL),
                    1 if ses.order(zone) else 0,
                )
            )
        self.write("E %d\n" % self.samples)


def _read_full(stream, mv):
    """Fill `mv` from `stream` unless it ends first; returns the bytes read."""
    got = 0
    size = len(mv)
    while got < size:
        n = stream.readinto(mv[got:])
        if not n:
            break
        got += n
    return got


def main():
    """MicroPython entry: replay the pipe on stdin, write result lines to stdout."""
    import json
    import sys

    import uctypes

    stdin = sys.stdin.buffer
    replay = Replay(json.loads(stdin.readline()), sys.stdout.write)
    buf = array("i", bytes(4 * RECORD_INTS * CHUNK_RECORDS))
    # A byte view of the int array, so readinto fills the ints without a copy.
    raw = memoryview(uctypes.bytearray_at(uctypes.addressof(buf), 4 * len(buf)))
    record_bytes = 4 * RECORD_INTS
    while True:
        got = _read_full(stdin, raw)
        stray = got % record_bytes
        if stray:
            raise ValueError("replay pipe ended inside a record (%d stray bytes)" % stray)
        replay.feed_records(buf, got // record_bytes)
        if got < len(raw):
            break
    replay.finish()
