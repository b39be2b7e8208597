"""The device-side codec allocates nothing: proved inside MicroPython two ways.

1. With the heap locked (mpytest.no_alloc): any allocation raises MemoryError.
2. With the heap open, watched by mpytest.HeapWatch: a collection is forced
   before any allocation while unreachable garbage waits, so any allocation
   at all shows. This also catches what a locked heap hides: a bytecode
   function whose arguments and stack exceed 11 words gets its frame from
   the heap at every call, and only falls back to the C stack when the heap
   is locked.

Values stay below 2**30, as on an ESP32 where bigger ints are heap objects.
"""

from mpytest import HeapWatch, no_alloc

import dermaroll_protocol as dp

_watch = HeapWatch()


def _wide_bytecode(a, b, c, d, e, f, g, h, i, j):
    return a + b + c + d + e + f + g + h + i + j


def test_the_detector_sees_allocations_and_heap_frames():
    _watch.start()
    x = [1, 2]
    list_used = _watch.stop()
    _watch.start()
    _wide_bytecode(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    frame_used = _watch.stop()
    _watch.start()
    nothing = _watch.stop()
    assert list_used > 0 and frame_used > 0 and nothing == 0, (list_used, frame_used, nothing)
    assert x


def test_message_encoders_never_touch_the_heap():
    buf = bytearray(64)
    mac = b"\xa4\xcf\x12\x34\xab\xcd"
    text = b"x,-z,y"
    used = [0] * 15
    sizes = [0] * 15
    _watch.start()
    sizes[0] = dp.encode_pass_record(buf, 0, 123456, 7, 987654, 3, 2, 1, 70000, 450, 1)
    used[0] = _watch.stop()
    _watch.start()
    sizes[1] = dp.encode_zone_counts(buf, 0, 3, 2, 1, 5, 4, 70000)
    used[1] = _watch.stop()
    _watch.start()
    sizes[2] = dp.encode_status(buf, 0, 2, 3, 87, 4, 41, 1234, 7, 3)
    used[2] = _watch.stop()
    _watch.start()
    sizes[3] = dp.encode_raw_header(buf, 0, 100000, 3, 16)
    used[3] = _watch.stop()
    _watch.start()
    sizes[4] = dp.encode_raw_sample(buf, 5, 5, -70000, -40000, 12, 998, -1234567, 149, 40000000)
    used[4] = _watch.stop()
    _watch.start()
    sizes[5] = dp.encode_adv(buf, 0, 2, 3, 70000, 90, 300)
    used[5] = _watch.stop()
    _watch.start()
    sizes[6] = dp.encode_scan_response(buf, 0, mac)
    used[6] = _watch.stop()
    _watch.start()
    sizes[7] = dp.encode_response(buf, 0, dp.OP_ABORT, 9, dp.SUCCESS)
    used[7] = _watch.stop()
    _watch.start()
    sizes[8] = dp.encode_response_u8(buf, 0, dp.OP_SET_ZONE, 9, dp.SUCCESS, 3)
    used[8] = _watch.stop()
    _watch.start()
    sizes[9] = dp.encode_response_u16(buf, 0, dp.OP_START_SESSION, 9, dp.SUCCESS, 8)
    used[9] = _watch.stop()
    _watch.start()
    sizes[10] = dp.encode_response_u32(buf, 0, dp.OP_REPORT_RECORDS, 9, dp.SUCCESS, 1194)
    used[10] = _watch.stop()
    _watch.start()
    sizes[11] = dp.encode_response_time(buf, 0, dp.OP_GET_TIME, 9, dp.SUCCESS, 3, 5000, 0, 0)
    used[11] = _watch.stop()
    _watch.start()
    sizes[12] = dp.encode_response_setting(buf, 0, dp.OP_GET_SETTING, 9, dp.SUCCESS, 4, 1, 10000)
    used[12] = _watch.stop()
    _watch.start()
    sizes[13] = dp.encode_response_setting_text(buf, 0, dp.OP_GET_SETTING, 9, dp.SUCCESS, 25, text)
    used[13] = _watch.stop()
    _watch.start()
    sizes[14] = dp.encode_response_text(buf, 0, dp.OP_GET_INFO, 9, dp.SUCCESS, 3, text)
    used[14] = _watch.stop()
    assert used == [0] * 15, used
    assert sizes == [19, 10, 19, 5, 15, 31, 16, 3, 4, 5, 7, 15, 9, 12, 11], sizes


def test_framing_and_request_parsing_never_touch_the_heap():
    body = dp.pack(
        "zone_counts",
        {"session": 3, "zone": 2, "flags": 0, "vertical": 5, "horizontal": 0, "diagonal": 3},
    )
    wire = dp.frame(dp.ZONE_COUNTS, body) + b"junk\x01\x00" + dp.frame(dp.STATUS, b"\x01\x00")
    requests = [dp.pack("request", f) for f in _requests()]
    n_requests = len(requests)
    out = [0] * dp.REQUEST_SLOTS
    dst = bytearray(dp.MAX_BODY + dp.FRAME_OVERHEAD)
    deframer = dp.Deframer()
    n_wire = len(wire)
    escaped = dp.frame(dp.CONTROL_REQUEST, bytes([dp.OP_SET_ZONE, 3, 3]), True) + b"\x10\x41\x00"
    n_escaped = len(escaped)
    device_reader = dp.Deframer(dp.MAX_FRAME, True)
    used = [0] * 5
    _watch.start()
    n = dp.encode_frame(dst, 0, dp.ZONE_COUNTS, body, len(body))
    used[0] = _watch.stop()
    assert dst[:n] == wire[:n]
    _watch.start()
    crc = dp.crc16(wire, 0, n_wire, dp.CRC_INIT)
    used[1] = _watch.stop()
    _watch.start()
    i = 0
    got = 0
    while i < n_wire:
        if deframer.push(wire[i]) > 0:
            got += 1
        i += 1
    used[2] = _watch.stop()
    _watch.start()
    i = 0
    while i < n_requests:
        dp.parse_request(requests[i], out)
        i += 1
    used[3] = _watch.stop()
    _watch.start()
    i = 0
    while i < n_escaped:
        if device_reader.push(escaped[i]) > 0:
            got += 1
        i += 1
    used[4] = _watch.stop()
    assert used == [0] * 5, used
    assert got == 3 and deframer.dropped == 1 and device_reader.dropped == 1
    half = n_wire // 2  # the CRC continues across calls: same result in two pieces
    assert crc == dp.crc16(wire, half, n_wire, dp.crc16(wire, 0, half, dp.CRC_INIT))


def _requests():
    """One request of every opcode (success paths), values below 2**30."""
    return [
        {"op": dp.OP_SET_ZONE, "token": 1, "zone": 15},
        {"op": dp.OP_NEXT_ZONE, "token": 2},
        {"op": dp.OP_START_SESSION, "token": 3},
        {"op": dp.OP_END_SESSION, "token": 4},
        {"op": dp.OP_RESET_COUNTS, "token": 5},
        {"op": dp.OP_GET_SETTING, "token": 6, "setting": 3},
        {"op": dp.OP_SET_SETTING, "token": 7, "setting": 6, "type": 0, "value": -450},
        {"op": dp.OP_SET_SETTING, "token": 8, "setting": 25, "type": 2, "value": "x,-z,y"},
        {"op": dp.OP_SET_TIME, "token": 9, "epoch_s": 1000000, "epoch_ms": 999},
        {"op": dp.OP_GET_TIME, "token": 10, "boot": 0xFFFF},
        {"op": dp.OP_CALIBRATE, "token": 11, "pose": 2},
        {"op": dp.OP_RAW_STREAM, "token": 12, "on": 1},
        {"op": dp.OP_GET_INFO, "token": 13, "field": 3},
        {"op": dp.OP_REPORT_COUNTS, "token": 14},
        {"op": dp.OP_REPORT_RECORDS, "token": 15, "operator": dp.OPERATOR_GE, "seq": 41},
        {"op": dp.OP_DELETE_RECORDS, "token": 16, "operator": dp.OPERATOR_LE, "seq": 40},
        {"op": dp.OP_ABORT, "token": 17},
        {"op": dp.OP_REPORT_NUMBER, "token": 18, "operator": dp.OPERATOR_ALL, "seq": 0},
    ]


def _record(seq, boot, t_end, session, zone, direction, length, duration, flags):
    return dp.pack(
        "pass_record",
        {
            "seq": seq,
            "boot": boot,
            "t_end_ms": t_end,
            "session": session,
            "zone": zone,
            "direction": direction,
            "length_01mm": length,
            "duration_ms": duration,
            "flags": flags,
        },
    )


def test_device_path_runs_with_the_heap_locked():
    buf = bytearray(dp.MAX_BODY + dp.FRAME_OVERHEAD)
    saturated = _record(123456, 7, 987654, 3, 2, 1, 65535, 450, 1)
    assert (
        no_alloc(lambda: dp.encode_pass_record(buf, 0, 123456, 7, 987654, 3, 2, 1, 70000, 450, 1))
        == 19
    )
    assert bytes(buf[:19]) == saturated
    assert no_alloc(lambda: dp.encode_zone_counts(buf, 0, 3, 2, 1, 5, 4, 70000)) == 10
    assert no_alloc(lambda: dp.encode_status(buf, 0, 2, 3, 87, 4, 41, 1234, 7, 3)) == 19
    assert no_alloc(lambda: dp.encode_raw_header(buf, 0, 100000, 3, 16)) == 5
    assert no_alloc(lambda: dp.encode_raw_sample(buf, 5, 5, -7, 1, 2, 3, 4, 5, 6)) == 15
    assert no_alloc(lambda: dp.encode_adv(buf, 0, 2, 3, 17, 90, 5)) == 31
    assert no_alloc(lambda: dp.encode_scan_response(buf, 0, b"\x00\x01\x02\x03\x04\x05")) == 16
    assert no_alloc(lambda: dp.encode_response(buf, 0, 0x12, 1, 1)) == 3
    assert no_alloc(lambda: dp.encode_response_u8(buf, 0, 1, 1, 1, 3)) == 4
    assert no_alloc(lambda: dp.encode_response_u16(buf, 0, 3, 1, 1, 8)) == 5
    assert no_alloc(lambda: dp.encode_response_u32(buf, 0, 0x10, 1, 1, 9)) == 7
    assert no_alloc(lambda: dp.encode_response_time(buf, 0, 9, 1, 1, 3, 5, 6, 7)) == 15
    assert no_alloc(lambda: dp.encode_response_setting(buf, 0, 6, 1, 1, 4, 1, 10)) == 9
    assert no_alloc(lambda: dp.encode_response_setting_text(buf, 0, 6, 1, 1, 25, b"x,y,z")) == 11
    assert no_alloc(lambda: dp.encode_response_text(buf, 0, 12, 1, 1, 3, b"ABCD")) == 9

    def frame_in_place():
        # The firmware's path: the body encoded at FRAME_BODY_OFFSET, then framed, no copy.
        n = dp.encode_pass_record(buf, dp.FRAME_BODY_OFFSET, 1, 2, 3, 4, 5, 1, 7, 8, 9)
        return dp.encode_frame(buf, 0, dp.PASS_RECORD, None, n)

    assert no_alloc(frame_in_place) == 19 + dp.FRAME_OVERHEAD
    body = _record(1, 2, 3, 4, 5, 1, 7, 8, 9)
    wire = bytes(buf[: 19 + dp.FRAME_OVERHEAD])
    assert wire == dp.frame(dp.PASS_RECORD, body)
    deframer = [dp.Deframer()]

    def push_all(data):
        i = 0
        last = 0
        while i < len(data):
            m = deframer[0].push(data[i])
            if m:
                last = m
            i += 1
        return last

    assert no_alloc(push_all, wire) == 20 and deframer[0].frame[:20] == b"\x01" + body
    deframer[0] = dp.Deframer(dp.MAX_FRAME, True)
    request = bytes([dp.OP_SET_ZONE, 3, 3])  # 0x03 twice: escaped on the wire
    assert no_alloc(push_all, dp.frame(dp.CONTROL_REQUEST, request, True)) == 4
    assert deframer[0].frame[:4] == b"\x05" + request
    out = [0] * dp.REQUEST_SLOTS
    for f in _requests():
        data = dp.pack("request", f)
        assert no_alloc(lambda d: dp.parse_request(d, out), data) == dp.SUCCESS
        assert out[0] == f["op"] and out[1] == f["token"], (f, out)
