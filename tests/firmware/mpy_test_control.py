"""The control point (roller.control) under the real MicroPython interpreter: every opcode.

The helpers here (Link, Rig, req, rsp) are shared by mpy_test_records*.py and
mpy_test_control_fuzz.py.
"""

import os
from array import array

from mpy_test_passlog import rmtree, tmpdir
from mpytest import heap_used, no_alloc

import dermaroll_protocol as dp
from roller import recovery
from roller.control import Control
from roller.passlog import PassLog
from roller.session import PASS_FIELDS, Session
from roller.settings import Settings, parse_mount

INFO = (b"dermaroll", b"DR-1", b"A4CF1234ABCD", b"0.1.0 p1.0")


class Link:
    """Our Link interface (roller.control docstring), recording what it was sent.

    `refuse` is a list of booleans consumed one per send attempt (True: answer
    False, buffers full); when empty every send is accepted. `events` keeps
    every accepted message in order as (kind, bytes), shared between links
    when a list is passed in.
    """

    def __init__(self, secure=True, events=None, name="link"):
        self.secure = secure
        self.mtu = 20
        self.raw = False
        self.name = name
        self.events = events if events is not None else []
        self.refuse = []
        self.attempts = 0

    def _take(self, kind, buf, n):
        self.attempts += 1
        if self.refuse and self.refuse.pop(0):
            return False
        self.events.append((kind, self.name, bytes(buf[:n])))
        return True

    def send_record(self, buf, n):
        return self._take("record", buf, n)

    def send_counts(self, buf, n):
        return self._take("counts", buf, n)

    def send_response(self, buf, n):
        return self._take("response", buf, n)

    def of(self, kind):
        return [e[2] for e in self.events if e[0] == kind and e[1] == self.name]


class CountingLink:
    """A Link that accepts everything and only counts: allocates nothing (for no_alloc)."""

    def __init__(self, secure=True):
        self.secure = secure
        self.mtu = 20
        self.raw = False
        self.records = 0
        self.counts = 0
        self.responses = 0

    def send_record(self, buf, n):
        self.records += 1
        return True

    def send_counts(self, buf, n):
        self.counts += 1
        return True

    def send_response(self, buf, n):
        self.responses += 1
        return True


class Clock:
    def __init__(self):
        self.ms = 1000

    def __call__(self):
        return self.ms


class Rig:
    """A Control over real Settings, Session, PassLog and Snapshot files in a temp dir."""

    def __init__(self, tag, segments=3, per_segment=4, snapshot=True, gravity=None, **kw):
        self.dir = tmpdir(tag)
        self.settings = Settings()
        self.session = Session(self.settings)
        self.log = PassLog(self.dir, segments, per_segment).open()
        self.snap = recovery.Snapshot(self.dir + "/session.bin") if snapshot else None
        self.clock = Clock()
        self.settings_path = self.dir + "/settings.json"
        self.ctl = Control(
            self.settings,
            self.session,
            self.log,
            INFO,
            self.clock,
            self.snap,
            None,
            gravity,
            self.settings_path,
        )
        if kw:
            for k in kw:
                setattr(self.ctl.records, k, kw[k])
        self.out = bytearray(32)
        self.p = array("i", bytes(4 * PASS_FIELDS))

    def close(self):
        self.log.close()
        rmtree(self.dir)

    def call(self, link, data):
        """handle() -> the response bytes (b"" when it answered nothing now)."""
        n = self.ctl.handle(link, data, len(data), self.out)
        assert self.ctl.bugs == 0, repr(self.ctl.last_bug)
        return bytes(self.out[:n])

    def ask(self, link, data):
        """handle() -> the decoded response (it must answer now)."""
        r = self.call(link, data)
        assert r, "no response to %r" % data
        return dp.decode_response(r)

    def roll(self, zone, direction, n=1):
        """Passes counted by the session and logged, as the app does."""
        self.session.set_zone(zone)
        for _ in range(n):
            t = self.session.seq * 1000
            self.session.on_pass(zone, direction, t, t + 450, 324)
            while self.session.pop(self.p):
                assert self.log.append(self.p, self.session.id if self.session.active else 0, 0)

    def append(self, count):
        """`count` more records in the log (not counted by the session)."""
        for _ in range(count):
            seq = self.log.last_seq + 1
            p = array("i", [seq, seq % 7, seq % 3, seq * 1000, seq * 1000 + 400, 95 + seq])
            assert self.log.append(p, 1 + seq // 10, seq & 3)
        self.session.seq = self.log.last_seq


def req(op, token=0x42, *operands):
    """A request: op, token, then operand bytes (ints) or bytes objects."""
    b = bytearray([op, token])
    for x in operands:
        if isinstance(x, int):
            b.append(x)
        else:
            b.extend(x)
    return bytes(b)


def u16(v):
    return bytes([v & 0xFF, v >> 8])


def u32(v):
    return bytes([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF, (v >> 24) & 0xFF])


def i32(v):
    return u32(v & 0xFFFFFFFF)


def expect(resp, op, result, token=0x42):
    assert resp["op"] == op, resp
    assert resp["token"] == token, resp
    assert resp["result"] == result, resp
    return resp


def counts_of(session):
    return bytes(session.counts) + bytes(session.order_flags)


# --- zones --------------------------------------------------------------------


def test_set_zone_and_next_zone():
    rig = Rig("zone")
    link = Link(secure=False)
    try:
        r = expect(rig.ask(link, req(dp.OP_SET_ZONE, 7, 3)), dp.OP_SET_ZONE, dp.SUCCESS, 7)
        assert r["zone"] == 3 and rig.session.zone == 3
        r = expect(rig.ask(link, req(dp.OP_NEXT_ZONE)), dp.OP_NEXT_ZONE, dp.SUCCESS)
        assert r["zone"] == 4 and rig.session.zone == 4
        rig.ask(link, req(dp.OP_SET_ZONE, 1, 6))
        assert rig.ask(link, req(dp.OP_NEXT_ZONE))["zone"] == 1  # 6 wraps to 1
        for start in (0, 7, 15):
            rig.ask(link, req(dp.OP_SET_ZONE, 1, start))
            assert rig.ask(link, req(dp.OP_NEXT_ZONE))["zone"] == 1, start
        rig.ask(link, req(dp.OP_SET_ZONE, 1, 15))
        expect(rig.ask(link, req(dp.OP_SET_ZONE, 9, 16)), dp.OP_SET_ZONE, dp.INVALID_OPERAND, 9)
        expect(rig.ask(link, req(dp.OP_SET_ZONE, 9)), dp.OP_SET_ZONE, dp.INVALID_OPERAND, 9)
        assert rig.session.zone == 15  # the bad ones changed nothing
        # Trailing bytes are ignored (SPEC 6.1), and only data[:n] is read.
        assert rig.ask(link, req(dp.OP_SET_ZONE, 1, 2, 0xEE, 0xFF))["zone"] == 2
        buf = bytearray(req(dp.OP_SET_ZONE, 1, 5) + b"\x00" * 20)
        n = rig.ctl.handle(link, buf, 2, rig.out)  # SET_ZONE cut to 2 bytes: no zone
        assert dp.decode_response(rig.out[:n])["result"] == dp.INVALID_OPERAND
        assert rig.session.zone == 2
    finally:
        rig.close()


# --- sessions -----------------------------------------------------------------


def test_sessions_start_end_reset_and_persist():
    rig = Rig("sess")
    link = Link()
    try:
        rig.roll(2, 0, 3)
        r = expect(rig.ask(link, req(dp.OP_START_SESSION)), dp.OP_START_SESSION, dp.SUCCESS)
        assert r["session"] == 1 and rig.session.active and rig.session.id == 1
        assert not rig.session.used(2)  # START clears the counts
        snap = recovery.Snapshot(rig.snap.path)
        assert snap.load() and snap.id == 1 and snap.active and snap.since == rig.session.seq
        rig.roll(3, 1, 2)
        r = expect(rig.ask(link, req(dp.OP_END_SESSION)), dp.OP_END_SESSION, dp.SUCCESS)
        assert r["session"] == 1 and not rig.session.active
        assert rig.session.count(3, 1) == 2  # counts stay readable after END
        snap = recovery.Snapshot(rig.snap.path)
        assert snap.load() and snap.id == 1 and not snap.active
        # END with none open: SUCCESS with session 0, nothing changes.
        before = rig.ctl.changes
        assert rig.ask(link, req(dp.OP_END_SESSION))["session"] == 0
        assert rig.ctl.changes == before
        # RESET_COUNTS clears the counts, keeps the log.
        last = rig.log.last_seq
        expect(rig.ask(link, req(dp.OP_RESET_COUNTS)), dp.OP_RESET_COUNTS, dp.SUCCESS)
        assert not rig.session.used(3) and rig.log.last_seq == last and rig.log.count() == 5
        # Session ids wrap 65535 -> 1, never 0.
        rig.session.id = 65535
        assert rig.ask(link, req(dp.OP_START_SESSION))["session"] == 1
        assert rig.ask(link, req(dp.OP_START_SESSION))["session"] == 2
    finally:
        rig.close()


def test_session_change_that_cannot_be_saved_changes_nothing():
    rig = Rig("sessfail")
    link = Link()
    try:
        rig.roll(1, 0, 2)
        rig.snap.path = rig.dir + "/no-such-dir/session.bin"
        before = counts_of(rig.session)
        for op in (dp.OP_START_SESSION, dp.OP_RESET_COUNTS):
            expect(rig.ask(link, req(op)), op, dp.FAILED)
            assert counts_of(rig.session) == before and rig.session.id == 0
            assert not rig.session.active
    finally:
        rig.close()


# --- settings -----------------------------------------------------------------


def setting_value(rig, link, sid):
    r = expect(rig.ask(link, req(dp.OP_GET_SETTING, 1, sid)), dp.OP_GET_SETTING, dp.SUCCESS, 1)
    assert r["setting"] == sid and r["type"] == dp.SETTINGS[sid - 1][1]
    return r["value"]


def test_get_setting_every_id():
    rig = Rig("getset")
    link = Link(secure=False)  # reading needs no bond
    try:
        for sid in range(1, len(dp.SETTINGS) + 1):
            name, stype = dp.SETTINGS[sid - 1]
            want = dp.setting_to_wire(stype, rig.settings[name])
            assert setting_value(rig, link, sid) == want, name
        for bad in (0, len(dp.SETTINGS) + 1, 255):
            r = rig.ask(link, req(dp.OP_GET_SETTING, 1, bad))
            expect(r, dp.OP_GET_SETTING, dp.INVALID_OPERAND, 1)
    finally:
        rig.close()


def set_int(rig, link, name, value, token=3):
    sid = dp.setting_id(name)
    stype = dp.SETTINGS[sid - 1][1]
    return rig.ask(link, req(dp.OP_SET_SETTING, token, sid, stype, i32(value)))


def set_text(rig, link, name, text, token=3):
    sid = dp.setting_id(name)
    return rig.ask(link, req(dp.OP_SET_SETTING, token, sid, dp.SETTING_TEXT, len(text), text))


def saved(rig):
    return Settings().load(rig.settings_path)


def test_set_setting_validates_stores_and_persists():
    rig = Rig("setset")
    link = Link()
    try:
        r = expect(set_int(rig, link, "pause_ms", 500), dp.OP_SET_SETTING, dp.SUCCESS, 3)
        assert r["value"] == 500 and rig.settings["pause_ms"] == 500
        assert saved(rig)["pause_ms"] == 500
        r = expect(set_int(rig, link, "reverse_mm", 2500), dp.OP_SET_SETTING, dp.SUCCESS, 3)
        assert r["value"] == 2500 and rig.settings["reverse_mm"] == 2.5
        assert saved(rig)["reverse_mm"] == 2.5
        r = expect(set_text(rig, link, "mount", b"x,-z,y"), dp.OP_SET_SETTING, dp.SUCCESS, 3)
        assert r["value"] == "x,-z,y" and saved(rig)["mount"] == "x,-z,y"
        # Values the settings reject: INVALID_OPERAND, the old value stays (RAM and file).
        for name, value in (("pause_ms", 10), ("reverse_mm", 60000), ("i2c_freq", -1)):
            before = rig.settings[name]
            r = set_int(rig, link, name, value)
            expect(r, dp.OP_SET_SETTING, dp.INVALID_OPERAND, 3)
            assert rig.settings[name] == before and saved(rig)[name] == before
        expect(set_text(rig, link, "mount", b"x,x,y"), dp.OP_SET_SETTING, dp.INVALID_OPERAND, 3)
        expect(set_text(rig, link, "imu_model", b"bmi"), dp.OP_SET_SETTING, dp.INVALID_OPERAND, 3)
        expect(set_text(rig, link, "mount", b"\xff\xfe"), dp.OP_SET_SETTING, dp.INVALID_OPERAND, 3)
        assert rig.settings["mount"] == "x,-z,y" and rig.settings["imu_model"] == "auto"
        # Cross checks: target_max below target_min is rejected; a good one reaches the session.
        expect(set_int(rig, link, "target_max", 3), dp.OP_SET_SETTING, dp.INVALID_OPERAND, 3)
        expect(set_int(rig, link, "target_max", 8), dp.OP_SET_SETTING, dp.SUCCESS, 3)
        assert rig.session.target_max == 8
        # Wrong type, unknown id, short value: INVALID_OPERAND from the parser.
        sid = dp.setting_id("pause_ms")
        bad = req(dp.OP_SET_SETTING, 3, sid, dp.SETTING_MILLI, i32(500))
        expect(rig.ask(link, bad), dp.OP_SET_SETTING, dp.INVALID_OPERAND, 3)
        bad = req(dp.OP_SET_SETTING, 3, len(dp.SETTINGS) + 1, dp.SETTING_INT, i32(1))
        expect(rig.ask(link, bad), dp.OP_SET_SETTING, dp.INVALID_OPERAND, 3)
        bad = req(dp.OP_SET_SETTING, 3, sid, dp.SETTING_INT, 1, 2)
        expect(rig.ask(link, bad), dp.OP_SET_SETTING, dp.INVALID_OPERAND, 3)
        assert rig.settings["pause_ms"] == 500
        # A file that cannot be written: FAILED, the old value stays.
        rig.ctl.settings_path = rig.dir + "/no-such-dir/settings.json"
        expect(set_int(rig, link, "pause_ms", 600), dp.OP_SET_SETTING, dp.FAILED, 3)
        assert rig.settings["pause_ms"] == 500
    finally:
        rig.close()


# --- time ---------------------------------------------------------------------


def test_set_and_get_time_keep_the_epoch_mapping():
    rig = Rig("time")
    link = Link(secure=False)
    try:
        boot = rig.log.boot
        rig.clock.ms = 5000
        r = rig.ask(link, req(dp.OP_GET_TIME, 1, u16(0xFFFF)))
        expect(r, dp.OP_GET_TIME, dp.SUCCESS, 1)
        assert (r["boot"], r["device_ms"], r["epoch_s"], r["epoch_ms"]) == (boot, 5000, 0, 0)
        r = rig.ask(link, req(dp.OP_SET_TIME, 2, u32(1700000000), u16(900)))
        expect(r, dp.OP_SET_TIME, dp.SUCCESS, 2)
        assert (r["boot"], r["device_ms"], r["epoch_s"], r["epoch_ms"]) == (
            boot,
            5000,
            1700000000,
            900,
        )
        rig.clock.ms = 7250  # 2.25 s later: 900 + 2250 ms carries into the seconds
        for operand in (0xFFFF, boot):
            r = rig.ask(link, req(dp.OP_GET_TIME, 1, u16(operand)))
            assert (r["boot"], r["device_ms"], r["epoch_s"], r["epoch_ms"]) == (
                boot,
                7250,
                1700000003,
                150,
            )
        # Earlier boots: no mapping kept.
        r = rig.ask(link, req(dp.OP_GET_TIME, 1, u16(boot + 1)))
        expect(r, dp.OP_GET_TIME, dp.NO_RECORDS_FOUND, 1)
        r = rig.ask(link, req(dp.OP_SET_TIME, 2, u32(1700000000), u16(1000)))
        expect(r, dp.OP_SET_TIME, dp.INVALID_OPERAND, 2)
        expect(rig.ask(link, req(dp.OP_SET_TIME, 2, u32(1))), dp.OP_SET_TIME, dp.INVALID_OPERAND, 2)
        assert rig.ask(link, req(dp.OP_GET_TIME, 1, u16(0xFFFF)))["epoch_s"] == 1700000003
    finally:
        rig.close()


# --- calibration --------------------------------------------------------------


class Gravity:
    def __init__(self):
        self.g = None

    def __call__(self, out):
        if self.g is None:
            return False
        for i in range(3):
            out[i] = self.g[i]
        return True


def unit(axis, sign):
    v = [0, 0, 0]
    v[axis] = 1000 * sign
    return v


def test_calibrate_mounting_in_every_orientation():
    grav = Gravity()
    rig = Rig("cal", gravity=grav)
    link = Link()
    cal = dp.OP_CALIBRATE
    try:
        done = 0
        for za in range(3):
            for zs in (1, -1):
                for ya in range(3):
                    if ya == za:
                        continue
                    for ys in (1, -1):
                        grav.g = unit(za, zs)
                        r = expect(rig.ask(link, req(cal, 5, 1)), cal, dp.SUCCESS, 5)
                        assert r["pose"] == 1 and r["text"] == ""
                        grav.g = unit(ya, ys)
                        r = expect(rig.ask(link, req(cal, 5, 2)), cal, dp.SUCCESS, 5)
                        text = r["text"]
                        assert rig.settings["mount"] == text and saved(rig)["mount"] == text
                        m = parse_mount(text)
                        # Roller z and y are the chip axes seen up in poses 1 and 2 ...
                        assert m[2] == (za, zs) and m[1] == (ya, ys), text
                        # ... and the frame is right-handed: x = y cross z.
                        rows = []
                        for axis, sign in m:
                            rows.append(unit(axis, sign))
                        det = (
                            rows[0][0] * (rows[1][1] * rows[2][2] - rows[1][2] * rows[2][1])
                            - rows[0][1] * (rows[1][0] * rows[2][2] - rows[1][2] * rows[2][0])
                            + rows[0][2] * (rows[1][0] * rows[2][1] - rows[1][1] * rows[2][0])
                        )
                        assert det == 1000**3, text
                        done += 1
        assert done == 24
        grav.g = [0, 0, 1000]
        rig.ask(link, req(cal, 5, 1))
        grav.g = [0, 1000, 0]
        assert rig.ask(link, req(cal, 5, 2))["text"] == "x,y,z"
        grav.g = [0, 1000, 0]
        rig.ask(link, req(cal, 5, 1))
        grav.g = [0, 0, 1000]
        assert rig.ask(link, req(cal, 5, 2))["text"] == "-x,z,y"
        before = rig.settings["mount"]
        # Failures: pose 2 first, same axis twice, a tilted reading, no IMU.
        grav.g = [0, 1000, 0]
        expect(rig.ask(link, req(cal, 5, 2)), cal, dp.FAILED, 5)
        grav.g = [0, 0, 1000]
        rig.ask(link, req(cal, 5, 1))
        grav.g = [0, 0, -1000]
        expect(rig.ask(link, req(cal, 5, 2)), cal, dp.FAILED, 5)
        grav.g = [700, 700, 0]
        expect(rig.ask(link, req(cal, 5, 1)), cal, dp.FAILED, 5)
        grav.g = None
        expect(rig.ask(link, req(cal, 5, 1)), cal, dp.FAILED, 5)
        assert rig.settings["mount"] == before
        expect(rig.ask(link, req(cal, 5, 3)), cal, dp.INVALID_OPERAND, 5)
        expect(rig.ask(Link(secure=False), req(cal, 5, 1)), cal, dp.NOT_PERMITTED, 5)
    finally:
        rig.close()


def test_calibrate_without_a_sensor_fails():
    rig = Rig("calnone")
    try:
        r = rig.ask(Link(), req(dp.OP_CALIBRATE, 5, 1))
        expect(r, dp.OP_CALIBRATE, dp.FAILED, 5)
    finally:
        rig.close()


# --- raw stream, info, counts -------------------------------------------------


def test_raw_stream_flag_and_info():
    rig = Rig("raw")
    link = Link(secure=False)
    other = Link(secure=False)
    try:
        assert rig.ask(link, req(dp.OP_RAW_STREAM, 1, 1))["on"] == 1
        assert link.raw and not other.raw  # per link
        expect(rig.ask(link, req(dp.OP_RAW_STREAM, 1, 2)), dp.OP_RAW_STREAM, dp.INVALID_OPERAND, 1)
        assert link.raw
        assert rig.ask(link, req(dp.OP_RAW_STREAM, 1, 0))["on"] == 0 and not link.raw
        for field in range(1, 5):
            r = expect(rig.ask(link, req(dp.OP_GET_INFO, 4, field)), dp.OP_GET_INFO, dp.SUCCESS, 4)
            assert r["field"] == field and r["text"] == INFO[field - 1].decode()
        for field in (0, 5):
            r = rig.ask(link, req(dp.OP_GET_INFO, 4, field))
            expect(r, dp.OP_GET_INFO, dp.INVALID_OPERAND, 4)
    finally:
        rig.close()


def test_report_counts_sends_zone_counts_then_answers():
    rig = Rig("counts")
    link = Link(secure=False)
    try:
        r = expect(rig.ask(link, req(dp.OP_REPORT_COUNTS)), dp.OP_REPORT_COUNTS, dp.SUCCESS)
        assert r["zones"] == 0 and link.of("counts") == []
        rig.ask(link, req(dp.OP_START_SESSION))
        rig.roll(5, 2, 1)
        rig.roll(2, 1, 2)  # horizontal before any vertical: the order remark
        rig.roll(2, 0, 4)
        assert rig.ask(link, req(dp.OP_REPORT_COUNTS))["zones"] == 2
        got = [dp.decode_zone_counts(b) for b in link.of("counts")]
        assert len(got) == 2
        assert got[0] == {
            "session": 1,
            "zone": 2,
            "flags": dp.COUNTS_ORDER,
            "vertical": 4,
            "horizontal": 2,
            "diagonal": 0,
        }
        assert got[1]["zone"] == 5 and got[1]["diagonal"] == 1 and got[1]["flags"] == 0
        rig.ask(link, req(dp.OP_END_SESSION))
        link.events.clear()
        rig.ask(link, req(dp.OP_REPORT_COUNTS))
        assert dp.decode_zone_counts(link.of("counts")[0])["session"] == 0
        # A full link: FAILED, the host asks again.
        link.refuse = [False, True]
        r = rig.ask(link, req(dp.OP_REPORT_COUNTS))
        expect(r, dp.OP_REPORT_COUNTS, dp.FAILED)
    finally:
        rig.close()


# --- malformed requests and security -------------------------------------------


def test_unknown_short_and_truncated_requests():
    rig = Rig("bad")
    link = Link()
    try:
        before = counts_of(rig.session)
        for data in (b"", b"\x01", b"\x03"):
            assert rig.call(link, data) == b""  # shorter than 2 bytes: ignored
        for op in (0x00, 0x0E, 0x0F, 0x14, 0x80, 0xFF):
            r = rig.call(link, req(op, 0x99, 1, 2, 3, 4, 5, 6))
            assert r == bytes([op, 0x99, dp.OPCODE_NOT_SUPPORTED]), (op, r)
        for op in dp.REQUESTS:
            size = dp.REQUESTS[op][1]
            if size > 2:
                r = rig.ask(link, bytes([op, 0x77]) + b"\x01" * (size - 3))
                expect(r, op, dp.INVALID_OPERAND, 0x77)
        assert counts_of(rig.session) == before and rig.ctl.changes == 0
    finally:
        rig.close()


def test_bonded_opcodes_need_a_secure_link():
    rig = Rig("bond")
    insecure = Link(secure=False)
    try:
        rig.ask(Link(), req(dp.OP_START_SESSION))
        rig.roll(1, 0, 3)
        rig.append(2)
        state = (counts_of(rig.session), dict(rig.settings.values), rig.log.watermark)
        requests = {
            dp.OP_RESET_COUNTS: req(dp.OP_RESET_COUNTS),
            dp.OP_SET_SETTING: req(dp.OP_SET_SETTING, 0x42, 6, 0, i32(500)),
            dp.OP_CALIBRATE: req(dp.OP_CALIBRATE, 0x42, 1),
            dp.OP_DELETE_RECORDS: req(dp.OP_DELETE_RECORDS, 0x42, 2, u32(100)),
        }
        assert sorted(requests) == sorted(dp.BONDED_OPCODES)
        for op in requests:
            expect(rig.ask(insecure, requests[op]), op, dp.NOT_PERMITTED)
        assert (counts_of(rig.session), dict(rig.settings.values), rig.log.watermark) == state
        # SPEC 6.2 order: a bad operand is INVALID_OPERAND before the security check.
        r = rig.ask(insecure, req(dp.OP_DELETE_RECORDS, 0x42, 1, u32(100)))
        expect(r, dp.OP_DELETE_RECORDS, dp.INVALID_OPERAND)
        # The same requests on a secure link are served.
        expect(rig.ask(Link(), requests[dp.OP_RESET_COUNTS]), dp.OP_RESET_COUNTS, dp.SUCCESS)
        expect(rig.ask(Link(), requests[dp.OP_SET_SETTING]), dp.OP_SET_SETTING, dp.SUCCESS)
        r = rig.ask(Link(), requests[dp.OP_DELETE_RECORDS])
        expect(r, dp.OP_DELETE_RECORDS, dp.SUCCESS)
    finally:
        rig.close()


# --- allocation ---------------------------------------------------------------


def test_common_opcodes_allocate_nothing():
    rig = Rig("alloc", snapshot=False)
    link = CountingLink(secure=False)
    out = bytearray(32)
    ctl = rig.ctl
    try:
        rig.roll(1, 0, 3)
        rig.roll(4, 1, 2)
        rig.append(3)
        common = [
            req(dp.OP_SET_ZONE, 1, 3),
            req(dp.OP_NEXT_ZONE, 2),
            req(dp.OP_REPORT_COUNTS, 8),  # before START clears the counts
            req(dp.OP_START_SESSION, 3),
            req(dp.OP_END_SESSION, 4),
            req(dp.OP_RAW_STREAM, 5, 1),
            req(dp.OP_GET_INFO, 6, 4),
            req(dp.OP_GET_SETTING, 7, dp.setting_id("pause_ms")),
            req(dp.OP_REPORT_NUMBER, 9, 1, u32(0)),
            req(dp.OP_REPORT_NUMBER, 9, 3, u32(4)),
            req(dp.OP_ABORT, 10),
        ]
        cur = [b"", 0]

        def call():
            return ctl.handle(link, cur[0], cur[1], out)

        for data in common:
            cur[0] = bytearray(data)
            cur[1] = len(data)
            r = no_alloc(call)
            assert r > 0 and out[2] == dp.SUCCESS, (data, bytes(out[:r]))
            used = heap_used(call)
            assert used == 0, (data, used)
        assert link.counts == 2 * 2 and ctl.bugs == 0  # 2 zones, no_alloc + heap_used
    finally:
        rig.close()


def test_handle_never_raises_on_odd_links_and_buffers():
    """A link without send_counts is a bug in the caller: answered FAILED, counted."""
    rig = Rig("odd")

    class Bare:
        secure = True
        raw = False

    try:
        rig.roll(1, 0, 1)
        n = rig.ctl.handle(Bare(), req(dp.OP_REPORT_COUNTS), 2, rig.out)
        assert bytes(rig.out[:n]) == bytes([dp.OP_REPORT_COUNTS, 0x42, dp.FAILED])
        assert rig.ctl.bugs == 1
        os.stat(rig.dir)  # the rig is intact
    finally:
        rig.close()
