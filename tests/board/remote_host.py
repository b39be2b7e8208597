"""A host in another process: plain bleak code, reaching the radio through DERMAROLL_BLE_HCI.

Run by test_radio_bleak.py as ``python -m tests.board.remote_host SERVICE CHAR``; prints
one JSON object with what it saw.
"""

from __future__ import annotations

import asyncio
import json
import sys

from bleak import BleakClient, BleakScanner

from dermaroll.board.bleak_backend import BleakClientBumble, BleakScannerBumble


async def main(service: str, char: str) -> dict[str, object]:
    device = await BleakScanner.find_device_by_filter(
        lambda d, ad: service in ad.service_uuids, timeout=5, backend=BleakScannerBumble
    )
    if device is None:
        return {"found": False}
    notified = asyncio.Queue[bytes]()
    async with BleakClient(device, backend=BleakClientBumble) as client:
        value = await client.read_gatt_char(char)
        await client.start_notify(char, lambda _c, data: notified.put_nowait(bytes(data)))
        await client.write_gatt_char(char, b"echo me", response=True)
        echoed = await asyncio.wait_for(notified.get(), 5)
        return {
            "found": True,
            "address": device.address,
            "read": value.hex(),
            "echoed": echoed.hex(),
            "mtu": client.mtu_size,
        }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
