"""The golden vectors (protocol/vectors.json) against the codec inside MicroPython.

The same file and the same checks as tests/protocol/test_vectors.py under CPython.
"""

import json

import dermaroll_protocol as dp

with open("protocol/vectors.json") as _f:  # the harness runs from the repo root
    VECTORS = json.load(_f)


def plain(value):
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(value[k]) for k in value}
    return value


def test_messages_encode_and_decode():
    for vec in VECTORS["messages"]:
        data = bytes.fromhex(vec["hex"])
        got = plain(dp.decode(vec["kind"], data))
        assert got == vec["fields"], (vec["name"], got)
        assert plain(dp.decode(vec["kind"], data + b"\x5a\x00")) == vec["fields"], vec["name"]
        if vec["kind"] == "status" and vec["fields"]["minor"] != dp.PROTOCOL_MINOR:
            continue  # decode-only: a device writes its own version
        assert dp.pack(vec["kind"], vec["fields"]).hex() == vec["hex"], vec["name"]


def test_advertising():
    for vec in VECTORS["advertising"]:
        f = vec["fields"]
        adv = bytearray(dp.ADV_SIZE)
        dp.encode_adv(adv, 0, f["state"], f["zone"], f["passes"], f["battery"], f["counter"])
        assert adv.hex() == vec["adv_hex"]
        scan = bytearray(dp.SCAN_RESPONSE_SIZE)
        dp.encode_scan_response(scan, 0, bytes.fromhex(vec["mac_hex"]))
        assert scan.hex() == vec["scan_response_hex"]
        got = dp.decode_advertisement(adv, scan)
        assert got["name"] == vec["name_text"] and got["service"], got
        for key in f:
            assert got["state"][key] == f[key], key


def test_frames():
    for vec in VECTORS["frames"]:
        body = bytes.fromhex(vec["body_hex"])
        assert dp.frame(vec["type"], body, vec["escaped"]).hex() == vec["frame_hex"], vec["name"]
        deframer = dp.Deframer(dp.MAX_FRAME, vec["escaped"])
        got = deframer.feed(bytes.fromhex(vec["frame_hex"]))
        assert got == [(vec["type"], body)], (vec["name"], got)


def test_streams():
    for vec in VECTORS["streams"]:
        deframer = dp.Deframer(dp.MAX_FRAME, vec["escaped"])
        got = deframer.feed(bytes.fromhex(vec["stream_hex"]))
        assert [[t, b.hex()] for t, b in got] == vec["frames"], vec["name"]
        counts = (deframer.frames, deframer.dropped, deframer.texts)
        assert counts == (len(vec["frames"]), vec["dropped"], vec["texts"]), (vec["name"], counts)


def test_crc16_and_cobs():
    for vec in VECTORS["crc16"]:
        data = bytes.fromhex(vec["data_hex"])
        assert dp.crc16(data, 0, len(data), dp.CRC_INIT) == vec["crc"], vec
    for vec in VECTORS["cobs"]:
        decoded, encoded = bytes.fromhex(vec["decoded_hex"]), bytes.fromhex(vec["encoded_hex"])
        out = bytearray(len(decoded) + 2)
        assert out[: dp.cobs_decode(encoded, len(encoded), out)] == decoded, vec
        if len(decoded) <= 254:
            buf = bytearray(1) + decoded
            dp.cobs_stuff(buf, 1, len(decoded))
            assert bytes(buf) == encoded, vec


def test_malformed():
    for vec in VECTORS["malformed"]:
        data = bytes.fromhex(vec["hex"])
        try:
            if vec["kind"] == "frame":
                dp.unframe(data)
            else:
                dp.decode(vec["kind"], data)
        except dp.ProtocolError as e:
            assert vec["error"] in str(e), (vec["name"], str(e))
        else:
            raise AssertionError("no ProtocolError: %s" % vec["name"])


def test_bad_requests_carry_the_response_code():
    out = [0] * dp.REQUEST_SLOTS
    cases = (
        (b"\x01", dp.NO_RESPONSE),
        (b"\x7f\x05", dp.OPCODE_NOT_SUPPORTED),
        (b"\x01\x05\x10", dp.INVALID_OPERAND),
        (b"\x11\x05\x03\x01\x00\x00\x00", dp.INVALID_OPERAND),
    )
    for data, code in cases:
        try:
            dp.parse_request(data, out)
        except dp.ProtocolError as e:
            assert e.code == code and isinstance(e, ValueError), (data, e.code)
            if len(data) >= 2:
                assert out[0] == data[0] and out[1] == data[1], out
        else:
            raise AssertionError("accepted %r" % data)
