"""Pass log under MicroPython: torn writes, garbage and missing files never stop a boot."""

import os

from mpy_test_passlog import (
    CAP,
    PER_SEGMENT,
    SEGMENTS,
    append_range,
    check_record,
    make_pass,
    packed,
    read_slot,
    reopen,
    rmtree,
    segment_path,
    tmpdir,
    write_at,
)

from roller.passlog import RECORD_SIZE, PassLog


def _torn_append(n):
    """Records 1..n are announced; the append of n + 1 stops after k bytes, for every k."""
    for k in range(RECORD_SIZE + 1):
        path = tmpdir("torn")
        log = reopen(path)
        append_range(log, 1, n)
        log.close()
        slot = (n + 1) % CAP
        old = read_slot(path, slot)
        new = packed(n + 1, log.boot)
        write_at(segment_path(path, slot), (slot % PER_SEGMENT) * RECORD_SIZE, new[:k])
        torn = bytes(new[:k]) + old[k:]

        log = reopen(path)  # must not raise
        first = max(1, n + 2 - CAP)  # the oldest record not in the torn slot
        for seq in range(first, n + 1):
            check_record(log, seq, boot=1)
        if torn == bytes(new):
            assert log.last_seq == n + 1 and log.present(n + 1) and not log.error, k
            check_record(log, n + 1, boot=1)
        elif torn == old:  # nothing changed: the old record (or blank) is still there
            assert log.last_seq == n and log.damaged == 0 and not log.error, k
            if n + 1 > CAP:
                check_record(log, n + 1 - CAP, boot=1)
        else:
            # Damaged: skipped, reported, and its seq burned, never reused.
            assert log.damaged == 1 and log.error and log.last_seq == n + 1, (k, log.errors)
            assert not log.present(n + 1) and not log.present(n + 1 - CAP)
        assert log.newest == n + (log.present(n + 1) and 1 or 0)
        nxt = log.last_seq + 1
        assert nxt > n  # no announced seq is handed out again
        append_range(log, nxt, nxt)
        log = reopen(path)
        assert not log.error, (k, log.errors)  # the damaged slot was cleaned
        check_record(log, nxt, boot=2)
        for seq in range(max(first, nxt + 1 - CAP), n + 1):
            check_record(log, seq, boot=1)
        rmtree(path)


def test_torn_last_record_at_every_byte_offset():
    _torn_append(5)


def test_torn_last_record_over_the_oldest_at_every_byte_offset():
    _torn_append(2 * CAP + 3)  # the ring is full: the torn write lands on the oldest


def test_torn_sector_burns_the_announced_neighbour():
    # On FAT a torn 512-byte sector may take the last announced record with it.
    path = tmpdir("sector")
    log = reopen(path)
    append_range(log, 1, 6)
    log.close()
    for seq in (6, 7):
        slot = seq % CAP
        write_at(segment_path(path, slot), (slot % PER_SEGMENT) * RECORD_SIZE, os.urandom(20))
    log = reopen(path)
    assert log.damaged == 2 and log.error
    assert log.last_seq == 7 and log.newest == 5, (log.last_seq, log.newest)  # 6 is never reused
    append_range(log, 8, 8)
    assert list(log.seqs()) == [1, 2, 3, 4, 5, 8]
    rmtree(path)


def test_torn_sector_after_a_seq_gap_still_burns():
    # 5 and 6 fell off the session queue: the slots between the newest good
    # record and the damage hold nothing newer, yet 7 must not come again.
    path = tmpdir("sectorgap")
    log = reopen(path)
    append_range(log, 1, 4)
    append_range(log, 7, 7)
    log.close()
    for seq in (7, 8):
        slot = seq % CAP
        write_at(segment_path(path, slot), (slot % PER_SEGMENT) * RECORD_SIZE, b"\xa5" * 24)
    log = reopen(path)
    assert log.last_seq == 8 and list(log.seqs()) == [1, 2, 3, 4], (log.last_seq, log.errors)
    rmtree(path)


def test_garbage_everywhere_still_boots_and_recovers():
    path = tmpdir("garbage")
    os.mkdir(path)
    for name in ("s00", "s01", "s02", "state"):
        with open(path + "/" + name, "wb") as f:
            f.write(os.urandom(100))
    log = reopen(path)
    assert log.error and log.count() == 0, log.errors
    assert any("state" in e for e in log.errors) and any("100 bytes" in e for e in log.errors)
    append_range(log, log.last_seq + 1, log.last_seq + 3)
    first = log.last_seq - 2
    log = reopen(path)
    assert not log.error, log.errors
    assert list(log.seqs()) == [first, first + 1, first + 2]
    for i in range(SEGMENTS):
        assert os.stat("%s/s%02d" % (path, i))[6] == PER_SEGMENT * RECORD_SIZE
    rmtree(path)


def test_short_and_long_segments_keep_their_whole_records():
    path = tmpdir("size")
    log = reopen(path)
    append_range(log, 1, 11)
    log.close()
    with open(path + "/s00", "rb") as f:
        s00 = f.read()
    with open(path + "/s00", "wb") as f:  # cut inside record 2 (slot 2)
        f.write(s00[: 2 * RECORD_SIZE + 5])
    with open(path + "/s01", "ab") as f:
        f.write(b"\x00" * 7)
    log = reopen(path)
    assert any("s00: 53 bytes" in e for e in log.errors), log.errors
    assert any("s01: 103 bytes" in e for e in log.errors), log.errors
    assert log.damaged == 1  # the 5 bytes of record 2
    # Slot 2 lies within TEAR_REACH after 11, so 12..14 are burned (it might
    # have held a torn 14), which moves the window past record 1.
    assert log.last_seq == 14 and list(log.seqs()) == [4, 5, 6, 7, 8, 9, 10, 11], log.last_seq
    log = reopen(path)
    assert not log.error and list(log.seqs()) == [4, 5, 6, 7, 8, 9, 10, 11]
    rmtree(path)


def test_missing_segment_is_recreated_and_flagged():
    path = tmpdir("missing")
    log = reopen(path)
    append_range(log, 1, 9)
    log.close()
    os.remove(path + "/s01")
    log = reopen(path)
    assert log.errors == ["%s/s01: missing, recreated" % path], log.errors
    assert list(log.seqs()) == [1, 2, 3, 8, 9] and log.last_seq == 9
    rmtree(path)


def test_lost_state_file_recovers_boot_and_seq_from_the_records():
    path = tmpdir("state")
    for _ in range(4):
        log = reopen(path)
    append_range(log, 1, 3)  # carry boot 4
    log.close()
    os.remove(path + "/state")
    log = reopen(path)
    assert log.boot == 5 and log.last_seq == 3, (log.boot, log.last_seq)
    assert any("state: missing" in e for e in log.errors), log.errors
    log.close()
    with open(path + "/state", "r+b") as f:
        f.seek(4)
        f.write(b"\xff")
    log = reopen(path)
    assert log.boot == 5 and any("state: corrupt" in e for e in log.errors), log.errors
    log = reopen(path)
    assert log.boot == 6 and not log.error
    rmtree(path)


def test_state_left_in_tmp_by_a_rename_cut_short_is_used():
    # FAT replaces by remove + rename: a cut in between leaves only state.tmp.
    path = tmpdir("tmp")
    log = reopen(path)
    append_range(log, 1, 4)
    log.delete(2)
    log = reopen(path)
    log.close()
    os.rename(path + "/state", path + "/state.tmp")
    log = reopen(path)
    assert (log.boot, log.watermark, list(log.seqs())) == (3, 2, [3, 4]), log.errors
    assert not log.error and "state" in os.listdir(path)
    rmtree(path)


def test_high_water_mark_keeps_seq_going_when_the_records_are_lost():
    path = tmpdir("hwm")
    log = reopen(path)
    append_range(log, 1, 5)
    log = reopen(path)  # saves last_seq 5 with the boot counter
    log.close()
    for i in range(SEGMENTS):
        os.remove("%s/s%02d" % (path, i))
    log = reopen(path)
    assert log.last_seq == 5 and log.count() == 0 and log.error, (log.last_seq, log.errors)
    rmtree(path)


def test_other_geometry_drops_records_but_not_their_seqs():
    path = tmpdir("geometry")
    log = reopen(path)
    append_range(log, 1, 12)
    log.close()
    log = PassLog(path, SEGMENTS, PER_SEGMENT - 1).open()  # slots 0..8: most records misplaced
    assert log.last_seq >= 12 and log.error, (log.last_seq, log.errors)
    for seq in log.seqs():
        check_record(log, seq)
    rmtree(path)


def test_path_that_is_a_file_never_raises():
    path = tmpdir("file")
    with open(path, "wb") as f:
        f.write(b"x")
    log = reopen(path)
    assert log.error and log.last_seq == 0 and log.boot == 1
    assert not log.append(make_pass(1), 1, 0) and log.write_errors == 1
    assert log.last_seq == 1 and log.count() == 0  # the seq is used up all the same
    os.remove(path)
