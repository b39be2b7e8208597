"""Session counts rebuilt from the pass log after a reboot (roller.recovery)."""

import os
from array import array

from mpy_test_passlog import reopen, rmtree, tmpdir
from mpytest import raises

from roller import recovery, zones
from roller.detector import DIAGONAL, HORIZONTAL, VERTICAL
from roller.session import PASS_FIELDS, Session
from roller.settings import Settings

FOREHEAD = zones.NAMES.index("forehead")
NOSE = zones.NAMES.index("nose")
CHIN = zones.NAMES.index("chin")


class Device:
    """The firmware's loop in small: detector passes -> session -> log, as the app will."""

    def __init__(self, path):
        self.path = path
        self.log = reopen(path, 4, 16)  # room for every pass of these sessions
        self.ses = Session(Settings())
        self.snap = recovery.Snapshot(path + "/session.bin")
        recovery.restore(self.log, self.ses, self.snap)
        self.p = array("i", bytes(4 * PASS_FIELDS))
        self.t = 0

    def roll(self, zone, direction, n=1):
        for _ in range(n):
            self.ses.on_pass(zone, direction, self.t, self.t + 500, 320)
            self.t += 800
            while self.ses.pop(self.p):
                assert self.log.append(self.p, self.ses.id, 0)

    def start(self):
        self.ses.start()
        self.snap.save(self.ses, self.ses.seq)

    def reset(self):
        self.ses.reset()
        self.snap.save(self.ses, self.ses.seq)

    def end(self):
        self.ses.end()
        self.snap.save(self.ses, self.snap.since)


def picture(ses):
    """Everything a Session shows: counts, verdicts, remarks, id, active, seq."""
    out = []
    for z in range(zones.MAX_ZONES):
        for d in (VERTICAL, HORIZONTAL, DIAGONAL):
            out.append(ses.count(z, d))
        out.append(ses.verdict(z, VERTICAL))
        out.append(ses.verdict(z, HORIZONTAL))
        out.append(ses.order(z))
    return out + [ses.id, ses.active, ses.seq, ses.pending, ses.dropped]


def test_counts_after_a_reboot_mid_session_equal_the_counts_before():
    path = tmpdir("rebuild")
    dev = Device(path)
    dev.roll(CHIN, VERTICAL, 3)  # before any session: session id 0
    dev.start()
    dev.roll(FOREHEAD, VERTICAL, 5)
    dev.roll(FOREHEAD, HORIZONTAL, 4)
    dev.roll(NOSE, HORIZONTAL, 1)  # horizontal first: the `order` remark
    dev.roll(NOSE, VERTICAL, 6)
    dev.roll(NOSE, DIAGONAL, 2)
    before = picture(dev.ses)
    assert dev.ses.order(NOSE) and dev.ses.count(CHIN, VERTICAL) == 0
    dev = Device(path)  # reboot
    assert picture(dev.ses) == before, (picture(dev.ses), before)
    dev.roll(NOSE, DIAGONAL)  # goes on where it was
    assert dev.ses.count(NOSE, DIAGONAL) == 3 and dev.ses.seq == before[-3] + 1
    rmtree(path)


def test_only_the_current_session_since_its_last_reset_counts():
    path = tmpdir("since")
    dev = Device(path)
    dev.start()
    dev.roll(FOREHEAD, VERTICAL, 4)
    dev.end()
    dev.start()
    dev.roll(NOSE, VERTICAL, 2)
    dev.reset()
    dev.roll(CHIN, HORIZONTAL, 3)
    before = picture(dev.ses)
    dev = Device(path)
    assert picture(dev.ses) == before
    assert dev.ses.count(CHIN, HORIZONTAL) == 3 and dev.ses.count(NOSE, VERTICAL) == 0
    dev.end()
    before = picture(dev.ses)
    dev = Device(path)  # an ended session keeps its counts until the next start
    assert picture(dev.ses) == before and not dev.ses.active
    rmtree(path)


def test_records_the_host_deleted_still_count():
    path = tmpdir("deleted")
    dev = Device(path)
    dev.start()
    dev.roll(FOREHEAD, VERTICAL, 5)
    assert dev.log.delete(dev.log.last_seq) == 5  # the host committed them mid-session
    dev.roll(FOREHEAD, HORIZONTAL, 2)
    before = picture(dev.ses)
    dev = Device(path)
    assert picture(dev.ses) == before
    rmtree(path)


def test_lost_snapshot_falls_back_to_the_newest_record():
    path = tmpdir("nosnap")
    dev = Device(path)
    dev.start()
    dev.roll(FOREHEAD, VERTICAL, 2)
    dev.start()
    dev.roll(NOSE, VERTICAL, 3)
    with open(path + "/session.bin", "wb") as f:
        f.write(b"junk")
    dev = Device(path)
    assert dev.snap.error and dev.ses.id == 2 and not dev.ses.active
    assert dev.ses.count(NOSE, VERTICAL) == 3 and dev.ses.count(FOREHEAD, VERTICAL) == 0
    os.remove(path + "/session.bin")
    dev = Device(path)
    assert dev.snap.error is None and dev.ses.id == 2 and dev.ses.count(NOSE, VERTICAL) == 3
    rmtree(path)


def test_rebuild_wants_nothing_queued():
    path = tmpdir("queued")
    log = reopen(path)
    ses = Session(Settings())
    ses.on_pass(NOSE, VERTICAL, 0, 500, 300)
    raises(ValueError, recovery.rebuild, log, ses, 0)
    rmtree(path)
