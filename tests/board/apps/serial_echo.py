"""Test application for roller.serial_link on the virtual board (not the product firmware).

tests/board/test_serial_link.py installs it as main.py with roller/serial_link.py and
dermaroll_protocol.py. It prints "SERIAL APP READY", then runs the link with the
module's defaults under asyncio, and a ticker that prints "TICK n" every 100 ms so
console text is interleaved with the frames.

The echo (the defined response to every request of 2 bytes or more): a
ControlResponse frame whose body is op, token, SUCCESS, then the request's bytes
from offset 2 (at most 64 of them). Opcode 0x7E raises ValueError inside on_request
(the link must count it and go on, without a response); opcode 0x7F prints the
link's counters as a "STATS ..." line before its echo. Every request with a token
that is a multiple of 16 also prints "REQ op token".
"""

import asyncio

from roller.serial_link import SerialLink

SUCCESS = 1
ECHO_MAX = 64


def on_request(link, data, n):
    if n < 2:
        return 0
    op = data[0]
    token = data[1]
    if op == 0x7E:
        raise ValueError("asked to fail")
    if op == 0x7F:
        print(
            "STATS frames_in=%d requests=%d ignored=%d dropped=%d texts=%d text_bytes=%d "
            "frames_out=%d muted=%d errors=%d"
            % (
                link.frames_in,
                link.requests,
                link.ignored,
                link.dropped,
                link.texts,
                link.text_bytes,
                link.frames_out,
                link.muted,
                link.errors,
            )
        )
    if token % 16 == 0:
        print("REQ", op, token)
    out = link.out
    out[0] = op
    out[1] = token
    out[2] = SUCCESS
    k = n - 2
    if k > ECHO_MAX:
        k = ECHO_MAX
    for i in range(k):
        out[3 + i] = data[2 + i]
    return 3 + k


link = SerialLink(on_request)


async def ticker():
    n = 0
    while True:
        n += 1
        print("TICK", n)
        # A live message before the host woke the link is muted (never on the console).
        link.send_status(b"\x00" * 19, 19)
        await asyncio.sleep_ms(100)


async def main():
    asyncio.create_task(ticker())
    await link.run()


print("SERIAL APP READY")
asyncio.run(main())
