"""IRQ delivery of the board's `bluetooth`: what the handler gets, exceptions, ordering under
bursts, and events reaching a main thread that is busy or blocked in a system call."""

from __future__ import annotations

import asyncio
import time

import pytest
from bumble import att

from tests.board.boardkit import Board, aio, services

READ, WNR, WRITE = 0x02, 0x04, 0x08
BURST = 300


@aio
async def test_payloads_are_memoryviews_valid_during_the_call_only() -> None:
    async with Board() as b:
        await b.x("agent.keep = True")
        await b.setup_peripheral(services((1, READ)))
        central = await b.central()
        connection, _ = await central.connect()
        conn, _, addr = await b.event(1)
        assert addr == bytes(reversed(bytes(connection.self_address)))
        assert await b.e("[type(v).__name__ for v in agent.kept[-1]]") == [
            "int",
            "int",
            "memoryview",
        ]
        # After the handler returned, the buffer behind the memoryview has been reused.
        assert await b.e("bytes(agent.kept[-1][2])") == bytes(6)


@aio
async def test_an_exception_in_the_handler_prints_and_disables_it() -> None:
    async with Board() as b:
        ((h,),) = await b.setup_peripheral(services((1, READ | WRITE)))
        await b.x("agent.raise_on = 1")
        central = await b.central()
        _, peer = await central.connect()
        assert b.dev is not None
        await b.dev.wait_line("Unhandled exception in IRQ callback handler")
        await b.dev.wait_line("ValueError: boom 1")
        # The handler is gone: later events are not delivered, reads are allowed,
        # writes still reach the value.
        await peer.write_value(h, b"after", with_response=True)
        assert await peer.read_value(h) == b"after"
        assert await b.e("ble.gatts_read(%d)" % h) == b"after"
        assert b.dev.codes().count(1) == 1 and 3 not in b.dev.codes()


@aio
async def test_a_burst_of_writes_arrives_complete_and_in_order() -> None:
    async with Board() as b:
        await b.x("agent.log_writes = True")
        ((h,),) = await b.setup_peripheral(services((1, WNR)))
        central = await b.central()
        _, peer = await central.connect()
        # The agent's main thread is blocked reading its console meanwhile.
        for i in range(BURST):
            await peer.write_value(h, i.to_bytes(2, "little"), with_response=False)
        assert b.dev is not None
        await b.dev.wait_for(lambda: sum(1 for line in b.dev.lines if line[:2] == "W ") == BURST)
        values = [
            int.from_bytes(bytes.fromhex(line[2:]), "little")
            for line in b.dev.lines
            if line.startswith("W ")
        ]
        assert values == list(range(BURST))


@aio
async def test_events_run_between_bytecodes_of_a_busy_main_thread() -> None:
    async with Board() as b:
        await b.x("agent.log_writes = True")
        ((h,),) = await b.setup_peripheral(services((1, WNR)))
        central = await b.central()
        _, peer = await central.connect()
        busy = asyncio.ensure_future(
            b.x(
                "print('busy')\nt = time.ticks_ms()\nn = 0\n"
                "while time.ticks_diff(time.ticks_ms(), t) < 800:\n    n += 1\n"
                "print('idle')",
                timeout=10,
            )
        )
        assert b.dev is not None
        await b.dev.wait_line("busy")
        for i in range(50):
            await peer.write_value(h, bytes([i]), with_response=False)
        await b.dev.wait_for(lambda: sum(1 for line in b.dev.lines if line[:2] == "W ") == 50)
        assert "idle" not in b.dev.lines  # delivered while the loop was still running
        await busy
        writes = [line for line in b.dev.lines if line.startswith("W ")]
        assert [int(w[2:], 16) for w in writes] == list(range(50))


@pytest.mark.parametrize(
    "blocking",
    [
        "time.sleep(1.2)",  # select() in the unix port's time.sleep
        # poll() in asyncio's loop
        "import asyncio\nasync def idle():\n    await asyncio.sleep(1.2)\nasyncio.run(idle())",
    ],
)
@aio
async def test_read_requests_reach_a_blocked_main_thread(blocking: str) -> None:
    async with Board() as b:
        ((h,),) = await b.setup_peripheral(services((1, READ)))
        await b.x("ble.gatts_write(%d, b'awake')" % h)
        central = await b.central()
        _, peer = await central.connect()
        await b.event(1)
        blocked = asyncio.ensure_future(b.x("print('blocking')\n" + blocking, timeout=10))
        assert b.dev is not None
        await b.dev.wait_line("blocking")
        await asyncio.sleep(0.1)
        started = time.monotonic()
        assert await peer.read_value(h) == b"awake"
        assert time.monotonic() - started < 0.5  # not 1.2 s: the main thread was woken
        assert not blocked.done()
        await blocked


@aio
async def test_an_unanswered_read_request_is_an_att_error() -> None:
    async with Board(irq_timeout=0.3) as b:
        ((h,),) = await b.setup_peripheral(services((1, READ | WNR)))
        await b.x("agent.sleep_on = 3\nagent.sleep_ms = 700")  # a slow write handler
        central = await b.central()
        _, peer = await central.connect()
        await b.event(1)
        await peer.write_value(h, b"slow", with_response=False)
        with pytest.raises(att.ATT_Error) as e:
            await peer.read_value(h)
        assert e.value.error_code == 0x0E  # Unlikely Error, not a hang
        await b.event(4)  # the question still reaches the handler later
