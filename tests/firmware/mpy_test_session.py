"""Session counts, verdicts, the `order` remark and the pass queue (DESIGN.md section 5)."""

from array import array

from mpytest import heap_used, no_alloc, raises

from roller import zones
from roller.detector import DIAGONAL, HORIZONTAL, VERTICAL
from roller.session import OK, OVER, PASS_FIELDS, UNDER, Session
from roller.settings import Settings

FOREHEAD = 1
NOSE = 2


def _session(queue_len=32):
    return Session(Settings(), queue_len)


def test_verdicts_follow_the_four_to_five_guidance():
    s = _session()
    seen = []
    for _ in range(7):
        seen.append(s.verdict(FOREHEAD, VERTICAL))
        s.on_pass(FOREHEAD, VERTICAL, 0, 100, 250)
    seen.append(s.verdict(FOREHEAD, VERTICAL))
    assert seen == [UNDER, UNDER, UNDER, UNDER, OK, OK, OVER, OVER], seen
    assert s.count(FOREHEAD, VERTICAL) == 7 and s.count(FOREHEAD, HORIZONTAL) == 0


def test_order_remark_when_horizontal_comes_before_vertical_target():
    s = _session()
    for _ in range(3):
        s.on_pass(FOREHEAD, VERTICAL, 0, 1, 200)
    s.on_pass(FOREHEAD, HORIZONTAL, 0, 1, 200)  # only 3 vertical so far
    for _ in range(4):
        s.on_pass(NOSE, VERTICAL, 0, 1, 200)
    s.on_pass(NOSE, HORIZONTAL, 0, 1, 200)
    s.on_pass(zones.UNASSIGNED, HORIZONTAL, 0, 1, 200)  # zero vertical counts too
    assert s.order(FOREHEAD) and not s.order(NOSE) and s.order(zones.UNASSIGNED)


def test_revisits_add_up_and_diagonals_are_counted():
    s = _session()
    s.on_pass(FOREHEAD, VERTICAL, 0, 1, 200)
    s.on_pass(NOSE, VERTICAL, 0, 1, 200)
    s.on_pass(FOREHEAD, VERTICAL, 0, 1, 200)
    s.on_pass(FOREHEAD, DIAGONAL, 0, 1, 200)
    assert s.count(FOREHEAD, VERTICAL) == 2 and s.count(FOREHEAD, DIAGONAL) == 1
    assert s.used(NOSE) and not s.used(3)


def test_queue_keeps_order_and_counts_what_it_drops():
    s = _session(queue_len=4)
    for i in range(6):
        s.on_pass(FOREHEAD, VERTICAL, i, i + 1, 100 + i)
    out = array("i", bytes(4 * PASS_FIELDS))
    got = []
    while s.pop(out):
        got.append((out[0], out[3], out[5]))
    assert got == [(3, 2, 102), (4, 3, 103), (5, 4, 104), (6, 5, 105)], got
    assert s.dropped == 2 and s.seq == 6


def test_zones_next_and_set():
    s = _session()
    assert s.zone == zones.UNASSIGNED
    order = [s.next_zone() for _ in range(7)]
    assert order == [1, 2, 3, 4, 5, 6, 1], order
    raises(ValueError, s.set_zone, zones.MAX_ZONES)
    s.set_zone(5)
    assert zones.NAMES[s.zone] == "upper_lip"


def test_start_resets_counts_but_not_numbering():
    s = _session()
    s.on_pass(FOREHEAD, HORIZONTAL, 0, 1, 200)
    s.start()
    assert s.active and s.id == 1 and not s.used(FOREHEAD) and not s.order(FOREHEAD)
    s.on_pass(FOREHEAD, VERTICAL, 0, 1, 200)
    assert s.seq == 2
    s.end()
    assert not s.active and s.count(FOREHEAD, VERTICAL) == 1


def test_passes_after_end_count_under_session_zero():
    s = _session()
    s.start()
    s.on_pass(FOREHEAD, VERTICAL, 0, 1, 200)
    s.end()
    assert s.current() == 0 and s.count(FOREHEAD, VERTICAL) == 1  # readable after END
    s.on_pass(NOSE, HORIZONTAL, 2, 3, 200)
    # The ended session's counts gave way to session 0's; its id is kept for the next.
    assert not s.used(FOREHEAD) and s.count(NOSE, HORIZONTAL) == 1 and s.current() == 0
    s.on_pass(NOSE, HORIZONTAL, 4, 5, 200)
    assert s.count(NOSE, HORIZONTAL) == 2
    s.start()
    assert s.id == 2 and s.current() == 2 and not s.used(NOSE)


def test_session_ids_wrap_past_u16_without_zero():
    s = _session()
    s.id = 65534
    s.start()
    assert s.id == 65535
    s.start()
    assert s.id == 1


def test_counting_and_popping_allocate_nothing():
    s = _session()
    out = array("i", bytes(4 * PASS_FIELDS))

    def run():
        for i in range(1000):
            s.on_pass(i % 7, i % 3, i, i + 5, 300)
            if i % 3 == 0:
                s.pop(out)

    no_alloc(run)
    assert s.seq == 1000 and s.dropped > 0
    assert heap_used(run) == 0 and s.seq == 2000
