"""Record access (protocol/SPEC.md 6.6): the Glucose-RACP-like procedures on the pass log.

One procedure at a time across all links. `Records.request` serves the four
record access opcodes (already parsed, operands checked and, for
DELETE_RECORDS, the link's security checked by roller.control):

- REPORT_NUMBER (all / >= seq): answered at once with the count.
- REPORT_RECORDS (all / >= seq): answered at once with NO_RECORDS_FOUND when
  nothing matches; otherwise a procedure starts and `request` returns 0. Every
  stored record with a seq up to the log's last_seq at request time goes out,
  in increasing seq order, as a PassRecord through `link.send_record`, from
  `pump()`; the response (SUCCESS with the number sent) goes through
  `link.send_response` only after the last record was accepted.
- DELETE_RECORDS (<= seq): moves the pass log's watermark (persisted).
- ABORT: with a procedure running, the procedure answers ABORTED and then the
  ABORT answers SUCCESS, both through send_response from `pump()` (so
  `request` returns 0); with nothing running it answers SUCCESS at once.

While a procedure runs (until its response is accepted) REPORT_RECORDS,
REPORT_NUMBER and DELETE_RECORDS from any link answer BUSY, and so does a
second ABORT while the answer to a first one is still owed.

Flow control: `send_record` / `send_response` returning False means the
link's buffers are full (BLE ENOMEM, a busy indication): the record or the
response is kept, encoded, and offered again on the next `pump()`. `pump()`
never blocks: it offers at most `batch` records and looks at most at `scan`
log slots per call. `link_closed(link)` ends that link's procedure without a
response (the host asks again after reconnecting; SPEC 6.6).

The per-record path (pump -> PassLog.read -> encode_pass_record ->
send_record, and the completion response) allocates nothing for seqs and
times below 2**30 (MicroPython small ints), with two exceptions in
roller.passlog: PassLog.read's bytecode frame comes from the heap (about 100
bytes a record; it needs @micropython.native), and crossing into another
segment file reopens a file. `request`, `count`, `_first`, `pump` and
`_send_some` are native: their bytecode frames would come from the heap.
"""

from array import array

import micropython
from micropython import const

from dermaroll_protocol import (
    ABORTED,
    BUSY,
    FAILED,
    NO_RECORDS_FOUND,
    OP_ABORT,
    OP_DELETE_RECORDS,
    OP_REPORT_NUMBER,
    OP_REPORT_RECORDS,
    OPERATOR_ALL,
    PASS_RECORD_SIZE,
    SUCCESS,
    encode_pass_record,
    encode_response,
    encode_response_u32,
)
from roller import passlog

IDLE = const(0)
SENDING = const(1)  # records still to go
ANSWERING = const(2)  # every record accepted (or aborted): the response is owed

_RESPONSE_SIZE = const(7)  # the longest record access response (u32 count)


class Records:
    """The record access procedures over `log` (a roller.passlog.PassLog)."""

    def __init__(self, log, batch=4, scan=128):
        self.log = log
        self.batch = batch  # records offered per pump() at most
        self.scan = scan  # log slots looked at per pump() at most
        self.state = IDLE
        self.link = None  # the link of the running procedure
        self.token = 0
        self.next = 0  # the next seq to look at
        self.end = 0  # the last seq of the procedure (log.last_seq at request time)
        self.sent = 0  # records accepted by the link so far
        self.result = SUCCESS
        self.held = False  # self._rec holds an encoded record the link refused
        self.abort_link = None  # an ABORT whose SUCCESS is owed after the ABORTED
        self.abort_token = 0
        self._fields = array("I", bytes(4 * passlog.FIELDS))
        self._rec = bytearray(PASS_RECORD_SIZE)
        self._resp = bytearray(_RESPONSE_SIZE)
        self._abort_resp = bytearray(3)

    @property
    def running(self):
        """True while a REPORT_RECORDS procedure is under way (response not yet accepted)."""
        return self.state != IDLE

    # --- requests ---------------------------------------------------------

    @micropython.native  # a bytecode frame this wide would come from the heap
    def request(self, link, op, token, operator, seq, out):
        """Serve one record access request; the response's length in `out`, or 0 when it
        comes later through send_response (REPORT_RECORDS that matched, ABORT while running)."""
        if op == OP_ABORT:
            if self.state == IDLE:
                return encode_response(out, 0, op, token, SUCCESS)
            if self.abort_link is not None:
                return encode_response(out, 0, op, token, BUSY)
            self.abort_link = link
            self.abort_token = token
            self.result = ABORTED
            self.held = False  # the record being offered is the one not sent
            self.state = ANSWERING
            self.pump()
            return 0
        if self.state != IDLE:
            return encode_response(out, 0, op, token, BUSY)
        ge = 1 if operator == OPERATOR_ALL else seq
        if op == OP_REPORT_NUMBER:
            return encode_response_u32(out, 0, op, token, SUCCESS, self.count(ge))
        if op == OP_DELETE_RECORDS:
            try:
                n = self.log.delete(seq)
            except OSError:
                return encode_response(out, 0, op, token, FAILED)
            self.log.overflow = 0  # SPEC 5.3: DELETE_RECORDS clears errors.4
            if n == 0:
                return encode_response(out, 0, op, token, NO_RECORDS_FOUND)
            return encode_response_u32(out, 0, op, token, SUCCESS, n)
        # OP_REPORT_RECORDS
        first = self._first(ge, self.log.last_seq)
        if first == 0:
            return encode_response(out, 0, op, token, NO_RECORDS_FOUND)
        self.link = link
        self.token = token
        self.next = first
        self.end = self.log.last_seq
        self.sent = 0
        self.result = SUCCESS
        self.held = False
        self.state = SENDING
        self.pump()
        return 0

    def _low(self):
        """The lowest seq that may be held: above the watermark and in the ring's window."""
        log = self.log
        low = log.last_seq - log.capacity + 1
        if low <= log.watermark:
            low = log.watermark + 1
        return low if low > 1 else 1

    @micropython.native  # a bytecode frame this wide would come from the heap
    def count(self, ge):
        """Records held with seq >= ge (no allocation for small seqs)."""
        log = self.log
        s = self._low()
        if s < ge:
            s = ge
        n = 0
        end = log.last_seq
        while s <= end:
            if log.present(s):
                n += 1
            s += 1
        return n

    @micropython.native  # a bytecode frame this wide would come from the heap
    def _first(self, ge, end):
        log = self.log
        s = self._low()
        if s < ge:
            s = ge
        while s <= end:
            if log.present(s):
                return s
            s += 1
        return 0

    # --- the procedure ----------------------------------------------------

    @micropython.native  # a bytecode frame this wide would come from the heap
    def pump(self):
        """Move the running procedure on: a few records, then its response. Never blocks."""
        if self.state == SENDING:
            self._send_some()
        if self.state == ANSWERING:
            if self.result == SUCCESS and self.sent == 0:
                self.result = NO_RECORDS_FOUND  # every match was overwritten meanwhile
            if self.result == SUCCESS:
                n = encode_response_u32(
                    self._resp, 0, OP_REPORT_RECORDS, self.token, SUCCESS, self.sent
                )
            else:
                n = encode_response(self._resp, 0, OP_REPORT_RECORDS, self.token, self.result)
            link = self.link
            if link is None or not link.send_response(self._resp, n):
                return
            self.state = IDLE
            self.link = None
        if self.state == IDLE and self.abort_link is not None:
            encode_response(self._abort_resp, 0, OP_ABORT, self.abort_token, SUCCESS)
            if self.abort_link.send_response(self._abort_resp, 3):
                self.abort_link = None

    @micropython.native  # a bytecode frame this wide would come from the heap
    def _send_some(self):
        log = self.log
        link = self.link
        if link is None:
            return
        rec = self._rec
        f = self._fields
        budget = self.batch
        looks = self.scan
        while budget > 0:
            if not self.held:
                s = self.next
                low = self._low()
                if s < low:
                    s = low
                found = False
                while s <= self.end and looks > 0:
                    looks -= 1
                    if log.present(s) and log.read(s, f):
                        found = True
                        break
                    s += 1
                self.next = s
                if not found:
                    if s > self.end:
                        self.state = ANSWERING
                    return
                d = f[passlog.T_END] - f[passlog.T_START]
                if d < 0:
                    d = 0
                encode_pass_record(
                    rec,
                    0,
                    f[passlog.SEQ],
                    f[passlog.BOOT],
                    f[passlog.T_END],
                    f[passlog.SESSION],
                    f[passlog.ZONE],
                    f[passlog.DIRECTION],
                    f[passlog.LENGTH],
                    d,
                    f[passlog.FLAGS],
                )
                self.held = True
            if not link.send_record(rec, PASS_RECORD_SIZE):
                return
            self.held = False
            self.sent += 1
            self.next += 1
            budget -= 1
        if self.next > self.end:
            self.state = ANSWERING

    def link_closed(self, link):
        """`link` went away: its procedure ends without a response, an owed ABORT answer is
        dropped."""
        if self.abort_link is link:
            self.abort_link = None
        if self.state != IDLE and self.link is link:
            self.state = IDLE
            self.link = None
            self.held = False
