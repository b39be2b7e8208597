"""Pass log under the real MicroPython interpreter: appends, reopen, wrap, delete, boot.

The helpers here are shared by the other mpy_test_passlog_*.py files.
"""

import os
import struct
from array import array

from mpytest import HeapWatch, no_alloc, raises, rmtree

from roller import passlog
from roller.passlog import FIELDS, RECORD_SIZE, PassLog

SEGMENTS = 3
PER_SEGMENT = 4
CAP = SEGMENTS * PER_SEGMENT


def tmpdir(tag):
    """A new directory name under /tmp, unique to this run."""
    return "/tmp/dermaroll-passlog-%s-%08x" % (tag, int.from_bytes(os.urandom(4), "little"))


def reopen(path, segments=SEGMENTS, per_segment=PER_SEGMENT):
    return PassLog(path, segments, per_segment).open()


def make_pass(seq):
    """A pass whose every field follows from its seq."""
    return array("i", [seq, seq % 7, seq % 3, seq * 1000, seq * 1000 + 400 + seq % 97, 95 + seq])


def flags_of(seq):
    return seq & 3


def session_of(seq):
    return 1 + seq // 10


def append_range(log, first, last):
    for seq in range(first, last + 1):
        assert log.append(make_pass(seq), session_of(seq), flags_of(seq)), seq


def check_record(log, seq, boot=None):
    """Record `seq` reads back with the fields it was appended with."""
    out = array("i", bytes(4 * FIELDS))
    assert log.read(seq, out), "record %d not readable" % seq
    assert list(out[:6]) == list(make_pass(seq)), (seq, list(out))
    assert out[passlog.SESSION] == session_of(seq) and out[passlog.FLAGS] == flags_of(seq)
    if boot is not None:
        assert out[passlog.BOOT] == boot, (seq, out[passlog.BOOT], boot)


def segment_path(path, slot, per_segment=PER_SEGMENT):
    return "%s/s%02d" % (path, slot // per_segment)


def write_at(name, offset, data):
    with open(name, "r+b") as f:
        f.seek(offset)
        f.write(data)


def read_slot(path, slot):
    with open(segment_path(path, slot), "rb") as f:
        f.seek((slot % PER_SEGMENT) * RECORD_SIZE)
        return f.read(RECORD_SIZE)


def packed(seq, boot):
    rec = bytearray(RECORD_SIZE)
    passlog._pack(rec, make_pass(seq), session_of(seq), boot, flags_of(seq))
    return rec


def test_fresh_log_is_empty():
    path = tmpdir("fresh")
    log = reopen(path)
    assert log.boot == 1 and log.last_seq == 0, (log.boot, log.last_seq)
    assert log.oldest == 0 and log.newest == 0 and log.count() == 0
    assert list(log.seqs()) == [] and not log.error, log.errors
    assert not log.read(1, array("i", bytes(4 * FIELDS)))
    assert sorted(os.listdir(path)) == ["s00", "s01", "s02", "state"], os.listdir(path)
    for i in range(SEGMENTS):
        assert os.stat("%s/s%02d" % (path, i))[6] == PER_SEGMENT * RECORD_SIZE
    rmtree(path)


def test_a_ring_of_one_record_is_refused():
    # It could not outlive a torn write over its only record.
    raises(ValueError, PassLog, tmpdir("one"), 1, 1)


def test_append_reopen_continuity():
    path = tmpdir("cont")
    log = reopen(path)
    append_range(log, 1, 7)
    log.close()
    log = reopen(path)
    assert log.boot == 2 and log.last_seq == 7 and not log.error, (log.boot, log.errors)
    assert (log.oldest, log.newest, log.count()) == (1, 7, 7)
    for seq in range(1, 8):
        check_record(log, seq, boot=1)
    append_range(log, 8, 10)  # the session's seq continues from log.last_seq
    log = reopen(path)
    assert log.boot == 3 and list(log.seqs()) == list(range(1, 11))
    check_record(log, 7, boot=1)
    check_record(log, 8, boot=2)
    rmtree(path)


def test_append_refuses_a_used_seq():
    path = tmpdir("reuse")
    log = reopen(path)
    append_range(log, 1, 3)
    raises(ValueError, log.append, make_pass(3), 1, 0)
    log = reopen(path)
    raises(ValueError, log.append, make_pass(2), 1, 0)
    assert log.append(make_pass(4), 1, 0)
    rmtree(path)


def test_gaps_from_dropped_passes_are_kept():
    path = tmpdir("gaps")
    log = reopen(path)
    append_range(log, 1, 2)
    append_range(log, 5, 6)  # 3 and 4 fell off a full session queue
    assert list(log.seqs()) == [1, 2, 5, 6] and log.count() == 4
    log = reopen(path)
    assert log.last_seq == 6 and list(log.seqs()) == [1, 2, 5, 6]
    assert not log.present(3) and not log.read(4, array("i", bytes(4 * FIELDS)))
    rmtree(path)


def test_wrap_drops_oldest_and_reports_it():
    path = tmpdir("wrap")
    log = reopen(path)
    append_range(log, 1, 30)
    assert (log.oldest, log.newest, log.count()) == (19, 30, CAP), (log.oldest, log.newest)
    assert log.overflow == 30 - CAP, log.overflow  # none was deleted: all were lost
    assert not log.present(18) and log.present(19)
    log = reopen(path)
    assert (log.oldest, log.newest, log.count(), log.last_seq) == (19, 30, CAP, 30)
    for seq in range(19, 31):
        check_record(log, seq)
    assert log.delete(25) == 7
    append_range(log, 31, 40)  # overwrites 19..28: 19..25 were deleted already
    assert log.overflow == 3 and log.oldest == 29, (log.overflow, log.oldest)
    rmtree(path)


def test_seqs_from_n_in_order_across_the_wrap():
    path = tmpdir("iter")
    log = reopen(path)
    append_range(log, 1, 9)
    append_range(log, 11, 20)  # wraps; 10 never came
    assert list(log.seqs()) == [9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    assert list(log.seqs(14)) == [14, 15, 16, 17, 18, 19, 20]
    assert list(log.seqs(10)) == list(range(11, 21))
    assert list(log.seqs(21)) == [] and list(log.seqs(0)) == list(log.seqs(1))
    assert [log.count(n) for n in (1, 10, 15, 20, 21)] == [11, 10, 6, 1, 0]
    log = reopen(path)
    assert list(log.seqs(12)) == list(range(12, 21))
    # Records appended while iterating are left out; ones overwritten are skipped.
    it = log.seqs(12)
    assert next(it) == 12
    append_range(log, 21, 25)  # overwrites 9, 11, 12 and 13 (10 was never there)
    assert list(it) == list(range(14, 21))
    rmtree(path)


def test_delete_is_persisted_and_seq_never_goes_back():
    path = tmpdir("delete")
    log = reopen(path)
    append_range(log, 1, 8)
    assert log.delete(5) == 5
    assert (log.watermark, log.oldest, log.count()) == (5, 6, 3)
    assert log.delete(4) == 0 and log.delete(5) == 0
    assert list(log.seqs(1, True)) == list(range(1, 9))  # still in flash until overwritten
    log = reopen(path)
    assert (log.watermark, log.oldest, log.newest, list(log.seqs())) == (5, 6, 8, [6, 7, 8])
    assert log.delete(100) == 3  # clamped to last_seq: future records stay visible
    assert (log.watermark, log.oldest, log.newest, log.count()) == (8, 0, 0, 0)
    log = reopen(path)
    assert log.last_seq == 8 and log.count() == 0 and log.oldest == 0
    raises(ValueError, log.append, make_pass(8), 1, 0)
    append_range(log, 9, 9)
    assert (log.oldest, log.newest, list(log.seqs())) == (9, 9, [9])
    rmtree(path)


def test_boot_counter_counts_and_skips_0xffff():
    path = tmpdir("boot")
    for boot in (1, 2, 3):
        log = reopen(path)
        assert log.boot == boot, (log.boot, boot)
        log.close()
    state = bytearray(14)
    struct.pack_into("<BBHII", state, 0, 0xD5, 0, passlog.BOOT_MAX, 0, 0)
    passlog.seal(state)
    passlog.write_atomic(path + "/state", state)
    log = reopen(path)
    assert log.boot == 1 and not log.error, (log.boot, log.errors)
    rmtree(path)


def test_read_back_all_fields_and_length_saturates():
    path = tmpdir("fields")
    log = reopen(path)
    p = array("i", [1, 15, 2, 0x3FFFFFFF, 0x3FFFFFFF, 70000])
    assert log.append(p, 0xFFFF, 0xFF)
    out = array("i", bytes(4 * FIELDS))
    assert log.read(1, out)
    assert list(out) == [1, 15, 2, 0x3FFFFFFF, 0x3FFFFFFF, 0xFFFF, 0xFFFF, 1, 0xFF], list(out)
    rmtree(path)


def test_packing_and_crc_allocate_nothing():
    rec = bytearray(RECORD_SIZE)
    p = make_pass(123)

    def pack():
        passlog._pack(rec, p, 7, 3, 1)

    no_alloc(pack)
    assert rec[0] == passlog.MAGIC and passlog._check(rec, 0) == 123


def test_append_and_read_allocate_nothing_within_a_segment():
    # One segment: opening the next segment's file is the only allocation.
    # HeapWatch also sees call frames taken from the heap, which no_alloc
    # (heap locked: frames fall back to the C stack) would miss.
    path = tmpdir("noalloc")
    log = PassLog(path, 1, 16).open()
    p = make_pass(1)
    assert log.append(p, 1, 0)  # opens the file
    out = array("i", bytes(4 * FIELDS))
    watch = HeapWatch()
    for seq in range(2, 50, 1):  # wraps the ring three times: the window moves too
        p[0] = seq + seq // 7  # with gaps
        watch.start()
        ok = log.append(p, 1, 0)
        watch.stop()
        assert ok, seq
        watch.start()
        ok = log.read(p[0], out)
        watch.stop()
        assert ok and out[0] == p[0]
    assert watch.used() == 0, watch.used()
    assert log.overflow > 0  # the ring went round records the host had not deleted
    log.delete(log.last_seq - 3)  # may allocate: it writes the state file
    assert log.overflow == 0  # the host has seen the gap (SPEC 5.3 bit 4)
    p[0] = log.last_seq + 1
    watch.start()
    log.append(p, 1, 0)
    watch.stop()
    assert watch.used() == 0, watch.used()
    assert log.oldest > log.watermark and log.newest == p[0]

    def run():
        log.append(p, 1, 0)

    p[0] = log.last_seq + 1
    no_alloc(run)  # and no object either
    rmtree(path)
