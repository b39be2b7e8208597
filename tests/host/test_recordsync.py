"""dermaroll.recordsync: the host's record bookkeeping (SPEC 5.3 and 6.6), as pure logic."""

from __future__ import annotations

import random

import pytest

from dermaroll.recordsync import RecordSync


def rec(seq: int, zone: int = 1, direction: int = 0, session: int = 1) -> dict[str, int]:
    return {
        "seq": seq,
        "boot": 1,
        "t_end_ms": 1000 + 500 * seq,
        "session": session,
        "zone": zone,
        "direction": direction,
        "length_01mm": 300,
        "duration_ms": 400,
        "flags": 0,
    }


def status(oldest: int, newest: int) -> dict[str, int]:
    return {"oldest": oldest, "newest": newest}


def test_duplicates_are_counted_and_keep_the_first() -> None:
    s = RecordSync()
    assert s.add(rec(1)) is True
    assert s.add(rec(1)) is False
    assert s.duplicates == 1 and not s.conflicts
    assert list(s.records) == [1]


def test_same_seq_other_content_is_a_conflict_not_a_duplicate() -> None:
    s = RecordSync()
    s.add(rec(3, zone=1))
    assert s.add(rec(3, zone=2)) is False
    assert s.duplicates == 0
    assert [(a["zone"], b["zone"]) for a, b in s.conflicts] == [(1, 2)]
    assert s.records[3]["zone"] == 1


def test_first_sync_asks_for_all_and_commits_up_to_newest_read_before() -> None:
    s = RecordSync()
    assert s.begin(status(1, 3)) == 1
    for q in (2, 1, 3, 4):  # any order; 4 came live after the Status read
        s.add(rec(q))
    assert s.complete() == []
    assert s.committed == 3  # 4 is stored but asked for again next time
    assert s.begin(status(1, 4)) == 4


def test_a_transfer_cut_by_a_disconnect_commits_nothing() -> None:
    s = RecordSync()
    s.begin(status(1, 5))
    s.add(rec(1))
    s.add(rec(2))  # the link drops here: no complete()
    assert s.begin(status(1, 5)) == 1
    for q in range(1, 6):
        s.add(rec(q))
    assert s.complete() == [] and s.committed == 5
    assert s.duplicates == 2


def test_numbers_that_did_not_arrive_by_the_answer_are_lost() -> None:
    s = RecordSync()
    s.begin(status(1, 5))
    for q in (1, 2, 5):
        s.add(rec(q))
    assert s.complete() == [3, 4]  # burned or damaged on the device: reported, not invented
    assert s.lost == {3, 4} and s.committed == 5
    assert s.missing(5) == [3, 4]
    assert sorted(s.records) == [1, 2, 5]


def test_overflow_gap_below_oldest_is_lost_at_begin() -> None:
    s = RecordSync()
    s.begin(status(1, 2))
    s.add(rec(1))
    s.add(rec(2))
    s.complete()
    s.add(rec(4))  # came live; 3 and 5 were overwritten before the host asked
    assert s.begin(status(6, 8)) == 6
    assert s.lost == {3, 5}
    assert s.committed == 5


def test_nothing_found_after_everything_was_deleted() -> None:
    s = RecordSync()
    s.begin(status(1, 2))
    s.add(rec(1))
    s.add(rec(2))
    s.complete()
    # The host deleted <= 2: the log is empty, newest stays the last seq assigned.
    assert s.begin(status(0, 2)) == 3
    assert s.complete() == []  # NO_RECORDS_FOUND, nothing due
    assert s.committed == 2 and not s.lost


def test_complete_without_begin_is_a_caller_bug() -> None:
    with pytest.raises(RuntimeError):
        RecordSync().complete()


def test_a_lost_record_that_turns_up_is_kept() -> None:
    s = RecordSync()
    s.begin(status(1, 2))
    s.add(rec(2))
    assert s.complete() == [1]
    s.add(rec(1))
    assert s.lost == set() and sorted(s.records) == [1, 2]


def test_tally_per_zone_and_direction_of_one_session() -> None:
    s = RecordSync()
    s.add(rec(1, zone=1, direction=0))
    s.add(rec(2, zone=1, direction=0))
    s.add(rec(3, zone=1, direction=1))
    s.add(rec(4, zone=2, direction=2, session=2))
    s.add(rec(2, zone=1, direction=0))  # a duplicate counts once
    assert s.tally(1) == {(1, 0): 2, (1, 1): 1}
    assert s.tally() == {(1, 0): 2, (1, 1): 1, (2, 2): 1}


def test_random_drops_and_resends_end_with_every_record_once() -> None:
    """Property: live records lost at random, transfers cut at random, records resent
    and reordered; after a last complete resync the host has 1..n exactly once."""
    rng = random.Random(5)
    for _ in range(200):
        n = rng.randint(0, 40)
        device = [
            rec(q, zone=rng.randint(0, 6), direction=rng.randint(0, 2)) for q in range(1, n + 1)
        ]
        s = RecordSync()
        made = 0
        while made < n:
            made = rng.randint(made, n)  # passes made while connected; some came live
            for r in device[:made]:
                if rng.random() < 0.3:
                    s.add(r)
            ge = s.begin(status(1 if made else 0, made))
            sent = device[ge - 1 : made]
            rng.shuffle(sent)
            cut = rng.random() < 0.5
            for r in sent[: rng.randint(0, len(sent))] if cut else sent:
                s.add(r)
            if not cut:
                assert s.complete() == []
        s.begin(status(1 if n else 0, n))
        for r in device[s.committed :]:
            s.add(r)
        assert s.complete() == []
        assert sorted(s.records) == list(range(1, n + 1))
        assert not s.lost and not s.conflicts and s.committed == n
        assert sum(s.tally().values()) == n
