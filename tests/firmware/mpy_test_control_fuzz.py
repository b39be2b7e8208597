"""Fuzzing the control point: random and mutated requests never raise, never go unanswered
when an answer is possible, always decode, and change state only when a valid request
that changes it was accepted.
"""

from array import array

from mpy_test_control import Rig, i32, u16, u32

import dermaroll_protocol as dp

ITERATIONS = 12000
SEED = 0x5EED1234

STATE_OPS = (
    dp.OP_SET_ZONE,
    dp.OP_NEXT_ZONE,
    dp.OP_START_SESSION,
    dp.OP_END_SESSION,
    dp.OP_RESET_COUNTS,
    dp.OP_SET_SETTING,
    dp.OP_DELETE_RECORDS,
    dp.OP_SET_TIME,
    dp.OP_RAW_STREAM,
)


class Rng:
    """xorshift32: the same sequence on every run and interpreter."""

    def __init__(self, seed):
        self.s = seed & 0xFFFFFFFF or 1

    def next(self):
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        self.s = s
        return s

    def below(self, n):
        return self.next() % n

    def chance(self, percent):
        return self.below(100) < percent

    def pick(self, seq):
        return seq[self.below(len(seq))]


class FuzzLink:
    """A Link that checks every message it is sent and keeps only counts."""

    def __init__(self, rng, secure):
        self.rng = rng
        self.secure = secure
        self.mtu = 20
        self.raw = False
        self.full = 0  # percent of sends refused
        self.records = 0
        self.counts = 0
        self.responses = []

    def _room(self):
        return not self.rng.chance(self.full)

    def send_record(self, buf, n):
        if not self._room():
            return False
        assert n == dp.PASS_RECORD_SIZE
        dp.decode_pass_record(bytes(buf[:n]))
        self.records += 1
        return True

    def send_counts(self, buf, n):
        if not self._room():
            return False
        assert n == dp.ZONE_COUNTS_SIZE
        dp.decode_zone_counts(bytes(buf[:n]))
        self.counts += 1
        return True

    def send_response(self, buf, n):
        if not self._room():
            return False
        r = dp.decode_response(bytes(buf[:n]))
        assert r["op"] in (dp.OP_REPORT_RECORDS, dp.OP_ABORT), r
        self.responses.append(r["result"])
        return True


TEXTS = (b"x,y,z", b"x,-z,y", b"-y,x,z", b"auto", b"mpu6050", b"lsm6dso", b"q", b"", b"\xff")


def valid_request(rng, rig):
    """A well-formed request of a random opcode with plausible operands."""
    op = rng.pick(list(dp.REQUESTS))
    tok = rng.below(256)
    b = bytearray([op, tok])
    if op == dp.OP_SET_ZONE:
        b.append(rng.below(16))
    elif op == dp.OP_GET_SETTING:
        b.append(1 + rng.below(len(dp.SETTINGS)))
    elif op == dp.OP_SET_SETTING:
        sid = 1 + rng.below(len(dp.SETTINGS))
        name, stype = dp.SETTINGS[sid - 1]
        b.append(sid)
        b.append(stype)
        if stype == dp.SETTING_TEXT:
            t = rng.pick(TEXTS)
            b.append(len(t))
            b.extend(t)
        else:
            now = dp.setting_to_wire(stype, rig.settings[name])
            v = rng.pick((now, now + 1, now - 1, now * 2, now // 2, 0, -1))
            if rng.chance(10):
                v = rng.next() - 0x80000000
            b.extend(i32(v))
    elif op == dp.OP_SET_TIME:
        b.extend(u32(rng.next()))
        b.extend(u16(rng.below(1000)))
    elif op == dp.OP_GET_TIME:
        b.extend(u16(rng.pick((0xFFFF, rig.log.boot, rng.below(0x10000)))))
    elif op == dp.OP_CALIBRATE:
        b.append(1 + rng.below(2))
    elif op == dp.OP_RAW_STREAM:
        b.append(rng.below(2))
    elif op == dp.OP_GET_INFO:
        b.append(1 + rng.below(4))
    elif op in (dp.OP_REPORT_RECORDS, dp.OP_REPORT_NUMBER):
        b.append(rng.pick((dp.OPERATOR_ALL, dp.OPERATOR_GE)))
        b.extend(u32(rng.below(rig.log.last_seq + 5)))
    elif op == dp.OP_DELETE_RECORDS:
        b.append(dp.OPERATOR_LE)
        b.extend(u32(rng.below(rig.log.last_seq + 5)))
    return bytes(b)


def mutate(rng, data):
    kind = rng.below(6)
    b = bytearray(data)
    if kind == 0:  # flip bits
        for _ in range(1 + rng.below(3)):
            if b:
                i = rng.below(len(b))
                b[i] ^= 1 << rng.below(8)
    elif kind == 1:  # truncate
        b = b[: rng.below(len(b) + 1)]
    elif kind == 2:  # extend
        for _ in range(1 + rng.below(24)):
            b.append(rng.below(256))
    elif kind == 3 and b:  # random opcode
        b[0] = rng.below(256)
    elif kind == 4:  # random bytes
        b = bytearray(rng.below(30))
        for i in range(len(b)):
            b[i] = rng.below(256)
    elif b:  # random operand byte
        i = rng.below(len(b))
        b[i] = rng.below(256)
    return bytes(b)


def state(rig):
    s = rig.session
    return (
        bytes(s.counts) + bytes(s.order_flags),
        s.zone,
        s.id,
        s.active,
        rig.settings.values,
        dict(rig.settings.values),
        rig.log.watermark,
    )


def test_fuzz_requests_never_raise_and_change_only_what_valid_requests_change():
    rng = Rng(SEED)
    rig = Rig("fuzz", 4, 8)
    links = [FuzzLink(rng, True), FuzzLink(rng, False), FuzzLink(rng, True)]
    links[2].full = 30
    p = array("i", bytes(4 * 6))
    accepted = {}
    results = {}
    ignored = 0
    try:
        rig.append(20)
        for it in range(ITERATIONS):
            if rng.chance(3):  # a pass rolled between requests
                s = rig.session
                s.on_pass(s.zone, rng.below(3), it * 10, it * 10 + 300, 200)
                while s.pop(p):
                    assert rig.log.append(p, s.id if s.active else 0, 0)
            link = rng.pick(links)
            data = valid_request(rng, rig)
            if rng.chance(55):
                data = mutate(rng, data)
            before = state(rig)
            raw_before = link.raw
            n = rig.ctl.handle(link, data, len(data), rig.out)
            assert rig.ctl.bugs == 0, (data, repr(rig.ctl.last_bug))
            after = state(rig)
            if len(data) < 2:
                assert n == 0, data
                ignored += 1
                assert after[:4] == before[:4] and after[5:] == before[5:]
                continue
            op = data[0]
            if n == 0:  # answered later: only these two, and only while a procedure runs
                assert op in (dp.OP_REPORT_RECORDS, dp.OP_ABORT), data
                result = -1
            else:
                resp = bytes(rig.out[:n])
                assert resp[0] == op and resp[1] == data[1], (data, resp)
                if op in dp.RESPONSE_DATA:
                    result = dp.decode_response(resp)["result"]
                else:
                    assert resp == bytes([op, data[1], dp.OPCODE_NOT_SUPPORTED]), (data, resp)
                    result = dp.OPCODE_NOT_SUPPORTED
                results[result] = results.get(result, 0) + 1
            ok = result == dp.SUCCESS
            if ok and op in STATE_OPS:
                accepted[op] = accepted.get(op, 0) + 1
            if op in dp.BONDED_OPCODES and not link.secure:
                assert result in (dp.NOT_PERMITTED, dp.INVALID_OPERAND), (data, result)
            counts_changed = after[0] != before[0]
            assert not counts_changed or (ok and op in (dp.OP_START_SESSION, dp.OP_RESET_COUNTS)), (
                data,
                result,
            )
            assert after[1] == before[1] or (ok and op in (dp.OP_SET_ZONE, dp.OP_NEXT_ZONE)), (
                data,
                result,
            )
            assert after[2:4] == before[2:4] or (
                ok and op in (dp.OP_START_SESSION, dp.OP_END_SESSION)
            ), (data, result)
            if after[4] is not before[4]:
                assert after[5] == before[5] or (ok and op == dp.OP_SET_SETTING), (data, result)
            assert after[5] == before[5] or (ok and op == dp.OP_SET_SETTING), (data, result)
            assert after[6] == before[6] or (ok and op == dp.OP_DELETE_RECORDS), (data, result)
            assert link.raw == raw_before or (ok and op == dp.OP_RAW_STREAM), (data, result)
            if ok and op == dp.OP_SET_ZONE:
                assert rig.session.zone == data[2]
            if rng.chance(70):
                rig.ctl.pump()
            if rng.chance(1):
                rig.ctl.link_closed(rng.pick(links))
        for _ in range(1000):
            rig.ctl.pump()
        assert not rig.ctl.records.running and rig.ctl.records.abort_link is None
        # The run exercised what it claims to: every state change and every answer kind.
        for op in STATE_OPS:
            assert accepted.get(op, 0) >= 5, (op, accepted)
        for code in (
            dp.SUCCESS,
            dp.OPCODE_NOT_SUPPORTED,
            dp.INVALID_OPERAND,
            dp.NO_RECORDS_FOUND,
            dp.BUSY,
            dp.NOT_PERMITTED,
            dp.FAILED,
        ):
            assert results.get(code, 0) >= 3, (code, results)
        assert ignored > 10
        assert sum([k.records for k in links]) > 50
        answers = []
        for k in links:
            answers.extend(k.responses)
        assert dp.ABORTED in answers and dp.SUCCESS in answers
        print("fuzz:", ITERATIONS, "requests; results", results, "accepted", accepted)
    finally:
        rig.close()
