"""Test application for firmware/roller/ble.py on the virtual board (not the product firmware).

Runs roller.ble.Ble with a small on_request, and a loop that calls ble.service() and
executes lines from stdin (the agent's protocol, tests/board/boardkit.py):
``<id> e <expression>`` -> ``R <id> <repr>``, ``<id> x <statements>``; an exception
-> ``X <id> <type> <args>``. Facts for the test go to stdout, one line each.

on_request (the signature of roller.control's handle) answers every request of 2 bytes or
more with SUCCESS (op, token, 1), except the bonded opcodes (SPEC 3.2) on a link that is
not secure: NOT_PERMITTED. on_closed prints "CLOSED".
`burst(n)` announces n PassRecords (seq 1..n) as fast as announce_pass takes them.
Environment: BLE_APP_BONDS = the bond file (default bonds.json in the cwd).
"""

import os
import sys

sys.path.append("../../../firmware")
sys.path.append("../../../protocol")

import uselect  # noqa: E402
import utime  # noqa: E402

import dermaroll_protocol as p  # noqa: E402
from roller.ble import Ble  # noqa: E402

requests = []


def on_request(link, data, n, out):
    """roller.control's handle() signature: the response's length in `out`, 0 for none."""
    req = bytes(data[:n])
    requests.append((link.conn, req, link.secure))
    print("REQ", link.conn, req.hex(), int(link.secure))
    if n < 2:
        return 0
    result = p.SUCCESS
    if req[0] in p.BONDED_OPCODES and not link.secure:
        result = p.NOT_PERMITTED
    return p.encode_response(out, 0, req[0], req[1], result)


def on_closed(link):
    print("CLOSED", link.conn)


BONDS = os.getenv("BLE_APP_BONDS") or "bonds.json"
ble = Ble(on_request, model="DR-test", version="0.1.0", bond_file=BONDS, on_closed=on_closed)
_burst = [0, 0]  # next seq, last seq
_rec = bytearray(p.PASS_RECORD_SIZE)
# state, zone, battery, errors, oldest, newest, boot, session, passes
_status = [0, 0, 255, 0, 0, 0, 1, 0, 0]


def burst(n):
    _burst[0] = 1
    _burst[1] = n


def status(**kw):
    names = ("state", "zone", "battery", "errors", "oldest", "newest", "boot", "session", "passes")
    for k, v in kw.items():
        _status[names.index(k)] = v
    ble.update_status(*_status)


def _pump_burst():
    while _burst[0] and _burst[0] <= _burst[1]:
        seq = _burst[0]
        p.encode_pass_record(_rec, 0, seq, 1, 1000 + seq, 0, 1, 0, 300, 200, 0)
        if not ble.announce_pass(_rec, p.PASS_RECORD_SIZE):
            return
        _burst[0] = seq + 1
    if _burst[0]:
        _burst[0] = 0
        print("BURST QUEUED", _burst[1])


def _command(line):
    ident, mode, src = line.split(" ", 2)
    src = src.replace("\\n", "\n")
    try:
        if mode == "e":
            print("R", ident, repr(eval(src, globals())))
        else:
            exec(src, globals())
            print("R", ident, "None")
    except Exception as e:
        print("X", ident, type(e).__name__, repr(e.args))


def main():
    ble.start()
    print("NAME", ble.name)
    print("READY")
    poll = uselect.poll()
    poll.register(sys.stdin, uselect.POLLIN)
    while True:
        for _ in poll.ipoll(2):
            line = sys.stdin.readline()
            if not line:
                return
            line = line.rstrip("\n")
            if line:
                _command(line)
        _pump_burst()
        ble.service()
        utime.sleep_ms(0)


main()
