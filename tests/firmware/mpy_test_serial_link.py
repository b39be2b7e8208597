"""roller.serial_link under the real MicroPython interpreter, with in-memory console streams.

The console is replaced by `Console` (a pollable stream: select.poll asks it
through ioctl, as it asks sys.stdin on the ESP32) and `Out` (records each
write). What goes out is decoded with the protocol's host-side Deframer, what
comes in is built with its host-side `frame(..., escaped=True)`: the same
bytes a host sends (tests/board/test_serial_link.py does it through a pty).
"""

import io
import random
import select

from mpytest import heap_used, raises

import dermaroll_protocol as dp
from roller.serial_link import SECURE, SerialLink

MP_STREAM_POLL = 3


class Console(io.IOBase):
    """stdin: bytes the host has sent; readinto gives at most what is there, never waits."""

    def __init__(self, data=b""):
        self.data = bytearray(data)
        self.pos = 0
        self.reads = 0

    def add(self, data):
        self.data += data

    def ioctl(self, req, arg):
        if req == MP_STREAM_POLL:
            return arg & select.POLLIN if self.pos < len(self.data) else 0
        return -1

    def readinto(self, buf):
        self.reads += 1
        n = len(self.data) - self.pos
        if n > len(buf):
            n = len(buf)
        i = 0
        while i < n:
            buf[i] = self.data[self.pos + i]
            i += 1
        self.pos += n
        return n


class Out:
    """stdout.buffer: stream write(buf, n); keeps each write; `fail` = OSError or a short count."""

    def __init__(self):
        self.writes = []
        self.fail = None

    def write(self, buf, n):
        if self.fail == "oserror":
            raise OSError(11)
        if self.fail == "short":
            self.writes.append(bytes(buf[: n - 1]))
            return n - 1
        self.writes.append(bytes(buf[:n]))
        return n

    def stream(self):
        return b"".join(self.writes)


def req(op, token, *operands):
    return bytes([op, token] + list(operands))


def host_frame(body, msg_type=dp.CONTROL_REQUEST):
    return dp.frame(msg_type, body, escaped=True)


class Rig:
    """A SerialLink whose on_request echoes: SUCCESS (op, token, 1) for every request >= 2 bytes."""

    def __init__(self, data=b"", budget=4096):
        self.console = Console(data)
        self.out = Out()
        self.seen = []
        self.link = SerialLink(self.on_request, stdin=self.console, stdout=self.out, budget=budget)

    def on_request(self, link, data, n):
        assert link is self.link
        self.seen.append(bytes(data[:n]))
        if n < 2:
            return 0
        return dp.encode_response(link.out, 0, data[0], data[1], dp.SUCCESS)

    def drain(self):
        total = 0
        while True:
            got = self.link.poll()
            total += got
            if not got:
                return total

    def sent(self):
        """The frames the device wrote: [(type, body)], and the host reader (for its counters)."""
        d = dp.Deframer()
        frames = d.feed(self.out.stream())
        return frames, d


def test_link_attributes_are_the_link_interface():
    r = Rig()
    link = r.link
    assert SECURE is True and link.secure is True
    assert link.mtu == dp.MAX_BODY == 245
    assert link.raw is False and link.awake is False
    assert len(link.out) >= 20


def test_silent_until_the_first_valid_frame_then_responses_are_frames():
    r = Rig(b"hello from a person\r\n\x00\x07\x08\x00" + b"x" * 10)
    link = r.link
    body = bytearray(dp.PASS_RECORD_SIZE)
    assert r.drain() > 0
    # Nothing valid yet: live messages are muted, nothing at all reaches the console.
    assert link.send_record(body, len(body)) is True
    assert link.send_status(bytearray(dp.STATUS_SIZE), dp.STATUS_SIZE) is True
    assert link.send_response(bytearray(3), 3) is True
    assert r.out.writes == [] and link.muted == 3 and link.frames_out == 0
    assert link.awake is False and r.seen == []
    # The first valid frame (GET_INFO firmware revision) wakes the link.
    r.console.add(b"\x00" + host_frame(req(dp.OP_GET_INFO, 7, dp.INFO_FIRMWARE)))
    r.drain()
    assert link.awake is True
    assert r.seen == [req(dp.OP_GET_INFO, 7, dp.INFO_FIRMWARE)]
    frames, d = r.sent()
    assert frames == [(dp.CONTROL_RESPONSE, bytes([dp.OP_GET_INFO, 7, dp.SUCCESS]))]
    assert d.dropped == 0 and d.texts == 0
    # One write per frame, delimiters included, unescaped (SPEC 7.1, 7.4).
    assert r.out.writes == [dp.frame(dp.CONTROL_RESPONSE, bytes([dp.OP_GET_INFO, 7, 1]))]
    assert link.frames_out == 1 and link.bytes_out == 3 + dp.FRAME_OVERHEAD
    # From now on every kind of message goes out, each as its own frame type.
    for i in range(len(body)):
        body[i] = i
    assert link.send_record(body, len(body))
    assert link.send_live(body, 5)
    assert link.send_counts(body, dp.ZONE_COUNTS_SIZE)
    assert link.send_status(body, dp.STATUS_SIZE)
    assert link.send_raw(body, 7)
    assert link.send_response(body, 3)
    frames, d = r.sent()
    assert [f[0] for f in frames] == [6, 1, 1, 2, 3, 4, 6]
    assert frames[1][1] == bytes(body) and frames[2][1] == bytes(body[:5])
    assert frames[5][1] == bytes(body[:7]) and d.dropped == 0
    assert link.muted == 3


def test_device_frames_are_not_escaped_and_keep_0x03_and_dle():
    r = Rig(host_frame(req(dp.OP_SET_ZONE, 3, 3)))
    r.drain()
    msg = bytes([0x03, 0x10, 0x03, 0x00, 0x10])
    assert r.link.send_response(msg, len(msg))
    raw = r.out.writes[-1]
    assert raw == dp.frame(dp.CONTROL_RESPONSE, msg) and b"\x10\x23" not in raw
    frames, _ = r.sent()
    assert frames[-1] == (dp.CONTROL_RESPONSE, msg)


def test_escaped_requests_with_0x03_and_dle_in_them_arrive_intact():
    bodies = [req(dp.OP_SET_ZONE, 0x03, 0x03), req(0x10, 0x10, 0x10, 0x03), bytes([3, 16] * 20)]
    stream = b""
    for b in bodies:
        f = host_frame(b)
        assert 0x03 not in f
        stream += f
    r = Rig(stream)
    r.drain()
    assert r.seen == bodies
    frames, _ = r.sent()
    assert [f[1][:2] for f in frames] == [b[:2] for b in bodies]


def test_text_garbage_oversize_and_bad_escapes_are_skipped_and_counted():
    good = [req(dp.OP_GET_INFO, t, 4) for t in range(5)]
    text = b"Traceback (most recent call last):\r\n  oops\r\n"
    stream = (
        b"\x00"
        + text
        + b"\x00"  # console text: skipped, not dropped
        + host_frame(good[0])
        + b"\x01\x02\x05\xff\x00"  # garbage: not COBS -> dropped
        + host_frame(good[1])
        + b"\x00"
        + b"\x41" * 300
        + b"\x00"  # oversize binary-free, no newline: dropped
        + host_frame(good[2])
        + b"\x00\x10\x41\x00"  # DLE then 0x41: bad escape -> dropped
        + host_frame(good[3])
        + b"\x00"
        + bytes(range(1, 255)) * 2
        + b"\x00"  # oversize binary: dropped
        + b"\x00\x00\x00"  # empty chunks: nothing
        + host_frame(good[4])
    )
    r = Rig(stream)
    r.drain()
    link = r.link
    assert r.seen == good
    frames, d = r.sent()
    assert [f[1][1] for f in frames] == [0, 1, 2, 3, 4]  # every response, in order
    assert d.dropped == 0
    assert link.frames_in == 5 and link.requests == 5 and link.ignored == 0
    assert link.dropped == 4, link.dropped
    assert link.texts == 1 and link.text_bytes == len(text)
    assert link.bytes_in == len(stream)
    assert link.errors == 0


def test_bit_flips_never_deliver_a_wrong_request():
    random.seed(7)
    rng = random
    bodies = [
        req(dp.OP_SET_TIME, 9, 1, 2, 3, 4, 5, 0),
        req(dp.OP_REPORT_RECORDS, 200, 3, 7, 0, 0, 0),
    ]
    flips = 0
    for body in bodies:
        raw = dp.frame(dp.CONTROL_REQUEST, body)  # unescaped; flip inside, then escape
        r = Rig()
        ref = dp.Deframer(escaped=True)  # the protocol's reader: what a chunk is
        for pos in range(1, len(raw) - 1):
            for bit in range(8):
                bad = bytearray(raw)
                bad[pos] ^= 1 << bit
                wire = dp.escape(bad)
                assert ref.feed(wire) == [], (pos, bit)  # CRC-16 catches every single flip
                dropped = r.link.dropped
                r.console.add(wire)
                r.drain()
                flips += 1
                assert r.seen == [], (pos, bit, r.seen)
                assert r.link.dropped > dropped, (pos, bit)
        assert r.link.awake is False and r.out.writes == []
        assert r.link.dropped == ref.dropped and r.link.frames_in == 0
        # ... and the frame after a corrupt one is read (resynchronised at its 0x00).
        r = Rig(dp.escape(bytes(raw[: len(raw) // 2])) + host_frame(body))
        r.drain()
        assert r.seen == [body] and r.link.dropped == 1
    assert flips == 8 * (len(bodies[0]) + 4 + len(bodies[1]) + 4)
    # Random garbage never crashes the link; the valid frames among it all get answered.
    stream = bytearray()
    want = []
    for i in range(300):
        k = rng.getrandbits(3)
        if k < 3:
            body = req(dp.OP_GET_INFO, i & 0xFF, 1 + (i & 3))
            want.append(body)
            stream += host_frame(body)
        else:
            junk = bytes(rng.getrandbits(8) for _ in range(rng.getrandbits(6)))
            stream += junk.replace(b"\x03", b"")  # the console turns 0x03 into Ctrl-C
    r = Rig(bytes(stream))
    r.drain()
    # Every frame starts with its own 0x00, which ends whatever garbage came before.
    assert r.seen == want
    frames, _ = r.sent()
    assert [f[1][1] for f in frames] == [b[1] for b in want]
    assert r.link.errors == 0


def test_host_encoder_never_emits_ctrl_c():
    random.seed(3)
    for n in range(0, dp.MAX_BODY + 1, 7):
        body = bytes(random.getrandbits(8) for _ in range(n))
        body = body[: n // 2] + b"\x03\x10" + body[n // 2 :]
        if len(body) > dp.MAX_BODY:
            body = body[: dp.MAX_BODY]
        f = host_frame(body)
        assert 0x03 not in f, n
        d = dp.Deframer(escaped=True)
        assert d.feed(f) == [(dp.CONTROL_REQUEST, body)]


def test_other_frame_types_wake_the_link_and_are_ignored():
    r = Rig(host_frame(b"\x01\x02", msg_type=0x77) + host_frame(b"\x00" * 19, dp.PASS_RECORD))
    r.drain()
    assert r.link.awake and r.link.ignored == 2 and r.link.requests == 0 and r.seen == []
    assert r.out.writes == []


def test_short_request_reaches_on_request_and_gets_no_response():
    r = Rig(host_frame(b"\x0c") + host_frame(b""))
    r.drain()
    assert r.seen == [b"\x0c", b""] and r.out.writes == []


def test_on_request_exceptions_are_counted_keyboard_interrupt_goes_through():
    calls = []

    def boom(link, data, n):
        calls.append(n)
        if data[0] == 1:
            raise ValueError("app bug")
        if data[0] == 2:
            raise KeyboardInterrupt
        return dp.encode_response(link.out, 0, data[0], data[1], dp.SUCCESS)

    console = Console(host_frame(b"\x01\x05") + host_frame(b"\x0c\x06\x04"))
    out = Out()
    link = SerialLink(boom, stdin=console, stdout=out)
    link.poll()
    assert link.errors == 1 and isinstance(link.last_error, ValueError)
    assert calls == [2, 3] and len(out.writes) == 1
    console.add(host_frame(b"\x02\x07") + host_frame(b"\x0c\x08\x04"))
    raises(KeyboardInterrupt, link.poll)
    link.poll()  # the link goes on after the app caught it
    assert calls == [2, 3, 2, 3] and len(out.writes) == 2


def test_budget_bounds_one_poll_and_end_of_input_does_not_spin():
    f = host_frame(req(dp.OP_GET_INFO, 1, 4))
    r = Rig(f * 4, budget=len(f))
    assert r.link.poll() == len(f) and len(r.seen) == 1
    assert r.link.poll() == len(f) and len(r.seen) == 2
    assert r.drain() == 2 * len(f) and len(r.seen) == 4
    reads = r.console.reads
    assert r.link.poll() == 0 and r.console.reads == reads  # nothing there: no read at all


def test_write_failures_are_reported_for_a_retry():
    r = Rig(host_frame(req(dp.OP_GET_INFO, 1, 4)))
    r.drain()
    body = bytearray(dp.PASS_RECORD_SIZE)
    r.out.fail = "oserror"
    assert r.link.send_record(body, len(body)) is False
    r.out.fail = "short"
    assert r.link.send_record(body, len(body)) is False
    r.out.fail = None
    assert r.link.send_record(body, len(body)) is True
    assert r.link.write_errors == 2 and r.link.frames_out == 2
    raises(ValueError, r.link.send_raw, bytearray(dp.MAX_BODY + 1), dp.MAX_BODY + 1)
    big = bytearray(dp.MAX_BODY)
    assert r.link.send_raw(big, dp.MAX_BODY)
    frames, d = r.sent()
    assert frames[-1] == (dp.RAW_SAMPLES, bytes(big)) and len(r.out.writes[-1]) == 251


class Sink:
    """stdout.buffer without a heap: counts what is written (the real one is a C stream)."""

    def __init__(self):
        self.n = 0

    def write(self, buf, n):
        self.n += n
        return n


def test_poll_and_sends_allocate_nothing():
    f = host_frame(req(dp.OP_GET_INFO, 0x03, 4))
    text = b"\x00a line of console text\r\n"
    r = Rig(f)
    link = r.link
    link.poll()  # warm up (and wake the link)
    link.on_request = lambda lk, data, n: dp.encode_response(lk.out, 0, data[0], data[1], 1)
    sink = Sink()
    link._out = sink
    r.console.add((f + text + b"\x00\x01\x02\x00") * 30)
    used = heap_used(link.poll)
    assert used == 0, used
    assert link.requests == 31 and link.frames_out == 31 and link.texts == 30
    assert link.dropped == 30 and sink.n == 30 * len(dp.frame(6, b"\x0c\x03\x01"))
    rec = bytearray(dp.PASS_RECORD_SIZE)
    used = heap_used(lambda: link.send_record(rec, dp.PASS_RECORD_SIZE))
    assert used == 0, used
    assert link.frames_out == 32
