"""dermaroll wire protocol 1: the one codec, on the device (MicroPython) and the host (CPython).

protocol/SPEC.md is normative; this module implements it and follows its
section numbers. Two kinds of functions:

- Device side (`encode_*`, `encode_frame`, `cobs_stuff`, `cobs_decode`, `crc16`,
  `Deframer.push`, `parse_request`): write into a caller's bytearray and return
  the number of bytes written. They allocate nothing: ints only (no floats,
  nothing beyond +-2**30 that the caller did not pass in), no slices, and they
  are `@micropython.native` because a bytecode function whose arguments and
  stack exceed 11 words gets its frame from the heap at every call.
- Host side (`decode_*`, `pack*`, `frame`, `unframe`, `Deframer.feed`): take
  bytes-like input and return plain values (dicts, tuples, ints, str) that
  host code wraps in its own types. They allocate freely.

Malformed input makes every decoder raise `ProtocolError`, whose message says
what was wrong, and nothing else.
"""

import struct
from struct import calcsize, pack_into, unpack_from

try:
    import micropython
    from micropython import const
except ImportError:  # CPython: the host imports this same file

    class micropython:  # type: ignore[no-redef]
        """CPython stand-in: `@micropython.native` is a MicroPython compiler directive."""

        @staticmethod
        def native(func):
            return func

    def const(value):  # type: ignore[misc]
        return value


# --- 1. Version -------------------------------------------------------------

PROTOCOL_MAJOR = const(1)
PROTOCOL_MINOR = const(0)

# --- 3. GATT ------------------------------------------------------------------

SERVICE_UUID = "3ff10001-3ae2-4c76-aeb1-5ab7b15fd273"
PASS_RECORD_UUID = "3ff10002-3ae2-4c76-aeb1-5ab7b15fd273"
ZONE_COUNTS_UUID = "3ff10003-3ae2-4c76-aeb1-5ab7b15fd273"
CONTROL_POINT_UUID = "3ff10004-3ae2-4c76-aeb1-5ab7b15fd273"
STATUS_UUID = "3ff10005-3ae2-4c76-aeb1-5ab7b15fd273"
RAW_SAMPLES_UUID = "3ff10006-3ae2-4c76-aeb1-5ab7b15fd273"
# The service UUID as it travels in advertising data: its 16 bytes reversed.
SERVICE_UUID_LE = b"\x73\xd2\x5f\xb1\xb7\x5a\xb1\xae\x76\x4c\xe2\x3a\x01\x00\xf1\x3f"

DEVICE_INFORMATION_SERVICE = const(0x180A)
MANUFACTURER_NAME_CHAR = const(0x2A29)
MODEL_NUMBER_CHAR = const(0x2A24)
SERIAL_NUMBER_CHAR = const(0x2A25)
FIRMWARE_REVISION_CHAR = const(0x2A26)
BATTERY_SERVICE = const(0x180F)
BATTERY_LEVEL_CHAR = const(0x2A19)

ATT_DEFAULT_PAYLOAD = const(20)  # ATT_MTU 23 minus the 3-byte notification header

# --- 4. Advertising -----------------------------------------------------------

ADV_SIZE = const(31)
SCAN_RESPONSE_SIZE = const(16)
COMPANY_ID = const(0xFFFF)  # Bluetooth SIG "reserved for internal use and testing"
ADV_STATE_SIZE = const(6)
NAME_PREFIX = "dermaroll-"
AD_FLAGS = const(0x01)
AD_UUID128_INCOMPLETE = const(0x06)
AD_UUID128_COMPLETE = const(0x07)
AD_SHORT_NAME = const(0x08)
AD_COMPLETE_NAME = const(0x09)
AD_MANUFACTURER = const(0xFF)

# --- 5. Messages ----------------------------------------------------------------

# Serial message types (the first byte of a frame, section 7).
PASS_RECORD = const(1)
ZONE_COUNTS = const(2)
STATUS = const(3)
RAW_SAMPLES = const(4)
CONTROL_REQUEST = const(5)
CONTROL_RESPONSE = const(6)

PASS_RECORD_SIZE = const(19)
ZONE_COUNTS_SIZE = const(10)
STATUS_SIZE = const(19)
RAW_HEADER_SIZE = const(5)
RAW_SAMPLE_SIZE = const(15)
RAW_MAX_SAMPLES = const(16)
MAX_TEXT = const(14)  # longest text in a control message, so it fits 20 bytes

ZONE_UNASSIGNED = const(0)
MAX_ZONE = const(15)
VERTICAL = const(0)
HORIZONTAL = const(1)
DIAGONAL = const(2)

# PassRecord flags
PASS_END_PAUSE = const(0x01)  # the stroke ended by a pause, not a reversal
PASS_END_OF_DATA = const(0x02)  # the stroke was still open when sampling stopped

# ZoneCounts flags
COUNTS_ORDER = const(0x01)  # the zone's first horizontal pass came before vertical reached target

# Status.state
STATE_IDLE = const(0)
STATE_ROLLING = const(1)
STATE_SESSION = const(2)
STATE_ERROR = const(3)

# Status.errors
ERROR_IMU_MISSING = const(0x0001)
ERROR_SETTINGS_INVALID = const(0x0002)
ERROR_SAMPLER_OVERRUN = const(0x0004)
ERROR_ENCODER = const(0x0008)
ERROR_LOG_OVERFLOW = const(0x0010)

BATTERY_UNKNOWN = const(255)

# --- 6. Control point -----------------------------------------------------------

OP_SET_ZONE = const(0x01)
OP_NEXT_ZONE = const(0x02)
OP_START_SESSION = const(0x03)
OP_END_SESSION = const(0x04)
OP_RESET_COUNTS = const(0x05)
OP_GET_SETTING = const(0x06)
OP_SET_SETTING = const(0x07)
OP_SET_TIME = const(0x08)
OP_GET_TIME = const(0x09)
OP_CALIBRATE = const(0x0A)
OP_RAW_STREAM = const(0x0B)
OP_GET_INFO = const(0x0C)
OP_REPORT_COUNTS = const(0x0D)
OP_REPORT_RECORDS = const(0x10)
OP_DELETE_RECORDS = const(0x11)
OP_ABORT = const(0x12)
OP_REPORT_NUMBER = const(0x13)

# Record access operators (the Record Access Control Point's values)
OPERATOR_ALL = const(1)
OPERATOR_LE = const(2)
OPERATOR_GE = const(3)

# Response codes. 0 is no code: ProtocolError.code 0 means "send no response".
NO_RESPONSE = const(0)
SUCCESS = const(1)
OPCODE_NOT_SUPPORTED = const(2)
INVALID_OPERAND = const(3)
NO_RECORDS_FOUND = const(4)
BUSY = const(5)
NOT_PERMITTED = const(6)
FAILED = const(7)
ABORTED = const(8)

SETTING_INT = const(0)
SETTING_MILLI = const(1)  # value * 1000, rounded, as an int32
SETTING_TEXT = const(2)

# Setting ids are 1 + the index here; new settings are appended (a minor version).
SETTINGS = (
    ("counts_per_rev", SETTING_INT),
    ("drum_diameter_mm", SETTING_MILLI),
    ("counts_per_mm", SETTING_MILLI),
    ("min_pass_mm", SETTING_MILLI),
    ("reverse_mm", SETTING_MILLI),
    ("pause_ms", SETTING_INT),
    ("vertical_max_deg", SETTING_MILLI),
    ("horizontal_min_deg", SETTING_MILLI),
    ("jitter_counts", SETTING_INT),
    ("gravity_tau_ms", SETTING_INT),
    ("target_min", SETTING_INT),
    ("target_max", SETTING_INT),
    ("sample_hz", SETTING_INT),
    ("imu_hz", SETTING_INT),
    ("imu_drain_ms", SETTING_INT),
    ("i2c_id", SETTING_INT),
    ("i2c_sda", SETTING_INT),
    ("i2c_scl", SETTING_INT),
    ("i2c_freq", SETTING_INT),
    ("enc_id", SETTING_INT),
    ("enc_a", SETTING_INT),
    ("enc_b", SETTING_INT),
    ("enc_filter_ns", SETTING_INT),
    ("imu_model", SETTING_TEXT),
    ("mount", SETTING_TEXT),
    ("button", SETTING_INT),
    ("led", SETTING_INT),
    ("motor", SETTING_INT),
    ("battery_adc", SETTING_INT),
    ("battery_divider", SETTING_MILLI),
    ("idle_sleep_s", SETTING_INT),
    ("pairing_window_s", SETTING_INT),
)

INFO_MANUFACTURER = const(1)
INFO_MODEL = const(2)
INFO_SERIAL = const(3)
INFO_FIRMWARE = const(4)

POSE_FLAT = const(1)  # drum on a flat surface, handle level: roller +z up
POSE_UPRIGHT = const(2)  # standing on the drum, grip end up: roller +y up

BOOT_CURRENT = const(0xFFFF)  # GET_TIME operand: the boot running now

# --- 7. Serial framing ------------------------------------------------------------

MAX_BODY = const(245)  # longest message after the type byte
MAX_FRAME = const(249)  # longest COBS-encoded frame between two 0x00 delimiters
FRAME_BODY_OFFSET = const(3)  # where encode_frame expects a body already in place
FRAME_OVERHEAD = const(6)  # 0x00, COBS code, type, CRC (2), 0x00
CRC_INIT = const(0xFFFF)
# Host -> device only: the MicroPython console turns Ctrl-C (0x03) into
# KeyboardInterrupt (and may flush its input), so 0x03 and the escape byte
# travel as DLE, byte ^ 0x20.
DLE = const(0x10)
CTRL_C = const(0x03)


class ProtocolError(ValueError):
    """Malformed or unsupported input. str(e) says what was wrong.

    `code` is the control-point response code a device answers a bad request
    with (INVALID_OPERAND, OPCODE_NOT_SUPPORTED, or NO_RESPONSE when the
    request is too short to answer).
    """

    def __init__(self, message, code=INVALID_OPERAND):
        super().__init__(message)
        self.code = code


# --- helpers -------------------------------------------------------------------


def _need(data, n, what):
    if len(data) < n:
        raise ProtocolError("%s: %d bytes, want at least %d" % (what, len(data), n))


def _zone(zone, what):
    if zone > MAX_ZONE:
        raise ProtocolError("%s: zone %d is above %d" % (what, zone, MAX_ZONE))
    return zone


def _text(data, start, what):
    """A length-prefixed UTF-8 text at data[start]: (str, end offset)."""
    _need(data, start + 1, what)
    n = data[start]
    if n > MAX_TEXT:
        raise ProtocolError("%s: text of %d bytes, at most %d" % (what, n, MAX_TEXT))
    _need(data, start + 1 + n, what)
    try:
        return bytes(data[start + 1 : start + 1 + n]).decode("utf-8"), start + 1 + n
    except UnicodeError:
        raise ProtocolError("%s: text is not valid UTF-8" % what) from None


@micropython.native
def _u16(d, i):
    return d[i] | d[i + 1] << 8


@micropython.native
def _u32(d, i):
    # Values from 2**30 up are heap ints on an ESP32: allocation-light, not free.
    return d[i] | d[i + 1] << 8 | d[i + 2] << 16 | d[i + 3] << 24


@micropython.native
def _i32(d, i):
    v = _u32(d, i)
    return v - 0x100000000 if v & 0x80000000 else v


@micropython.native
def _copy(dst, pos, src, n):
    i = 0
    while i < n:
        dst[pos + i] = src[i]
        i += 1


def check_version(major, minor):
    """Raise ProtocolError unless this codec can talk to a peer speaking `major`.`minor`.

    Any minor version of our major is fine: newer minors only add what we skip.
    """
    if major != PROTOCOL_MAJOR:
        if major > PROTOCOL_MAJOR:
            advice = "update the host software"
        else:
            advice = "update the device firmware"
        raise ProtocolError(
            "the device speaks dermaroll protocol %d.%d; this software speaks protocol %d: %s"
            % (major, minor, PROTOCOL_MAJOR, advice)
        )


def firmware_revision(version):
    """The Firmware Revision string for firmware `version`: '<version> p<major>.<minor>'."""
    return "%s p%d.%d" % (version, PROTOCOL_MAJOR, PROTOCOL_MINOR)


def parse_firmware_revision(text):
    """'0.1.0 p1.0' -> ('0.1.0', 1, 0). Raises ProtocolError if there is no protocol part."""
    i = text.rfind(" p")
    parts = text[i + 2 :].split(".") if i >= 0 else []
    if len(parts) != 2 or not all(p.isdigit() and 0 < len(p) < 4 for p in parts):
        raise ProtocolError("firmware revision %r has no ' p<major>.<minor>' protocol part" % text)
    return text[:i], int(parts[0]), int(parts[1])


def setting_id(name):
    """The wire id of setting `name`; ProtocolError if the protocol has none."""
    for i in range(len(SETTINGS)):
        if SETTINGS[i][0] == name:
            return i + 1
    raise ProtocolError("setting %r has no protocol id" % name)


def setting_to_wire(stype, value):
    """A setting value as it travels: int for INT, round(value * 1000) for MILLI, str for TEXT."""
    if stype == SETTING_MILLI:
        return int(round(value * 1000))
    return value


def setting_from_wire(stype, value):
    """The inverse of setting_to_wire: MILLI values come back as floats."""
    if stype == SETTING_MILLI:
        return value / 1000
    return value


# --- 5.1 PassRecord -----------------------------------------------------------

_PASS_FMT = "<IHIHBBHHB"
PASS_RECORD_FIELDS = (
    "seq",
    "boot",
    "t_end_ms",
    "session",
    "zone",
    "direction",
    "length_01mm",
    "duration_ms",
    "flags",
)


@micropython.native
def encode_pass_record(
    buf, off, seq, boot, t_end_ms, session, zone, direction, length_01mm, duration_ms, flags
):
    """Device: write a PassRecord at buf[off]; returns PASS_RECORD_SIZE.

    length_01mm and duration_ms saturate at 65535.
    """
    pack_into(
        _PASS_FMT,
        buf,
        off,
        seq,
        boot,
        t_end_ms,
        session,
        zone,
        direction,
        min(length_01mm, 0xFFFF),
        min(duration_ms, 0xFFFF),
        flags,
    )
    return PASS_RECORD_SIZE


def decode_pass_record(data):
    """Host: PassRecord bytes -> dict with PASS_RECORD_FIELDS."""
    _need(data, PASS_RECORD_SIZE, "PassRecord")
    v = unpack_from(_PASS_FMT, data, 0)
    _zone(v[4], "PassRecord")
    if v[5] > DIAGONAL:
        raise ProtocolError(
            "PassRecord: direction %d is not 0 (vertical), 1 (horizontal) or 2 (diagonal)" % v[5]
        )
    return dict(zip(PASS_RECORD_FIELDS, v))


# --- 5.2 ZoneCounts ------------------------------------------------------------

_COUNTS_FMT = "<HBBHHH"
ZONE_COUNTS_FIELDS = ("session", "zone", "flags", "vertical", "horizontal", "diagonal")


@micropython.native
def encode_zone_counts(buf, off, session, zone, flags, vertical, horizontal, diagonal):
    """Device: write a ZoneCounts at buf[off]; returns ZONE_COUNTS_SIZE.

    The counts saturate at 65535.
    """
    pack_into(
        _COUNTS_FMT,
        buf,
        off,
        session,
        zone,
        flags,
        min(vertical, 0xFFFF),
        min(horizontal, 0xFFFF),
        min(diagonal, 0xFFFF),
    )
    return ZONE_COUNTS_SIZE


def decode_zone_counts(data):
    """Host: ZoneCounts bytes -> dict with ZONE_COUNTS_FIELDS."""
    _need(data, ZONE_COUNTS_SIZE, "ZoneCounts")
    v = unpack_from(_COUNTS_FMT, data, 0)
    _zone(v[1], "ZoneCounts")
    return dict(zip(ZONE_COUNTS_FIELDS, v))


# --- 5.3 Status ------------------------------------------------------------------

_STATUS_FMT = "<BBBBBHIIHH"
STATUS_FIELDS = (
    "major",
    "minor",
    "state",
    "zone",
    "battery",
    "errors",
    "oldest",
    "newest",
    "boot",
    "session",
)


@micropython.native
def encode_status(buf, off, state, zone, battery, errors, oldest, newest, boot, session):
    """Device: write a Status (this codec's protocol version) at buf[off]; returns STATUS_SIZE."""
    pack_into(
        _STATUS_FMT,
        buf,
        off,
        PROTOCOL_MAJOR,
        PROTOCOL_MINOR,
        state,
        zone,
        battery,
        errors,
        oldest,
        newest,
        boot,
        session,
    )
    return STATUS_SIZE


def _check_state_battery(state, battery, what):
    if state > STATE_ERROR:
        raise ProtocolError("%s: state %d is not 0..3" % (what, state))
    if battery > 100 and battery != BATTERY_UNKNOWN:
        raise ProtocolError("%s: battery %d is not 0..100 or 255 (unknown)" % (what, battery))


def decode_status(data):
    """Host: Status bytes -> dict with STATUS_FIELDS.

    A device of another major protocol version is refused with ProtocolError
    (the version is always the first two bytes, in every major version).
    """
    _need(data, 2, "Status")
    check_version(data[0], data[1])
    _need(data, STATUS_SIZE, "Status")
    v = unpack_from(_STATUS_FMT, data, 0)
    _check_state_battery(v[2], v[4], "Status")
    _zone(v[3], "Status")
    if v[6] > v[7]:
        raise ProtocolError("Status: oldest stored record %d is after the newest %d" % (v[6], v[7]))
    return dict(zip(STATUS_FIELDS, v))


# --- 5.4 RawSamples --------------------------------------------------------------

_RAW_SAMPLE_FMT = "<BHhhhhhh"


@micropython.native
def encode_raw_header(buf, off, t0_ms, zone, count):
    """Device: write the RawSamples header for `count` (1..16) samples; returns RAW_HEADER_SIZE.

    The samples follow at buf[off + 5 + 15 * i] (encode_raw_sample).
    """
    pack_into("<IB", buf, off, t0_ms, (count - 1) << 4 | zone)
    return RAW_HEADER_SIZE


@micropython.native
def encode_raw_sample(buf, off, dt_ms, enc, ax, ay, az, gx, gy, gz):
    """Device: write one trace sample at buf[off]; returns RAW_SAMPLE_SIZE.

    dt_ms: ms since the previous sample of the batch (the first: since t0_ms),
    0..255. enc: cumulative counts, sent as its low 16 bits. ax..az: milli-g,
    gx..gz: milli-degrees/s, sent in units of 100 (rounded); all saturate at
    the int16 range.
    """
    pack_into(
        _RAW_SAMPLE_FMT,
        buf,
        off,
        min(dt_ms, 255),
        enc & 0xFFFF,
        min(max(ax, -32768), 32767),
        min(max(ay, -32768), 32767),
        min(max(az, -32768), 32767),
        min(max((gx + 50) // 100, -32768), 32767),
        min(max((gy + 50) // 100, -32768), 32767),
        min(max((gz + 50) // 100, -32768), 32767),
    )
    return RAW_SAMPLE_SIZE


def decode_raw_samples(data):
    """Host: RawSamples bytes -> {"t0_ms", "zone", "samples"}.

    samples: list of (t_ms, enc16, ax, ay, az, gx, gy, gz) tuples with absolute
    device times, the encoder's low 16 bits (see unwrap16) and gyro rates in
    milli-degrees/s (multiples of 100).
    """
    _need(data, RAW_HEADER_SIZE, "RawSamples")
    t0, zc = unpack_from("<IB", data, 0)
    count = (zc >> 4) + 1
    _need(data, RAW_HEADER_SIZE + RAW_SAMPLE_SIZE * count, "RawSamples of %d samples" % count)
    samples = []
    t = t0
    p = RAW_HEADER_SIZE
    for _ in range(count):
        dt, enc, ax, ay, az, gx, gy, gz = unpack_from(_RAW_SAMPLE_FMT, data, p)
        t += dt
        samples.append((t, enc, ax, ay, az, gx * 100, gy * 100, gz * 100))
        p += RAW_SAMPLE_SIZE
    return {"t0_ms": t0, "zone": zc & 15, "samples": samples}


def unwrap16(previous, raw16):
    """The cumulative encoder count nearest `previous` whose low 16 bits are `raw16`."""
    delta = (raw16 - previous) & 0xFFFF
    if delta >= 0x8000:
        delta -= 0x10000
    return previous + delta


# --- 4. Advertising ------------------------------------------------------------

ADV_STATE_FIELDS = ("major", "state", "zone", "passes", "battery", "counter")
_HEX_DIGITS = b"0123456789ABCDEF"


@micropython.native
def encode_adv(buf, off, state, zone, passes, battery, counter):
    """Device: write the 31-byte advertising payload at buf[off]; returns ADV_SIZE.

    Flags, the complete list of 128-bit service UUIDs (ours), and manufacturer
    data carrying the live state. passes saturates at 65535, counter wraps at 256.
    """
    buf[off] = 2
    buf[off + 1] = AD_FLAGS
    buf[off + 2] = 0x06  # LE General Discoverable, BR/EDR not supported
    buf[off + 3] = 17
    buf[off + 4] = AD_UUID128_COMPLETE
    _copy(buf, off + 5, SERVICE_UUID_LE, 16)
    pack_into(
        "<BBHBBHBB",
        buf,
        off + 21,
        9,
        AD_MANUFACTURER,
        COMPANY_ID,
        PROTOCOL_MAJOR << 4 | state,
        zone,
        min(passes, 0xFFFF),
        battery,
        counter & 0xFF,
    )
    return ADV_SIZE


@micropython.native
def encode_scan_response(buf, off, mac):
    """Device: write the scan response (complete local name 'dermaroll-XXXX') at buf[off].

    XXXX: the last two bytes of the 6-byte address `mac` (most significant
    byte first, as displayed), upper-case hex. Returns SCAN_RESPONSE_SIZE.
    """
    buf[off] = 15
    buf[off + 1] = AD_COMPLETE_NAME
    _copy(buf, off + 2, b"dermaroll-", 10)
    buf[off + 12] = _HEX_DIGITS[mac[4] >> 4]
    buf[off + 13] = _HEX_DIGITS[mac[4] & 15]
    buf[off + 14] = _HEX_DIGITS[mac[5] >> 4]
    buf[off + 15] = _HEX_DIGITS[mac[5] & 15]
    return SCAN_RESPONSE_SIZE


def device_name(mac):
    """The device's name, 'dermaroll-XXXX', from its 6-byte address (see encode_scan_response)."""
    return "%s%02X%02X" % (NAME_PREFIX, mac[4], mac[5])


def decode_adv_state(data):
    """Host: the manufacturer data after the company id (bleak's manufacturer_data[0xFFFF]) -> dict.

    Raises ProtocolError for another major protocol version or bad values.
    """
    _need(data, ADV_STATE_SIZE, "advertised state")
    v = unpack_from("<BBHBB", data, 0)
    check_version(v[0] >> 4, 0)
    _check_state_battery(v[0] & 15, v[3], "advertised state")
    _zone(v[1], "advertised state")
    return dict(zip(ADV_STATE_FIELDS, (v[0] >> 4, v[0] & 15) + v[1:]))


def parse_ad(data):
    """Host: advertising or scan response data -> list of (AD type, value bytes).

    A zero length byte ends the data (the rest is padding).
    """
    out = []
    i = 0
    while i < len(data):
        n = data[i]
        if n == 0:
            break
        if i + 1 + n > len(data):
            raise ProtocolError("AD structure at byte %d runs past the end of the data" % i)
        out.append((data[i + 1], bytes(data[i + 2 : i + 1 + n])))
        i += 1 + n
    return out


def decode_advertisement(adv, scan_response=b""):
    """Host: raw advertising (+ scan response) bytes -> {"name", "service", "state"}.

    name: the complete or short local name or None; service: whether our
    service UUID is listed; state: decode_adv_state of our manufacturer data,
    or None when absent.
    """
    out = {"name": None, "service": False, "state": None}
    for ad_type, value in parse_ad(adv) + parse_ad(scan_response):
        if ad_type in (AD_COMPLETE_NAME, AD_SHORT_NAME):
            try:
                out["name"] = value.decode("utf-8")
            except UnicodeError:
                raise ProtocolError("advertised name is not valid UTF-8") from None
        elif ad_type in (AD_UUID128_COMPLETE, AD_UUID128_INCOMPLETE):
            if len(value) % 16:
                raise ProtocolError("128-bit UUID list of %d bytes" % len(value))
            for i in range(0, len(value), 16):
                if value[i : i + 16] == SERVICE_UUID_LE:
                    out["service"] = True
        elif ad_type == AD_MANUFACTURER and len(value) >= 2 and _u16(value, 0) == COMPANY_ID:
            out["state"] = decode_adv_state(value[2:])
    return out


# --- 6. Control point: requests -------------------------------------------------

# Per opcode (SPEC 6.4): its name, the request's length (opcode and token
# included; for SET_SETTING the shortest), and the operands' names in wire order.
REQUESTS = {
    OP_SET_ZONE: ("SET_ZONE", 3, ("zone",)),
    OP_NEXT_ZONE: ("NEXT_ZONE", 2, ()),
    OP_START_SESSION: ("START_SESSION", 2, ()),
    OP_END_SESSION: ("END_SESSION", 2, ()),
    OP_RESET_COUNTS: ("RESET_COUNTS", 2, ()),
    OP_GET_SETTING: ("GET_SETTING", 3, ("setting",)),
    OP_SET_SETTING: ("SET_SETTING", 5, ("setting", "type", "value")),
    OP_SET_TIME: ("SET_TIME", 8, ("epoch_s", "epoch_ms")),
    OP_GET_TIME: ("GET_TIME", 4, ("boot",)),
    OP_CALIBRATE: ("CALIBRATE", 3, ("pose",)),
    OP_RAW_STREAM: ("RAW_STREAM", 3, ("on",)),
    OP_GET_INFO: ("GET_INFO", 3, ("field",)),
    OP_REPORT_COUNTS: ("REPORT_COUNTS", 2, ()),
    OP_REPORT_RECORDS: ("REPORT_RECORDS", 7, ("operator", "seq")),
    OP_DELETE_RECORDS: ("DELETE_RECORDS", 7, ("operator", "seq")),
    OP_ABORT: ("ABORT", 2, ()),
    OP_REPORT_NUMBER: ("REPORT_NUMBER", 7, ("operator", "seq")),
}
# Opcodes that need an encrypted, bonded BLE link (the serial link always qualifies).
BONDED_OPCODES = (OP_RESET_COUNTS, OP_SET_SETTING, OP_CALIBRATE, OP_DELETE_RECORDS)
REQUEST_SLOTS = const(6)  # length of parse_request's `out`


def opcode_name(op):
    """'SET_ZONE' for OP_SET_ZONE, 'opcode 0x42' for one this version does not know."""
    spec = REQUESTS.get(op)
    return spec[0] if spec else "opcode 0x%02x" % op


# The parsers below raise through these helpers: building a message is the
# error path's business and stays out of the native code.
def _short(what, n, want):
    raise ProtocolError("%s: %d bytes, want at least %d" % (what, n, want))


def _bad(op, name, value):
    raise ProtocolError("%s: %s %d is out of range" % (REQUESTS[op][0], name, value))


def _bad_type(op, setting, stype):
    name, want = SETTINGS[setting - 1]
    raise ProtocolError("%s: setting %s has type %d, not %d" % (REQUESTS[op][0], name, want, stype))


@micropython.native
def _setting_value(data, op, head, out):
    """Parse setting id, type and value at data[head:] into out[2..5]."""
    n = len(data)
    if n < head + 3:
        _short(REQUESTS[op][0], n, head + 3)
    s = data[head]
    if s < 1 or s > len(SETTINGS):
        _bad(op, "setting id", s)
    t = data[head + 1]
    if t != SETTINGS[s - 1][1]:
        _bad_type(op, s, t)
    out[2] = s
    out[3] = t
    if t == SETTING_TEXT:
        ln = data[head + 2]
        if ln > MAX_TEXT:
            _bad(op, "text length", ln)
        if n < head + 3 + ln:
            _short(REQUESTS[op][0], n, head + 3 + ln)
        out[4] = head + 3  # where the UTF-8 bytes start
        out[5] = ln
    else:
        if n < head + 6:
            _short(REQUESTS[op][0], n, head + 6)
        out[4] = _i32(data, head + 2)


@micropython.native
def parse_request(data, out):
    """Device: parse a control request into `out` (a list of REQUEST_SLOTS ints).

    out[0] opcode, out[1] token, out[2:] the operands in wire order (zeros for
    operands the opcode has not). SET_SETTING: out[2] setting, out[3] type,
    out[4] the value or, for TEXT, out[4] the offset and out[5] the length of
    its UTF-8 bytes in data. Returns SUCCESS. A bad request raises
    ProtocolError whose `code` is the response code to answer it with
    (out[0] and out[1] are set whenever an answer is possible). Allocates
    nothing on success, but for values from 2**30 up (SET_TIME's epoch_s,
    sequence numbers), which are heap ints on an ESP32.
    """
    n = len(data)
    for i in range(REQUEST_SLOTS):
        out[i] = 0
    if n < 2:
        raise ProtocolError("request: %d bytes, want at least 2 (opcode, token)" % n, NO_RESPONSE)
    op = data[0]
    out[0] = op
    out[1] = data[1]
    if op not in REQUESTS:
        raise ProtocolError("request: unknown opcode 0x%02x" % op, OPCODE_NOT_SUPPORTED)
    if op == OP_SET_SETTING:
        _setting_value(data, op, 2, out)
        return SUCCESS
    want = REQUESTS[op][1]
    if n < want:
        _short(REQUESTS[op][0], n, want)
    if want == 3:
        v = data[2]
        if op == OP_SET_ZONE:
            if v > MAX_ZONE:
                _bad(op, "zone", v)
        elif op == OP_GET_SETTING:
            if v < 1 or v > len(SETTINGS):
                _bad(op, "setting id", v)
        elif op == OP_CALIBRATE:
            if v < POSE_FLAT or v > POSE_UPRIGHT:
                _bad(op, "pose", v)
        elif op == OP_RAW_STREAM:
            if v > 1:
                _bad(op, "on", v)
        elif v < INFO_MANUFACTURER or v > INFO_FIRMWARE:  # GET_INFO
            _bad(op, "field", v)
        out[2] = v
    elif op == OP_SET_TIME:
        out[2] = _u32(data, 2)
        out[3] = _u16(data, 6)
        if out[3] > 999:
            _bad(op, "epoch_ms", out[3])
    elif op == OP_GET_TIME:
        out[2] = _u16(data, 2)
    elif want == 7:  # record access
        v = data[2]
        if op == OP_DELETE_RECORDS:
            if v != OPERATOR_LE:
                _bad(op, "operator", v)
        elif v != OPERATOR_ALL and v != OPERATOR_GE:
            _bad(op, "operator", v)
        out[2] = v
        out[3] = _u32(data, 3)
    return SUCCESS


def decode_request(data):
    """Host: control request bytes -> {"op", "token", operands...} (names: see REQUESTS)."""
    out = [0] * REQUEST_SLOTS
    parse_request(data, out)
    op = out[0]
    fields = {"op": op, "token": out[1]}
    names = REQUESTS[op][2]
    for i in range(len(names)):
        fields[names[i]] = out[2 + i]
    if op == OP_SET_SETTING and out[3] == SETTING_TEXT:
        fields["value"] = _text(data, out[4] - 1, "SET_SETTING")[0]
    return fields


def encode_request(buf, off, op, token):
    """Write a request without operands; returns 2."""
    pack_into("<BB", buf, off, op, token)
    return 2


def encode_request_u8(buf, off, op, token, value):
    """Write a request with one u8 operand (zone, setting, pose, on, field); returns 3."""
    pack_into("<BBB", buf, off, op, token, value)
    return 3


def encode_request_u16(buf, off, op, token, value):
    """Write a request with one u16 operand (GET_TIME's boot); returns 4."""
    pack_into("<BBH", buf, off, op, token, value)
    return 4


def encode_request_time(buf, off, op, token, epoch_s, epoch_ms):
    """Write SET_TIME: Unix seconds and milliseconds; returns 8."""
    pack_into("<BBIH", buf, off, op, token, epoch_s, epoch_ms)
    return 8


def encode_request_records(buf, off, op, token, operator, seq):
    """Write a record access request (operator, sequence number); returns 7."""
    pack_into("<BBBI", buf, off, op, token, operator, seq)
    return 7


def encode_request_setting(buf, off, op, token, setting, stype, value):
    """Write SET_SETTING with an INT or MILLI value (int32); returns 8."""
    pack_into("<BBBBi", buf, off, op, token, setting, stype, value)
    return 8


def encode_request_setting_text(buf, off, op, token, setting, text):
    """Write SET_SETTING with a TEXT value (bytes, at most MAX_TEXT); returns 5 + len(text)."""
    n = min(len(text), MAX_TEXT)
    pack_into("<BBBBB", buf, off, op, token, setting, SETTING_TEXT, n)
    _copy(buf, off + 5, text, n)
    return 5 + n


# --- 6. Control point: responses ------------------------------------------------

# Per opcode (SPEC 6.4): the data after (op, token, result) when result is
# SUCCESS: a struct format and the field names, or None for the shapes with
# text (setting values, GET_INFO, CALIBRATE).
_U8, _U16, _U32 = "<B", "<H", "<I"
_TIME_FMT = "<HIIH"
_TIME_FIELDS = ("boot", "device_ms", "epoch_s", "epoch_ms")
RESPONSE_DATA = {
    OP_SET_ZONE: (_U8, ("zone",)),
    OP_NEXT_ZONE: (_U8, ("zone",)),
    OP_START_SESSION: (_U16, ("session",)),
    OP_END_SESSION: (_U16, ("session",)),
    OP_RESET_COUNTS: ("<", ()),
    OP_GET_SETTING: (None, ("setting", "type", "value")),
    OP_SET_SETTING: (None, ("setting", "type", "value")),
    OP_SET_TIME: (_TIME_FMT, _TIME_FIELDS),
    OP_GET_TIME: (_TIME_FMT, _TIME_FIELDS),
    OP_CALIBRATE: (None, ("pose", "text")),
    OP_RAW_STREAM: (_U8, ("on",)),
    OP_GET_INFO: (None, ("field", "text")),
    OP_REPORT_COUNTS: (_U8, ("zones",)),
    OP_REPORT_RECORDS: (_U32, ("count",)),
    OP_DELETE_RECORDS: (_U32, ("count",)),
    OP_ABORT: ("<", ()),
    OP_REPORT_NUMBER: (_U32, ("count",)),
}


@micropython.native
def encode_response(buf, off, op, token, result):
    """Device: write a response without data (any non-SUCCESS result, or SUCCESS of
    RESET_COUNTS and ABORT); returns 3."""
    pack_into("<BBB", buf, off, op, token, result)
    return 3


@micropython.native
def encode_response_u8(buf, off, op, token, result, value):
    """Device: SUCCESS of SET_ZONE, NEXT_ZONE (zone), RAW_STREAM (on) and
    REPORT_COUNTS (zones); returns 4."""
    pack_into("<BBBB", buf, off, op, token, result, value)
    return 4


@micropython.native
def encode_response_u16(buf, off, op, token, result, value):
    """Device: SUCCESS of START_SESSION, END_SESSION (session id); returns 5."""
    pack_into("<BBBH", buf, off, op, token, result, value)
    return 5


@micropython.native
def encode_response_u32(buf, off, op, token, result, value):
    """Device: SUCCESS of REPORT_RECORDS, DELETE_RECORDS, REPORT_NUMBER (count); returns 7."""
    pack_into("<BBBI", buf, off, op, token, result, value)
    return 7


@micropython.native
def encode_response_time(buf, off, op, token, result, boot, device_ms, epoch_s, epoch_ms):
    """Device: SUCCESS of SET_TIME, GET_TIME; returns 15.

    At device time `device_ms` of boot `boot` the wall clock read epoch_s.epoch_ms
    (epoch_s 0: not known).
    """
    pack_into("<BBBHIIH", buf, off, op, token, result, boot, device_ms, epoch_s, epoch_ms)
    return 15


@micropython.native
def encode_response_setting(buf, off, op, token, result, setting, stype, value):
    """Device: SUCCESS of GET_SETTING, SET_SETTING for an INT or MILLI setting; returns 9."""
    pack_into("<BBBBBi", buf, off, op, token, result, setting, stype, value)
    return 9


@micropython.native
def encode_response_setting_text(buf, off, op, token, result, setting, text):
    """Device: SUCCESS of GET_SETTING, SET_SETTING for a TEXT setting (text: bytes).

    Returns 6 + the text length (at most MAX_TEXT; longer text is cut).
    """
    n = min(len(text), MAX_TEXT)
    pack_into("<BBBBBB", buf, off, op, token, result, setting, SETTING_TEXT, n)
    _copy(buf, off + 6, text, n)
    return 6 + n


@micropython.native
def encode_response_text(buf, off, op, token, result, tag, text):
    """Device: SUCCESS of GET_INFO (tag: field) and CALIBRATE (tag: pose; text: the new
    mount setting, empty until the last pose). text: bytes, at most MAX_TEXT (longer is cut).

    Returns 5 + the text length.
    """
    n = min(len(text), MAX_TEXT)
    pack_into("<BBBBB", buf, off, op, token, result, tag, n)
    _copy(buf, off + 5, text, n)
    return 5 + n


def decode_response(data):
    """Host: control response bytes -> {"op", "token", "result", data fields...}.

    Data fields (see RESPONSE_DATA) are present only when result is SUCCESS.
    Unknown result codes are returned as they are: treat them as failures.
    A failure may name an opcode this codec does not know (the device's
    OPCODE_NOT_SUPPORTED answer echoes the request's); a SUCCESS may not.
    """
    _need(data, 3, "response")
    op, token, result = data[0], data[1], data[2]
    fields = {"op": op, "token": token, "result": result}
    if result != SUCCESS:
        return fields
    if op not in RESPONSE_DATA:
        raise ProtocolError("response: unknown opcode 0x%02x" % op)
    fmt, names = RESPONSE_DATA[op]
    what = REQUESTS[op][0] + " response"
    if names and names[0] == "setting":
        out = [0] * REQUEST_SLOTS
        _setting_value(data, op, 3, out)
        value = _text(data, 5, what)[0] if out[3] == SETTING_TEXT else out[4]
        fields.update({"setting": out[2], "type": out[3], "value": value})
    elif fmt is None:  # GET_INFO, CALIBRATE: a tag, then text
        _need(data, 4, what)
        tag = data[3]
        if op == OP_GET_INFO and not INFO_MANUFACTURER <= tag <= INFO_FIRMWARE:
            _bad(op, "field", tag)
        if op == OP_CALIBRATE and not POSE_FLAT <= tag <= POSE_UPRIGHT:
            _bad(op, "pose", tag)
        fields[names[0]] = tag
        fields["text"] = _text(data, 4, what)[0]
    else:
        _need(data, 3 + calcsize(fmt), what)
        values = unpack_from(fmt, data, 3)
        for i in range(len(names)):
            fields[names[i]] = values[i]
        if names and names[0] == "zone" and fields["zone"] > MAX_ZONE:
            _bad(op, "zone", fields["zone"])
        if op == OP_RAW_STREAM and fields["on"] > 1:
            _bad(op, "on", fields["on"])
        if fmt == _TIME_FMT and fields["epoch_ms"] > 999:
            _bad(op, "epoch_ms", fields["epoch_ms"])
    return fields


# --- 7. Serial framing -------------------------------------------------------------


def _crc_table():
    from array import array

    table = array("H", [0] * 256)
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else c << 1
        table[i] = c & 0xFFFF
    return table


_CRC_TABLE = _crc_table()


@micropython.native
def crc16(data, start, end, crc):
    """CRC-16/CCITT-FALSE (poly 0x1021, init CRC_INIT, no reflection, no final xor)
    of data[start:end], continuing from `crc`."""
    table = _CRC_TABLE
    i = start
    while i < end:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ data[i]]
        i += 1
    return crc


@micropython.native
def cobs_stuff(buf, pos, m):
    """COBS-encode buf[pos:pos+m] in place, m <= 254; the first code byte goes to buf[pos-1].

    Below 254 bytes COBS only replaces each 0x00 by the distance to the next
    one (or to the end), so a backward pass does it without a second buffer.
    """
    nxt = m
    j = m - 1
    while j >= 0:
        if buf[pos + j] == 0:
            buf[pos + j] = nxt - j
            nxt = j
        j -= 1
    buf[pos - 1] = nxt + 1


@micropython.native
def cobs_decode(src, n, dst):
    """Decode the COBS bytes src[0:n] into dst; returns the decoded length, or -1 when
    src is not valid COBS or does not fit dst."""
    cap = len(dst)
    i = 0
    o = 0
    while i < n:
        code = src[i]
        if code == 0:
            return -1
        i += 1
        end = i + code - 1
        if end > n or o + code - 1 > cap:
            return -1
        while i < end:
            dst[o] = src[i]
            o += 1
            i += 1
        if code != 0xFF and i < n:
            if o >= cap:
                return -1
            dst[o] = 0
            o += 1
    return o


@micropython.native
def encode_frame(dst, off, msg_type, src, n):
    """Device: write the serial frame of a message at dst[off]; returns n + FRAME_OVERHEAD.

    The frame is 0x00, COBS(type, body, CRC-16 little-endian), 0x00. The body is
    src[0:n]; pass src=None when it is already at dst[off + FRAME_BODY_OFFSET]
    (encode the message there: no copy). n <= MAX_BODY.
    """
    if n > MAX_BODY:
        raise ValueError("frame body of %d bytes, at most %d" % (n, MAX_BODY))
    p = off + 2
    dst[off] = 0
    dst[p] = msg_type
    if src is not None:
        _copy(dst, p + 1, src, n)
    crc = crc16(dst, p, p + 1 + n, CRC_INIT)
    dst[p + 1 + n] = crc & 0xFF
    dst[p + 2 + n] = crc >> 8
    cobs_stuff(dst, p, n + 3)
    dst[p + 3 + n] = 0
    return n + FRAME_OVERHEAD


def frame(msg_type, body, escaped=False):
    """Host: the serial frame (bytes, delimiters included) of one message.

    escaped=True for frames to the device (section 7.3): 0x03 and DLE are escaped.
    """
    buf = bytearray(len(body) + FRAME_OVERHEAD)
    n = encode_frame(buf, 0, msg_type, body, len(body))
    return escape(buf[:n]) if escaped else bytes(buf[:n])


def escape(data):
    """Host: bytes as sent to the device: 0x03 -> DLE 0x23, DLE -> DLE 0x30."""
    out = bytearray()
    for b in data:
        if b in (CTRL_C, DLE):
            out.append(DLE)
            b ^= 0x20
        out.append(b)
    return bytes(out)


def unframe(chunk):
    """Host: the bytes between two 0x00 delimiters -> (msg_type, body bytes).

    Raises ProtocolError for an empty, oversize, badly encoded, short or
    CRC-failing chunk.
    """
    n = len(chunk)
    if n == 0 or n > MAX_FRAME:
        raise ProtocolError("frame: %d encoded bytes, want 1..%d" % (n, MAX_FRAME))
    raw = bytearray(MAX_FRAME)
    m = cobs_decode(chunk, n, raw)
    if m < 0:
        raise ProtocolError("frame: not valid COBS (a zero byte or a code past the end)")
    if m < 3:
        raise ProtocolError("frame: %d bytes after COBS decoding, want at least 3" % m)
    if crc16(raw, 0, m - 2, CRC_INIT) != _u16(raw, m - 2):
        raise ProtocolError("frame: CRC mismatch")
    return raw[0], bytes(raw[1 : m - 2])


_MESSAGE_KINDS = {
    PASS_RECORD: "pass_record",
    ZONE_COUNTS: "zone_counts",
    STATUS: "status",
    RAW_SAMPLES: "raw_samples",
    CONTROL_REQUEST: "request",
    CONTROL_RESPONSE: "response",
}


def decode_message(msg_type, body):
    """Host: a serial message -> (kind, fields), or None for a type this version does not know."""
    kind = _MESSAGE_KINDS.get(msg_type)
    if kind is None:
        return None
    return kind, decode(kind, body)


class Deframer:
    """Splits a serial byte stream into frames; corrupt, truncated and oversize ones are dropped.

    Device and host: `push(byte)` allocates nothing. Host: `feed(data)` returns
    the list of (msg_type, body) of the frames in `data`. Counters: `frames`
    (valid frames), `dropped` (chunks between delimiters that are not valid
    frames), `texts` (chunks that are console text: printable, with a newline;
    not counted as dropped). `size` (>= MAX_FRAME) bounds the bytes kept of a
    chunk: console text longer than that is cut. `on_text(bytes)`, if set, gets
    each console text chunk (feed only). escaped=True on the device: the
    host's frames come DLE-escaped (section 7.3).
    """

    def __init__(self, size=MAX_FRAME, escaped=False):
        self.raw = bytearray(max(size, MAX_FRAME))
        self.escaped = escaped
        self.dle = False  # the previous byte was DLE
        self.bad = False  # the chunk has a broken escape
        self.frame = bytearray(MAX_FRAME)  # the last valid frame: type, body (no CRC)
        self.n = 0  # bytes in the current chunk (may exceed len(raw))
        self.binary = False  # the chunk has a byte console text never has
        self.newline = False
        self.frames = 0
        self.dropped = 0
        self.texts = 0
        self.text_len = 0
        self.on_text = None

    @micropython.native
    def push(self, b):
        """Take one byte. Returns the length of a frame just completed in self.frame
        (type + body), -1 when a console text chunk is in self.raw[:self.text_len], else 0."""
        n = self.n
        if b != 0:
            if self.escaped:
                if self.dle:
                    self.dle = False
                    b ^= 0x20
                    if b != CTRL_C and b != DLE:
                        self.bad = True
                elif b == DLE:
                    self.dle = True
                    return 0
            if n < len(self.raw):
                self.raw[n] = b
            self.n = n + 1
            if b == 10:
                self.newline = True
            elif (b < 32 and b != 9 and b != 13) or b == 127:
                self.binary = True
            return 0
        bad = self.bad or self.dle
        self.bad = False
        self.dle = False
        if n == 0 and not bad:
            return 0  # back-to-back delimiters: not a chunk
        self.n = 0
        text = self.newline and not self.binary
        self.newline = False
        self.binary = False
        if bad:
            self.dropped += 1
            return 0
        if n <= MAX_FRAME:
            m = cobs_decode(self.raw, n, self.frame)
            f = self.frame
            if m >= 3 and crc16(f, 0, m - 2, CRC_INIT) == f[m - 2] | f[m - 1] << 8:
                self.frames += 1
                return m - 2
        if text:
            self.texts += 1
            self.text_len = min(n, len(self.raw))
            return -1
        self.dropped += 1
        return 0

    def feed(self, data):
        """Host: push every byte of `data`; returns [(msg_type, body), ...] of its valid frames."""
        out = []
        for b in data:
            m = self.push(b)
            if m > 0:
                out.append((self.frame[0], bytes(self.frame[1:m])))
            elif m < 0 and self.on_text is not None:
                self.on_text(bytes(self.raw[: self.text_len]))
        return out


# --- dict-level packing (host, tests, vectors) ---------------------------------------

_VERSION = (PROTOCOL_MAJOR, PROTOCOL_MINOR)
KINDS = ("pass_record", "zone_counts", "status", "raw_samples", "request", "response", "adv_state")


def _pack_raw_samples(buf, f):
    samples = f["samples"]
    encode_raw_header(buf, 0, f["t0_ms"], f["zone"], len(samples))
    t = f["t0_ms"]
    p = RAW_HEADER_SIZE
    for s in samples:
        p += encode_raw_sample(buf, p, s[0] - t, s[1], s[2], s[3], s[4], s[5], s[6], s[7])
        t = s[0]
    return p


def _pack_request(buf, f):
    op, token = f["op"], f["token"]
    names = REQUESTS[op][2]
    if op == OP_SET_SETTING:
        if f["type"] == SETTING_TEXT:
            return encode_request_setting_text(buf, 0, op, token, f["setting"], _utf8(f["value"]))
        return encode_request_setting(buf, 0, op, token, f["setting"], f["type"], f["value"])
    if op == OP_SET_TIME:
        return encode_request_time(buf, 0, op, token, f["epoch_s"], f["epoch_ms"])
    if op == OP_GET_TIME:
        return encode_request_u16(buf, 0, op, token, f["boot"])
    if len(names) == 2:
        return encode_request_records(buf, 0, op, token, f["operator"], f["seq"])
    if len(names) == 1:
        return encode_request_u8(buf, 0, op, token, f[names[0]])
    return encode_request(buf, 0, op, token)


def _pack_response(buf, f):
    op, token, result = f["op"], f["token"], f["result"]
    if result != SUCCESS:
        return encode_response(buf, 0, op, token, result)
    fmt, names = RESPONSE_DATA[op]
    if fmt is None and names[0] == "setting":
        if f["type"] == SETTING_TEXT:
            text = _utf8(f["value"])
            return encode_response_setting_text(buf, 0, op, token, result, f["setting"], text)
        return encode_response_setting(
            buf, 0, op, token, result, f["setting"], f["type"], f["value"]
        )
    if fmt is None:
        return encode_response_text(buf, 0, op, token, result, f[names[0]], _utf8(f["text"]))
    if fmt == _TIME_FMT:
        return encode_response_time(
            buf, 0, op, token, result, f["boot"], f["device_ms"], f["epoch_s"], f["epoch_ms"]
        )
    if fmt == _U8:
        return encode_response_u8(buf, 0, op, token, result, f[names[0]])
    if fmt == _U16:
        return encode_response_u16(buf, 0, op, token, result, f[names[0]])
    if fmt == _U32:
        return encode_response_u32(buf, 0, op, token, result, f[names[0]])
    return encode_response(buf, 0, op, token, result)


def _utf8(text):
    data = text.encode("utf-8")
    if len(data) > MAX_TEXT:
        raise ValueError("text %r is longer than %d bytes" % (text, MAX_TEXT))
    return data


# What struct raises for a value out of range (MicroPython has no struct.error).
_PACK_ERRORS = (OverflowError, TypeError, getattr(struct, "error", ValueError))


def pack(kind, f):
    """Host: the bytes of a message of `kind` (one of KINDS) from a dict like decode() returns.

    Raises ValueError (or KeyError for a missing field) for values the
    message cannot carry.
    """
    buf = bytearray(MAX_BODY + 16)
    try:
        if kind == "pass_record":
            n = encode_pass_record(buf, 0, *[f[k] for k in PASS_RECORD_FIELDS])
        elif kind == "zone_counts":
            n = encode_zone_counts(buf, 0, *[f[k] for k in ZONE_COUNTS_FIELDS])
        elif kind == "status":
            if (f["major"], f["minor"]) != _VERSION:
                raise ValueError("this codec writes Status of protocol %d.%d only" % _VERSION)
            n = encode_status(buf, 0, *[f[k] for k in STATUS_FIELDS[2:]])
        elif kind == "raw_samples":
            if not 1 <= len(f["samples"]) <= RAW_MAX_SAMPLES:
                raise ValueError("RawSamples carries 1..%d samples" % RAW_MAX_SAMPLES)
            n = _pack_raw_samples(buf, f)
        elif kind == "request":
            n = _pack_request(buf, f)
        elif kind == "response":
            n = _pack_response(buf, f)
        elif kind == "adv_state":
            if f["major"] != PROTOCOL_MAJOR:
                raise ValueError("this codec advertises protocol %d only" % PROTOCOL_MAJOR)
            encode_adv(buf, 0, *[f[k] for k in ADV_STATE_FIELDS[1:]])
            return bytes(buf[ADV_SIZE - ADV_STATE_SIZE : ADV_SIZE])
        else:
            raise ValueError("unknown message kind %r" % kind)
    except _PACK_ERRORS as e:
        raise ValueError("%s: %s" % (kind, e)) from None
    return bytes(buf[:n])


_DECODERS = {
    "pass_record": decode_pass_record,
    "zone_counts": decode_zone_counts,
    "status": decode_status,
    "raw_samples": decode_raw_samples,
    "request": decode_request,
    "response": decode_response,
    "adv_state": decode_adv_state,
}


def decode(kind, data):
    """Host: decode a message of `kind` (one of KINDS); ProtocolError if malformed."""
    return _DECODERS[kind](data)
