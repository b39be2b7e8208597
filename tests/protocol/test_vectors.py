"""The golden vectors (protocol/vectors.json) against the codec under CPython.

tests/protocol/mpy_test_vectors.py runs the same checks on the same file inside MicroPython.
"""

from __future__ import annotations

import json

import pytest

import dermaroll_protocol as dp
from tests.protocol import make_vectors

VECTORS = json.loads(make_vectors.VECTORS.read_text(encoding="utf-8"))


def plain(value):
    """Tuples as lists, so decoded values compare with JSON."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def by_name(section):
    return pytest.mark.parametrize("vec", VECTORS[section], ids=lambda v: v["name"])


def test_vectors_file_is_what_the_generator_makes():
    assert make_vectors.main(["--check"]) == 0


def test_vectors_cover_every_message_kind_opcode_and_type():
    kinds = {v["kind"] for v in VECTORS["messages"]}
    assert kinds == set(dp.KINDS)
    requests = {v["fields"]["op"] for v in VECTORS["messages"] if v["kind"] == "request"}
    ok = dp.SUCCESS
    responses = {
        v["fields"]["op"]
        for v in VECTORS["messages"]
        if v["kind"] == "response" and v["fields"]["result"] == ok
    }
    assert requests == responses == set(dp.REQUESTS)
    types = {v["type"] for v in VECTORS["frames"]}
    assert {dp.PASS_RECORD, dp.ZONE_COUNTS, dp.STATUS, dp.RAW_SAMPLES} <= types
    assert {dp.CONTROL_REQUEST, dp.CONTROL_RESPONSE} <= types


@by_name("messages")
def test_message_encodes_to_the_vector(vec):
    if vec["kind"] == "status" and vec["fields"]["minor"] != dp.PROTOCOL_MINOR:
        # A device writes its own version: another version's Status is decode-only.
        with pytest.raises(ValueError, match="protocol 1.0 only"):
            dp.pack(vec["kind"], vec["fields"])
        return
    assert dp.pack(vec["kind"], vec["fields"]).hex() == vec["hex"]


@by_name("messages")
def test_message_decodes_to_the_fields(vec):
    assert plain(dp.decode(vec["kind"], bytes.fromhex(vec["hex"]))) == vec["fields"]


def test_every_message_fits_the_default_att_payload():
    for vec in VECTORS["messages"]:
        size = len(vec["hex"]) // 2
        if vec["kind"] == "raw_samples":
            # A batch of n samples is 5 + 15 n bytes: one sample fills 20 exactly;
            # more need an MTU exchange (SPEC 3.4).
            assert size == dp.RAW_HEADER_SIZE + dp.RAW_SAMPLE_SIZE * len(vec["fields"]["samples"])
            assert dp.RAW_HEADER_SIZE + dp.RAW_SAMPLE_SIZE == dp.ATT_DEFAULT_PAYLOAD
        else:
            assert size <= dp.ATT_DEFAULT_PAYLOAD, vec["name"]


@by_name("messages")
def test_trailing_bytes_of_a_newer_minor_version_are_skipped(vec):
    data = bytes.fromhex(vec["hex"]) + b"\x5a\xa5\x00"
    assert plain(dp.decode(vec["kind"], data)) == vec["fields"]


@by_name("advertising")
def test_advertising_and_scan_response(vec):
    adv = bytearray(dp.ADV_SIZE)
    f = vec["fields"]
    n = dp.encode_adv(adv, 0, f["state"], f["zone"], f["passes"], f["battery"], f["counter"])
    assert n == len(adv) == 31 and adv.hex() == vec["adv_hex"]
    mac = bytes.fromhex(vec["mac_hex"])
    scan = bytearray(dp.SCAN_RESPONSE_SIZE)
    assert dp.encode_scan_response(scan, 0, mac) == len(scan) <= 31
    assert scan.hex() == vec["scan_response_hex"]
    assert dp.device_name(mac) == vec["name_text"]
    got = dp.decode_advertisement(adv, scan)
    assert got == {"name": vec["name_text"], "service": True, "state": {"major": 1, **f}}


@by_name("frames")
def test_frame_encodes_to_the_vector(vec):
    body = bytes.fromhex(vec["body_hex"])
    assert dp.frame(vec["type"], body, escaped=vec["escaped"]).hex() == vec["frame_hex"]
    # The device path: the body encoded in place, no copy.
    buf = bytearray(len(body) + dp.FRAME_OVERHEAD)
    buf[dp.FRAME_BODY_OFFSET : dp.FRAME_BODY_OFFSET + len(body)] = body
    n = dp.encode_frame(buf, 0, vec["type"], None, len(body))
    if not vec["escaped"]:
        assert buf[:n].hex() == vec["frame_hex"]


@by_name("frames")
def test_frame_decodes_to_type_and_body(vec):
    deframer = dp.Deframer(escaped=vec["escaped"])
    got = deframer.feed(bytes.fromhex(vec["frame_hex"]))
    assert got == [(vec["type"], bytes.fromhex(vec["body_hex"]))]
    if not vec["escaped"]:
        chunk = bytes.fromhex(vec["frame_hex"])[1:-1]
        assert dp.unframe(chunk) == (vec["type"], bytes.fromhex(vec["body_hex"]))


@by_name("streams")
def test_stream_yields_the_frames_and_counts(vec):
    deframer = dp.Deframer(escaped=vec["escaped"])
    got = deframer.feed(bytes.fromhex(vec["stream_hex"]))
    assert [[t, body.hex()] for t, body in got] == vec["frames"]
    assert (deframer.frames, deframer.dropped, deframer.texts) == (
        len(vec["frames"]),
        vec["dropped"],
        vec["texts"],
    )


def test_crc16_vectors():
    for vec in VECTORS["crc16"]:
        data = bytes.fromhex(vec["data_hex"])
        assert dp.crc16(data, 0, len(data), dp.CRC_INIT) == vec["crc"], vec


def test_cobs_vectors():
    for vec in VECTORS["cobs"]:
        decoded, encoded = bytes.fromhex(vec["decoded_hex"]), bytes.fromhex(vec["encoded_hex"])
        out = bytearray(len(decoded) + 2)
        assert out[: dp.cobs_decode(encoded, len(encoded), out)] == decoded
        if len(decoded) <= 254:  # the in-place encoder's range (frames are shorter)
            buf = bytearray(1) + decoded
            dp.cobs_stuff(buf, 1, len(decoded))
            assert bytes(buf) == encoded


@by_name("malformed")
def test_malformed_input_raises_protocol_error_saying_what(vec):
    data = bytes.fromhex(vec["hex"])
    with pytest.raises(dp.ProtocolError) as err:
        if vec["kind"] == "frame":
            dp.unframe(data)
        else:
            dp.decode(vec["kind"], data)
    assert vec["error"] in str(err.value)
