"""The control point (protocol/SPEC.md section 6), the same for BLE and the serial link.

`Control.handle(link, data, n, out)` takes one request body (already
unframed: the Control Point write, or a serial frame of type 0x05 without
its type byte), does what it asks and writes the response into `out` (a
preallocated bytearray of at least 20 bytes); it returns the response's
length, or 0 when there is nothing to send now: a request shorter than two
bytes (SPEC 6.1 ignores it), or a response that comes later through
`link.send_response` (a REPORT_RECORDS that matched records, an ABORT while
one runs: roller.records). Nothing raises out of `handle`: malformed
requests answer the codes of SPEC 6.2 (OPCODE_NOT_SUPPORTED,
INVALID_OPERAND); an unexpected exception (a bug) answers FAILED and is
counted in `bugs` (tests assert it stays 0). The app calls `pump()` from its
loop (record access) and `link_closed(link)` when a connection ends.

The Link interface (BLE and serial each implement it; roller.control and
roller.records only use this):

    secure    bool: the link is encrypted and the peer bonded (SPEC 3.2).
              Opcodes in BONDED_OPCODES answer NOT_PERMITTED unless it is
              true. The serial link is always secure.
    mtu       int: payload bytes one message may carry (20 until an ATT MTU
              exchange; serial: 245). Only RawSamples use more than 20.
    raw       bool: RawSamples wanted on this link. Control writes it
              (RAW_STREAM on/off); the app reads it; the transport sets it
              False when the connection ends.
    send_record(buf, n) -> bool
              Queue buf[:n], a PassRecord (Pass Record notification / serial
              type 0x01). False: the link's buffers are full (BLE ENOMEM),
              nothing was queued, the caller offers it again later.
    send_counts(buf, n) -> bool
              The same for a ZoneCounts (Zone Counts notification / serial
              type 0x02), used by REPORT_COUNTS.
    send_response(buf, n) -> bool
              The same for a control response (Control Point indication /
              serial type 0x06) that is not handle()'s return value: record
              access completions and ABORT answers. The transport must keep
              responses of one link in the order it accepted them.

The transport sends handle()'s own return value as a response on the same
link, after anything handle() queued through send_counts (REPORT_COUNTS
sends its ZoneCounts first) and send_response. `buf` is reused after the
call returns True: the transport copies it (gatts_notify / a write do).

Decisions where the SPEC leaves room (documented for the host side):

- GET_TIME of the current boot (0xFFFF or its number) always answers
  SUCCESS with device_ms = now; epoch_s is 0 until a SET_TIME. Mappings of
  earlier boots are not kept: NO_RECORDS_FOUND.
- CALIBRATE needs a `gravity(out)` source (the app's still-averaged
  accelerometer, chip axes, milli-g; False when it has none). Without one,
  or when the reading is not dominated by one axis (tilted more than about
  30 degrees from an axis), or when pose 2 comes before pose 1 or finds the
  same chip axis, it answers FAILED. Pose 2 stores `mount` (settings.save).
- REPORT_COUNTS answers FAILED if the link refuses a ZoneCounts (buffers
  full); the host asks again. ZoneCounts.session is the open session's id,
  0 when none is open (as Status.session).
- A settings or session file that cannot be written answers FAILED and
  changes nothing (the old value stays, in RAM as on flash).
"""

import time
from array import array

import micropython
from micropython import const

from dermaroll_protocol import (
    BONDED_OPCODES,
    BOOT_CURRENT,
    COUNTS_ORDER,
    FAILED,
    INVALID_OPERAND,
    NO_RECORDS_FOUND,
    NO_RESPONSE,
    NOT_PERMITTED,
    OP_CALIBRATE,
    OP_DELETE_RECORDS,
    OP_END_SESSION,
    OP_GET_INFO,
    OP_GET_SETTING,
    OP_GET_TIME,
    OP_NEXT_ZONE,
    OP_RAW_STREAM,
    OP_REPORT_COUNTS,
    OP_REPORT_NUMBER,
    OP_REPORT_RECORDS,
    OP_RESET_COUNTS,
    OP_SET_SETTING,
    OP_SET_TIME,
    OP_SET_ZONE,
    OP_START_SESSION,
    OPCODE_NOT_SUPPORTED,
    REQUEST_SLOTS,
    SETTING_TEXT,
    SETTINGS,
    SUCCESS,
    ZONE_COUNTS_SIZE,
    ProtocolError,
    encode_response,
    encode_response_setting,
    encode_response_setting_text,
    encode_response_text,
    encode_response_time,
    encode_response_u8,
    encode_response_u16,
    encode_zone_counts,
    parse_request,
    setting_from_wire,
    setting_to_wire,
)
from roller import settings as settings_mod
from roller import zones
from roller.records import Records

# Requests are copied into a buffer of this size (the longest request of
# protocol 1.0 is 19 bytes; later bytes are trailing and ignored, SPEC 6.1).
REQUEST_MAX = const(24)
SESSION_MAX = const(0xFFFF)
_AXES = "xyz"
# A still reading belongs to an axis when that axis holds >= 3/4 of |g|^2
# (within about 30 degrees of it).
_DOMINANT_NUM = const(3)
_DOMINANT_DEN = const(4)


class _SessionFacts:
    """What recovery.Snapshot.save reads of a session: saved before the session changes."""

    def __init__(self):
        self.id = 0
        self.active = False


def _ticks_ms():
    return time.ticks_ms()


class Control:
    """The control point's requests over `settings`, `session` and the pass `log`.

    info: the four GET_INFO texts (bytes): manufacturer, model, serial number,
    firmware revision. clock(): device ms since boot (the time base of
    PassRecord t_end_ms). snapshot: a roller.recovery.Snapshot (session id,
    active and `since` persisted before a session change), or None. drain():
    called before a session change so every pass counted so far is logged
    under its session (recovery.py), or None. gravity(out): see the module
    docstring, or None.
    """

    def __init__(
        self,
        settings,
        session,
        log,
        info=(b"dermaroll", b"", b"", b""),
        clock=None,
        snapshot=None,
        drain=None,
        gravity=None,
        settings_path=settings_mod.FILE,
        records=None,
    ):
        self.settings = settings
        self.session = session
        self.log = log
        self.info = info
        self.clock = clock if clock is not None else _ticks_ms
        self.snapshot = snapshot
        self.drain = drain
        self.gravity = gravity
        self.settings_path = settings_path
        self.records = records if records is not None else Records(log)
        self.changes = 0  # state-changing requests accepted (the app re-sends Status)
        self.bugs = 0  # exceptions handle() caught that it should never see
        self.last_bug = None
        # SET_TIME mapping of this boot: at device time _dev_ms the clock read _epoch_*.
        self.time_set = False
        self._dev_ms = 0
        self._epoch_s = 0
        self._epoch_ms = 0
        self._pose1 = -1  # CALIBRATE pose 1: chip axis * 2 + (1 if negative), -1 if none
        self._req = bytearray(REQUEST_MAX)
        self._views = [memoryview(self._req)[:k] for k in range(REQUEST_MAX + 1)]
        self._p = [0] * REQUEST_SLOTS
        self._counts = bytearray(ZONE_COUNTS_SIZE)
        self._facts = _SessionFacts()
        self._g = array("i", bytes(12))

    # --- entry points -----------------------------------------------------

    @micropython.native  # with its exception handler, a bytecode frame would come from the heap
    def pump(self):
        """Move record access on (call from the app loop; never blocks, never raises).

        An exception here is a bug (or a transport raising instead of answering
        False): counted in `bugs`, and the procedure is dropped without a response,
        as if its link had closed, so the loop keeps running.
        """
        try:
            self.records.pump()
        except Exception as e:
            self._bug(e)
            self._drop_procedure()

    def _bug(self, e):
        self.bugs += 1
        self.last_bug = e

    def _drop_procedure(self):
        records = self.records
        link = records.link
        if link is not None:
            records.link_closed(link)
        records.abort_link = None

    def link_closed(self, link):
        """The connection behind `link` ended: its record access procedure ends (the
        transport clears link.raw itself)."""
        self.records.link_closed(link)

    @micropython.native  # a bytecode frame this wide would come from the heap
    def handle(self, link, data, n, out):
        """Serve one request body data[:n]; the response's length in `out` (0: none now)."""
        if n < 2:
            return 0
        if n > REQUEST_MAX:
            n = REQUEST_MAX  # the rest is trailing (SPEC 6.1)
        req = self._req
        i = 0
        while i < n:
            req[i] = data[i]
            i += 1
        view = self._views[n]
        p = self._p
        try:
            parse_request(view, p)
        except ProtocolError as e:
            if e.code == NO_RESPONSE:
                return 0
            return encode_response(out, 0, p[0], p[1], e.code)
        op = p[0]
        if op in BONDED_OPCODES and not link.secure:
            return encode_response(out, 0, op, p[1], NOT_PERMITTED)
        try:
            return self._serve(link, view, p, out)
        except Exception as e:  # a bug: answer, count it, keep the device running
            self._bug(e)
            if op >= OP_REPORT_RECORDS:  # record access: a procedure may be half set up
                self._drop_procedure()
            return encode_response(out, 0, op, p[1], FAILED)

    # --- opcodes ----------------------------------------------------------

    @micropython.native  # a bytecode frame this wide would come from the heap
    def _serve(self, link, data, p, out):
        op = p[0]
        token = p[1]
        session = self.session
        if op == OP_SET_ZONE:
            session.set_zone(p[2])
            self.changes += 1
            return encode_response_u8(out, 0, op, token, SUCCESS, session.zone)
        if op == OP_NEXT_ZONE:
            zone = session.next_zone()
            self.changes += 1
            return encode_response_u8(out, 0, op, token, SUCCESS, zone)
        # Ranges, not `in (...)`: native code builds a tuple display at run time.
        if OP_REPORT_RECORDS <= op <= OP_REPORT_NUMBER:  # 0x10..0x13, ABORT included
            if op == OP_DELETE_RECORDS:
                self.changes += 1  # Status.oldest and errors.4 may change
            return self.records.request(link, op, token, p[2], p[3], out)
        if OP_START_SESSION <= op <= OP_RESET_COUNTS:
            return self._session_op(op, token, out)
        if op == OP_RAW_STREAM:
            link.raw = p[2] == 1
            return encode_response_u8(out, 0, op, token, SUCCESS, p[2])
        if op == OP_GET_INFO:
            return encode_response_text(out, 0, op, token, SUCCESS, p[2], self.info[p[2] - 1])
        if op == OP_REPORT_COUNTS:
            return self._report_counts(link, token, out)
        if op == OP_GET_SETTING:
            return self._setting_response(out, op, token, p[2])
        if op == OP_SET_SETTING:
            return self._set_setting(data, p, out)
        if OP_SET_TIME <= op <= OP_GET_TIME:
            return self._time(op, token, p, out)
        if op == OP_CALIBRATE:
            return self._calibrate(token, p[2], out)
        return encode_response(out, 0, op, token, OPCODE_NOT_SUPPORTED)  # a REQUESTS entry

    @micropython.native  # a bytecode frame this wide would come from the heap
    def _session_op(self, op, token, out):
        session = self.session
        facts = self._facts
        if op == OP_END_SESSION and not session.active:
            return encode_response_u16(out, 0, op, token, SUCCESS, 0)
        if self.drain is not None:
            self.drain()
        if op == OP_START_SESSION:
            facts.id = session.id % SESSION_MAX + 1
            facts.active = True
        else:
            facts.id = session.id
            facts.active = op == OP_RESET_COUNTS and session.active
        snap = self.snapshot
        if snap is not None:
            since = snap.since if op == OP_END_SESSION else session.seq
            try:
                snap.save(facts, since)  # first: a failed write changes nothing
            except OSError:
                return encode_response(out, 0, op, token, FAILED)
        self.changes += 1
        if op == OP_START_SESSION:
            session.start()
            session.id = facts.id
            return encode_response_u16(out, 0, op, token, SUCCESS, session.id)
        if op == OP_END_SESSION:
            session.end()
            return encode_response_u16(out, 0, op, token, SUCCESS, session.id)
        session.reset()
        return encode_response(out, 0, op, token, SUCCESS)

    @micropython.native  # a bytecode frame this wide would come from the heap
    def _report_counts(self, link, token, out):
        session = self.session
        sid = session.current()
        buf = self._counts
        sent = 0
        for zone in range(zones.MAX_ZONES):
            if session.used(zone):
                encode_zone_counts(
                    buf,
                    0,
                    sid,
                    zone,
                    COUNTS_ORDER if session.order(zone) else 0,
                    session.count(zone, 0),
                    session.count(zone, 1),
                    session.count(zone, 2),
                )
                if not link.send_counts(buf, ZONE_COUNTS_SIZE):
                    return encode_response(out, 0, OP_REPORT_COUNTS, token, FAILED)
                sent += 1
        return encode_response_u8(out, 0, OP_REPORT_COUNTS, token, SUCCESS, sent)

    @micropython.native  # a bytecode frame this wide would come from the heap
    def _setting_response(self, out, op, token, sid):
        name, stype = SETTINGS[sid - 1]
        value = self.settings[name]
        if stype == SETTING_TEXT:
            return encode_response_setting_text(out, 0, op, token, SUCCESS, sid, value.encode())
        return encode_response_setting(
            out, 0, op, token, SUCCESS, sid, stype, setting_to_wire(stype, value)
        )

    def _set_setting(self, data, p, out):
        op = p[0]
        token = p[1]
        sid = p[2]
        name, stype = SETTINGS[sid - 1]
        if stype == SETTING_TEXT:
            try:
                value = bytes(data[p[4] : p[4] + p[5]]).decode("utf-8")
            except UnicodeError:
                return encode_response(out, 0, op, token, INVALID_OPERAND)
        else:
            value = setting_from_wire(stype, p[4])
        settings = self.settings
        old = settings[name]
        try:
            settings.set(name, value)
        except ValueError:
            return encode_response(out, 0, op, token, INVALID_OPERAND)
        try:
            settings.save(self.settings_path)
        except OSError:
            settings.values[name] = old
            return encode_response(out, 0, op, token, FAILED)
        if name == "target_min" or name == "target_max":
            self.session.target_min = settings["target_min"]
            self.session.target_max = settings["target_max"]
        self.changes += 1
        return self._setting_response(out, op, token, sid)

    def _time(self, op, token, p, out):
        now = self.clock() & 0xFFFFFFFF
        boot = self.log.boot
        if op == OP_SET_TIME:
            self._dev_ms = now
            self._epoch_s = p[2]
            self._epoch_ms = p[3]
            self.time_set = p[2] != 0
            self.changes += 1
            return encode_response_time(out, 0, op, token, SUCCESS, boot, now, p[2], p[3])
        if p[2] != BOOT_CURRENT and p[2] != boot:
            return encode_response(out, 0, op, token, NO_RECORDS_FOUND)
        epoch_s = 0
        epoch_ms = 0
        if self.time_set:
            ms = self._epoch_ms + ((now - self._dev_ms) & 0xFFFFFFFF)
            epoch_s = (self._epoch_s + ms // 1000) & 0xFFFFFFFF
            epoch_ms = ms % 1000
        return encode_response_time(out, 0, op, token, SUCCESS, boot, now, epoch_s, epoch_ms)

    # --- calibration ------------------------------------------------------

    def _axis(self):
        """The chip axis the still reading points along: axis * 2 + (1 if negative), or -1."""
        g = self._g
        for i in range(3):
            g[i] = 0
        if self.gravity is None or not self.gravity(g):
            return -1
        best = 0
        for i in range(1, 3):
            if abs(g[i]) > abs(g[best]):
                best = i
        total = g[0] * g[0] + g[1] * g[1] + g[2] * g[2]
        if total == 0 or g[best] * g[best] * _DOMINANT_DEN < total * _DOMINANT_NUM:
            return -1
        return best * 2 + (1 if g[best] < 0 else 0)

    def _calibrate(self, token, pose, out):
        op = OP_CALIBRATE
        axis = self._axis()
        if pose == 1:
            self._pose1 = axis
            if axis < 0:
                return encode_response(out, 0, op, token, FAILED)
            return encode_response_text(out, 0, op, token, SUCCESS, pose, b"")
        z = self._pose1
        self._pose1 = -1
        if z < 0 or axis < 0 or axis >> 1 == z >> 1:
            return encode_response(out, 0, op, token, FAILED)
        # Roller +z is chip axis z (pose 1), roller +y is chip axis y (pose 2),
        # roller x = y cross z (right-handed frame, DESIGN.md section 3).
        ya, ys = axis >> 1, -1 if axis & 1 else 1
        za, zs = z >> 1, -1 if z & 1 else 1
        xa = 3 - ya - za
        xs = ys * zs * (1 if (ya + 1) % 3 == za else -1)
        text = "%s%s,%s%s,%s%s" % (
            "-" if xs < 0 else "",
            _AXES[xa],
            "-" if ys < 0 else "",
            _AXES[ya],
            "-" if zs < 0 else "",
            _AXES[za],
        )
        settings = self.settings
        old = settings["mount"]
        try:
            settings.set("mount", text)
            settings.save(self.settings_path)
        except (ValueError, OSError):
            settings.values["mount"] = old
            return encode_response(out, 0, op, token, FAILED)
        self.changes += 1
        return encode_response_text(out, 0, op, token, SUCCESS, pose, text.encode())
