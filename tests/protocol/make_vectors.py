"""Builds protocol/vectors.json from field values with the independent reference (reference.py).

    python -m tests.protocol.make_vectors          # rewrite protocol/vectors.json
    python -m tests.protocol.make_vectors --check  # exit 1 if the file is not current

The field values below are chosen by hand (edges, every opcode, every message
type); the bytes come from reference.py, never from the codec under test.
The COBS and CRC vectors are the published ones (Wikipedia's COBS table, the
CRC catalogue's check value).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.protocol import reference as ref

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "protocol" / "vectors.json"


def _pass(seq, boot, t_end, session, zone, direction, length, duration, flags):
    return {
        "seq": seq,
        "boot": boot,
        "t_end_ms": t_end,
        "session": session,
        "zone": zone,
        "direction": direction,
        "length_01mm": length,
        "duration_ms": duration,
        "flags": flags,
    }


def _counts(session, zone, flags, v, h, d):
    return {
        "session": session,
        "zone": zone,
        "flags": flags,
        "vertical": v,
        "horizontal": h,
        "diagonal": d,
    }


def _status(state, zone, battery, errors, oldest, newest, boot, session, minor=0):
    return {
        "major": 1,
        "minor": minor,
        "state": state,
        "zone": zone,
        "battery": battery,
        "errors": errors,
        "oldest": oldest,
        "newest": newest,
        "boot": boot,
        "session": session,
    }


def _adv_state(state, zone, passes, battery, counter):
    return {
        "major": 1,
        "state": state,
        "zone": zone,
        "passes": passes,
        "battery": battery,
        "counter": counter,
    }


def _req(op, token, **operands):
    return {"op": op, "token": token, **operands}


def _resp(op, token, result, **data):
    return {"op": op, "token": token, "result": result, **data}


MESSAGES = [
    (
        "pass_record",
        "first pass: forehead, vertical, 32.4 mm in 450 ms",
        _pass(1, 1, 1650, 0, 1, 0, 324, 450, 0),
    ),
    (
        "pass_record",
        "horizontal pass ended by a pause, in session 7",
        _pass(1234, 3, 98765, 7, 3, 1, 251, 610, 1),
    ),
    (
        "pass_record",
        "diagonal pass closed at the end of data, unassigned zone",
        _pass(70000, 12, 3600000, 0, 0, 2, 100, 200, 2),
    ),
    (
        "pass_record",
        "every field at its maximum (unknown flag bits kept)",
        _pass(0xFFFFFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFF, 15, 2, 0xFFFF, 0xFFFF, 0xFF),
    ),
    ("zone_counts", "forehead in session 7: 5 vertical, 4 horizontal", _counts(7, 1, 0, 5, 4, 0)),
    ("zone_counts", "chin with the order remark, outside a session", _counts(0, 6, 1, 2, 3, 1)),
    ("zone_counts", "zone 15, saturated counts", _counts(0xFFFF, 15, 0, 0xFFFF, 0xFFFF, 0xFFFF)),
    ("status", "idle, fresh device: empty log, battery unknown", _status(0, 0, 255, 0, 0, 0, 1, 0)),
    (
        "status",
        "session open on the nose, records 41..1234 stored",
        _status(2, 2, 87, 0, 41, 1234, 3, 7),
    ),
    (
        "status",
        "error: IMU missing and settings invalid, log emptied after 99",
        _status(3, 0, 15, 0x0003, 0, 99, 4, 0),
    ),
    (
        "status",
        "newer minor version 1.3 (a 1.0 host accepts it)",
        _status(1, 5, 100, 0x0010, 1, 2, 9, 8, minor=3),
    ),
    (
        "raw_samples",
        "one sample: the 20-byte batch",
        {"t0_ms": 1000, "zone": 1, "samples": [[1000, 0, 12, -3, 998, 100, -100, 0]]},
    ),
    (
        "raw_samples",
        "three samples, encoder wrapping, negative values",
        {
            "t0_ms": 4294967000,
            "zone": 15,
            "samples": [
                [4294967005, 65534, -16000, 0, 1000, -3276800, 3276700, 0],
                [4294967010, 65535, 5, -5, 999, 2000, -2000, 100],
                [4294967015, 1, 16000, 32767, -32768, 0, 0, -100],
            ],
        },
    ),
    ("adv_state", "session, left cheek, 17 passes, 90 %, counter 5", _adv_state(2, 3, 17, 90, 5)),
    ("adv_state", "idle, unknown battery, counter 255", _adv_state(0, 0, 0, 255, 255)),
    ("request", "SET_ZONE forehead", _req(0x01, 1, zone=1)),
    ("request", "NEXT_ZONE", _req(0x02, 2)),
    ("request", "START_SESSION", _req(0x03, 3)),
    ("request", "END_SESSION", _req(0x04, 4)),
    ("request", "RESET_COUNTS", _req(0x05, 5)),
    ("request", "GET_SETTING min_pass_mm", _req(0x06, 6, setting=4)),
    ("request", "SET_SETTING pause_ms = 450 (INT)", _req(0x07, 7, setting=6, type=0, value=450)),
    (
        "request",
        "SET_SETTING counts_per_mm = 1.53 (MILLI)",
        _req(0x07, 8, setting=3, type=1, value=1530),
    ),
    (
        "request",
        "SET_SETTING reverse_mm = -0.001 (MILLI, out of the setting's range: the device answers)",
        _req(0x07, 9, setting=5, type=1, value=-1),
    ),
    (
        "request",
        "SET_SETTING mount = 'x,-z,y' (TEXT)",
        _req(0x07, 10, setting=25, type=2, value="x,-z,y"),
    ),
    (
        "request",
        "SET_TIME 2025-11-23 12:00:00.250 UTC",
        _req(0x08, 11, epoch_s=1763899200, epoch_ms=250),
    ),
    ("request", "GET_TIME of the current boot", _req(0x09, 12, boot=0xFFFF)),
    ("request", "GET_TIME of boot 3", _req(0x09, 13, boot=3)),
    ("request", "CALIBRATE pose 1 (flat)", _req(0x0A, 14, pose=1)),
    ("request", "RAW_STREAM on", _req(0x0B, 15, on=1)),
    ("request", "GET_INFO firmware revision", _req(0x0C, 16, field=4)),
    ("request", "REPORT_COUNTS", _req(0x0D, 17)),
    ("request", "REPORT_RECORDS all", _req(0x10, 18, operator=1, seq=0)),
    ("request", "REPORT_RECORDS >= 1235", _req(0x10, 19, operator=3, seq=1235)),
    ("request", "DELETE_RECORDS <= 1234", _req(0x11, 20, operator=2, seq=1234)),
    ("request", "ABORT", _req(0x12, 21)),
    ("request", "REPORT_NUMBER >= 41", _req(0x13, 22, operator=3, seq=41)),
    ("response", "SET_ZONE: forehead", _resp(0x01, 1, 1, zone=1)),
    ("response", "NEXT_ZONE: nose", _resp(0x02, 2, 1, zone=2)),
    ("response", "START_SESSION: session 8", _resp(0x03, 3, 1, session=8)),
    ("response", "END_SESSION: session 8", _resp(0x04, 4, 1, session=8)),
    ("response", "RESET_COUNTS: success", _resp(0x05, 5, 1)),
    ("response", "RESET_COUNTS: not permitted (link not bonded)", _resp(0x05, 5, 6)),
    (
        "response",
        "GET_SETTING min_pass_mm = 10.0",
        _resp(0x06, 6, 1, setting=4, type=1, value=10000),
    ),
    (
        "response",
        "GET_SETTING imu_model = 'auto'",
        _resp(0x06, 6, 1, setting=24, type=2, value="auto"),
    ),
    ("response", "SET_SETTING pause_ms = 450", _resp(0x07, 7, 1, setting=6, type=0, value=450)),
    ("response", "SET_SETTING: invalid operand", _resp(0x07, 9, 3)),
    (
        "response",
        "SET_TIME: applied at 5000 ms of boot 3",
        _resp(0x08, 11, 1, boot=3, device_ms=5000, epoch_s=1763899200, epoch_ms=250),
    ),
    (
        "response",
        "GET_TIME: boot 3, wall clock not known",
        _resp(0x09, 12, 1, boot=3, device_ms=123456, epoch_s=0, epoch_ms=0),
    ),
    ("response", "CALIBRATE pose 1: more poses to come", _resp(0x0A, 14, 1, pose=1, text="")),
    ("response", "CALIBRATE pose 2: mount x,-z,y", _resp(0x0A, 14, 1, pose=2, text="x,-z,y")),
    ("response", "RAW_STREAM: on", _resp(0x0B, 15, 1, on=1)),
    ("response", "GET_INFO firmware revision", _resp(0x0C, 16, 1, field=4, text="0.1.0 p1.0")),
    ("response", "REPORT_COUNTS: 3 zones sent", _resp(0x0D, 17, 1, zones=3)),
    ("response", "REPORT_RECORDS: 1194 records sent", _resp(0x10, 19, 1, count=1194)),
    ("response", "REPORT_RECORDS: no records found", _resp(0x10, 19, 4)),
    ("response", "REPORT_RECORDS: aborted", _resp(0x10, 19, 8)),
    ("response", "REPORT_RECORDS: busy", _resp(0x10, 23, 5)),
    ("response", "DELETE_RECORDS: 1194 deleted", _resp(0x11, 20, 1, count=1194)),
    ("response", "ABORT: success", _resp(0x12, 21, 1)),
    ("response", "REPORT_NUMBER: 1194", _resp(0x13, 22, 1, count=1194)),
    ("response", "unknown result code 9 (a newer minor): no data", _resp(0x01, 24, 9)),
]

FRAMES = [
    # (name, message type, body: the name of a MESSAGES entry, or hex; escaped)
    ("PassRecord", 1, "first pass: forehead, vertical, 32.4 mm in 450 ms", False),
    ("ZoneCounts", 2, "forehead in session 7: 5 vertical, 4 horizontal", False),
    ("Status", 3, "session open on the nose, records 41..1234 stored", False),
    ("RawSamples", 4, "three samples, encoder wrapping, negative values", False),
    ("ControlResponse", 6, "REPORT_RECORDS: 1194 records sent", False),
    ("ControlRequest SET_ZONE 3, token 0x10, escaped: both 0x03 and DLE", 5, "011003", True),
    ("ControlRequest START_SESSION with token 3, escaped", 5, "0303", True),
    ("unknown message type 0x7f: a valid frame the host skips", 0x7F, "00ff00", False),
    ("empty body", 1, "", False),
]


def _frame_of(entry) -> tuple[int, bytes, bool]:
    _, msg_type, body, escaped = entry
    for kind, name, fields in MESSAGES:
        if name == body:
            return msg_type, ref.encode(kind, fields), escaped
    return msg_type, bytes.fromhex(body), escaped


def _wire(entry) -> bytes:
    msg_type, body, escaped = _frame_of(entry)
    data = ref.frame(msg_type, body)
    return ref.escape(data) if escaped else data


def _reference_deframe(stream: bytes, escaped: bool) -> tuple[list, int, int]:
    """What SPEC section 7.4 says a reader gets from `stream`: frames, dropped, texts."""
    frames, dropped, texts = [], 0, 0
    for chunk in stream.split(b"\x00"):
        if escaped:
            raw, i, bad = bytearray(), 0, False
            while i < len(chunk):
                if chunk[i] == 0x10:
                    if i + 1 == len(chunk) or chunk[i + 1] ^ 0x20 not in (0x03, 0x10):
                        bad = True
                        break
                    raw.append(chunk[i + 1] ^ 0x20)
                    i += 2
                else:
                    raw.append(chunk[i])
                    i += 1
            if bad:
                dropped += 1
                continue
            chunk = bytes(raw)
        if not chunk:
            continue
        got = ref.unframe(chunk)
        if got is not None:
            frames.append([got[0], got[1].hex()])
        elif ref.is_console_text(chunk):
            texts += 1
        else:
            dropped += 1
    return frames, dropped, texts


def streams() -> list[dict]:
    f = [_wire(e) for e in FRAMES]
    pass_frame, counts_frame, status_frame = f[0], f[1], f[2]
    traceback = (
        b"Traceback (most recent call last):\r\n"
        b'  File "main.py", line 12, in <module>\r\n'
        b"OSError: [Errno 19] ENODEV\r\n"
    )
    flipped = bytearray(status_frame)
    flipped[5] ^= 0x04
    out = [
        ("two frames back to back", pass_frame + counts_frame, False),
        (
            "a print and a traceback between frames: console text, not drops",
            pass_frame + b"hello\r\n" + traceback + counts_frame,
            False,
        ),
        (
            "reader opened mid-frame: the tail is dropped, the next frame is read",
            pass_frame[9:] + status_frame,
            False,
        ),
        ("a truncated frame, then a good one", pass_frame[:-6] + counts_frame, False),
        ("a flipped bit fails the CRC", bytes(flipped) + pass_frame, False),
        (
            "binary garbage between frames",
            pass_frame + b"\x01\x02\xfe\x00\x00\x07\x08" + counts_frame,
            False,
        ),
        (
            "an oversize chunk (300 bytes without a delimiter)",
            bytes([0x41] * 300) + b"\x00" + status_frame,
            False,
        ),
        (
            "escaped requests to the device; a broken escape is dropped",
            f[5] + b"\x10\x41\x00" + f[6],
            True,
        ),
    ]
    result = []
    for name, stream, escaped in out:
        frames, dropped, texts = _reference_deframe(stream, escaped)
        result.append(
            {
                "name": name,
                "escaped": escaped,
                "stream_hex": stream.hex(),
                "frames": frames,
                "dropped": dropped,
                "texts": texts,
            }
        )
    return result


def _bad_crc() -> str:
    chunk = bytearray(ref.frame(1, b"\x05")[1:-1])
    chunk[-1] ^= 0x01  # the CRC's high byte (no 0x00 either way)
    return chunk.hex()


MALFORMED = [
    # (name, kind, hex, substring of the error message)
    ("PassRecord one byte short", "pass_record", "00" * 18, "18 bytes, want at least 19"),
    (
        "PassRecord direction 3",
        "pass_record",
        "01000000010072060000000001030000000000",
        "direction 3",
    ),
    ("PassRecord zone 16", "pass_record", "01000000010072060000000010000000000000", "zone 16"),
    ("ZoneCounts empty", "zone_counts", "", "0 bytes"),
    (
        "Status of protocol 2.0 is refused",
        "status",
        "0200000000000000000000000000000000000000",
        "protocol 2.0",
    ),
    ("Status of protocol 0.9 is refused", "status", "0009", "update the device firmware"),
    (
        "Status oldest after newest",
        "status",
        "0100000000000005000000040000000100000000",
        "after the newest",
    ),
    ("Status battery 101", "status", "0100000065000000000000000000000100000000", "battery 101"),
    ("Status state 4", "status", "0100040000000000000000000000000100000000", "state 4"),
    (
        "RawSamples announcing 2 samples, holding 1",
        "raw_samples",
        "e803000011" + "00" * 15,
        "want at least 35",
    ),
    ("request of one byte: no response possible", "request", "01", "want at least 2"),
    ("request with an unknown opcode", "request", "7f01", "unknown opcode 0x7f"),
    ("SET_ZONE zone 16", "request", "011110", "zone 16"),
    ("SET_ZONE without its operand", "request", "0111", "SET_ZONE: 2 bytes, want at least 3"),
    ("SET_SETTING type does not match the setting", "request", "0701060200", "has type 0, not 2"),
    ("SET_SETTING setting id 0", "request", "070100000000000000", "setting id 0"),
    (
        "SET_SETTING text longer than 14 bytes",
        "request",
        "070119020f" + "41" * 15,
        "text length 15",
    ),
    ("SET_SETTING text not UTF-8", "request", "0701190202c328", "not valid UTF-8"),
    ("SET_TIME epoch_ms 1000", "request", "08010000000ee803", "epoch_ms 1000"),
    ("DELETE_RECORDS with operator >=", "request", "11010301000000", "operator 3"),
    ("REPORT_RECORDS with operator <=", "request", "10010201000000", "operator 2"),
    ("response with an unknown opcode", "response", "7f0101", "unknown opcode 0x7f"),
    ("SUCCESS response without its data", "response", "100101", "want at least 7"),
    ("GET_INFO response with field 5", "response", "0c0101050161", "field 5"),
    ("advertised state of protocol 2", "adv_state", "200000000000", "protocol 2"),
    ("frame with a bad CRC", "frame", _bad_crc(), "CRC"),
    ("frame whose COBS code runs past the end", "frame", "0901020304", "not valid COBS"),
    ("frame too short after decoding", "frame", "030102", "want at least 3"),
    ("frame longer than 249 bytes", "frame", "41" * 250, "250 encoded bytes"),
]

COBS = [  # Wikipedia, "Consistent Overhead Byte Stuffing", encoding examples
    ("00", "0101"),
    ("0000", "010101"),
    ("001100", "01021101"),
    ("11220033", "0311220233"),
    ("11223344", "0511223344"),
    ("11000000", "0211010101"),
    (bytes(range(1, 255)).hex(), "ff" + bytes(range(1, 255)).hex()),
    (bytes(range(0, 255)).hex(), "01ff" + bytes(range(1, 255)).hex()),
    (bytes(range(1, 256)).hex(), "ff" + bytes(range(1, 255)).hex() + "02ff"),
    (bytes(range(2, 256)).hex() + "00", "ff" + bytes(range(2, 256)).hex() + "0101"),
    (bytes(range(3, 256)).hex() + "0001", "fe" + bytes(range(3, 256)).hex() + "0201"),
]


def build() -> dict:
    messages = [
        {"name": name, "kind": kind, "fields": fields, "hex": ref.encode(kind, fields).hex()}
        for kind, name, fields in MESSAGES
    ]
    adv_fields = {"state": 2, "zone": 3, "passes": 17, "battery": 90, "counter": 5}
    mac = bytes.fromhex("a4cf1234abcd")
    return {
        "protocol": "1.0",
        "about": "Golden vectors of protocol/SPEC.md, generated by tests/protocol/make_vectors.py "
        "from tests/protocol/reference.py; checked under CPython and MicroPython.",
        "messages": messages,
        "advertising": [
            {
                "name": "advertising and scan response",
                "fields": adv_fields,
                "adv_hex": ref.adv(**adv_fields).hex(),
                "mac_hex": mac.hex(),
                "name_text": "dermaroll-ABCD",
                "scan_response_hex": ref.scan_response(mac).hex(),
            }
        ],
        "frames": [
            {
                "name": entry[0],
                "type": _frame_of(entry)[0],
                "body_hex": _frame_of(entry)[1].hex(),
                "escaped": entry[3],
                "frame_hex": _wire(entry).hex(),
            }
            for entry in FRAMES
        ],
        "streams": streams(),
        "crc16": [
            {"data_hex": b"123456789".hex(), "crc": 0x29B1},
            {"data_hex": "", "crc": 0xFFFF},
            {"data_hex": "00", "crc": ref.crc16(b"\x00")},
        ],
        "cobs": [{"decoded_hex": d, "encoded_hex": e} for d, e in COBS],
        "malformed": [
            {"name": name, "kind": kind, "hex": data, "error": error}
            for name, kind, data, error in MALFORMED
        ],
    }


def render() -> str:
    return json.dumps(build(), indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if vectors.json is not current")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if VECTORS.read_text(encoding="utf-8") != text:
            print("protocol/vectors.json is stale: run python -m tests.protocol.make_vectors")
            return 1
        return 0
    VECTORS.write_text(text, encoding="utf-8")
    print("wrote %s" % VECTORS.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
