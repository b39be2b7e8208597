"""A bleak backend over Bumble: unchanged bleak code talks to the virtual board's radio.

    from bleak import BleakClient, BleakScanner
    from dermaroll.board.bleak_backend import BleakClientBumble, BleakScannerBumble

    device = await BleakScanner.find_device_by_filter(..., backend=BleakScannerBumble)
    async with BleakClient(device, disconnected_callback=cb, backend=BleakClientBumble) as c:
        ...

Which radio: the one given to `use_radio()` (same process and event loop), else
the Bumble transport given to `use_transport()`, else the environment variable
DERMAROLL_BLE_HCI (``tcp-client:127.0.0.1:PORT``, from
`VirtualRadio.hci_transport`). Scanners and clients of one process share one
Bumble host -- the "adapter" -- with one static random address for the life
of the process, opened while something uses it and closed after. Bonds made
by `pair()` are kept in memory for the life of the process, like a laptop's.

Behaviour, as the common bleak backends do it:
- `connect()` scans for a plain address first; it raises
  BleakDeviceNotFoundError when the device is not found and TimeoutError when
  the connection is not made within `timeout`; after connecting it exchanges
  the MTU (517 asked) and discovers all services.
- `disconnected_callback` is called once per connection on any link loss: a
  disconnect by the peripheral, our own `disconnect()`, a dropped link, the
  radio's transport going away.
- ATT errors raise `BleakGATTProtocolError` with the ATT code; a read or
  write refused with Insufficient Authentication/Encryption while we hold a
  bond for the device encrypts the link and retries once (BlueZ does so).
- A Security Request from the peripheral (its `gap_pair`) starts encryption
  with a stored bond, or Just Works pairing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import struct
import uuid as uuid_module
import weakref
from collections.abc import Callable
from typing import Any

from bleak.assigned_numbers import gatt_char_props_to_strs
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError
from bumble import att, core, hci, pairing
from bumble.core import AdvertisingData
from bumble.device import Connection, Device, DeviceConfiguration, Peer
from bumble.host import Host
from bumble.keys import MemoryKeyStore
from bumble.transport import open_transport

logger = logging.getLogger(__name__)

ENV_TRANSPORT = "DERMAROLL_BLE_HCI"
ASKED_MTU = 517

_default_radio: Any = None
_default_transport: str | None = None
# Per process: one identity and one bond store per radio/transport.
_identities: dict[str, hci.Address] = {}
_keystores: dict[str, MemoryKeyStore] = {}
# Open adapters, per event loop and radio/transport.
_adapters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Adapter]] = (
    weakref.WeakKeyDictionary()
)


def use_radio(radio: Any) -> None:
    """Reach `radio` (a started VirtualRadio in this process) from bleak; None to forget it."""
    global _default_radio
    _default_radio = radio


def use_transport(spec: str | None) -> None:
    """Reach a radio in another process through a Bumble transport spec; None to forget it."""
    global _default_transport
    _default_transport = spec


def _target() -> tuple[str, Any]:
    if _default_radio is not None:
        return "radio:%x" % id(_default_radio), _default_radio
    spec = _default_transport or os.environ.get(ENV_TRANSPORT)
    if not spec:
        raise BleakError(
            "no virtual radio: call dermaroll.board.bleak_backend.use_radio()/use_transport() "
            "or set %s=tcp-client:127.0.0.1:PORT" % ENV_TRANSPORT
        )
    return spec, spec


@dataclasses.dataclass
class BumbleDeviceDetails:
    """`BLEDevice.details` for this backend."""

    address: hci.Address


class _Adapter:
    """A Bumble host (central) on one controller of the virtual link."""

    def __init__(self, key: str, target: Any) -> None:
        self.key = key
        self.target = target
        self.users = 0
        self.transport: Any = None
        self.device: Device | None = None
        self.scanners: set[Any] = set()
        self.scan_active = False
        self.opened = asyncio.Event()
        self.error: BaseException | None = None

    async def open(self) -> None:
        try:
            if isinstance(self.target, str):
                self.transport = await open_transport(self.target)
                source, sink = self.transport.source, self.transport.sink
            else:
                source, sink = self.target.open_host_transport()
                self.controller = source
            identity = _identities.setdefault(self.key, hci.Address.generate_static_address())
            config = DeviceConfiguration(name="dermaroll host", address=identity)
            device = Device(config=config, host=Host(source, sink))
            device.keystore = _keystores.setdefault(self.key, MemoryKeyStore())
            device.pairing_config_factory = lambda connection: pairing.PairingConfig(
                sc=True,
                mitm=False,
                bonding=True,
                delegate=pairing.PairingDelegate(
                    pairing.PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT
                ),
                # Our identity is the static address we connect with, so the board
                # finds the bond again on the next connection.
                identity_address_type=pairing.PairingConfig.AddressType.RANDOM,
            )
            await device.power_on()
            device.keystore = _keystores[self.key]
            self.device = device
        except BaseException as e:
            self.error = e
            raise
        finally:
            self.opened.set()

    async def close(self) -> None:
        device, self.device = self.device, None
        if device is not None:
            for connection in list(device.connections.values()):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.disconnect(), 2)
        if self.transport is not None:
            with contextlib.suppress(Exception):
                await self.transport.close()
        elif hasattr(self, "controller") and hasattr(self.target, "remove_host_controller"):
            self.target.remove_host_controller(self.controller)

    async def update_scanning(self) -> None:
        assert self.device is not None
        want = bool(self.scanners)
        active = any(s._active for s in self.scanners)
        if self.device.is_scanning and (not want or active != self.scan_active):
            await self.device.stop_scanning()
        if want and not self.device.is_scanning:
            await self.device.start_scanning(active=active, filter_duplicates=False)
            self.scan_active = active


async def _acquire() -> _Adapter:
    key, target = _target()
    open_adapters = _adapters.setdefault(asyncio.get_running_loop(), {})
    adapter = open_adapters.get(key)
    if adapter is None:
        adapter = _Adapter(key, target)
        open_adapters[key] = adapter
        adapter.users += 1
        try:
            await adapter.open()
        except BaseException:
            open_adapters.pop(key, None)
            raise
        return adapter
    adapter.users += 1
    await adapter.opened.wait()
    if adapter.error is not None:
        adapter.users -= 1
        raise BleakError("virtual radio unavailable: %s" % adapter.error)
    return adapter


async def _release(adapter: _Adapter) -> None:
    adapter.users -= 1
    if adapter.users > 0:
        return
    for open_adapters in list(_adapters.values()):
        if open_adapters.get(adapter.key) is adapter:
            del open_adapters[adapter.key]
    await adapter.close()


# ---------------------------------------------------------------------------
# Scanner
# ---------------------------------------------------------------------------


def _uuid_str(raw_le: bytes) -> str:
    """A bleak UUID string from little-endian 2/4/16 UUID bytes."""
    return str(uuid_module.UUID(bytes=core.UUID.from_bytes(bytes(raw_le)).uuid_128_bytes[::-1]))


def _parse_advertising(data: bytes) -> dict[str, Any]:
    name_complete = name_short = None
    uuids: list[str] = []
    manufacturer: dict[int, bytes] = {}
    service_data: dict[str, bytes] = {}
    tx_power = None
    for ad_type, value in AdvertisingData.from_bytes(data).ad_structures:
        value = bytes(value)
        if ad_type == 0x09:
            name_complete = value.decode("utf-8", "replace")
        elif ad_type == 0x08:
            name_short = value.decode("utf-8", "replace")
        elif ad_type in (0x02, 0x03, 0x04, 0x05, 0x06, 0x07):
            size = {0x02: 2, 0x03: 2, 0x04: 4, 0x05: 4, 0x06: 16, 0x07: 16}[ad_type]
            for i in range(0, len(value) - size + 1, size):
                uuids.append(_uuid_str(value[i : i + size]))
        elif ad_type == 0xFF and len(value) >= 2:
            manufacturer[struct.unpack_from("<H", value)[0]] = value[2:]
        elif ad_type in (0x16, 0x20, 0x21):
            size = {0x16: 2, 0x20: 4, 0x21: 16}[ad_type]
            if len(value) >= size:
                service_data[_uuid_str(value[:size])] = value[size:]
        elif ad_type == 0x0A and value:
            tx_power = struct.unpack("b", value[:1])[0]
    return {
        "local_name": name_complete if name_complete is not None else name_short,
        "service_uuids": uuids,
        "manufacturer_data": manufacturer,
        "service_data": service_data,
        "tx_power": tx_power,
    }


def _address_str(address: hci.Address) -> str:
    return str(address).split("/")[0]


class BleakScannerBumble(BaseBleakScanner):
    """bleak scanner backend on the virtual radio (see the module docstring)."""

    def __init__(
        self,
        detection_callback: Any,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._active = scanning_mode != "passive"
        self._adapter: _Adapter | None = None

    async def start(self) -> None:
        if self._adapter is not None:
            return
        self.seen_devices = {}
        adapter = await _acquire()
        self._adapter = adapter
        assert adapter.device is not None
        adapter.device.on(adapter.device.EVENT_ADVERTISEMENT, self._on_advertisement)
        adapter.scanners.add(self)
        try:
            await adapter.update_scanning()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        adapter, self._adapter = self._adapter, None
        if adapter is None:
            return
        adapter.scanners.discard(self)
        if adapter.device is not None:
            adapter.device.remove_listener(
                adapter.device.EVENT_ADVERTISEMENT, self._on_advertisement
            )
            with contextlib.suppress(Exception):
                await adapter.update_scanning()
        await _release(adapter)

    def _on_advertisement(self, advertisement: Any) -> None:
        parsed = _parse_advertising(bytes(advertisement.data))
        if not self.is_allowed_uuid(parsed["service_uuids"]):
            return
        address = advertisement.address
        adv = AdvertisementData(
            local_name=parsed["local_name"],
            manufacturer_data=parsed["manufacturer_data"],
            service_data=parsed["service_data"],
            service_uuids=parsed["service_uuids"],
            tx_power=parsed["tx_power"],
            rssi=advertisement.rssi,
            platform_data=(advertisement,),
        )
        device = self.create_or_update_device(
            str(address),
            _address_str(address),
            parsed["local_name"],
            BumbleDeviceDetails(address),
            adv,
        )
        self.call_detection_callbacks(device, adv)


# ---------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------


def _is_auth_error(code: int) -> bool:
    return code in (0x05, 0x0F)


class BleakClientBumble(BaseBleakClient):
    """bleak client backend on the virtual radio (see the module docstring)."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        services: set[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._peer_address: hci.Address | None = None
        self._name: str | None = None
        if isinstance(address_or_ble_device, BLEDevice):
            details = address_or_ble_device.details
            if isinstance(details, BumbleDeviceDetails):
                self._peer_address = details.address
            self._name = address_or_ble_device.name
        self._service_filter = services
        self._adapter: _Adapter | None = None
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._subscriptions: dict[int, Callable[[bytes], None]] = {}

    # -- connection ------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name or self.address

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection is not None else 23

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if self._connection is not None:
            return
        timeout = float(kwargs.get("timeout", self._timeout))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._peer_address is None:
            from bleak import BleakScanner

            device = await BleakScanner.find_device_by_address(
                self.address, timeout, backend=BleakScannerBumble
            )
            if device is None:
                raise BleakDeviceNotFoundError(
                    self.address, "Device with address %s was not found." % self.address
                )
            self._peer_address = device.details.address
            self._name = self._name or device.name
        adapter = await _acquire()
        self._adapter = adapter
        try:
            assert adapter.device is not None
            remaining = max(deadline - loop.time(), 0.01)
            try:
                connection = await adapter.device.connect(
                    self._peer_address, transport=core.PhysicalTransport.LE, timeout=remaining
                )
            except (core.TimeoutError, core.ConnectionError, TimeoutError) as e:
                raise TimeoutError(
                    "could not connect to %s within %.1f s" % (self.address, timeout)
                ) from e
            self._attach(connection)
            try:
                # MTU exchange, pairing and discovery also count against `timeout`.
                async with asyncio.timeout_at(max(deadline, loop.time() + 1.0)):
                    await self._setup(connection, pair)
            except BaseException:
                with contextlib.suppress(Exception):
                    await connection.disconnect()
                raise
        except BaseException:
            if self._connection is None and self._adapter is adapter:
                self._adapter = None
                await _release(adapter)
            raise

    def _attach(self, connection: Connection) -> None:
        self._connection = connection
        self._peer = Peer(connection)
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)
        connection.on(connection.EVENT_SECURITY_REQUEST, self._on_security_request)

    async def _setup(self, connection: Connection, pair: bool) -> None:
        assert self._peer is not None
        await self._request(self._peer.request_mtu(ASKED_MTU))
        if pair:
            await self.pair()
        self.services = await self._discover()

    def _on_disconnection(self, reason: int) -> None:
        connection, self._connection = self._connection, None
        self._peer = None
        self._subscriptions = {}
        adapter, self._adapter = self._adapter, None
        if connection is None:
            return
        if adapter is not None:
            asyncio.ensure_future(_release(adapter))
        if self._disconnected_callback is not None:
            try:
                self._disconnected_callback()
            except Exception:
                logger.exception("disconnected_callback failed")

    def _on_security_request(self, auth_req: int) -> None:
        connection = self._connection
        if connection is not None:
            asyncio.ensure_future(self._secure(connection))

    async def _secure(self, connection: Connection) -> None:
        try:
            if await self._bond_keys(connection) is not None:
                await connection.encrypt()
            else:
                await connection.pair()
        except Exception as e:
            logger.warning("security request from %s failed: %s", self.address, e)

    async def _bond_keys(self, connection: Connection) -> Any:
        keystore = connection.device.keystore
        return None if keystore is None else await keystore.get(str(connection.peer_address))

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        with contextlib.suppress(Exception):
            await connection.disconnect()
        # The disconnection event has run (it precedes disconnect()'s return).
        if self._connection is connection:
            self._on_disconnection(hci.HCI_ErrorCode.CONNECTION_TERMINATED_BY_LOCAL_HOST_ERROR)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        connection = self._require()
        try:
            if connection.is_encrypted:
                return
            if await self._bond_keys(connection) is not None:
                await connection.encrypt()
            else:
                await connection.pair()
        except (core.BaseBumbleError, hci.HCI_Error) as e:
            raise BleakError("pairing with %s failed: %s" % (self.address, e)) from e

    async def unpair(self) -> None:
        key, _ = _target()
        keystore = _keystores.get(key)
        if keystore is not None and self._peer_address is not None:
            with contextlib.suppress(KeyError):
                await keystore.delete(str(self._peer_address))

    def _require(self) -> Connection:
        if self._connection is None:
            raise BleakError("Not connected")
        return self._connection

    async def _request(self, awaitable: Any) -> Any:
        """Await a GATT procedure; a disconnection becomes BleakError, not a cancellation."""
        try:
            return await awaitable
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise BleakError("disconnected from %s" % self.address) from None
        except att.ATT_Error as e:
            raise BleakGATTProtocolError(e.error_code) from e
        except core.TimeoutError as e:
            raise TimeoutError(str(e)) from e

    async def _with_security(self, make: Callable[[], Any]) -> Any:
        try:
            return await self._request(make())
        except BleakGATTProtocolError as e:
            connection = self._connection
            if (
                connection is None
                or not _is_auth_error(int(e.code))
                or connection.is_encrypted
                or await self._bond_keys(connection) is None
            ):
                raise
            try:
                await connection.encrypt()
            except (core.BaseBumbleError, hci.HCI_Error):
                raise e from None
            return await self._request(make())

    # -- services --------------------------------------------------------------

    async def _discover(self) -> BleakGATTServiceCollection:
        assert self._peer is not None and self._connection is not None
        peer, connection = self._peer, self._connection
        collection = BleakGATTServiceCollection()
        await self._request(peer.discover_services())
        for service in peer.services:
            service_uuid = _uuid_str(service.uuid.to_bytes())
            if self._service_filter and service_uuid not in self._service_filter:
                continue
            bservice = BleakGATTService(service, service.handle, service_uuid)
            collection.add_service(bservice)
            await self._request(service.discover_characteristics())
            for characteristic in service.characteristics:
                bchar = BleakGATTCharacteristic(
                    characteristic,
                    characteristic.handle,
                    _uuid_str(characteristic.uuid.to_bytes()),
                    sorted(gatt_char_props_to_strs(int(characteristic.properties))),
                    lambda: connection.att_mtu - 3,
                    bservice,
                )
                collection.add_characteristic(bchar)
                await self._request(characteristic.discover_descriptors())
                for descriptor in characteristic.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            descriptor,
                            descriptor.handle,
                            _uuid_str(descriptor.type.to_bytes()),
                            bchar,
                        )
                    )
        return collection

    # -- I/O ---------------------------------------------------------------------

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        self._require()
        proxy = characteristic.obj
        return bytearray(await self._with_security(lambda: proxy.read_value()))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        self._require()
        proxy = descriptor.obj
        return bytearray(await self._with_security(lambda: proxy.read_value()))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        self._require()
        proxy, value = characteristic.obj, bytes(data)
        await self._with_security(lambda: proxy.write_value(value, with_response=response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        self._require()
        proxy, value = descriptor.obj, bytes(data)
        await self._with_security(lambda: proxy.write_value(value, with_response=True))

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        self._require()
        proxy = characteristic.obj

        def subscriber(value: bytes) -> None:
            callback(bytearray(value))

        old = self._subscriptions.pop(characteristic.handle, None)
        if old is not None:
            await self._request(proxy.unsubscribe(old))
        self._subscriptions[characteristic.handle] = subscriber
        prefer_notify = "notify" in characteristic.properties
        await self._with_security(lambda: proxy.subscribe(subscriber, prefer_notify=prefer_notify))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._require()
        subscriber = self._subscriptions.pop(characteristic.handle, None)
        await self._request(characteristic.obj.unsubscribe(subscriber, force=subscriber is None))
