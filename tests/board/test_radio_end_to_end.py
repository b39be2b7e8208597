"""Must-show 1: a MicroPython app on the virtual board and an unchanged bleak client.

The app (tests/board/apps/sensor_app.py, not the product firmware) registers a
service, advertises, notifies, indicates, receives writes, keeps bonds and
requires encryption to write one characteristic. The host side below is plain
bleak code; only `backend=` picks the Bumble backend.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakGATTProtocolError

from dermaroll.board import bleak_backend
from dermaroll.board.bleak_backend import BleakClientBumble, BleakScannerBumble
from dermaroll.board.radio import VirtualRadio
from tests.board.boardkit import DeviceProcess, aio

SERVICE = "7d2a0001-3c5e-4a0f-9d1e-5a6b7c8d9e0f"
COUNTER = "7d2a0002-3c5e-4a0f-9d1e-5a6b7c8d9e0f"
STATUS = "7d2a0003-3c5e-4a0f-9d1e-5a6b7c8d9e0f"
COMMAND = "7d2a0004-3c5e-4a0f-9d1e-5a6b7c8d9e0f"
SETTING = "7d2a0005-3c5e-4a0f-9d1e-5a6b7c8d9e0f"
BURST = 120


async def host_session(dev: DeviceProcess, radio: VirtualRadio) -> None:
    """What a host does, in plain bleak."""
    device = await BleakScanner.find_device_by_filter(
        lambda d, ad: SERVICE in ad.service_uuids, timeout=5, backend=BleakScannerBumble
    )
    assert device is not None, "the board was not found by its service UUID"
    assert device.name == "vboard-test"  # from the scan response

    lost = asyncio.Event()
    counters: list[bytes] = []
    statuses: list[bytes] = []
    got_all = asyncio.Event()

    def on_counter(_char, data: bytearray) -> None:
        counters.append(bytes(data))
        if len(counters) == BURST:
            got_all.set()

    client = BleakClient(
        device, disconnected_callback=lambda c: lost.set(), backend=BleakClientBumble
    )
    await client.connect()
    try:
        # MTU exchange: the board prefers 256, bleak asked for more.
        assert client.mtu_size == 256
        await dev.wait_line("mtu 256")

        assert await client.read_gatt_char(COUNTER) == struct.pack("<I", 0)
        assert await client.read_gatt_char(STATUS) == b"idle"
        await client.start_notify(COUNTER, on_counter)
        await client.start_notify(STATUS, lambda _c, data: statuses.append(bytes(data)))

        # The protected setting is refused until the link is encrypted ...
        with pytest.raises(BleakGATTProtocolError) as refused:
            await client.write_gatt_char(SETTING, b"level=3", response=True)
        assert refused.value.code == 0x05  # Insufficient Authentication, as NimBLE says
        # ... so the host pairs (Just Works) and the board stores the bond.
        await client.pair()
        await dev.wait_line("encryption 1 0 1 16")
        assert "secret 1" in dev.lines and "bonded 2" in dev.lines
        await client.write_gatt_char(SETTING, b"level=3", response=True)
        await dev.wait_line("setting b'level=3'")

        # A burst of notifications: every one arrives, in order, sized by the MTU.
        await client.write_gatt_char(COMMAND, b"burst %d" % BURST, response=True)
        await asyncio.wait_for(got_all.wait(), 10)
        line = await dev.wait_line("burst done")
        assert [struct.unpack_from("<I", c)[0] for c in counters] == list(range(BURST))
        assert {len(c) for c in counters} == {32}
        # The firmware met ENOMEM (the radio's buffers were full) and retried.
        assert int(line.split()[-1]) > 0, line

        # An indication, acknowledged back to the firmware.
        await client.write_gatt_char(COMMAND, b"status", response=True)
        await dev.wait_line("indicated 0")
        assert statuses == [b"ok"]

        # The board's radio link drops: bleak reports it.
        assert await radio.drop_link() == 1
        await asyncio.wait_for(lost.wait(), 5)
        assert not client.is_connected
        await dev.wait_line("disconnect")
    finally:
        await client.disconnect()


@aio
async def test_bleak_client_against_micropython_app() -> None:
    async with VirtualRadio() as radio:
        dev = DeviceProcess(radio, "sensor_app.py")
        try:
            await dev.start()
            bleak_backend.use_radio(radio)
            await host_session(dev, radio)
            # The app re-advertises; a bonded host reconnects and the link is encrypted
            # again from the stored bond, without pairing anew.
            device = await BleakScanner.find_device_by_address(
                str(radio.address).split("/")[0], timeout=5, backend=BleakScannerBumble
            )
            assert device is not None
            async with BleakClient(device, backend=BleakClientBumble) as client:
                await client.write_gatt_char(SETTING, b"level=4", response=True)
                await dev.wait_line("setting b'level=4'")
                assert dev.lines.count("encryption 1 0 1 16") == 2
        finally:
            await dev.stop()
