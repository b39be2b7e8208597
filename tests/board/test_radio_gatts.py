"""The board's GATT server on the virtual radio: registration, reads, writes, notify, indicate."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import pytest
from bumble import att

from tests.board.boardkit import Board, DeviceError, aio, discover, find_char, services

READ, WNR, WRITE, NOTIFY, INDICATE = 0x02, 0x04, 0x08, 0x10, 0x20


def listen(connection: Any, handle: int, indications: bool = False) -> list[bytes]:
    """Receive notifications (or indications) for `handle` without subscribing."""
    received: list[bytes] = []
    client = connection.gatt_client
    table = client.indication_subscribers if indications else client.notification_subscribers
    table.setdefault(handle, set()).add(received.append)
    return received


async def until(predicate: Any, timeout: float = 5.0) -> None:
    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(loop(), timeout)


@aio
async def test_register_services_flattens_handles_and_adds_cccds() -> None:
    async with Board() as b:
        await b.x("ble.active(True)")
        layout = services((1, READ | NOTIFY, [(0x2901, READ)]), (2, READ | WRITE), (3, INDICATE))
        # NimBLE: GAP 1-5, GATT 6-9, then service 10; a CCCD follows each notify/indicate
        # value and is not in the returned handles; descriptors are.
        assert await b.e("ble.gatts_register_services(%s)" % layout) == ((12, 14, 16, 18),)
        await b.x("ble.gap_advertise(20000, b'')")
        central = await b.central()
        _, peer = await central.connect()
        await discover(peer)
        a, c = find_char(peer, 1), find_char(peer, 3)
        assert [(d.handle, d.type.to_hex_str()) for d in a.descriptors] == [
            (13, "2902"),
            (14, "2901"),
        ]
        assert [(d.handle, d.type.to_hex_str()) for d in c.descriptors] == [(19, "2902")]
        assert int(a.properties) == READ | NOTIFY


@aio
async def test_register_services_resets_values_and_needs_a_quiet_radio() -> None:
    async with Board() as b:
        await b.x("ble.active(True)")
        layout = services((1, READ))
        ((h,),) = await b.e("ble.gatts_register_services(%s)" % layout)
        await b.x("ble.gatts_write(%d, b'value')" % h)
        assert await b.e("ble.gatts_register_services(%s)" % layout) == ((h,),)
        assert await b.e("ble.gatts_read(%d)" % h) == b""
        await b.x("ble.gap_advertise(20000, b'')")
        with pytest.raises(DeviceError) as e:
            await b.x("ble.gatts_register_services(%s)" % layout)
        assert e.value.errno == 16  # EBUSY: not while advertising (or connected)


@aio
async def test_read_request_irq_and_denial() -> None:
    async with Board() as b:
        ((h,),) = await b.setup_peripheral(services((1, READ)))
        await b.x("ble.gatts_write(%d, b'hello')" % h)
        central = await b.central()
        _, peer = await central.connect()
        conn = (await b.event(1))[0]
        assert await peer.read_value(h) == b"hello"
        assert await b.event(4) == (conn, h)
        await b.x("agent.read_reply[%d] = 0x80" % h)  # the handler returns an ATT error
        with pytest.raises(att.ATT_Error) as e:
            await peer.read_value(h)
        assert e.value.error_code == 0x80
        await b.x("agent.read_reply[%d] = True" % h)  # True counts as 1, as in C
        with pytest.raises(att.ATT_Error) as e:
            await peer.read_value(h)
        assert e.value.error_code == 0x01


@aio
async def test_permissions_without_security() -> None:
    async with Board() as b:
        ((r, w),) = await b.setup_peripheral(services((1, READ), (2, WNR)))
        central = await b.central()
        _, peer = await central.connect()
        with pytest.raises(att.ATT_Error) as e:
            await peer.write_value(r, b"x", with_response=True)
        assert e.value.error_code == 0x03  # Write Not Permitted
        with pytest.raises(att.ATT_Error) as e:
            await peer.read_value(w)
        assert e.value.error_code == 0x02  # Read Not Permitted
        # NimBLE lets a write request through to a write-without-response characteristic.
        await peer.write_value(w, b"ok", with_response=True)
        assert (await b.event(3))[1] == w


@aio
async def test_write_irq_but_none_for_cccd_writes() -> None:
    async with Board() as b:
        ((h,),) = await b.setup_peripheral(services((1, READ | WRITE | WNR | NOTIFY)))
        central = await b.central()
        _, peer = await central.connect()
        conn = (await b.event(1))[0]
        await discover(peer)
        char = find_char(peer, 1)
        await char.subscribe(lambda value: None)  # a CCCD write
        await peer.write_value(h, b"request", with_response=True)
        assert await b.event(3) == (conn, h)
        assert await b.e("ble.gatts_read(%d)" % h) == b"request"
        await peer.write_value(h, b"command", with_response=False)
        assert await b.event(3) == (conn, h)
        assert await b.e("ble.gatts_read(%d)" % h) == b"command"
        assert b.dev.codes().count(3) == 2


@aio
async def test_gatts_write_send_update_reaches_subscribers_only() -> None:
    async with Board() as b:
        ((n, i),) = await b.setup_peripheral(services((1, READ | NOTIFY), (2, READ | INDICATE)))
        first, second = await b.central(), await b.central()
        c1, peer1 = await first.connect()
        conn1 = (await b.event(1))[0]
        await b.x("ble.gap_advertise(20000)")
        c2, peer2 = await second.connect()
        await b.event(1)
        await discover(peer1)
        got_n: list[bytes] = []
        got_i: list[bytes] = []
        await find_char(peer1, 1).subscribe(got_n.append)
        await find_char(peer1, 2).subscribe(got_i.append)
        stray_n, stray_i = listen(c2, n), listen(c2, i, indications=True)
        await b.x("ble.gatts_write(%d, b'no update')" % n)  # send_update=False: local only
        await b.x("ble.gatts_write(%d, b'to subscribers', True)" % n)
        await b.x("ble.gatts_write(%d, b'indicated', True)" % i)
        await until(lambda: got_n and got_i)
        assert got_n == [b"to subscribers"] and got_i == [b"indicated"]
        # NimBLE reads the value through the handler, with no connection (65535).
        assert await b.event(4) == (0xFFFF, n)
        assert await b.event(20) == (conn1, i, 0)
        await asyncio.sleep(0.05)
        assert stray_n == [] and stray_i == [] and len(got_n) == 1


@aio
async def test_notify_and_indicate_ignore_subscriptions() -> None:
    async with Board() as b:
        ((h,),) = await b.setup_peripheral(services((1, READ | NOTIFY | INDICATE)))
        central = await b.central()
        connection, _ = await central.connect()
        conn = (await b.event(1))[0]
        notes = listen(connection, h)
        indications = listen(connection, h, indications=True)
        await b.x("ble.gatts_notify(%d, %d, b'n1')" % (conn, h))
        await b.x("ble.gatts_indicate(%d, %d, b'i1')" % (conn, h))
        assert await b.event(20) == (conn, h, 0)  # confirmed
        assert notes == [b"n1"] and indications == [b"i1"]


@aio
async def test_notify_without_data_sends_the_stored_value() -> None:
    async with Board() as b:
        ((h,),) = await b.setup_peripheral(services((1, READ | NOTIFY)))
        central = await b.central()
        connection, _ = await central.connect()
        conn = (await b.event(1))[0]
        notes = listen(connection, h)
        await b.x("ble.gatts_write(%d, b'stored')\nble.gatts_notify(%d, %d)" % (h, conn, h))
        assert await b.event(4) == (0xFFFF, h)  # read through the handler, synchronously
        await until(lambda: notes)
        assert notes == [b"stored"]
        await b.x("agent.read_reply[%d] = 3" % h)  # denied: BLE_HS_EAPP comes back as -9
        with pytest.raises(DeviceError) as e:
            await b.x("ble.gatts_notify(%d, %d)" % (conn, h))
        assert e.value.errno == -9


@aio
async def test_notify_truncates_to_mtu_minus_3() -> None:
    async with Board() as b:
        ((h,),) = await b.setup_peripheral(services((1, NOTIFY)))
        central = await b.central()
        connection, peer = await central.connect()
        conn = (await b.event(1))[0]
        notes = listen(connection, h)
        await b.x("ble.gatts_notify(%d, %d, bytes(range(100)))" % (conn, h))
        await until(lambda: notes)
        assert notes == [bytes(range(20))]
        await peer.request_mtu(60)
        await b.event(21)
        await b.x("ble.gatts_notify(%d, %d, bytes(range(100)))" % (conn, h))
        await until(lambda: len(notes) == 2)
        assert notes[1] == bytes(range(57))


@aio
async def test_notify_and_indicate_enotconn() -> None:
    async with Board() as b:
        ((h,),) = await b.setup_peripheral(services((1, NOTIFY | INDICATE)))
        for op in ("notify", "indicate"):
            with pytest.raises(DeviceError) as e:
                await b.x("ble.gatts_%s(7, %d, b'x')" % (op, h))
            assert e.value.errno == errno.ENOTCONN


@aio
async def test_notify_enomem_when_the_radio_buffers_are_full() -> None:
    async with Board(tx_buffers=4, tx_interval=0.05, tx_per_event=2) as b:
        ((h,),) = await b.setup_peripheral(services((1, NOTIFY)))
        central = await b.central()
        connection, _ = await central.connect()
        conn = (await b.event(1))[0]
        notes = listen(connection, h)
        # A burst: buffers run out, gatts_notify raises ENOMEM, nothing is lost or reordered.
        await b.x(
            "ok = []\nerr = []\n"
            "for i in range(40):\n"
            "    try:\n"
            "        ble.gatts_notify(%d, %d, bytes([i]))\n"
            "        ok.append(i)\n"
            "    except OSError as e:\n"
            "        err.append(e.args[0])" % (conn, h)
        )
        ok, err = await b.e("ok"), await b.e("err")
        assert err and set(err) == {errno.ENOMEM}
        assert len(ok) >= 4  # at least the buffers' worth went out
        await until(lambda: len(notes) == len(ok))
        assert [n[0] for n in notes] == ok
        await asyncio.sleep(0.15)  # the queue drains at the next connection events
        await b.x("ble.gatts_notify(%d, %d, b'again')" % (conn, h))
        await until(lambda: notes[-1] == b"again")


@aio
async def test_indicate_enomem_when_procedures_are_busy_and_done_events() -> None:
    async with Board(indicate_procs=2, tx_interval=0.2) as b:
        ((h,),) = await b.setup_peripheral(services((1, INDICATE)))
        central = await b.central()
        connection, _ = await central.connect()
        conn = (await b.event(1))[0]
        got = listen(connection, h, indications=True)
        await b.x(
            "ok = []\nerr = []\n"
            "for i in range(5):\n"
            "    try:\n"
            "        ble.gatts_indicate(%d, %d, bytes([i]))\n"
            "        ok.append(i)\n"
            "    except OSError as e:\n"
            "        err.append(e.args[0])" % (conn, h)
        )
        ok, err = await b.e("ok"), await b.e("err")
        assert err and set(err) == {errno.ENOMEM} and len(ok) >= 2
        for _ in ok:
            assert await b.event(20) == (conn, h, 0)
        assert [g[0] for g in got] == ok


@aio
async def test_pending_indication_fails_when_the_link_drops() -> None:
    async with Board(tx_interval=1.0) as b:
        ((h,),) = await b.setup_peripheral(services((1, INDICATE | NOTIFY)))
        central = await b.central()
        await central.connect()
        conn = (await b.event(1))[0]
        # The first PDU goes at once; the second waits a whole connection interval.
        await b.x("ble.gatts_notify(%d, %d, b'n')" % (conn, h))
        await b.x("ble.gatts_indicate(%d, %d, b'i')" % (conn, h))
        await b.radio.drop_link()
        assert await b.event(20) == (conn, h, 7)  # BLE_HS_ENOTCONN, before the disconnect
        await b.event(2)
        assert b.dev.codes()[-2:] == [20, 2]


@aio
async def test_set_buffer_truncates_and_appends() -> None:
    async with Board() as b:
        ((h,),) = await b.setup_peripheral(services((1, READ | WRITE)))
        central = await b.central()
        _, peer = await central.connect()
        await b.x("ble.gatts_set_buffer(%d, 4)" % h)
        await peer.write_value(h, b"abcdefgh", with_response=True)
        assert await b.e("ble.gatts_read(%d)" % h) == b"abcd"  # remote writes truncate
        await b.x("ble.gatts_set_buffer(%d, 10, True)" % h)
        await peer.write_value(h, b"abc", with_response=True)
        await peer.write_value(h, b"def", with_response=True)
        assert await b.e("ble.gatts_read(%d)" % h) == b"abcdef"  # appended
        assert await b.e("ble.gatts_read(%d)" % h) == b""  # an append read empties it
        # Local writes are not truncated: the buffer grows.
        assert await b.e("ble.gatts_write(%d, bytes(30))" % h) == 30
        assert await b.e("len(ble.gatts_read(%d))" % h) == 30
        with pytest.raises(DeviceError) as e:
            await b.x("ble.gatts_set_buffer(999, 4)")
        assert e.value.errno == errno.EINVAL
