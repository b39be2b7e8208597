"""Putting the session back after a reboot: its counts come from the pass log.

The log holds every pass with its session id. What it cannot know is kept in
a small snapshot file, written atomically (write tmp, rename) on the rare
events that change it: which session is current, whether it is active, and
`since`, the seq after which its passes count (start and reset of counts).

At boot, on a fresh Session:

    snap = Snapshot()
    restore(log, ses, snap)     # id, active, seq; counts and `order` remarks

and on the events (drain the pass queue into the log first, so every pass
numbered so far is logged under the session it was counted in):

    ses.start(); snap.save(ses, ses.seq)
    ses.reset(); snap.save(ses, ses.seq)
    ses.end();   snap.save(ses, snap.since)
"""

import struct
from array import array

from micropython import const

from roller import passlog, zones
from roller.detector import DIAGONAL
from roller.session import PASS_FIELDS

FILE = "session.bin"
_MAGIC = const(0xE1)
_FMT = "<BBHI"  # magic, active, session id, since; then CRC
_SIZE = const(10)


class Snapshot:
    """The session facts the pass log does not carry."""

    def __init__(self, path=FILE):
        self.path = path
        self.id = 0
        self.active = False
        self.since = 0
        self.error = None  # why the file was not usable, if it was there

    def load(self):
        """Read the file; False (and the defaults) when missing or corrupt."""
        buf = bytearray(_SIZE)
        n = passlog.read_file(self.path, buf)
        if n == _SIZE and passlog.sealed(buf, _MAGIC):
            _, active, self.id, self.since = struct.unpack_from(_FMT, buf, 0)
            self.active = bool(active)
            return True
        if n >= 0:
            self.error = "%s: corrupt, session taken from the pass log" % self.path
        return False

    def save(self, session, since):
        """Persist `session`'s id and active flag, counts starting after seq `since`."""
        buf = bytearray(_SIZE)
        struct.pack_into(_FMT, buf, 0, _MAGIC, 1 if session.active else 0, session.id, since)
        passlog.seal(buf)
        passlog.write_atomic(self.path, buf)
        self.id = session.id
        self.active = session.active
        self.since = since


def restore(log, session, snap):
    """Give a fresh `session` its id, active flag, seq and counts back after a boot.

    The snapshot says which session; when it is missing, corrupt or older
    than the newest record, the newest record's session is taken instead
    (inactive, all its passes counted).
    """
    snap.load()
    rec = array("i", bytes(4 * passlog.FIELDS))
    newest = 0
    for seq in log.seqs(1, True):
        newest = seq
    if newest and log.read(newest, rec) and rec[passlog.SESSION] > snap.id:
        snap.id = rec[passlog.SESSION]
        snap.active = False
        snap.since = 0
    session.id = snap.id
    session.active = snap.active
    rebuild(log, session, snap.since)


def rebuild(log, session, since):
    """Count the logged passes of session.id with seq > since into `session`.

    Deleted records still in flash count too. They go through on_pass, in
    seq order, so counts and `order` remarks come out as they were; each is
    popped straight back off the queue (nothing is re-announced). The
    session must have nothing queued; its seq ends at the log's last.
    """
    if session.pending:
        raise ValueError("rebuild wants a session with no passes queued")
    rec = array("i", bytes(4 * passlog.FIELDS))
    scratch = array("i", bytes(4 * PASS_FIELDS))
    for seq in log.seqs(since + 1, True):
        if (
            log.read(seq, rec)
            and rec[passlog.SESSION] == session.id
            and rec[passlog.ZONE] < zones.MAX_ZONES
            and rec[passlog.DIRECTION] <= DIAGONAL
        ):
            session.on_pass(
                rec[passlog.ZONE],
                rec[passlog.DIRECTION],
                rec[passlog.T_START],
                rec[passlog.T_END],
                rec[passlog.LENGTH],
            )
            session.pop(scratch)
    session.seq = log.last_seq
