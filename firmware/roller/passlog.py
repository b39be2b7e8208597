"""The pass log: every pass, durable in flash before it is announced (docs/pass-log.md).

Records are 24 bytes, little-endian, CRC-16/CCITT-FALSE over bytes 0..21:

    0 magic/version u8 (0xD1)  1 flags u8  2 zone u8  3 direction u8
    4 seq u32  8 boot u16  10 session u16  12 t_start_ms u32  16 t_end_ms u32
    20 length_01mm u16  22 crc u16

They sit in a fixed-capacity ring, slot = seq % capacity, split over segment
files of `per_segment` records. One file would do on most filesystems, but
LittleFS (the ESP32's) rewrites every block after a modified one, so a write
near the start of a 48 KiB file reprograms the whole file; a segment of one
block costs one block per record wherever it lands. Files are preallocated:
an append never grows one, it overwrites the oldest record.

- Append: pack into a preallocated buffer (no allocation), one seek + write +
  flush; only then may the pass be announced.
- Boot (`open`): one scan of every slot. A record whose magic, CRC or slot is
  wrong is damaged: skipped, counted, its segment rewritten without it; never
  fatal. Missing, short and overlong segments are recreated or repaired.
- Sequence numbers are never reused for an announced pass. The next one
  follows the highest of: the newest valid record (even one out of place)
  plus the seqs it burns, the delete watermark, and the high-water mark in
  the state file. A damaged slot up to TEAR_REACH slots (at most half the
  ring) after the newest valid record may hold a torn write of a newer seq (a torn sector can take
  announced neighbours with it): every seq up to it is burned, a gap rather
  than a duplicate. See docs/pass-log.md for the power-cut cases.
- Deleting (records the host has committed) only moves a persisted
  watermark; the bytes stay until overwritten, so counts can be rebuilt.
- The state file (boot counter, watermark, seq high-water mark) is written
  atomically (write tmp, rename) at every boot and every delete.
"""

import os
import struct
from array import array

import micropython
from micropython import const

from dermaroll_protocol import CRC_INIT, crc16

RECORD_SIZE = const(24)
MAGIC = const(0xD1)  # 0xD_: dermaroll pass record, _1: format version 1
_FMT = "<BBBBIHHIIH"  # everything but the CRC
_CRC_AT = const(22)

# Fields of `read`: the first six are a Session pass (roller.session.PASS_FIELDS).
SEQ = const(0)
ZONE = const(1)
DIRECTION = const(2)
T_START = const(3)
T_END = const(4)
LENGTH = const(5)
SESSION = const(6)
BOOT = const(7)
FLAGS = const(8)
FIELDS = const(9)

DIR = "passlog"
SEGMENTS = const(16)
PER_SEGMENT = const(128)  # 3072 bytes: one 4 KiB LittleFS block per segment
BOOT_MAX = const(0xFFFE)  # the protocol keeps boot 0xFFFF for "the current boot"
# How far after the newest good record a torn write may have damaged slots:
# a 512-byte FAT sector holds 21 records; the rest leaves room for seq gaps.
TEAR_REACH = const(32)


def tear_reach(capacity):
    """How many slots after the newest good record a damaged slot can be a torn later write.

    TEAR_REACH, but never past half the ring: further on, going forward round
    the ring is going back to records older than the newest, whose damage
    says nothing about later seqs (only tiny rings get there).
    """
    return min((capacity - 1) // 2, TEAR_REACH)


_STATE_MAGIC = const(0xD5)
_STATE_FMT = "<BBHII"  # magic, 0, boot, watermark, seq high-water mark; then CRC
_STATE_SIZE = const(14)

_BLANK = const(0)
_DAMAGED = const(-1)


@micropython.native
def _pack(buf, p, session, boot, flags):
    pack = struct.pack_into
    pack(_FMT, buf, 0, MAGIC, flags, p[1], p[2], p[0], boot, session, p[3], p[4], min(p[5], 0xFFFF))
    crc = crc16(buf, 0, _CRC_AT, CRC_INIT)
    buf[_CRC_AT] = crc & 0xFF
    buf[_CRC_AT + 1] = crc >> 8


@micropython.native
def _u32(b, i):
    return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)


@micropython.native
def _check(b, off):
    """The seq of the record at b[off], _BLANK (erased or never written) or _DAMAGED.

    The caller checks that the seq belongs in its slot.
    """
    if b[off] == MAGIC:
        crc = crc16(b, off, off + _CRC_AT, CRC_INIT)
        if crc == b[off + _CRC_AT] | (b[off + _CRC_AT + 1] << 8):
            seq = _u32(b, off + 4)
            if seq:
                return seq
        return _DAMAGED
    first = b[off]
    if first != 0 and first != 0xFF:
        return _DAMAGED
    i = off + 1
    end = off + RECORD_SIZE
    while i < end:
        if b[i] != first:
            return _DAMAGED
        i += 1
    return _BLANK


@micropython.native
def _unpack(b, out):
    out[SEQ] = _u32(b, 4)
    out[ZONE] = b[2]
    out[DIRECTION] = b[3]
    out[T_START] = _u32(b, 12)
    out[T_END] = _u32(b, 16)
    out[LENGTH] = b[20] | (b[21] << 8)
    out[SESSION] = b[10] | (b[11] << 8)
    out[BOOT] = b[8] | (b[9] << 8)
    out[FLAGS] = b[1]


def seal(buf):
    """Put the CRC of buf[:-2] into its last two bytes."""
    crc = crc16(buf, 0, len(buf) - 2, CRC_INIT)
    buf[len(buf) - 2] = crc & 0xFF
    buf[len(buf) - 1] = crc >> 8


def sealed(buf, magic):
    """True when buf starts with `magic` and ends with the CRC of the rest."""
    n = len(buf)
    return buf[0] == magic and crc16(buf, 0, n - 2, CRC_INIT) == buf[n - 2] | (buf[n - 1] << 8)


def write_atomic(name, data):
    """Replace file `name` by `data`: a power cut leaves the old or the new content.

    Where rename cannot replace a file in one step (FAT), the old file goes
    first, so readers fall back to `name + ".tmp"` (see read_file).
    """
    tmp = name + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, name)


def read_file(name, buf):
    """Read file `name` (or its .tmp left by write_atomic) into buf.

    Returns the number of bytes read, or -1 when neither file exists; a file
    larger than buf gives len(buf) + 1.
    """
    for path in (name, name + ".tmp"):
        try:
            with open(path, "rb") as f:
                n = f.readinto(buf)
                if n == len(buf) and f.read(1):
                    n += 1
                return n
        except OSError:
            pass
    return -1


class PassLog:
    """The ring of pass records in directory `path`, plus its state file."""

    def __init__(self, path=DIR, segments=SEGMENTS, per_segment=PER_SEGMENT):
        self.path = path
        self.segments = segments
        self.per_segment = per_segment
        self.capacity = segments * per_segment
        if self.capacity < 2:  # one record could not outlive a torn write over it
            raise ValueError("a pass log holds 2 records or more")
        self.boot = 0  # this boot's number, 1..BOOT_MAX, carried by every record
        self.last_seq = 0  # highest seq ever used: the next pass gets a higher one
        self.oldest = 0  # oldest record held (not deleted); 0 when none
        self.newest = 0  # newest record held; 0 when none
        self.watermark = 0  # records <= this are deleted (committed by the host)
        self.damaged = 0  # damaged records found (open) or met (read)
        self.overflow = 0  # held records overwritten before the host deleted them
        self.write_errors = 0  # appends that did not reach flash
        self.errors = []  # what open found wrong, one line each
        self._bits = bytearray((self.capacity + 7) // 8)  # slot holds its in-window seq
        self._rec = bytearray(RECORD_SIZE)
        self._names = ["%s/s%02d" % (path, i) for i in range(segments)]
        self._state_name = path + "/state"
        self._f = None  # open segment (appends and reads share one handle)
        self._seg = -1

    @property
    def error(self):
        """True when open found something wrong or an append failed since."""
        return bool(self.errors) or self.write_errors > 0

    # --- boot -------------------------------------------------------------

    def open(self):
        """Scan the ring, repair what it can, count this boot; never raises."""
        cap = self.capacity
        state = bytearray(_STATE_SIZE)
        n = read_file(self._state_name, state)
        if n == _STATE_SIZE and sealed(state, _STATE_MAGIC):
            _, _, boot, self.watermark, high = struct.unpack_from(_STATE_FMT, state, 0)
        else:
            boot = high = 0
            if n >= 0:
                self.errors.append("%s: corrupt, rebuilt from the records" % self._state_name)
        try:
            os.mkdir(self.path)
        except OSError:
            pass  # exists already; if it cannot be made, the segment checks say so
        seqs = array("I", bytes(4 * cap))  # valid seq per slot, 0 if none
        bad = bytearray((cap + 7) // 8)
        repair = bytearray(self.segments)
        buf = bytearray(self.per_segment * RECORD_SIZE)
        newest_boot = 0
        top = 0
        existed = n >= 0
        for seg in range(self.segments):
            size = self._load_segment(seg, buf)
            existed = existed or size >= 0
            if size != len(buf):
                repair[seg] = 1
            slot = seg * self.per_segment
            for off in range(0, len(buf), RECORD_SIZE):
                seq = _check(buf, off)
                if seq > top:
                    # Even a record out of place (another ring geometry) used its seq.
                    top = seq
                    newest_boot = buf[off + 8] | (buf[off + 9] << 8)
                if seq > 0 and seq % cap == slot:
                    seqs[slot] = seq
                elif seq != _BLANK:
                    bad[slot >> 3] |= 1 << (slot & 7)
                    self.damaged += 1
                    repair[seg] = 1
                slot += 1
        if n < 0 and existed:
            self.errors.append("%s: missing, rebuilt from the records" % self._state_name)
        # A damaged slot soon after the newest good record may hold a torn
        # write of a later seq, and a torn sector may have taken announced
        # records with it: burn every seq up to the furthest such slot.
        burned = 0
        for d in range(1, tear_reach(cap) + 1):
            slot = (top + d) % cap
            if bad[slot >> 3] & (1 << (slot & 7)):
                burned = d
        self.last_seq = last = max(top + burned, high, self.watermark)
        for slot in range(cap):
            if seqs[slot] and seqs[slot] > last - cap:
                self._bits[slot >> 3] |= 1 << (slot & 7)
        self.oldest = self._first(self.watermark + 1)
        self.newest = self._last()
        self.boot = max(boot, newest_boot) % BOOT_MAX + 1
        if self.damaged:
            self.errors.append("%s: %d damaged records skipped" % (self.path, self.damaged))
        try:
            self._save_state(self.watermark)
        except OSError as e:
            self.errors.append("%s: cannot save (%s)" % (self._state_name, e))
        for seg in range(self.segments):
            if repair[seg]:
                self._repair(seg, buf, existed)
        return self

    def _load_segment(self, seg, buf):
        """Segment `seg` into buf (zero-padded); its size, -1 if missing."""
        name = self._names[seg]
        size = read_file(name, buf)
        for i in range(max(size, 0), len(buf)):
            buf[i] = 0
        if size >= 0:
            try:
                size = os.stat(name)[6]
            except OSError:
                size = -1  # only the .tmp of an interrupted rewrite: rewrite it again
        return size

    def _repair(self, seg, buf, existed):
        """Rewrite segment `seg` at its full size, damaged records zeroed."""
        size = self._load_segment(seg, buf)
        slot = seg * self.per_segment
        for off in range(0, len(buf), RECORD_SIZE):
            seq = _check(buf, off)
            if seq == _DAMAGED or (seq > 0 and seq % self.capacity != slot):
                for i in range(off, off + RECORD_SIZE):
                    buf[i] = 0
            slot += 1
        name = self._names[seg]
        try:
            write_atomic(name, buf)
        except OSError as e:
            self.errors.append("%s: cannot write (%s)" % (name, e))
            return
        if size >= 0 and size != len(buf):
            self.errors.append("%s: %d bytes, rewritten with %d" % (name, size, len(buf)))
        elif size < 0 and existed:
            self.errors.append("%s: missing, recreated" % name)

    def _save_state(self, watermark):
        state = bytearray(_STATE_SIZE)
        struct.pack_into(_STATE_FMT, state, 0, _STATE_MAGIC, 0, self.boot, watermark, self.last_seq)
        seal(state)
        write_atomic(self._state_name, state)

    # --- records ----------------------------------------------------------

    @micropython.native  # a bytecode frame this wide would come from the heap
    def append(self, p, session, flags):
        """Write pass `p` (seq, zone, direction, t_start, t_end, length_01mm) durably.

        True once it is in flash: only then announce it. False if the write
        failed; its seq is used up either way. A seq not above last_seq is a
        caller bug (ValueError). Allocates nothing, except to open the next
        segment file every `per_segment` records.
        """
        seq = p[0]
        if seq <= self.last_seq:
            raise ValueError("seq %d is not after %d" % (seq, self.last_seq))
        self._advance(seq)
        _pack(self._rec, p, session, self.boot, flags)
        slot = seq % self.capacity
        try:
            f = self._file(slot // self.per_segment)
            f.seek((slot % self.per_segment) * RECORD_SIZE)
            f.write(self._rec)
            f.flush()
        except OSError:
            self.write_errors += 1
            self.close()
            return False
        self._bits[slot >> 3] |= 1 << (slot & 7)
        self.newest = seq
        if not self.oldest:
            self.oldest = seq
        return True

    @micropython.native  # a bytecode frame this wide would come from the heap
    def _advance(self, seq):
        """Move the window to end at `seq`: the seqs that leave it are dropped."""
        cap = self.capacity
        wm = self.watermark
        bits = self._bits
        for s in range(max(self.last_seq - cap + 1, 1), min(self.last_seq, seq - cap) + 1):
            slot = s % cap
            m = 1 << (slot & 7)
            if bits[slot >> 3] & m:
                bits[slot >> 3] ^= m
                if s > wm:
                    self.overflow += 1
        self.last_seq = seq
        if self.newest <= seq - cap:
            self.newest = 0
        if 0 < self.oldest <= seq - cap:
            self.oldest = self._first(seq - cap + 1)

    def _file(self, seg):
        if seg != self._seg:
            self.close()
            # Kept open across appends: opening allocates and costs a lookup.
            self._f = open(self._names[seg], "r+b")  # noqa: SIM115
            self._seg = seg
        return self._f

    def close(self):
        """Close the open segment file (open() needs no close; reads and appends reopen)."""
        f = self._f
        self._f = None
        self._seg = -1
        if f is not None:
            try:
                f.close()
            except OSError:
                pass  # a failed close of a file we only read or already flushed

    def present(self, seq):
        """True when record `seq` is in flash (held, or deleted but not yet overwritten)."""
        if not self.last_seq - self.capacity < seq <= self.last_seq:
            return False
        slot = seq % self.capacity
        return bool(self._bits[slot >> 3] & (1 << (slot & 7)))

    @micropython.native  # a bytecode frame this wide would come from the heap
    def read(self, seq, out):
        """Fill `out` (FIELDS ints: SEQ..FLAGS) with record `seq`; False if not present.

        The record is checked again: one damaged since boot is dropped and counted.
        """
        if not self.present(seq):
            return False
        slot = seq % self.capacity
        buf = self._rec
        try:
            f = self._file(slot // self.per_segment)
            f.seek((slot % self.per_segment) * RECORD_SIZE)
            n = f.readinto(buf)
        except OSError:
            self.close()
            return False
        if n != RECORD_SIZE or _check(buf, 0) != seq:
            self._bits[slot >> 3] &= ~(1 << (slot & 7))
            self.damaged += 1
            self.oldest = self._first(self.oldest)
            self.newest = self._last()
            return False
        _unpack(buf, out)
        return True

    def seqs(self, ge=1, deleted=False):
        """Seqs of the records held, >= ge, in increasing order (with deleted=True
        also deleted ones still in flash). Records appended meanwhile are left
        out; ones overwritten or deleted meanwhile are skipped."""
        end = self.last_seq
        s = max(ge, 1)
        while s <= end:
            low = self.last_seq - self.capacity + 1
            if not deleted and low <= self.watermark:
                low = self.watermark + 1
            if s < low:
                s = low
                continue
            if self.present(s):
                yield s
            s += 1

    def count(self, ge=1):
        """Number of records held with seq >= ge."""
        n = 0
        for _ in self.seqs(ge):
            n += 1
        return n

    def delete(self, upto):
        """Delete the records with seq <= upto (ones the host has committed).

        Persisted before it takes effect (OSError if it cannot be: nothing
        changes). Returns the number of records held that it deleted.
        """
        upto = min(upto, self.last_seq)
        if upto <= self.watermark:
            return 0
        n = self.count(self.watermark + 1) - self.count(upto + 1)
        self._save_state(upto)
        self.watermark = upto
        self.overflow = 0  # Status bit 4 lasts until the host deletes (SPEC 5.3)
        self.oldest = self._first(upto + 1)
        if self.newest <= upto:
            self.newest = 0
        return n

    @micropython.native  # a bytecode frame this wide would come from the heap
    def _first(self, ge):
        """The first seq held >= ge, 0 if none."""
        low = max(ge, self.watermark + 1, self.last_seq - self.capacity + 1)
        for s in range(low, self.last_seq + 1):
            if self.present(s):
                return s
        return 0

    @micropython.native  # a bytecode frame this wide would come from the heap
    def _last(self):
        """The newest seq held, 0 if none."""
        low = max(self.watermark, self.last_seq - self.capacity)
        s = self.last_seq
        while s > low:
            if self.present(s):
                return s
            s -= 1
        return 0
