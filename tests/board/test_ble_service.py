"""firmware/roller/ble.py on the virtual board: the GATT service, advertising, pacing, security.

The device side is tests/board/apps/ble_app.py (roller.ble.Ble with a small on_request) in
the real MicroPython interpreter, talking to the board's radio; the host side is plain
bleak through the Bumble backend, or a Bumble central (boardkit.Central) where bleak cannot
do it (no MTU exchange, a second host identity, raw advertising bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from bleak import BleakClient
from bumble.core import UUID as BumbleUUID

import dermaroll_protocol as p
from dermaroll.board import bleak_backend
from dermaroll.board.bleak_backend import BleakClientBumble
from dermaroll.board.radio import VirtualRadio
from tests.board.boardkit import Central, DeviceProcess, aio
from tests.board.boardtest import find_roller

NAME = "dermaroll-0001"  # the radio's default address 24:0A:C4:00:00:01
CHARS = {
    p.PASS_RECORD_UUID: ["notify"],
    p.ZONE_COUNTS_UUID: ["notify", "read"],
    p.CONTROL_POINT_UUID: ["indicate", "write"],
    p.STATUS_UUID: ["notify", "read"],
    p.RAW_SAMPLES_UUID: ["notify"],
}


class Rig:
    """A radio, ble_app.py on MicroPython with a bond file in a temp dir, Bumble centrals."""

    def __init__(self, radio: VirtualRadio, folder: Path) -> None:
        self.radio = radio
        self.bonds = folder / "bonds.json"
        self.dev: DeviceProcess | None = None
        self.centrals: list[Central] = []

    async def boot(self) -> DeviceProcess:
        if self.dev is not None:
            await self.dev.stop()
        self.dev = DeviceProcess(self.radio, "ble_app.py", {"BLE_APP_BONDS": str(self.bonds)})
        await self.dev.start()
        return self.dev

    async def central(self) -> Central:
        central = await Central(self.radio).start()
        self.centrals.append(central)
        return central

    async def settle(self) -> None:
        """Wait until every link's queue is sent and no indication waits for its confirmation.

        A host that disconnects while an indication is unconfirmed hits a bug of the virtual
        radio (VirtualRadio._indicate: in_flight.remove raises in the dying connection's tx
        task), so the tests let the confirmations arrive first."""
        assert self.dev is not None
        busy = "[k.conn for k in ble.links if k.conn >= 0 and (k.count or k.indicating)]"
        async with asyncio.timeout(5):
            while await self.dev.e(busy):
                await asyncio.sleep(0.02)

    async def links(self) -> list[tuple[int, int, bool]]:
        """(conn, mtu, secure) of every used link slot on the device."""
        assert self.dev is not None
        return await self.dev.e("[(k.conn, k.mtu, k.secure) for k in ble.links if k.conn >= 0]")


@contextlib.asynccontextmanager
async def rig() -> AsyncIterator[Rig]:
    with tempfile.TemporaryDirectory() as folder:
        async with VirtualRadio() as radio:
            r = Rig(radio, Path(folder))
            try:
                await r.boot()
                bleak_backend.use_radio(radio)
                yield r
            finally:
                for central in r.centrals:
                    await central.stop()
                if r.dev is not None:
                    await r.dev.stop()


def response_collector() -> tuple[list[bytes], asyncio.Event, callable]:
    got: list[bytes] = []
    event = asyncio.Event()

    def on(_c: object, data: bytearray) -> None:
        got.append(bytes(data))
        event.set()

    return got, event, on


async def request(client: BleakClient, got: list[bytes], event: asyncio.Event, req: bytes):
    """Write a Control Point request and wait for its indicated response."""
    before = len(got)
    event.clear()
    await client.write_gatt_char(p.CONTROL_POINT_UUID, req, response=True)
    async with asyncio.timeout(5):
        while len(got) == before:
            await event.wait()
            event.clear()
    return got[before]


async def advertised(central: Central) -> dict:
    """The advertising packet (passive scan) and the scan response (active scan), decoded."""
    adv = (await central.scan(0.25, active=False))[-1].data_bytes
    resp = [a for a in await central.scan(0.25, active=True) if a.is_scan_response]
    assert resp, "no scan response heard"
    assert len(adv) == p.ADV_SIZE and len(resp[-1].data_bytes) == p.SCAN_RESPONSE_SIZE
    return p.decode_advertisement(adv, resp[-1].data_bytes)


@aio
async def test_discovery_information_and_advertised_state() -> None:
    async with rig() as r:
        assert r.dev is not None
        central = await r.central()
        ad = await advertised(central)
        assert ad["name"] == NAME and ad["service"]
        assert ad["state"] == {
            "major": 1, "state": 0, "zone": 0, "passes": 0, "battery": 255, "counter": 0
        }  # fmt: skip
        # The live state: the app reports a session on the left cheek, 17 passes, 90 %.
        await r.dev.x("status(state=2, zone=3, passes=17, battery=90)")
        ad = await advertised(central)
        assert ad["state"] == {
            "major": 1, "state": 2, "zone": 3, "passes": 17, "battery": 90, "counter": 1
        }  # fmt: skip

        device = await find_roller()
        assert device.name == NAME
        async with BleakClient(device, backend=BleakClientBumble) as client:
            ours = client.services.get_service(p.SERVICE_UUID)
            assert ours is not None
            props = {c.uuid: sorted(c.properties) for c in ours.characteristics}
            assert props == CHARS
            for c in ours.characteristics:  # a CCCD on every notify/indicate characteristic
                assert [d.uuid[4:8] for d in c.descriptors] == ["2902"]
            dis = {
                uuid: (await client.read_gatt_char(uuid)).decode()
                for uuid in ("2a29", "2a24", "2a25", "2a26")
            }
            assert dis == {
                "2a29": "dermaroll",
                "2a24": "DR-test",
                "2a25": "240AC4000001",
                "2a26": "0.1.0 p1.0",
            }
            assert p.parse_firmware_revision(dis["2a26"]) == ("0.1.0", 1, 0)
            battery = client.services.get_characteristic("2a19")
            assert sorted(battery.properties) == ["notify", "read"]
            assert await client.read_gatt_char("2a19") == bytes([90])
            status = p.decode_status(await client.read_gatt_char(p.STATUS_UUID))
            assert (status["state"], status["zone"], status["battery"]) == (2, 3, 90)

            # Status notifications follow changes; the advertised counter moves on.
            statuses: list[bytes] = []
            await client.start_notify(p.STATUS_UUID, lambda _c, d: statuses.append(bytes(d)))
            await r.dev.x("status(zone=4, passes=18)")
            async with asyncio.timeout(5):
                while not statuses:
                    await asyncio.sleep(0.01)
            assert p.decode_status(statuses[-1])["zone"] == 4
            # Advertising goes on while connected (below the connection limit).
            ad = await advertised(central)
            assert ad["state"]["zone"] == 4 and ad["state"]["counter"] == 2
        assert await r.dev.e("ble.irq_errors") == 0


@aio
async def test_pass_burst_complete_and_in_order_despite_enomem() -> None:
    async with rig() as r:
        assert r.dev is not None
        count = 250
        got: list[bytes] = []
        done = asyncio.Event()

        def on_pass(_c: object, data: bytearray) -> None:
            got.append(bytes(data))
            if len(got) == count:
                done.set()

        async with BleakClient(await find_roller(), backend=BleakClientBumble) as client:
            await client.start_notify(p.PASS_RECORD_UUID, on_pass)
            await r.dev.x("burst(%d)" % count)
            await asyncio.wait_for(done.wait(), 15)
            await asyncio.sleep(0.1)  # nothing more (no duplicates) arrives
            seqs = [p.decode_pass_record(d)["seq"] for d in got]
            assert seqs == list(range(1, count + 1))
            assert {len(d) for d in got} == {p.PASS_RECORD_SIZE}
            # The radio's buffers ran out (ENOMEM) and the service retried.
            enomem = await r.dev.e("sum(k.enomem for k in ble.links)")
            assert enomem > 0
        assert await r.dev.e("ble.irq_errors") == 0


@aio
async def test_mtu_default_then_exchanged_and_unknown_handles() -> None:
    async with rig() as r:
        assert r.dev is not None
        central = await r.central()
        connection, peer = await central.connect()
        async with asyncio.timeout(5):
            while not (links := await r.links()):
                await asyncio.sleep(0.02)
        ((conn, mtu, secure),) = links
        assert (mtu, secure) == (20, False)  # 20-byte payloads until an exchange
        await peer.discover_services()
        raw = (await peer.discover_characteristics(uuids=[BumbleUUID(p.RAW_SAMPLES_UUID)]))[0]
        got: list[bytes] = []
        await peer.subscribe(raw, lambda value: got.append(bytes(value)))
        send = "[k for k in ble.links if k.conn == %d][0].send_raw(bytes(range(40)), 40)" % conn
        assert await r.dev.e(send) is True
        async with asyncio.timeout(5):
            while not got:
                await asyncio.sleep(0.02)
        assert got == [bytes(range(20))]  # cut to the default payload
        assert await peer.request_mtu(100) == 100
        async with asyncio.timeout(5):
            while (await r.links())[0][1] != 97:
                await asyncio.sleep(0.02)
        assert await r.dev.e(send) is True
        async with asyncio.timeout(5):
            while len(got) < 2:
                await asyncio.sleep(0.02)
        assert got[1] == bytes(range(40))

        # ESP-IDF 5.x: MTU_EXCHANGED before CENTRAL_CONNECT, for a handle not seen yet.
        assert await r.dev.e("ble._irq(21, (77, 185))") is None
        assert await r.dev.e("ble._irq(1, (77, 0, memoryview(bytes(6))))") is None
        assert (77, 182, False) in await r.links()
        assert await r.dev.e("ble._irq(20, (78, 30, 0))") is None  # unknown: ignored
        assert await r.dev.e("ble._irq(2, (77, 0, memoryview(bytes(6))))") is None
        assert [k[0] for k in await r.links()] == [conn]
        assert await r.dev.e("ble.irq_errors") == 0
        # A handler that raises inside is caught and counted, and events still flow.
        assert await r.dev.e("ble._irq(3, None)") is None
        assert await r.dev.e("ble.irq_errors") == 1
        await connection.disconnect()
        async with asyncio.timeout(5):
            while await r.links():
                await asyncio.sleep(0.02)


@aio
async def test_control_point_security_and_bonds_across_restart() -> None:
    async with rig() as r:
        assert r.dev is not None
        got, event, on = response_collector()
        device = await find_roller()
        async with BleakClient(device, backend=BleakClientBumble) as client:
            await client.start_notify(p.CONTROL_POINT_UUID, on)
            # Open opcode: answered on an unbonded link.
            assert await request(client, got, event, b"\x01\x10\x03") == b"\x01\x10\x01"
            # Bonded opcode on an unencrypted link: NOT_PERMITTED (SPEC 3.2).
            assert await request(client, got, event, b"\x05\x11") == b"\x05\x11\x06"
            # The device has no bond yet, so this host may bond.
            await client.pair()
            async with asyncio.timeout(5):
                while not (await r.links())[0][2]:
                    await asyncio.sleep(0.02)
            assert await request(client, got, event, b"\x05\x12") == b"\x05\x12\x01"
            await r.settle()
        async with asyncio.timeout(5):
            while not r.bonds.exists():
                await asyncio.sleep(0.02)
        stored = {item[0] for item in json.loads(r.bonds.read_text())}
        assert {1, 2, 10} <= stored
        assert not r.bonds.with_name("bonds.json.tmp").exists()

        # Device restart: the bonds come back from flash; the host encrypts from its bond.
        dev = await r.boot()
        assert await dev.e("ble.has_bond()") is True
        got.clear()
        async with BleakClient(await find_roller(), backend=BleakClientBumble) as client:
            await client.start_notify(p.CONTROL_POINT_UUID, on)
            await client.pair()  # the backend encrypts with the stored keys (no new pairing)
            async with asyncio.timeout(5):
                while not (await r.links())[0][2]:
                    await asyncio.sleep(0.02)
            assert await request(client, got, event, b"\x05\x13") == b"\x05\x13\x01"
            await r.settle()
        assert await dev.e("ble.refusals") == 0
        assert any(line.startswith("REQ") and line.endswith(" 1") for line in dev.lines)

        # forget_bonds: the file loses the peer's keys.
        await dev.x("ble.forget_bonds()")
        assert {item[0] for item in json.loads(r.bonds.read_text())} == {10}


@aio
async def test_pairing_window() -> None:
    async with rig() as r:
        assert r.dev is not None
        # A first host bonds (the device has no bond yet).
        first = await r.central()
        connection, _ = await first.connect()
        await connection.pair()
        async with asyncio.timeout(5):
            while not (await r.links())[0][2]:
                await asyncio.sleep(0.02)
        assert await r.dev.e("ble.has_bond()") is True
        await connection.disconnect()

        # A new host outside the window: encrypted, but no bond, so not secure.
        second = await r.central()
        connection, peer = await second.connect()
        await connection.pair()
        await asyncio.sleep(0.3)
        assert connection.is_encrypted
        assert [k[2] for k in await r.links()] == [False]
        assert await r.dev.e("len([k for k in ble.secrets if k[0] == 2])") == 1
        # Its control point requests for bonded opcodes are refused.
        await peer.discover_services()
        cp = (await peer.discover_characteristics(uuids=[BumbleUUID(p.CONTROL_POINT_UUID)]))[0]
        answers: list[bytes] = []
        await peer.subscribe(cp, lambda value: answers.append(bytes(value)))
        await peer.write_value(cp, b"\x05\x20", with_response=True)
        await r.dev.wait_line("REQ %d 0520 0" % connection.handle)
        async with asyncio.timeout(5):
            while not answers:
                await asyncio.sleep(0.02)
        assert answers == [b"\x05\x20\x06"]  # NOT_PERMITTED
        await r.settle()
        await connection.disconnect()
        # The SET_SECRET guard: keys of a new peer are not stored outside the window.
        key = "memoryview(b'\\x00123456')"
        assert await r.dev.e("ble._irq(30, (2, %s, memoryview(b'x' * 80)))" % key) is False

        assert await r.dev.e("ble.refusals") == 1

        # The same guard in a real pairing (the race where a host pairs before service()
        # withdrew bonding): bonding is offered, SET_SECRET refuses the new peer's keys,
        # so the link is not secure and the device drops it.
        await r.dev.x("ble.ble.config(bond=True)")
        connection, _ = await second.connect()
        dropped = asyncio.Event()
        connection.on("disconnection", lambda *_: dropped.set())
        with contextlib.suppress(Exception):
            await connection.pair()
        await asyncio.wait_for(dropped.wait(), 5)
        assert await r.dev.e("ble.refusals") >= 2  # ours and the peer's keys
        assert await r.dev.e("len([k for k in ble.secrets if k[0] == 2])") == 1
        await r.dev.x("ble.ble.config(bond=False)")
        async with asyncio.timeout(5):
            while await r.links():
                await asyncio.sleep(0.02)

        # Inside the window the same new host bonds.
        await r.dev.x("ble.open_pairing_window(10000)")
        connection, _ = await second.connect()
        await connection.pair()
        async with asyncio.timeout(5):
            while not (links := await r.links()) or not links[0][2]:
                await asyncio.sleep(0.02)
        assert await r.dev.e("len([k for k in ble.secrets if k[0] == 2])") == 2
        await connection.disconnect()
        await r.dev.x("ble.close_pairing_window()")
        assert await r.dev.e("ble.pairing_window_open()") is False


@aio
async def test_readvertises_after_link_loss_and_reconnects() -> None:
    async with rig() as r:
        assert r.dev is not None
        lost = asyncio.Event()
        device = await find_roller()
        client = BleakClient(
            device, disconnected_callback=lambda _c: lost.set(), backend=BleakClientBumble
        )
        await client.connect()
        try:
            assert await radio_drop(r) == 1
            await asyncio.wait_for(lost.wait(), 5)
        finally:
            await client.disconnect()
        async with asyncio.timeout(5):
            while await r.links():
                await asyncio.sleep(0.02)
        await r.dev.wait_line("CLOSED")  # on_closed ran (from service(), not the IRQ)
        # Found again by its service UUID, and a new connection works.
        async with BleakClient(await find_roller(), backend=BleakClientBumble) as client:
            status = p.decode_status(await client.read_gatt_char(p.STATUS_UUID))
            assert status["major"] == 1
            assert len(await r.links()) == 1
        assert await r.dev.e("ble.irq_errors") == 0


async def radio_drop(r: Rig) -> int:
    return await r.radio.drop_link()
