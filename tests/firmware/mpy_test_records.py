"""Record access (roller.records through roller.control) under the real MicroPython interpreter.

The pass log is a real PassLog with a small ring (3 segments of 4 records:
capacity 12) in a temp directory, so wrapping takes a few appends.
"""

from array import array

import micropython
from mpy_test_control import CountingLink, Link, Rig, expect, req, u32
from mpytest import heap_used, no_alloc

import dermaroll_protocol as dp
from roller import passlog
from roller.passlog import PassLog

REPORT = dp.OP_REPORT_RECORDS
NUMBER = dp.OP_REPORT_NUMBER
DELETE = dp.OP_DELETE_RECORDS
ABORT = dp.OP_ABORT


def report(operator=dp.OPERATOR_ALL, seq=0, token=0x51):
    return req(REPORT, token, operator, u32(seq))


def number(operator=dp.OPERATOR_ALL, seq=0, token=0x52):
    return req(NUMBER, token, operator, u32(seq))


def delete(seq, token=0x53):
    return req(DELETE, token, dp.OPERATOR_LE, u32(seq))


def run(rig, limit=10000):
    """pump() until the procedure and any owed ABORT answer are done."""
    for _ in range(limit):
        if not rig.ctl.records.running and rig.ctl.records.abort_link is None:
            return
        rig.ctl.pump()
    raise AssertionError("the procedure did not end")


def seqs_of(link):
    return [dp.decode_pass_record(b)["seq"] for b in link.of("record")]


def responses(link):
    return [dp.decode_response(b) for b in link.of("response")]


def check_records_match_log(rig, link):
    """Every PassRecord sent is the log's record, field by field (SPEC 5.1)."""
    f = array("I", bytes(4 * passlog.FIELDS))
    for b in link.of("record"):
        r = dp.decode_pass_record(b)
        assert rig.log.read(r["seq"], f), r
        assert r["boot"] == f[passlog.BOOT] and r["t_end_ms"] == f[passlog.T_END], r
        assert r["session"] == f[passlog.SESSION] and r["zone"] == f[passlog.ZONE], r
        assert r["direction"] == f[passlog.DIRECTION] and r["flags"] == f[passlog.FLAGS], r
        assert r["length_01mm"] == f[passlog.LENGTH], r
        assert r["duration_ms"] == f[passlog.T_END] - f[passlog.T_START], r


def report_all(rig, link, data):
    """Send a REPORT_RECORDS, run it, return (seqs received, the response)."""
    assert rig.call(link, data) == b""  # answered later, after the records
    run(rig)
    rs = responses(link)
    assert len(rs) == 1, rs
    assert link.events[-1][0] == "response"  # nothing after the completion
    return seqs_of(link), rs[0]


def test_report_number_all_ge_and_after_a_wrap():
    rig = Rig("num")
    link = Link(secure=False)
    try:
        r = expect(rig.ask(link, number()), NUMBER, dp.SUCCESS, 0x52)
        assert r["count"] == 0
        rig.append(5)
        assert rig.ask(link, number())["count"] == 5
        assert rig.ask(link, number(dp.OPERATOR_GE, 3))["count"] == 3
        assert rig.ask(link, number(dp.OPERATOR_GE, 6))["count"] == 0
        assert rig.ask(link, number(dp.OPERATOR_ALL, 99))["count"] == 5  # seq ignored
        rig.append(25)  # 30 appended into 12 slots: 19..30 held
        assert rig.ask(link, number())["count"] == 12
        assert rig.ask(link, number(dp.OPERATOR_GE, 1))["count"] == 12
        assert rig.ask(link, number(dp.OPERATOR_GE, 25))["count"] == 6
        for bad in (0, 2, 4, 255):
            r = rig.ask(link, req(NUMBER, 0x52, bad, u32(1)))
            expect(r, NUMBER, dp.INVALID_OPERAND, 0x52)
    finally:
        rig.close()


def test_report_all_and_ge_in_order_with_completion_last():
    rig = Rig("rep")
    try:
        rig.append(7)
        link = Link(secure=False)
        got, r = report_all(rig, link, report())
        assert got == [1, 2, 3, 4, 5, 6, 7]
        expect(r, REPORT, dp.SUCCESS, 0x51)
        assert r["count"] == 7
        check_records_match_log(rig, link)
        link = Link(secure=False)
        got, r = report_all(rig, link, report(dp.OPERATOR_GE, 5))
        assert got == [5, 6, 7] and r["count"] == 3
        # Nothing matches: NO_RECORDS_FOUND at once, no records.
        link = Link(secure=False)
        r = rig.ask(link, report(dp.OPERATOR_GE, 8))
        expect(r, REPORT, dp.NO_RECORDS_FOUND, 0x51)
        assert link.of("record") == [] and not rig.ctl.records.running
    finally:
        rig.close()


def test_report_across_a_capacity_wrap():
    rig = Rig("wrap")
    try:
        rig.append(30)  # slots hold 19..30, the ring wrapped twice
        link = Link(secure=False)
        got, r = report_all(rig, link, report())
        assert got == list(range(19, 31)) and r["count"] == 12
        check_records_match_log(rig, link)
        link = Link(secure=False)
        got, r = report_all(rig, link, report(dp.OPERATOR_GE, 5))
        assert got == list(range(19, 31))
        link = Link(secure=False)
        got, r = report_all(rig, link, report(dp.OPERATOR_GE, 27))
        assert got == [27, 28, 29, 30] and r["count"] == 4
    finally:
        rig.close()


def test_records_of_passes_made_meanwhile_and_overwritten_ones():
    rig = Rig("live", batch=2)
    link = Link(secure=False)
    try:
        rig.append(6)
        assert rig.call(link, report()) == b""  # pump() ran once in request: seqs 1, 2
        rig.append(3)  # 7..9: stored after the request, not part of it
        run(rig)
        assert seqs_of(link) == [1, 2, 3, 4, 5, 6]
        assert responses(link)[0]["count"] == 6
        link = Link(secure=False)
        assert rig.call(link, report()) == b""  # 1..9 asked: 1, 2 sent at once
        rig.append(12)  # the ring moves on to 10..21: 3..9 are overwritten
        run(rig)
        assert seqs_of(link) == [1, 2]
        assert responses(link)[0]["count"] == 2
    finally:
        rig.close()


def test_delete_up_to_n_is_persisted():
    rig = Rig("del")
    link = Link()
    try:
        rig.append(30)  # 19..30 held; 1..18 overwritten before any delete
        assert rig.log.overflow > 0
        r = expect(rig.ask(link, delete(22)), DELETE, dp.SUCCESS, 0x53)
        assert r["count"] == 4  # 19..22
        assert rig.log.overflow == 0  # SPEC 5.3: DELETE clears errors.4
        assert rig.ask(link, number())["count"] == 8
        got, _ = report_all(rig, Link(), report())
        assert got == list(range(23, 31))
        # Persisted: a reopened log starts above the watermark.
        again = PassLog(rig.dir, 3, 4).open()
        assert again.watermark == 22 and again.oldest == 23 and again.count() == 8
        again.close()
        expect(rig.ask(link, delete(22)), DELETE, dp.NO_RECORDS_FOUND, 0x53)
        expect(rig.ask(link, delete(5)), DELETE, dp.NO_RECORDS_FOUND, 0x53)
        assert rig.ask(link, delete(1000))["count"] == 8
        assert rig.ask(link, number())["count"] == 0
        r = rig.ask(link, req(DELETE, 0x53, dp.OPERATOR_ALL, u32(0)))
        expect(r, DELETE, dp.INVALID_OPERAND, 0x53)
        # A state file that cannot be written: FAILED, nothing deleted.
        rig.append(2)
        rig.log._state_name = rig.dir + "/no-such-dir/state"
        expect(rig.ask(link, delete(1000)), DELETE, dp.FAILED, 0x53)
        assert rig.ask(link, number())["count"] == 2
    finally:
        rig.close()


def test_busy_while_a_procedure_runs_other_opcodes_served():
    rig = Rig("busy", batch=1)
    a = Link(name="a")
    b = Link(name="b", events=a.events)
    try:
        rig.append(5)
        assert rig.call(a, report()) == b""
        for data, op in ((report(), REPORT), (number(), NUMBER), (delete(3), DELETE)):
            expect(rig.ask(b, data), op, dp.BUSY, data[1])
            expect(rig.ask(a, data), op, dp.BUSY, data[1])
        assert rig.ask(b, req(dp.OP_SET_ZONE, 1, 4))["zone"] == 4
        assert rig.log.watermark == 0
        run(rig)
        assert seqs_of(a) == [1, 2, 3, 4, 5]
        assert rig.ask(b, number())["count"] == 5  # served again once it ended
    finally:
        rig.close()


def test_abort_with_and_without_a_procedure():
    rig = Rig("abort", batch=1)
    a = Link(secure=False, name="a")
    b = Link(secure=False, name="b", events=a.events)
    try:
        expect(rig.ask(b, req(ABORT, 9)), ABORT, dp.SUCCESS, 9)  # nothing running
        rig.append(6)
        assert rig.call(a, report()) == b""
        rig.ctl.pump()
        a.refuse = [True, True]  # the ABORTED response waits for room on a
        assert rig.call(b, req(ABORT, 9)) == b""  # answered after the ABORTED
        assert b.of("response") == []
        expect(rig.ask(b, req(ABORT, 10)), ABORT, dp.BUSY, 10)  # one ABORT owed already
        run(rig)
        kinds = [(e[0], e[1]) for e in a.events]
        assert kinds[-2:] == [("response", "a"), ("response", "b")], kinds
        expect(responses(a)[0], REPORT, dp.ABORTED, 0x51)
        expect(responses(b)[-1], ABORT, dp.SUCCESS, 9)
        assert 1 <= len(seqs_of(a)) < 6  # stopped early
        # The same link, with its answers refused at first: still ABORTED then SUCCESS.
        c = Link(secure=False, name="c")
        assert rig.call(c, report()) == b""
        c.refuse = [True, True, True]
        assert rig.call(c, req(ABORT, 11)) == b""
        run(rig)
        rs = responses(c)
        assert [r["op"] for r in rs] == [REPORT, ABORT]
        assert rs[0]["result"] == dp.ABORTED and rs[1]["result"] == dp.SUCCESS
        assert rig.ask(c, number())["count"] == 6  # free again
    finally:
        rig.close()


def test_completion_only_after_the_last_record_with_refusals_everywhere():
    """The link refuses the k-th send (k over every record and the response), then
    refuses two in a row, then every other send: records arrive once, in order,
    and the response only after the last of them, with the right count."""
    rig = Rig("refuse", batch=3)
    try:
        rig.append(8)
        want = list(range(1, 9))
        patterns = []
        for k in range(len(want) + 1):
            patterns.append([False] * k + [True])
            patterns.append([False] * k + [True, True])
        patterns.append([True, False] * 12)
        patterns.append([True] * 5)
        for pattern in patterns:
            link = Link(secure=False)
            link.refuse = list(pattern)
            assert rig.call(link, report()) == b""
            run(rig)
            assert seqs_of(link) == want, (pattern, seqs_of(link))
            rs = responses(link)
            assert len(rs) == 1 and rs[0]["count"] == 8, (pattern, rs)
            assert [e[0] for e in link.events] == ["record"] * 8 + ["response"], pattern
            used = pattern[: len(pattern) - len(link.refuse)]
            assert link.attempts == 9 + used.count(True), pattern
    finally:
        rig.close()


def test_link_closed_mid_procedure_then_a_new_request():
    rig = Rig("closed", batch=2)
    try:
        rig.append(9)
        a = Link(secure=False, name="a")
        assert rig.call(a, report()) == b""
        rig.ctl.pump()
        assert seqs_of(a) == [1, 2, 3, 4]
        a.refuse = [True]
        rig.ctl.pump()  # 5 is refused and held
        rig.ctl.link_closed(a)
        assert not rig.ctl.records.running
        rig.ctl.pump()
        assert responses(a) == [] and seqs_of(a) == [1, 2, 3, 4]  # no response on close
        # The host reconnects and asks again from what it has.
        a2 = Link(secure=False, name="a2")
        got, r = report_all(rig, a2, report(dp.OPERATOR_GE, 5))
        assert got == [5, 6, 7, 8, 9] and r["count"] == 5
        # Closing another link does not end a procedure.
        b = Link(secure=False, name="b")
        assert rig.call(b, report()) == b""
        rig.ctl.link_closed(a2)
        run(rig)
        assert seqs_of(b) == list(range(1, 10)) and responses(b)[0]["count"] == 9
        # The procedure's link closes while another link's ABORT is owed: ABORT answers.
        c = Link(secure=False, name="c")
        d = Link(secure=False, name="d")
        assert rig.call(c, report()) == b""
        c.refuse = [True] * 100
        assert rig.call(d, req(ABORT, 3)) == b""
        rig.ctl.link_closed(c)
        run(rig)
        assert responses(c) == []
        expect(responses(d)[0], ABORT, dp.SUCCESS, 3)
    finally:
        rig.close()


def damage(rig, first, last, per_segment):
    """Zero records first..last in flash behind the log's back (flash damage since boot)."""
    cap = rig.log.capacity
    for seq in range(first, last + 1):
        slot = seq % cap
        with open("%s/s%02d" % (rig.dir, slot // per_segment), "r+b") as f:
            f.seek((slot % per_segment) * passlog.RECORD_SIZE)
            f.write(bytes(passlog.RECORD_SIZE))


def test_pump_is_bounded_per_call():
    rig = Rig("bound", 4, 16, batch=4, scan=8)
    try:
        rig.append(40)
        rig.ask(Link(), delete(10))
        damage(rig, 12, 30, 16)  # 19 records lost: found out record by record
        link = Link(secure=False)
        assert rig.call(link, report(dp.OPERATOR_GE, 1)) == b""
        per_call = [len(seqs_of(link))]
        while rig.ctl.records.running:
            before = len(seqs_of(link))
            rig.ctl.pump()
            per_call.append(len(seqs_of(link)) - before)
        # At most 8 slots looked at per call: 11 and 12..18, then 19..26 (nothing
        # sent), then 27..30 and 31..34, then 35..38, then 39, 40.
        assert per_call == [1, 0, 4, 4, 2], per_call
        assert max(per_call) <= 4, per_call
        assert seqs_of(link) == [11] + list(range(31, 41))
        assert responses(link)[0]["count"] == 11
        assert rig.log.damaged == 19
    finally:
        rig.close()


class NativeRead:
    """PassLog.read's code, native: a stand-in until PassLog.read itself is native.

    PassLog.read's bytecode frame is wide enough to come from the heap (about
    100 bytes per record; heap_used sees it, no_alloc does not). This copy
    lets the test below prove that roller.records' own per-record path
    allocates nothing; the real read is covered by the no_alloc part.
    """

    def __init__(self, log):
        self.log = log

    @micropython.native
    def __call__(self, seq, out):
        log = self.log
        if not log.present(seq):
            return False
        slot = seq % log.capacity
        buf = log._rec
        f = log._file(slot // log.per_segment)
        f.seek((slot % log.per_segment) * passlog.RECORD_SIZE)
        if f.readinto(buf) != passlog.RECORD_SIZE or passlog._check(buf, 0) != seq:
            return False
        passlog._unpack(buf, out)
        return True


def test_per_record_pump_allocates_nothing():
    """One record per pump(): read, encode, send, and the response. Records 2..15 share
    segment file 0;
    crossing into another segment reopens a file in PassLog._file, which allocates
    (once per segment: 128 records on the device)."""
    rig = Rig("palloc", 2, 16, batch=1)
    link = CountingLink(secure=False)
    ctl = rig.ctl
    try:
        rig.append(15)
        assert rig.call(link, report(dp.OPERATOR_GE, 2)) == b""  # record 2 sent in request()
        no_alloc(ctl.pump)  # the real PassLog.read, heap locked
        no_alloc(ctl.pump)
        assert link.records == 3
        rig.log.read = NativeRead(rig.log)
        used = 0
        for _ in range(10):
            used += heap_used(ctl.pump)
        assert link.records == 13 and link.responses == 0
        used += heap_used(ctl.pump)  # record 15 and the response
        assert used == 0, used
        assert link.records == 14 and link.responses == 1 and not ctl.records.running
    finally:
        rig.close()


class RaisingLink(Link):
    """A transport bug: raises instead of answering False, from the `after`-th send on."""

    def __init__(self, after):
        super().__init__(secure=False)
        self.after = after

    def send_record(self, buf, n):
        if self.attempts >= self.after:
            raise OSError(5)
        return self._take("record", buf, n)


def test_a_raising_link_is_counted_and_dropped_not_propagated():
    rig = Rig("raising", batch=1)
    try:
        rig.append(3)
        bad = RaisingLink(0)  # raises in the pump() that request() runs
        n = rig.ctl.handle(bad, report(), 7, rig.out)
        assert n == 3 and bytes(rig.out[:3]) == bytes([REPORT, 0x51, dp.FAILED])
        assert rig.ctl.bugs == 1 and not rig.ctl.records.running
        bad = RaisingLink(1)  # raises in a later pump()
        n = rig.ctl.handle(bad, report(), 7, rig.out)
        assert n == 0 and rig.ctl.bugs == 1
        rig.ctl.pump()  # the second record: raises inside, caught
        assert rig.ctl.bugs == 2 and not rig.ctl.records.running
        assert seqs_of(bad) == [1]
        good = Link(secure=False)
        rig.ctl.bugs = 0  # counted: from here on, none
        got, r = report_all(rig, good, report())  # record access works again
        assert got == [1, 2, 3] and r["count"] == 3
    finally:
        rig.close()
