"""The board's `bluetooth` on the virtual radio: activation, config, advertising, connections."""

from __future__ import annotations

import asyncio

import pytest
from bumble import core, hci

from tests.board.boardkit import Board, DeviceError, aio, services

BOARD_MAC = bytes.fromhex("240AC4000001")
ADV = b"\x02\x01\x06\x05\x09demo"
RESP = b"\x05\x09resp"


def be(address: hci.Address) -> bytes:
    return bytes(reversed(bytes(address)))


@aio
async def test_activation_loads_or_creates_the_irk_through_the_secret_irqs() -> None:
    async with Board() as b:
        await b.x("agent.secrets = {}")
        assert await b.e("ble.active(True)") is True
        # NimBLE at start-up: peer IRKs, our IRK (created and saved), peer IRKs again.
        assert b.dev.events[:4] == [
            (29, (2, 0, None)),
            (29, (10, 0, b"irk")),
            (30, (10, b"irk", b.dev.events[2][1][2])),
            (29, (2, 0, None)),
        ]
        irk = b.dev.events[2][1][2]
        assert len(irk) == 16 and b.radio.irk == irk
        assert await b.e("ble.config('mac')") == (0, BOARD_MAC)
        assert await b.e("ble.config('mtu')") == 256
        # The next start finds the stored IRK: no new one is written.
        await b.x("ble.active(False)\nble.active(True)")
        assert [code for code, _ in b.dev.events[4:]] == [29, 29, 29]
        assert b.radio.irk == irk


@aio
async def test_activation_without_secret_handling_uses_the_default_irk() -> None:
    async with Board() as b:
        await b.x("ble.active(True)")
        # SET_SECRET answered False: NimBLE keeps its built-in IRK and stops there.
        assert [code for code, _ in b.dev.events] == [29, 29, 30]
        assert b.radio.irk == bytes.fromhex("ef8de2164fec430dbf5bdd34c0531eb8")


@aio
async def test_active_false_ends_connections_without_an_irq() -> None:
    async with Board() as b:
        await b.setup_peripheral(services((3, 0x02)))
        central = await b.central()
        connection, _ = await central.connect()
        await b.event(1)
        reasons: list[int] = []
        gone = asyncio.Event()
        connection.on("disconnection", lambda reason: (reasons.append(reason), gone.set()))
        await b.x("ble.active(False)")
        await asyncio.wait_for(gone.wait(), 5)
        assert reasons == [hci.HCI_ErrorCode.REMOTE_USER_TERMINATED_CONNECTION_ERROR]
        assert await b.e("ble.active()") is False
        await asyncio.sleep(0.05)
        assert 2 not in b.dev.codes()


@aio
async def test_active_true_again_restarts_the_stack() -> None:
    async with Board() as b:
        ((h,),) = await b.setup_peripheral(services((3, 0x02)))
        await b.x("ble.gatts_write(%d, b'kept?')" % h)
        central = await b.central()
        connection, _ = await central.connect()
        await b.event(1)
        gone = asyncio.Event()
        connection.on("disconnection", lambda reason: gone.set())
        await b.x("ble.active(True)")  # mp_bluetooth_init deinitialises first
        await asyncio.wait_for(gone.wait(), 5)
        assert await b.e("ble.gatts_read(%d)" % h) == b""  # services are gone
        assert not b.radio.advertising
        assert await central.scan(0.15, expect=False) == []


@aio
async def test_gap_name_is_the_device_name_characteristic() -> None:
    async with Board() as b:
        await b.x("ble.config(gap_name='roller-7')")
        await b.setup_peripheral(services((3, 0x02)))
        central = await b.central()
        _, peer = await central.connect()
        assert await peer.read_value(3) == b"roller-7"  # 0x2A00 at handle 3, as NimBLE
        await b.x("ble.config(gap_name=b'roller-8')")
        assert await peer.read_value(3) == b"roller-8"
        assert await b.e("ble.config('gap_name')") == b"roller-8"
        # No read request for the GAP service: NimBLE answers it itself.
        assert 4 not in b.dev.codes()


@aio
async def test_mtu_is_the_preferred_mtu_of_the_exchange() -> None:
    async with Board() as b:
        await b.x("ble.active(True)\nble.config(mtu=100)")
        assert await b.e("ble.config('mtu')") == 100
        for bad in (22, 528):
            with pytest.raises(DeviceError) as e:
                await b.x("ble.config(mtu=%d)" % bad)
            assert e.value.errno == 22  # EINVAL
        await b.x("ble.gatts_register_services(%s)" % services((3, 0x02)))
        await b.x("ble.gap_advertise(20000, b'')")
        central = await b.central()
        connection, peer = await central.connect()
        assert await peer.request_mtu(517) == 100
        conn = (await b.event(1))[0]
        assert await b.event(21) == (conn, 100)


@aio
async def test_addr_mode_random_and_rpa() -> None:
    async with Board() as b:
        await b.x("ble.active(True)\nble.config(addr_mode=1)")
        addr_type, mac = await b.e("ble.config('mac')")
        assert addr_type == 1 and mac[0] & 0xC0 == 0xC0  # a static random address
        await b.x("ble.gap_advertise(20000, %r)" % ADV)
        central = await b.central()
        heard = await central.scan(0.1)
        assert heard and {be(a.address) for a in heard} == {mac}
        assert {a.address.address_type for a in heard} == {1}
        await b.x("ble.config(addr_mode=2)")
        with pytest.raises(DeviceError) as e:
            await b.e("ble.config('mac')")
        assert e.value.errno == 22  # the port cannot report an RPA
        await b.x("ble.config(addr_mode=0)")
        assert await b.e("ble.config('mac')") == (0, BOARD_MAC)


@aio
async def test_gap_advertise_data_rules() -> None:
    async with Board() as b:
        await b.x("ble.active(True)")
        central = await b.central()

        async def heard(expect: bool = True) -> set[bytes]:
            return {bytes(a.data) for a in await central.scan(0.1, expect=expect)}

        await b.x("ble.gap_advertise(20000, %r, resp_data=%r)" % (ADV, RESP))
        assert await heard() == {ADV + RESP}  # active scan: data + scan response
        await b.x("ble.gap_advertise(20000)")  # None: the previous payloads again
        assert await heard() == {ADV + RESP}
        await b.x("ble.gap_advertise(20000, b'')")  # b'': cleared, response kept
        assert await heard() == {RESP}
        await b.x("ble.gap_advertise(20000, resp_data=b'')")
        assert await heard() == {b""}
        await b.x("ble.gap_advertise(None)")
        assert await heard(expect=False) == set()
        with pytest.raises(DeviceError) as e:
            await b.x("ble.gap_advertise(20000, bytes(32))")
        assert e.value.errno == 22
        with pytest.raises(DeviceError) as e:
            await b.x("ble.gap_advertise(10000, b'')")  # below 20 ms: the controller refuses
        assert e.value.errno == -530


@aio
async def test_non_connectable_advertising() -> None:
    async with Board() as b:
        await b.x("ble.active(True)\nble.gap_advertise(20000, %r, connectable=False)" % ADV)
        central = await b.central()
        heard = await central.scan(0.1)
        assert heard and not any(a.is_connectable for a in heard)
        with pytest.raises((core.TimeoutError, core.ConnectionError)):
            await central.connect(timeout=0.3)


@aio
async def test_advertising_stops_when_a_central_connects() -> None:
    async with Board() as b:
        await b.setup_peripheral(services((3, 0x02)), adv=ADV)
        first = await b.central()
        await first.connect()
        await b.event(1)
        second = await b.central()
        assert await second.scan(0.15, expect=False) == []
        assert not b.radio.advertising
        # The application advertises again to take another connection.
        await b.x("ble.gap_advertise(20000)")
        connection, _ = await second.connect()
        assert len(b.radio.connections) == 2


@aio
async def test_connect_and_disconnect_events_and_gap_disconnect() -> None:
    async with Board() as b:
        await b.setup_peripheral(services((3, 0x02)))
        central = await b.central()
        connection, _ = await central.connect()
        conn, addr_type, addr = await b.event(1)
        assert addr_type == 1 and addr == be(connection.self_address)
        reasons: list[int] = []
        gone = asyncio.Event()
        connection.on("disconnection", lambda reason: (reasons.append(reason), gone.set()))
        assert await b.e("ble.gap_disconnect(%d)" % conn) is True
        assert await b.event(2) == (conn, addr_type, addr)
        await asyncio.wait_for(gone.wait(), 5)
        assert reasons == [hci.HCI_ErrorCode.REMOTE_USER_TERMINATED_CONNECTION_ERROR]
        assert await b.e("ble.gap_disconnect(%d)" % conn) is False


@aio
async def test_connection_update_event() -> None:
    async with Board() as b:
        await b.setup_peripheral(services((3, 0x02)))
        central = await b.central()
        connection, _ = await central.connect()
        conn = (await b.event(1))[0]
        await connection.update_parameters(30.0, 30.0, 2, 4000.0)
        # (conn, interval in 1.25 ms units, latency, supervision timeout in 10 ms, status)
        assert await b.event(27) == (conn, 24, 2, 400, 0)


@aio
async def test_drop_link_fault() -> None:
    async with Board() as b:
        await b.setup_peripheral(services((3, 0x02)))
        first, second = await b.central(), await b.central()
        c1, _ = await first.connect()
        conn1 = (await b.event(1))[0]
        await b.x("ble.gap_advertise(20000)")
        c2, _ = await second.connect()
        conn2 = (await b.event(1))[0]
        reasons: list[int] = []
        c1.on("disconnection", reasons.append)
        assert await b.radio.drop_link(conn1) == 1
        assert (await b.event(2))[0] == conn1
        assert reasons == [hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR]
        assert b.radio.connections == [conn2]
        assert await b.radio.drop_link() == 1
        assert (await b.event(2))[0] == conn2
        assert b.radio.connections == []
