"""The serial link (protocol/SPEC.md section 7): control point and messages over the console.

The USB console is the MicroPython REPL's stdin/stdout while main.py runs.
Requests come in as escaped frames (SPEC 7.3) and are read without blocking:
the app calls `poll()` from its loop, or runs `run()` as an asyncio task.
Frames from the device are written, unescaped, with one write each to the
binary stdout (`sys.stdout.buffer`; the text stdout of the ESP32 port turns
\\n into \\r\\n).

    link = SerialLink(on_request)           # stdin/stdout: the console
    asyncio.create_task(link.run())         # or link.poll() from the app loop

    SerialLink(on_request, stdin=None, stdout=None, budget=64)
        on_request(link, data, n) -> int or None
                  gets each request body (a frame of type 0x05 without its
                  type byte) as data[:n]; `data` is the link's own buffer,
                  valid only during the call. Returning r > 0 sends
                  link.out[:r] as a ControlResponse, so
                  `lambda link, d, n: control.handle(link, d, n, link.out)`
                  wires roller.control. An Exception raised by on_request is
                  counted in `errors` (kept in `last_error`) and the link
                  goes on; KeyboardInterrupt and SystemExit go through.
        stdin     a stream with readinto() that select.poll can watch
                  (default sys.stdin.buffer, polled through sys.stdin);
        stdout    a stream whose write(buf, n) writes buf[:n] (default
                  sys.stdout.buffer). Tests pass in-memory streams.
        budget    at most this many bytes are read per poll() call.

    poll() -> int       read what the console has (at most `budget` bytes,
                        never waiting), deframe it, serve the requests;
                        returns the number of bytes read.
    run(period_ms=5)    async: poll() forever, sleeping period_ms between.

The Link interface (roller.control, roller.records):

    secure    SECURE (True): see below.
    mtu       MAX_BODY (245): a serial frame carries any message.
    raw       bool, RawSamples wanted (roller.control writes it).
    out       bytearray(MAX_BODY): a response buffer for on_request.
    send_record(buf, n), send_live(buf, n), send_counts(buf, n),
    send_status(buf, n), send_raw(buf, n), send_response(buf, n) -> bool
              write buf[:n] as one frame of type PassRecord, PassRecord,
              ZoneCounts, Status, RawSamples, ControlResponse. True: written
              (buf may be reused at once) or, before the link is awake,
              muted (counted in `muted`: nobody is listening, as a BLE
              notification without a subscriber). False: the write failed
              (OSError), nothing should be assumed sent; offer it again
              later. n > MAX_BODY raises ValueError (a caller bug).

Silence: the link is `awake` once a valid frame of any type has arrived;
before that it writes nothing, so a person at the console sees only the
app's text (SPEC 7.4). A host wakes it with GET_INFO (firmware revision).

Security: SECURE = True. The serial link is a USB cable plugged into the
device: whoever has it has physical access, which is also what opening the
BLE pairing window (a long press) takes, and it can already replace the
firmware with mpremote. Encrypting or bonding it would protect nothing
(SPEC 3.2: "the serial link counts as encrypted and bonded").

Ctrl-C: nothing here touches micropython.kbd_intr(). A 0x03 on the console
stops the app as on any MicroPython board; host frames never contain one
(they are escaped, SPEC 7.3). KeyboardInterrupt goes through poll() and run().

Counters: bytes_in (console bytes read), frames_in (valid frames),
requests (frames of type 0x05 handed to on_request), ignored (valid frames of
another type), dropped (corrupt, truncated, oversize or badly escaped chunks:
Deframer.dropped), texts / text_bytes (console text chunks and their bytes,
skipped, not dropped), frames_out, bytes_out, muted, write_errors, errors.

Allocation: poll() and the send_* methods allocate nothing for a well-formed
stream (preallocated Deframer, frame buffer and stream views; stream write
with a length; ipoll), beyond what on_request does.
"""

import select
import sys

import micropython
from micropython import const

from dermaroll_protocol import (
    CONTROL_REQUEST,
    CONTROL_RESPONSE,
    FRAME_OVERHEAD,
    MAX_BODY,
    PASS_RECORD,
    RAW_SAMPLES,
    STATUS,
    ZONE_COUNTS,
    Deframer,
    encode_frame,
)

SECURE = True  # a cable into the device is physical access (module docstring)
PERIOD_MS = const(5)  # run(): at 115200 baud about 58 bytes arrive in 5 ms
BUDGET = const(64)  # poll(): bytes read per call at most


def _stdin():
    return sys.stdin.buffer


def _stdout():
    return sys.stdout.buffer


class SerialLink:
    """A Link over the console; see the module docstring."""

    def __init__(self, on_request, stdin=None, stdout=None, budget=BUDGET):
        self.on_request = on_request
        self.secure = SECURE
        self.mtu = MAX_BODY
        self.raw = False
        self.awake = False
        self.out = bytearray(MAX_BODY)
        self.budget = budget
        if stdin is None:
            self._in = _stdin()
            watch = sys.stdin  # the usual ESP32 idiom: poll sys.stdin, read its buffer
        else:
            self._in = stdin
            watch = stdin
        self._out = stdout if stdout is not None else _stdout()
        self._poll = select.poll()
        self._poll.register(watch, select.POLLIN)
        self._deframer = Deframer(escaped=True)
        self._body = memoryview(self._deframer.frame)[1:]  # a frame's body, after its type
        self._byte = bytearray(1)
        self._frame = bytearray(MAX_BODY + FRAME_OVERHEAD)
        self._chunk = 0  # bytes read since the last 0x00
        self.bytes_in = 0
        self.frames_in = 0
        self.requests = 0
        self.ignored = 0
        self.texts = 0
        self.text_bytes = 0
        self.frames_out = 0
        self.bytes_out = 0
        self.muted = 0
        self.write_errors = 0
        self.errors = 0
        self.last_error = None

    @property
    def dropped(self):
        return self._deframer.dropped

    # --- reading -----------------------------------------------------------

    def _ready(self):
        for _ in self._poll.ipoll(0):
            return True
        return False

    def poll(self):
        """Read and serve what the console has now; the number of bytes read."""
        d = self._deframer
        byte = self._byte
        got = 0
        while got < self.budget and self._ready():
            if not self._in.readinto(byte):
                break  # end of input (a closed pipe in tests): nothing more now
            got += 1
            b = byte[0]
            m = d.push(b)
            if b != 0:
                self._chunk += 1
                continue
            chunk = self._chunk
            self._chunk = 0
            if m > 0:
                self._frame_in(m)
            elif m < 0:
                self.texts += 1
                self.text_bytes += chunk
        self.bytes_in += got
        return got

    @micropython.native  # with its try, a bytecode frame this wide would come from the heap
    def _frame_in(self, m):
        self.frames_in += 1
        self.awake = True
        if self._deframer.frame[0] != CONTROL_REQUEST:
            self.ignored += 1  # SPEC 1: an unknown (or host-only) type is skipped
            return
        self.requests += 1
        try:
            r = self.on_request(self, self._body, m - 1)
        except Exception as e:  # the app's bug must not end the link
            self.errors += 1
            self.last_error = e
            return
        if r:
            self.send_response(self.out, r)

    async def run(self, period_ms=PERIOD_MS):
        """Serve the console forever (an asyncio task)."""
        import asyncio

        while True:
            self.poll()
            await asyncio.sleep_ms(period_ms)

    # --- writing -----------------------------------------------------------

    @micropython.native  # with its try, a bytecode frame this wide would come from the heap
    def _send(self, msg_type, buf, n):
        if n > MAX_BODY:
            raise ValueError("serial message of %d bytes" % n)
        if not self.awake:
            self.muted += 1
            return True
        k = encode_frame(self._frame, 0, msg_type, buf, n)
        try:
            w = self._out.write(self._frame, k)
        except OSError:
            w = -1
        if w != k:  # failed or short (a short frame is dropped by the host's reader)
            self.write_errors += 1
            return False
        self.frames_out += 1
        self.bytes_out += k
        return True

    def send_record(self, buf, n):
        return self._send(PASS_RECORD, buf, n)

    def send_live(self, buf, n):
        return self._send(PASS_RECORD, buf, n)

    def send_counts(self, buf, n):
        return self._send(ZONE_COUNTS, buf, n)

    def send_status(self, buf, n):
        return self._send(STATUS, buf, n)

    def send_raw(self, buf, n):
        return self._send(RAW_SAMPLES, buf, n)

    def send_response(self, buf, n):
        return self._send(CONTROL_RESPONSE, buf, n)
