"""The bleak backend on the virtual radio: scanning, connect errors, disconnected_callback,
ATT errors, and a host in another process over the TCP HCI transport."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDeviceNotFoundError, BleakGATTProtocolError

from dermaroll.board import bleak_backend
from dermaroll.board.bleak_backend import BleakClientBumble, BleakScannerBumble
from tests import micropython_harness as harness
from tests.board.boardkit import Board, aio, services, uuid_str

READ, WRITE, NOTIFY = 0x02, 0x08, 0x10
SERVICE = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
# Flags, the 128-bit service UUID; manufacturer data (company 0xFFFF)
ADV = (
    b"\x02\x01\x06\x11\x07"
    + bytes.fromhex(SERVICE.replace("-", ""))[::-1]
    + b"\x05\xff\xff\xff\x01\x02"
)
RESP = b"\x07\x09roller"
BOARD = "24:0A:C4:00:00:01"
CHAR = uuid_str(3)


async def advertise(b: Board) -> tuple[int, ...]:
    await b.x("ble.active(True)")
    ((h,),) = await b.e("ble.gatts_register_services(%s)" % services((3, READ | WRITE | NOTIFY)))
    await b.x("ble.gatts_write(%d, b'value')" % h)
    await b.x("ble.gap_advertise(20000, %r, resp_data=%r)" % (ADV, RESP))
    return (h,)


@aio
async def test_scanner_reports_advertising_and_filters_by_service() -> None:
    async with Board() as b:
        await advertise(b)
        bleak_backend.use_radio(b.radio)
        found = await BleakScanner.discover(
            timeout=0.3, return_adv=True, service_uuids=[SERVICE], backend=BleakScannerBumble
        )
        assert list(found) == [BOARD]
        device, adv = found[BOARD]
        assert device.name == adv.local_name == "roller"
        assert adv.service_uuids == [SERVICE]
        assert adv.manufacturer_data == {0xFFFF: b"\x01\x02"}
        other = await BleakScanner.discover(
            timeout=0.2,
            service_uuids=["0000180f-0000-1000-8000-00805f9b34fb"],
            backend=BleakScannerBumble,
        )
        assert other == []


@aio
async def test_connect_errors_raise() -> None:
    async with Board() as b:
        await advertise(b)
        bleak_backend.use_radio(b.radio)
        device = await BleakScanner.find_device_by_address(
            BOARD, timeout=5, backend=BleakScannerBumble
        )
        assert device is not None
        await b.x("ble.gap_advertise(None)")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await BleakClient(device, timeout=0.5, backend=BleakClientBumble).connect()
        assert time.monotonic() - started < 2
        with pytest.raises(BleakDeviceNotFoundError):
            await BleakClient("11:22:33:44:55:66", timeout=0.3, backend=BleakClientBumble).connect()
        # Nothing is left pending: once the board advertises, connecting works.
        await b.x("ble.gap_advertise(20000)")
        async with BleakClient(device, backend=BleakClientBumble) as client:
            assert await client.read_gatt_char(CHAR) == b"value"


@aio
async def test_disconnected_callback_fires_once_per_link_loss() -> None:
    async with Board() as b:
        await advertise(b)
        bleak_backend.use_radio(b.radio)
        calls: list[str] = []
        lost = asyncio.Event()

        def on_lost(client: BleakClient) -> None:
            calls.append(client.address)
            lost.set()

        device = await BleakScanner.find_device_by_address(
            BOARD, timeout=5, backend=BleakScannerBumble
        )
        client = BleakClient(device, disconnected_callback=on_lost, backend=BleakClientBumble)
        # 1. The board disconnects.
        await client.connect()
        conn = (await b.event(1))[0]
        await b.x("ble.gap_disconnect(%d)" % conn)
        await asyncio.wait_for(lost.wait(), 5)
        assert calls == [BOARD] and not client.is_connected
        # 2. We disconnect.
        lost.clear()
        await b.x("ble.gap_advertise(20000)")
        await client.connect()
        await client.disconnect()
        await asyncio.wait_for(lost.wait(), 5)
        assert calls == [BOARD, BOARD]
        # 3. The board's process dies (supervision timeout on our side).
        lost.clear()
        await b.x("ble.gap_advertise(20000)")
        await client.connect()
        assert b.dev is not None
        await b.dev.stop()
        await asyncio.wait_for(lost.wait(), 5)
        assert calls == [BOARD] * 3


@aio
async def test_att_errors_become_bleak_protocol_errors() -> None:
    async with Board() as b:
        (h,) = await advertise(b)
        await b.x("agent.read_reply[%d] = 0x80" % h)
        bleak_backend.use_radio(b.radio)
        async with BleakClient(BOARD, timeout=5, backend=BleakClientBumble) as client:
            with pytest.raises(BleakGATTProtocolError) as e:
                await client.read_gatt_char(CHAR)
            assert e.value.code == 0x80


@aio
async def test_a_host_in_another_process_over_tcp() -> None:
    async with Board() as b:
        (h,) = await advertise(b)
        await b.x("agent.echo = (%d, 'notify')" % h)
        env = dict(os.environ)
        env[bleak_backend.ENV_TRANSPORT] = b.radio.hci_transport
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.board.remote_host",
            SERVICE,
            CHAR,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=str(harness.ROOT),
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, err.decode()
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert result == {
            "found": True,
            "address": BOARD,
            "read": b"value".hex(),
            "echoed": b"echo me".hex(),
            "mtu": 256,
        }
        assert (await b.event(3))[1] == h
        await b.event(2)  # the remote host disconnected


def test_no_radio_configured_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(bleak_backend.ENV_TRANSPORT, raising=False)

    async def main() -> None:
        with pytest.raises(Exception, match=bleak_backend.ENV_TRANSPORT):
            await BleakScanner.discover(timeout=0.1, backend=BleakScannerBumble)

    asyncio.run(main())
