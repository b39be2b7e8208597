"""The virtual board's radio: Bumble controllers on one link, the board's BLE stack, the bridge.

One `VirtualRadio` per board, owned by the board runner (or a test):

- a Bumble `LocalLink` with the **board's controller** (a public address, legacy
  advertising only, like the ESP32's) and, on demand, **host controllers**:
  one per host attached in-process (`open_host_transport()`, used by
  `dermaroll.board.bleak_backend`) or per TCP connection to the HCI port
  (`hci_transport`, ``tcp-client:127.0.0.1:PORT``, for hosts in other
  processes -- any Bumble host, e.g. bleak with the Bumble backend);
- the board's BLE host stack: a Bumble `Device` whose ATT server, advertising
  and security manager behave as NimBLE does under MicroPython on the ESP32
  (attribute layout and handles, permission checks and their ATT errors,
  CCCDs, MTU, Just Works / passkey pairing, bonds kept by the *application*
  through `_IRQ_GET_SECRET` / `_IRQ_SET_SECRET`);
- the **bridge**: a unix-domain socket (``device_env`` gives the environment
  variable for the MicroPython process) that the board's `bluetooth` module
  (host/dermaroll/board/device/bluetooth.py) connects to.

Wire between the two processes (both directions): frames of one kind byte,
a little-endian u32 length and a UTF-8 JSON object; bytes travel as hex.

- device -> radio ``C`` (call): ``{"op": ..., "id": n, ...}``; the radio
  answers each call that has an ``id`` with ``R`` ``{"id": n, "err": errno,
  ...}`` (calls without ``id`` are one-way: ``update``). Ops: ``active``,
  ``name``, ``mtu``, ``addr_mode``, ``security``, ``adv``, ``register``,
  ``notify``, ``indicate``, ``update``, ``disconnect``, ``pair``, ``passkey``.
- radio -> device ``E`` (event): ``{"e": irq, "a": [...], "epoch": n}``
  (``"addr"`` for events carrying an address, ``"v"`` for written data). With
  ``"q": id`` it is a question (read request, write, secrets) and the device
  answers ``A`` ``{"q": id, ...}``. Events of an older ``epoch`` (before the
  last ``active`` call) are dropped by the device.

Timing model: notifications and indications wait in a per-connection queue
and leave it at most `tx_per_event` per connection event (`tx_interval`
seconds); a queued PDU holds one of `tx_buffers` buffers shared by the board
(NimBLE's mbuf pool), so `gatts_notify`/`gatts_indicate` raise
OSError(ENOMEM) when they are all in use; an indication also holds one of
`indicate_procs` GATT procedures until its confirmation. Nothing else is
paced: the link delivers in order without loss, except when a fault is
injected with `drop_link()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import os
import secrets
import struct
import tempfile
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from bumble import att, gatt, hci, pairing, smp
from bumble.controller import Controller, LegacyAdvertiser
from bumble.device import AdvertisingType, Connection, Device, DeviceConfiguration
from bumble.device import LegacyAdvertiser as DeviceLegacyAdvertiser
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink, StreamPacketSource

logger = logging.getLogger(__name__)

# Characteristic flags (MicroPython's = NimBLE's).
F_READ = 0x0002
F_WRITE_NO_RESPONSE = 0x0004
F_WRITE = 0x0008
F_NOTIFY = 0x0010
F_INDICATE = 0x0020
F_READ_ENCRYPTED = 0x0200
F_READ_AUTHENTICATED = 0x0400
F_READ_AUTHORIZED = 0x0800
F_WRITE_ENCRYPTED = 0x1000
F_WRITE_AUTHENTICATED = 0x2000
F_WRITE_AUTHORIZED = 0x4000

# IRQ event codes.
IRQ_CENTRAL_CONNECT = 1
IRQ_CENTRAL_DISCONNECT = 2
IRQ_GATTS_WRITE = 3
IRQ_GATTS_READ_REQUEST = 4
IRQ_GATTS_INDICATE_DONE = 20
IRQ_MTU_EXCHANGED = 21
IRQ_CONNECTION_UPDATE = 27
IRQ_ENCRYPTION_UPDATE = 28
IRQ_GET_SECRET = 29
IRQ_SET_SECRET = 30
IRQ_PASSKEY_ACTION = 31

PASSKEY_ACTION_INPUT = 2
PASSKEY_ACTION_DISPLAY = 3
PASSKEY_ACTION_NUMERIC_COMPARISON = 4

SECRET_OUR = 1
SECRET_PEER = 2
SECRET_LEN = 80

# NimBLE status codes the port reports as they are.
BLE_HS_ETIMEOUT = 13
BLE_HS_ENOTCONN = 7
EBUSY = 16
HCI_CONNECTION_TIMEOUT = 0x08
HCI_REMOTE_USER_TERMINATED = 0x13
ATT_UNLIKELY = 0x0E
DEFAULT_MTU = 256  # ESP-IDF's CONFIG_BT_NIMBLE_ATT_PREFERRED_MTU
SMP_TIMEOUT = 30.0

_KIND_CALL = ord("C")
_KIND_ANSWER = ord("A")
_KIND_REPLY = ord("R")
_KIND_EVENT = ord("E")
_HEADER = struct.Struct("<BI")

_UUID_PRIMARY = gatt.GATT_PRIMARY_SERVICE_ATTRIBUTE_TYPE
_UUID_CCCD = gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR


class NoAnswer(Exception):
    """The device did not answer a question (not running, inactive, or too slow)."""


# ---------------------------------------------------------------------------
# Controllers and the link
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class AdvertisingPdu:
    """A legacy advertising event on the virtual link, with its scan response."""

    advertiser_address: hci.Address
    adv_type: int  # HCI advertising type: 0 ADV_IND, 2 ADV_SCAN_IND, 3 ADV_NONCONN_IND
    data: bytes
    scan_response: bytes


class _BoardAdvertiser(LegacyAdvertiser):
    """Legacy advertising as a real controller does it: every type, the real interval,
    the scan response (Bumble's own advertiser only sends ADV_IND and no scan response)."""

    def _on_timer_fired(self) -> None:
        self.send_advertising_data()
        interval = max(self.advertising_interval_min * 0.625 / 1000.0, 0.01)
        self.timer_handle = asyncio.get_running_loop().call_later(interval, self._on_timer_fired)

    def send_advertising_data(self) -> None:
        if not self.enabled:
            return
        self.controller.send_advertising_pdu(
            AdvertisingPdu(  # type: ignore[arg-type]
                advertiser_address=self.address,
                adv_type=self.advertising_type,
                data=bytes(self.advertising_data),
                scan_response=bytes(self.scan_response_data),
            )
        )


class BoardController(Controller):
    """The ESP32's controller: legacy advertising only, so the host uses legacy commands."""

    le_features = Controller.le_features & ~hci.LeFeatureMask.LE_EXTENDED_ADVERTISING

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.le_legacy_advertiser = _BoardAdvertiser(self)


class HostController(Controller):
    """A laptop's controller on the link: reports the board's advertising faithfully and
    completes a cancelled connection attempt (Bumble's leaves it pending forever)."""

    def on_ll_advertising_pdu(self, packet: Any) -> None:
        if isinstance(packet, AdvertisingPdu):
            self._on_board_advertising(packet)
        else:
            super().on_ll_advertising_pdu(packet)

    def _on_board_advertising(self, pdu: AdvertisingPdu) -> None:
        connectable = pdu.adv_type == 0
        scannable = pdu.adv_type in (0, 2)
        if self.le_scan_enable:
            extended = bool(self.le_features & hci.LeFeatureMask.LE_EXTENDED_ADVERTISING)
            self._report(pdu.advertiser_address, pdu.adv_type, pdu.data, extended, False)
            if scannable and self.le_scan_type == 1:
                self._report(
                    pdu.advertiser_address, pdu.adv_type, pdu.scan_response, extended, True
                )
        pending = self.pending_le_connection
        if connectable and pending and pending.peer_address == pdu.advertiser_address:
            self.create_le_connection(pdu.advertiser_address)

    def _report(
        self, address: hci.Address, adv_type: int, data: bytes, extended: bool, response: bool
    ) -> None:
        if extended:
            ev = hci.HCI_LE_Extended_Advertising_Report_Event.EventType
            event_type = ev.LEGACY_ADVERTISING_PDU_USED
            if adv_type == 0:
                event_type |= ev.CONNECTABLE_ADVERTISING | ev.SCANNABLE_ADVERTISING
            elif adv_type == 2:
                event_type |= ev.SCANNABLE_ADVERTISING
            if response:
                event_type |= ev.SCAN_RESPONSE
            report = hci.HCI_LE_Extended_Advertising_Report_Event.Report(
                event_type=event_type,
                address_type=address.address_type,
                address=address,
                primary_phy=hci.Phy.LE_1M,
                secondary_phy=0,
                advertising_sid=0xFF,
                tx_power=0x7F,
                rssi=-50,
                periodic_advertising_interval=0,
                direct_address_type=0,
                direct_address=hci.Address.ANY,
                data=data,
            )
            self.send_hci_packet(hci.HCI_LE_Extended_Advertising_Report_Event([report]))
        else:
            legacy = hci.HCI_LE_Advertising_Report_Event.EventType
            legacy_report = hci.HCI_LE_Advertising_Report_Event.Report(
                event_type=legacy.SCAN_RSP if response else legacy(adv_type),
                address_type=address.address_type,
                address=address,
                data=data,
                rssi=-50,
            )
            self.send_hci_packet(hci.HCI_LE_Advertising_Report_Event([legacy_report]))

    def on_hci_le_set_extended_scan_parameters_command(self, command: Any) -> Any:
        self.le_scan_type = command.scan_types[0] if command.scan_types else 0
        return super().on_hci_le_set_extended_scan_parameters_command(command)

    def on_hci_le_create_connection_cancel_command(self, command: Any) -> Any:
        pending = self.pending_le_connection
        if pending is not None:
            self.pending_le_connection = None
            self.send_hci_packet(
                hci.HCI_LE_Connection_Complete_Event(
                    status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
                    connection_handle=0,
                    role=hci.Role.CENTRAL,
                    peer_address_type=pending.peer_address_type,
                    peer_address=pending.peer_address,
                    connection_interval=0,
                    peripheral_latency=0,
                    supervision_timeout=0,
                    central_clock_accuracy=0,
                )
            )
        return super().on_hci_le_create_connection_cancel_command(command)


class RadioLink(LocalLink):
    """Bumble's LocalLink, except that ACL data carries the sender's *connection* address
    (Bumble's uses the sender's random address, which breaks public-address peripherals)."""

    def send_acl_data(
        self,
        sender_controller: Controller,
        destination_address: hci.Address,
        transport: Any,
        data: bytes,
    ) -> None:
        connection = sender_controller.le_connections.get(destination_address)
        destination = self.find_le_controller(destination_address)
        if connection is None or destination is None:
            super().send_acl_data(sender_controller, destination_address, transport, data)
            return
        source = connection.self_address
        asyncio.get_running_loop().call_soon(
            lambda: destination.on_link_acl_data(source, transport, data)
        )


def drop_connections(
    controller: Controller, reason: int = HCI_CONNECTION_TIMEOUT, handle: int | None = None
) -> int:
    """End the LE connections of `controller` (all, or the one with `handle`) on both
    sides without any LL exchange, as a supervision timeout does. Returns how many."""
    dropped = 0
    for connection in list(controller.le_connections.values()):
        if handle is not None and connection.handle != handle:
            continue
        peer = controller.link.find_le_controller(connection.peer_address)
        if peer is not None:
            peer_connection = peer.le_connections.get(connection.self_address)
            if peer_connection is not None:
                peer.on_le_disconnected(peer_connection, reason)
        controller.on_le_disconnected(connection, reason)
        dropped += 1
    return dropped


# ---------------------------------------------------------------------------
# Bonds: NimBLE's ble_store_value_sec, as an opaque 80-byte blob
# ---------------------------------------------------------------------------


def secret_key(address: hci.Address) -> bytes:
    """The 7-byte key NimBLE stores secrets under: address type, then the address (LE)."""
    return bytes([int(address.address_type) & 1]) + bytes(address)


def pack_secret(
    address: hci.Address,
    *,
    ltk: bytes | None = None,
    ediv: int = 0,
    rand: bytes = bytes(8),
    irk: bytes | None = None,
    csrk: bytes | None = None,
    key_size: int = 16,
    authenticated: bool = False,
    sc: bool = False,
) -> bytes:
    flags = (
        (ltk is not None)
        | (irk is not None) << 1
        | (csrk is not None) << 2
        | authenticated << 3
        | sc << 4
    )
    blob = (
        secret_key(address)
        + struct.pack("<BH", key_size, ediv)
        + rand.ljust(8, b"\0")[:8]
        + (ltk or bytes(16))
        + (irk or bytes(16))
        + (csrk or bytes(16))
        + bytes([flags])
    )
    return blob.ljust(SECRET_LEN, b"\0")


@dataclasses.dataclass
class Secret:
    key: bytes
    key_size: int
    ediv: int
    rand: bytes
    ltk: bytes | None
    irk: bytes | None
    csrk: bytes | None
    authenticated: bool
    sc: bool


def unpack_secret(blob: bytes | None) -> Secret | None:
    """A stored bond, or None when absent or not ours (NimBLE checks the length only)."""
    if blob is None or len(blob) != SECRET_LEN:
        return None
    key_size, ediv = struct.unpack_from("<BH", blob, 7)
    flags = blob[66]
    return Secret(
        key=blob[:7],
        key_size=key_size,
        ediv=ediv,
        rand=blob[10:18],
        ltk=blob[18:34] if flags & 1 else None,
        irk=blob[34:50] if flags & 2 else None,
        csrk=blob[50:66] if flags & 4 else None,
        authenticated=bool(flags & 8),
        sc=bool(flags & 16),
    )


# ---------------------------------------------------------------------------
# The attribute database
# ---------------------------------------------------------------------------


class _BoardAttribute:
    """Mixin: reads and writes go through the radio, with NimBLE's checks and IRQs."""

    radio: VirtualRadio
    ble_flags: int
    device_backed: bool
    local_value: bytes | None

    async def read_value(self, bearer: att.Bearer) -> bytes:
        return await self.radio._att_read(bearer, self)

    async def write_value(self, bearer: att.Bearer, value: bytes) -> None:
        await self.radio._att_write(bearer, self, value)


class _ValueAttribute(_BoardAttribute, gatt.Characteristic):
    pass


class _DescriptorAttribute(_BoardAttribute, gatt.Descriptor):
    pass


class _Cccd(gatt.Descriptor):
    """A CCCD: per-connection, never reported to the application, not persisted."""

    def __init__(self, server: Any, characteristic: gatt.Characteristic) -> None:
        super().__init__(_UUID_CCCD, att.Attribute.READABLE | att.Attribute.WRITEABLE)
        self.server = server
        self.characteristic = characteristic

    async def read_value(self, bearer: att.Bearer) -> bytes:
        return self.server.read_cccd(bearer, self.characteristic)

    async def write_value(self, bearer: att.Bearer, value: bytes) -> None:
        if len(value) != 2:
            raise att.ATT_Error(error_code=0x0D, att_handle=self.handle)
        self.server.write_cccd(bearer, self.characteristic, bytes(value))


def _uuid(hex_le: str) -> Any:
    from bumble.core import UUID

    return UUID.from_bytes(bytes.fromhex(hex_le))


def _properties(flags: int) -> gatt.Characteristic.Properties:
    props = flags & 0x7F
    if flags & 0x0180:
        props |= 0x80
    return gatt.Characteristic.Properties(props)


# ---------------------------------------------------------------------------
# Per-connection state
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class _TxItem:
    indicate: bool
    handle: int
    value: bytes


class _Conn:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.handle = connection.handle
        self.queue: deque[_TxItem] = deque()
        self.wake = asyncio.Event()
        self.modified: dict[int, None] = {}  # send_update handles, in order
        self.task: asyncio.Task[None] | None = None
        self.encrypted = False
        self.authenticated = False
        self.bonded = False
        self.key_size = 0
        self.restore: Secret | None = None
        self.pairing = False
        # Clear while a finished pairing's keys are stored: NimBLE stores them and reports
        # ENCRYPTION_UPDATE before it handles the next ATT request, so ATT waits for it.
        self.settled = asyncio.Event()
        self.settled.set()
        self.passkey: tuple[int, asyncio.Future[int]] | None = None
        self.indications_pending = 0  # queued, not yet sent
        self.in_flight: list[int] = []  # sent, awaiting confirmation
        self.closed = False


# ---------------------------------------------------------------------------
# Security manager glue
# ---------------------------------------------------------------------------


class _Delegate(pairing.PairingDelegate):
    """The board's side of pairing: NimBLE asks the application through PASSKEY_ACTION."""

    KEYS = (
        pairing.PairingDelegate.KeyDistribution.DISTRIBUTE_ENCRYPTION_KEY
        | pairing.PairingDelegate.KeyDistribution.DISTRIBUTE_IDENTITY_KEY
        | pairing.PairingDelegate.KeyDistribution.DISTRIBUTE_SIGNING_KEY
    )

    def __init__(self, radio: VirtualRadio, conn: _Conn, io: int) -> None:
        super().__init__(
            io_capability=pairing.PairingDelegate.IoCapability(io),
            local_initiator_key_distribution=self.KEYS,
            local_responder_key_distribution=self.KEYS,
        )
        self.radio = radio
        self.conn = conn

    async def accept(self) -> bool:
        await self.radio._repeat_pairing_check(self.conn)
        self.conn.pairing = True
        return True

    async def confirm(self, auto: bool = False) -> bool:
        return True  # Just Works: NimBLE does not ask the application

    async def compare_numbers(self, number: int, digits: int) -> bool:
        answer = await self.radio._passkey_action(
            self.conn, PASSKEY_ACTION_NUMERIC_COMPARISON, number
        )
        return bool(answer)

    async def get_number(self) -> int | None:
        return await self.radio._passkey_action(self.conn, PASSKEY_ACTION_INPUT, 0)

    async def generate_passkey(self) -> int:
        answer = await self.radio._passkey_action(self.conn, PASSKEY_ACTION_DISPLAY, 0)
        if answer is None:  # no passkey from the application: one nobody knows
            return secrets.randbelow(1000000)
        return int(answer)

    async def display_number(self, number: int, digits: int) -> None:
        return None


class _SmpManager(smp.Manager):
    """Pairing results go to the application's secret store, then ENCRYPTION_UPDATE."""

    radio: VirtualRadio

    async def on_pairing(
        self, session: smp.Session, identity_address: hci.Address | None, keys: Any
    ) -> None:
        await self.radio._on_pairing(session, identity_address, keys)
        self.device.on_pairing(session.connection, identity_address, keys, session.sc)

    def on_pairing_failure(self, session: smp.Session, reason: Any) -> None:
        self.radio._on_pairing_failure(session.connection)
        super().on_pairing_failure(session, reason)


# ---------------------------------------------------------------------------
# The bridge session (one MicroPython process)
# ---------------------------------------------------------------------------


class _Session:
    def __init__(
        self, radio: VirtualRadio, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.radio = radio
        self.reader = reader
        self.writer = writer
        self.questions: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_question = 0
        self.calls: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.closed = asyncio.Event()

    def send(self, kind: int, obj: dict[str, Any]) -> None:
        if self.writer.is_closing():
            return
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.writer.write(_HEADER.pack(kind, len(body)) + body)

    async def run(self) -> None:
        worker = asyncio.create_task(self._call_worker())
        try:
            while True:
                header = await self.reader.readexactly(_HEADER.size)
                kind, size = _HEADER.unpack(header)
                msg = json.loads(await self.reader.readexactly(size))
                if kind == _KIND_ANSWER:
                    fut = self.questions.pop(msg.get("q"), None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                elif kind == _KIND_CALL:
                    self.calls.put_nowait(msg)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.calls.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            self.close()

    async def _call_worker(self) -> None:
        while (msg := await self.calls.get()) is not None:
            try:
                reply = await self.radio._handle_call(msg)
            except OSError as e:
                reply = {"err": e.errno or errno.EIO}
            except Exception:
                logger.exception("virtual radio: call %s failed", msg.get("op"))
                reply = {"err": errno.EIO}
            if "id" in msg:
                reply["id"] = msg["id"]
                self.send(_KIND_REPLY, reply)

    async def ask(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.closed.is_set():
            raise NoAnswer("the device is gone")
        self.next_question += 1
        q = self.next_question
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.questions[q] = fut
        msg["q"] = q
        self.send(_KIND_EVENT, msg)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise NoAnswer("no answer from the device in %.1f s" % timeout) from None
        finally:
            self.questions.pop(q, None)

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for fut in self.questions.values():
            if not fut.done():
                fut.set_exception(NoAnswer("the device is gone"))
        self.questions.clear()
        self.writer.close()


# ---------------------------------------------------------------------------
# The radio
# ---------------------------------------------------------------------------


class VirtualRadio:
    """A board's radio. Use as ``async with VirtualRadio() as radio:`` or start()/stop().

    Args:
        address: the board's public address (ESP32s have one), "XX:XX:XX:XX:XX:XX".
        socket_path: where the bridge listens; a fresh temporary path if None.
        hci_port: TCP port on 127.0.0.1 for hosts in other processes (0: any free
            port, None: no TCP transport).
        tx_buffers: notification/indication buffers shared by the board's connections.
        indicate_procs: indications that may await their confirmation at once.
        tx_interval, tx_per_event: connection event period (s) and PDUs sent per event.
        irq_timeout: how long a central waits for the device to answer a read request,
            a write or a secret before getting an ATT error (or the pairing failing).
        max_connections: the ESP32 port's limit.
    """

    def __init__(
        self,
        *,
        address: str = "24:0A:C4:00:00:01",
        socket_path: str | None = None,
        hci_port: int | None = 0,
        tx_buffers: int = 8,
        indicate_procs: int = 4,
        tx_interval: float = 0.0075,
        tx_per_event: int = 4,
        irq_timeout: float = 5.0,
        max_connections: int = 4,
    ) -> None:
        self.address = hci.Address(address, hci.Address.PUBLIC_DEVICE_ADDRESS)
        self._socket_path = socket_path
        self._tmpdir: str | None = None
        self._hci_port_requested = hci_port
        self.hci_port: int | None = None
        self.tx_buffers = tx_buffers
        self.indicate_procs = indicate_procs
        self.tx_interval = tx_interval
        self.tx_per_event = tx_per_event
        self.irq_timeout = irq_timeout
        self.max_connections = max_connections

        self.link: RadioLink | None = None
        self.controller: BoardController | None = None
        self.device: Device | None = None
        self._server: asyncio.AbstractServer | None = None
        self._hci_server: asyncio.AbstractServer | None = None
        self._session: _Session | None = None
        self._session_task: asyncio.Task[None] | None = None
        self._host_controllers: list[HostController] = []
        self._next_host = 1
        self._conns: dict[int, _Conn] = {}
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._hci_writers: set[asyncio.StreamWriter] = set()
        self.device_attached = asyncio.Event()
        self.epoch = -1
        self._reset_state()

    def _reset_state(self) -> None:
        """The stack is off. A new epoch: the device drops events from before."""
        self.active = False
        self.epoch += 1
        self.gap_name = b"MPY ESP32"
        self.mtu = DEFAULT_MTU
        self.irk = bytes(16)
        self.security = {"bond": False, "mitm": False, "le_secure": True, "io": 3}
        self.buffers_used = 0
        self.procs_used = 0
        self.adv_data = b""
        self.resp_data = b""
        self.advertising = False
        self.own_address: hci.Address = self.address

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        self.link = RadioLink()
        self.controller = BoardController("board", link=self.link, public_address=self.address)
        host = Host(self.controller, AsyncPipeSink(self.controller))
        config = DeviceConfiguration(
            name="MPY ESP32", gap_service_enabled=False, gatt_service_enabled=False
        )
        device = Device(config=config, host=host)
        manager = _SmpManager(device, pairing_config_factory=self._pairing_config)
        manager.radio = self
        device.smp_manager = manager
        device.on(device.EVENT_CONNECTION, self._on_connection)
        await device.power_on()
        host.long_term_key_provider = self._long_term_key
        self.device = device
        self._build_db([])

        if self._socket_path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="drble-")
            self._socket_path = os.path.join(self._tmpdir, "radio.sock")
        self._server = await asyncio.start_unix_server(self._on_device, path=self._socket_path)
        if self._hci_port_requested is not None:
            self._hci_server = await asyncio.start_server(
                self._on_hci_client, host="127.0.0.1", port=self._hci_port_requested
            )
            self.hci_port = self._hci_server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close everything: the device's socket, TCP hosts, connections, the temp dir."""
        for server in (self._server, self._hci_server):
            if server is not None:
                server.close()
        if self._session is not None:
            self._session.close()
        if self._session_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._session_task
        for conn in list(self._conns.values()):
            self._forget(conn)
        if self.controller is not None:
            drop_connections(self.controller)
        for controller in list(self._host_controllers):
            self.remove_host_controller(controller)
        for writer in list(self._hci_writers):
            writer.close()
        for server in (self._server, self._hci_server):
            if server is not None:
                with contextlib.suppress(Exception):
                    await server.wait_closed()
        if self._socket_path and os.path.exists(self._socket_path):
            os.unlink(self._socket_path)
        if self._tmpdir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._tmpdir)
        await asyncio.sleep(0)

    async def __aenter__(self) -> VirtualRadio:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- public API ----------------------------------------------------------

    @property
    def socket_path(self) -> str:
        assert self._socket_path is not None, "start() first"
        return self._socket_path

    @property
    def device_env(self) -> dict[str, str]:
        """Environment for the MicroPython process, so its `bluetooth` finds this radio."""
        return {"DERMAROLL_BLE": "unix:" + self.socket_path}

    @property
    def hci_transport(self) -> str:
        """Bumble transport spec for a host in another process."""
        if self.hci_port is None:
            raise RuntimeError("this radio has no TCP HCI transport")
        return "tcp-client:127.0.0.1:%d" % self.hci_port

    @property
    def connections(self) -> list[int]:
        """Handles of the board's current connections."""
        return sorted(self._conns)

    def add_listener(self, callback: Callable[[str, dict[str, Any]], None]) -> Callable[[], None]:
        """Observe the radio: callback(kind, info) for "device" (attached/detached),
        "connection", "disconnection", "advertising" and "event" (every IRQ sent to
        the device). Returns a function that removes the listener."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    async def drop_link(self, conn_handle: int | None = None) -> int:
        """Fault: lose the radio link (one connection, or all) as a supervision timeout
        does -- both sides see a disconnection with reason 0x08, nothing is exchanged.
        Returns how many connections were dropped."""
        assert self.controller is not None
        dropped = drop_connections(self.controller, HCI_CONNECTION_TIMEOUT, conn_handle)
        # Let both hosts process their Disconnection Complete events.
        for _ in range(3):
            await asyncio.sleep(0)
        return dropped

    def new_host_controller(self) -> HostController:
        """A fresh controller on the link for one host (unique public address)."""
        assert self.link is not None, "start() first"
        address = "C0:DE:00:00:%02X:%02X" % (self._next_host >> 8 & 0xFF, self._next_host & 0xFF)
        self._next_host += 1
        controller = HostController(
            "host%d" % self._next_host, link=self.link, public_address=address
        )
        self._host_controllers.append(controller)
        return controller

    def remove_host_controller(self, controller: HostController) -> None:
        """Unplug a host's controller: its connections drop (reason 0x08 on the board)."""
        drop_connections(controller)
        if controller in self._host_controllers:
            self._host_controllers.remove(controller)
        if self.link is not None and controller in self.link.controllers:
            self.link.remove_controller(controller)

    def open_host_transport(self) -> tuple[Any, Any]:
        """(source, sink) for a Bumble `Host` in this process, on a new host controller."""
        controller = self.new_host_controller()
        return controller, AsyncPipeSink(controller)

    async def wait_device(self, timeout: float = 10.0) -> None:
        """Wait until the MicroPython process has connected to the bridge."""
        await asyncio.wait_for(self.device_attached.wait(), timeout)

    # -- listeners -------------------------------------------------------------

    def _notify(self, kind: str, info: dict[str, Any]) -> None:
        for callback in list(self._listeners):
            try:
                callback(kind, info)
            except Exception:
                logger.exception("virtual radio listener failed")

    # -- TCP HCI transport ------------------------------------------------------

    async def _on_hci_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        controller = self.new_host_controller()
        source = StreamPacketSource()
        source.set_packet_sink(controller)

        class _Sink:
            def on_packet(self, packet: bytes) -> None:
                if not writer.is_closing():
                    writer.write(packet)

        controller.host = _Sink()
        self._hci_writers.add(writer)
        try:
            while data := await reader.read(65536):
                source.data_received(data)
        except (ConnectionError, OSError):
            pass
        finally:
            self._hci_writers.discard(writer)
            controller.host = None
            self.remove_host_controller(controller)
            writer.close()

    # -- the device session -------------------------------------------------------

    async def _on_device(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._session is not None:
            self._session.close()  # a new process replaces the old one
        session = _Session(self, reader, writer)
        self._session = session
        self._session_task = asyncio.current_task()
        self.device_attached.set()
        self._notify("device", {"attached": True})
        try:
            await session.run()
        finally:
            if self._session is session:
                self._session = None
                self.device_attached.clear()
                await self._power_off(graceful=False)
                self._notify("device", {"attached": False})

    def _emit(self, event: int, args: list[Any], **extra: Any) -> None:
        if self._session is None or not self.active:
            return
        msg = {"e": event, "a": args, "epoch": self.epoch, **extra}
        self._notify("event", dict(msg))
        self._session.send(_KIND_EVENT, msg)

    async def _ask(self, event: int, args: list[Any], **extra: Any) -> dict[str, Any]:
        if self._session is None or not self.active:
            raise NoAnswer("the device is not running")
        msg = {"e": event, "a": args, "epoch": self.epoch, **extra}
        self._notify("event", dict(msg))
        return await self._session.ask(msg, self.irq_timeout)

    async def _get_secret(self, sec_type: int, index: int, key: bytes | None) -> bytes | None:
        try:
            answer = await self._ask(
                IRQ_GET_SECRET, [sec_type, index, None if key is None else key.hex()]
            )
        except NoAnswer:
            return None
        value = answer.get("v")
        return None if value is None else bytes.fromhex(value)

    async def _set_secret(self, sec_type: int, key: bytes, value: bytes | None) -> bool:
        try:
            answer = await self._ask(
                IRQ_SET_SECRET, [sec_type, key.hex(), None if value is None else value.hex()]
            )
        except NoAnswer:
            return False
        return bool(answer.get("r"))

    async def _delete_secret(self, sec_type: int, key: bytes) -> None:
        # ble_store_util_delete_all: delete until the store says there is nothing left.
        for _ in range(16):
            if not await self._set_secret(sec_type, key, None):
                return

    # -- calls from the device ----------------------------------------------------------

    async def _handle_call(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg.get("op")
        handler = getattr(self, "_op_" + str(op), None)
        if handler is None:
            return {"err": errno.EINVAL}
        return await handler(msg)

    async def _op_active(self, msg: dict[str, Any]) -> dict[str, Any]:
        await self._power_off(graceful=True)
        if not msg.get("on"):
            return {}
        self.active = True
        self.gap_name = bytes.fromhex(msg.get("name", ""))
        self.mtu = int(msg.get("mtu", DEFAULT_MTU))
        self.irk = bytes.fromhex(msg.get("irk", "")) or bytes(16)
        self.security.update(msg.get("security", {}))
        assert self.device is not None
        self.device.irk = self.irk
        self.device.gatt_server.max_mtu = self.mtu
        db = self._build_db([])
        return {
            "epoch": self.epoch,
            "addr_type": 0,
            "addr": bytes(reversed(bytes(self.address))).hex(),
            "db": db["db"],
        }

    async def _power_off(self, graceful: bool) -> None:
        """The stack stops: connections end without IRQs, advertising stops, state resets.

        `graceful`: NimBLE terminates its connections (the centrals see reason 0x13);
        otherwise the board vanished (the device process ended) and the centrals see a
        supervision timeout."""
        assert self.device is not None and self.controller is not None
        with contextlib.suppress(Exception):
            await self._stop_advertising()
        conns = list(self._conns.values())
        for conn in conns:
            self._forget(conn)
        if graceful:
            for conn in conns:
                with contextlib.suppress(Exception):
                    await self.device.disconnect(conn.connection, HCI_REMOTE_USER_TERMINATED)
        else:
            drop_connections(self.controller)
            await asyncio.sleep(0)
        self._reset_state()
        self.device.gatt_server.max_mtu = self.mtu
        self.device.legacy_advertiser = None
        self._build_db([])

    async def _op_name(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.gap_name = bytes.fromhex(msg["name"])
        return {}

    async def _op_mtu(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.mtu = int(msg["mtu"])
        assert self.device is not None
        self.device.gatt_server.max_mtu = self.mtu
        return {}

    async def _op_security(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.security.update(msg["security"])
        return {}

    async def _op_addr_mode(self, msg: dict[str, Any]) -> dict[str, Any]:
        mode = int(msg["mode"])
        assert self.device is not None
        if mode == 0:
            self.own_address = self.address
            return {"addr_type": 0, "addr": bytes(reversed(bytes(self.address))).hex()}
        if mode == 1:
            address = hci.Address.generate_static_address()
        elif mode == 2:
            address = hci.Address.generate_private_address(self.irk)
        elif mode == 3:
            raw = bytearray(secrets.token_bytes(6))
            raw[5] &= 0x3F  # non-resolvable private: top bits 00
            address = hci.Address(bytes(raw), hci.Address.RANDOM_DEVICE_ADDRESS)
        else:
            return {}  # the port ignores unknown modes
        await self.device.send_sync_command(
            hci.HCI_LE_Set_Random_Address_Command(random_address=address)
        )
        self.device.random_address = address
        self.own_address = address
        if mode == 2:
            return {"addr_type": 1, "addr": None}
        return {"addr_type": 1, "addr": bytes(reversed(bytes(address))).hex()}

    async def _op_adv(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.device is not None
        interval = msg.get("interval")
        if interval is None:
            await self._stop_advertising()
            return {}
        connectable = bool(msg.get("connectable", True))
        if connectable and len(self._conns) >= self.max_connections:
            return {"err": errno.ENOMEM}
        await self._stop_advertising()
        if msg.get("adv") is not None:
            self.adv_data = bytes.fromhex(msg["adv"])
        if msg.get("resp") is not None:
            self.resp_data = bytes.fromhex(msg["resp"])
        units = int(interval) or 48  # 0: NimBLE's default fast interval (30 ms)
        adv_type = 0 if connectable else 2  # ADV_IND, or ADV_SCAN_IND (disc mode GEN)
        own_type = (
            hci.OwnAddressType.PUBLIC
            if self.own_address == self.address
            else hci.OwnAddressType.RANDOM
        )
        await self.device.send_sync_command(
            hci.HCI_LE_Set_Advertising_Data_Command(advertising_data=self.adv_data)
        )
        await self.device.send_sync_command(
            hci.HCI_LE_Set_Scan_Response_Data_Command(scan_response_data=self.resp_data)
        )
        await self.device.send_sync_command(
            hci.HCI_LE_Set_Advertising_Parameters_Command(
                advertising_interval_min=units,
                advertising_interval_max=units,
                advertising_type=adv_type,
                own_address_type=own_type,
                peer_address_type=0,
                peer_address=hci.Address.ANY,
                advertising_channel_map=7,
                advertising_filter_policy=0,
            )
        )
        await self.device.send_sync_command(
            hci.HCI_LE_Set_Advertising_Enable_Command(advertising_enable=1)
        )
        # Tell Bumble's Device how it advertises, so a connection gets the right own
        # address (SMP uses it) -- Device.start_advertising is bypassed on purpose.
        self.device.legacy_advertiser = DeviceLegacyAdvertiser(
            device=self.device,
            advertising_type=AdvertisingType(adv_type),
            own_address_type=own_type,
            peer_address=hci.Address.ANY,
            auto_restart=False,
        )
        self.advertising = True
        self._notify("advertising", {"on": True, "data": self.adv_data, "resp": self.resp_data})
        return {}

    async def _stop_advertising(self) -> None:
        if self.advertising and self.device is not None:
            self.advertising = False
            self.device.legacy_advertiser = None
            await self.device.send_sync_command(
                hci.HCI_LE_Set_Advertising_Enable_Command(advertising_enable=0)
            )
            self._notify("advertising", {"on": False})

    async def _op_register(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.advertising or self._conns:
            return {"err": EBUSY}  # ble_gatts_reset: not while advertising or connected
        return self._build_db(msg["services"])

    async def _op_notify(self, msg: dict[str, Any]) -> dict[str, Any]:
        return self._queue_tx(msg, indicate=False)

    async def _op_indicate(self, msg: dict[str, Any]) -> dict[str, Any]:
        return self._queue_tx(msg, indicate=True)

    def _queue_tx(self, msg: dict[str, Any], indicate: bool) -> dict[str, Any]:
        if indicate and self.procs_used >= self.indicate_procs:
            return {"err": errno.ENOMEM}
        if self.buffers_used >= self.tx_buffers:
            return {"err": errno.ENOMEM}
        conn = self._conns.get(int(msg["conn"]))
        if conn is None or conn.closed:
            return {"err": errno.ENOTCONN}
        self.buffers_used += 1
        if indicate:
            self.procs_used += 1
            conn.indications_pending += 1
        conn.queue.append(_TxItem(indicate, int(msg["handle"]), bytes.fromhex(msg["value"])))
        conn.wake.set()
        return {}

    async def _op_update(self, msg: dict[str, Any]) -> dict[str, Any]:
        # gatts_write(send_update=True): NimBLE flags the CCCDs that subscribe and sends later.
        assert self.device is not None
        handle = int(msg["handle"])
        for conn in self._conns.values():
            cccd = self.device.gatt_server.subscribers.get(conn.connection, {}).get(handle)
            if cccd and cccd[0] & 0x03:
                conn.modified[handle] = None
                conn.wake.set()
        return {}

    async def _op_disconnect(self, msg: dict[str, Any]) -> dict[str, Any]:
        conn = self._conns.get(int(msg["conn"]))
        if conn is None or conn.closed:
            return {"err": errno.ENOTCONN}
        assert self.device is not None
        await self.device.send_async_command(
            hci.HCI_Disconnect_Command(
                connection_handle=conn.handle, reason=HCI_REMOTE_USER_TERMINATED
            )
        )
        return {}

    async def _op_pair(self, msg: dict[str, Any]) -> dict[str, Any]:
        conn = self._conns.get(int(msg["conn"]))
        if conn is None or conn.closed:
            return {"err": errno.ENOTCONN}
        if conn.pairing:
            return {"err": errno.EALREADY}
        assert self.device is not None
        self.device.request_pairing(conn.connection)  # a Security Request to the central
        return {}

    async def _op_passkey(self, msg: dict[str, Any]) -> dict[str, Any]:
        action = int(msg["action"])
        if action not in (
            PASSKEY_ACTION_INPUT,
            PASSKEY_ACTION_DISPLAY,
            PASSKEY_ACTION_NUMERIC_COMPARISON,
        ):
            return {"err": errno.EINVAL}
        conn = self._conns.get(int(msg["conn"]))
        if conn is None or conn.passkey is None:
            return {"err": errno.ENOENT}
        wanted, fut = conn.passkey
        if wanted != action:
            return {"err": errno.EINVAL}
        if not fut.done():
            passkey = int(msg["passkey"])
            fut.set_result(passkey != 0 if action == PASSKEY_ACTION_NUMERIC_COMPARISON else passkey)
        return {}

    # -- the attribute database ----------------------------------------------------

    def _build_db(self, services: list[Any]) -> dict[str, Any]:
        """Lay out GAP, GATT and the application's services exactly as NimBLE does."""
        assert self.device is not None
        server = self.device.gatt_server
        server.attributes = []
        server.attributes_by_handle = {}
        server.services = []
        value_handles: list[int] = []

        def add(attribute: att.Attribute) -> int:
            server.add_attribute(attribute)
            return attribute.handle

        def local(uuid: Any, flags: int, value: Callable[[], bytes]) -> _ValueAttribute:
            attr = _ValueAttribute(uuid, _properties(flags), att.Attribute.READABLE)
            attr.radio = self
            attr.ble_flags = flags
            attr.device_backed = False
            attr.local_value = None
            attr.value = value  # type: ignore[assignment]
            return attr

        def service(
            uuid: Any, chars: Sequence[tuple[gatt.Characteristic, Sequence[Any]]]
        ) -> list[int]:
            svc = gatt.Service(uuid, [])
            add(svc)
            handles: list[int] = []
            for characteristic, descriptors in chars:
                decl = gatt.CharacteristicDeclaration(characteristic, server.next_handle() + 1)
                add(decl)
                handles.append(add(characteristic))
                value_handles.append(characteristic.handle)
                if characteristic.properties & (F_NOTIFY | F_INDICATE):
                    add(_Cccd(server, characteristic))
                for descriptor in descriptors:
                    handles.append(add(descriptor))
                    value_handles.append(descriptor.handle)
                decl.end_group_handle = characteristic.end_group_handle = server.attributes[
                    -1
                ].handle
            svc.end_group_handle = server.attributes[-1].handle
            server.services.append(svc)
            return handles

        from bumble.core import UUID

        service(
            UUID.from_16_bits(0x1800),
            [
                (local(UUID.from_16_bits(0x2A00), F_READ, lambda: self.gap_name), []),
                (local(UUID.from_16_bits(0x2A01), F_READ, lambda: b"\0\0"), []),
            ],
        )
        service(
            UUID.from_16_bits(0x1801),
            [(local(UUID.from_16_bits(0x2A05), F_INDICATE, lambda: b""), [])],
        )
        result: list[list[int]] = []
        for suuid, chars in services:
            built = []
            for cuuid, flags, descriptors in chars:
                characteristic = _ValueAttribute(
                    _uuid(cuuid), _properties(int(flags)), att.Attribute.READABLE
                )
                characteristic.radio = self
                characteristic.ble_flags = int(flags)
                characteristic.device_backed = True
                descs = []
                for duuid, dflags in descriptors:
                    # NimBLE maps descriptor flags to plain read/write, no security.
                    dflags = int(dflags)
                    mapped = (F_READ if dflags & F_READ else 0) | (
                        F_WRITE if dflags & (F_WRITE | F_WRITE_NO_RESPONSE) else 0
                    )
                    descriptor = _DescriptorAttribute(_uuid(duuid), att.Attribute.READABLE)
                    descriptor.radio = self
                    descriptor.ble_flags = mapped
                    descriptor.device_backed = True
                    descs.append(descriptor)
                built.append((characteristic, descs))
            result.append(service(_uuid(suuid), built))
        return {"handles": result, "db": value_handles}

    async def _check_permissions(self, conn: _Conn, is_read: bool, flags: int) -> None:
        """ble_att_svr_check_perms, with its ATT errors."""
        if is_read:
            if not flags & F_READ:
                raise att.ATT_Error(error_code=0x02)
            enc, authen = flags & F_READ_ENCRYPTED, flags & F_READ_AUTHENTICATED
            author = flags & F_READ_AUTHORIZED
        else:
            if not flags & (F_WRITE | F_WRITE_NO_RESPONSE):
                raise att.ATT_Error(error_code=0x03)
            enc, authen = flags & F_WRITE_ENCRYPTED, flags & F_WRITE_AUTHENTICATED
            author = flags & F_WRITE_AUTHORIZED
        if not (enc or authen or author):
            return
        if (enc or authen) and not conn.encrypted:
            bond = unpack_secret(
                await self._get_secret(SECRET_PEER, 0, secret_key(conn.connection.peer_address))
            )
            code = 0x0F if bond is not None and bond.ltk is not None else 0x05
            raise att.ATT_Error(error_code=code)
        if authen and not conn.authenticated:
            raise att.ATT_Error(error_code=0x05)

    def _conn_for(self, bearer: att.Bearer) -> _Conn:
        connection = bearer.connection if att.is_enhanced_bearer(bearer) else bearer
        conn = self._conns.get(connection.handle)
        if conn is None:
            raise att.ATT_Error(error_code=ATT_UNLIKELY)
        return conn

    async def _att_read(self, bearer: att.Bearer, attr: Any) -> bytes:
        conn = self._conn_for(bearer)
        await conn.settled.wait()
        try:
            await self._check_permissions(conn, True, attr.ble_flags)
        except att.ATT_Error as e:
            raise att.ATT_Error(error_code=e.error_code, att_handle=attr.handle) from None
        if not attr.device_backed:
            return bytes(attr.value())
        try:
            answer = await self._ask(IRQ_GATTS_READ_REQUEST, [conn.handle, attr.handle])
        except NoAnswer:
            raise att.ATT_Error(error_code=ATT_UNLIKELY, att_handle=attr.handle) from None
        status = int(answer.get("s", ATT_UNLIKELY)) & 0xFF
        if status:
            raise att.ATT_Error(error_code=status, att_handle=attr.handle)
        return bytes.fromhex(answer.get("v", ""))

    async def _att_write(self, bearer: att.Bearer, attr: Any, value: bytes) -> None:
        conn = self._conn_for(bearer)
        await conn.settled.wait()
        try:
            await self._check_permissions(conn, False, attr.ble_flags)
        except att.ATT_Error as e:
            raise att.ATT_Error(error_code=e.error_code, att_handle=attr.handle) from None
        try:
            answer = await self._ask(
                IRQ_GATTS_WRITE, [conn.handle, attr.handle], v=bytes(value).hex()
            )
        except NoAnswer:
            raise att.ATT_Error(error_code=ATT_UNLIKELY, att_handle=attr.handle) from None
        if answer.get("s"):
            raise att.ATT_Error(error_code=int(answer["s"]) & 0xFF, att_handle=attr.handle)

    # -- connections ---------------------------------------------------------------

    def _on_connection(self, connection: Connection) -> None:
        if connection.role != hci.Role.PERIPHERAL:
            return
        if not self.active:
            asyncio.ensure_future(self._refuse(connection))
            return
        conn = _Conn(connection)
        self._conns[conn.handle] = conn
        self.advertising = False  # the controller stopped advertising
        connection.on(connection.EVENT_DISCONNECTION, lambda reason: self._on_disconnection(conn))
        connection.on(
            connection.EVENT_CONNECTION_ATT_MTU_UPDATE,
            lambda: self._emit(IRQ_MTU_EXCHANGED, [conn.handle, connection.att_mtu]),
        )
        connection.on(
            connection.EVENT_CONNECTION_PARAMETERS_UPDATE, lambda: self._on_conn_update(conn)
        )
        connection.on(
            connection.EVENT_CONNECTION_ENCRYPTION_CHANGE, lambda: self._on_encryption(conn)
        )
        connection.on(
            connection.EVENT_CONNECTION_ENCRYPTION_FAILURE,
            lambda error: self._on_encryption_failure(conn),
        )
        conn.task = asyncio.create_task(self._tx_loop(conn))
        peer = connection.peer_address
        self._emit(
            IRQ_CENTRAL_CONNECT,
            [conn.handle, int(peer.address_type) & 1],
            addr=bytes(reversed(bytes(peer))).hex(),
        )
        self._notify("connection", {"handle": conn.handle, "peer": str(peer)})

    async def _refuse(self, connection: Connection) -> None:
        with contextlib.suppress(Exception):
            await connection.disconnect(HCI_REMOTE_USER_TERMINATED)

    def _on_disconnection(self, conn: _Conn) -> None:
        if conn.closed:
            return
        self._forget(conn, report=True)
        peer = conn.connection.peer_address
        self._emit(
            IRQ_CENTRAL_DISCONNECT,
            [conn.handle, int(peer.address_type) & 1],
            addr=bytes(reversed(bytes(peer))).hex(),
        )
        self._notify("disconnection", {"handle": conn.handle, "peer": str(peer)})

    def _forget(self, conn: _Conn, report: bool = False) -> None:
        """Free a connection's queue and procedures (indications fail with ENOTCONN)."""
        conn.closed = True
        self._conns.pop(conn.handle, None)
        if conn.task is not None:
            conn.task.cancel()
        failed = []
        while conn.queue:
            item = conn.queue.popleft()
            self.buffers_used -= 1
            if item.indicate:
                failed.append(item.handle)
        failed.extend(conn.in_flight)
        conn.in_flight = []
        for handle in failed:
            self.procs_used -= 1
            if report:
                self._emit(IRQ_GATTS_INDICATE_DONE, [conn.handle, handle, BLE_HS_ENOTCONN])
        if conn.passkey is not None and not conn.passkey[1].done():
            conn.passkey[1].set_result(None)  # type: ignore[arg-type]

    def _on_conn_update(self, conn: _Conn) -> None:
        p = conn.connection.parameters
        self._emit(
            IRQ_CONNECTION_UPDATE,
            [
                conn.handle,
                round(p.connection_interval / 1.25),
                p.peripheral_latency,
                round(p.supervision_timeout / 10),
                0,
            ],
        )

    # -- notifications and indications ------------------------------------------------

    async def _tx_loop(self, conn: _Conn) -> None:
        assert self.device is not None
        loop = asyncio.get_running_loop()
        next_event = 0.0
        try:
            while True:
                await conn.wake.wait()
                conn.wake.clear()
                while conn.queue or conn.modified:
                    # Connection events come every tx_interval, whether data waits or not.
                    delay = next_event - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    next_event = loop.time() + self.tx_interval
                    await self._collect_updates(conn)
                    sent = 0
                    while conn.queue and sent < self.tx_per_event:
                        item = conn.queue.popleft()
                        self.buffers_used -= 1
                        sent += 1
                        if item.indicate:
                            await self._indicate(conn, item)
                        else:
                            self._send_pdu(
                                conn,
                                att.ATT_Handle_Value_Notification(
                                    attribute_handle=item.handle,
                                    attribute_value=self._truncate(conn, item.value),
                                ),
                            )
        except asyncio.CancelledError:
            pass

    async def _collect_updates(self, conn: _Conn) -> None:
        """Turn send_update flags into queued PDUs, reading the value as NimBLE does
        (through the application, with no connection: READ_REQUEST(65535, handle))."""
        assert self.device is not None
        while conn.modified and self.buffers_used < self.tx_buffers:
            handle = next(iter(conn.modified))
            cccd = self.device.gatt_server.subscribers.get(conn.connection, {}).get(handle)
            if not cccd or not cccd[0] & 0x03:
                del conn.modified[handle]
                continue
            indicate = not cccd[0] & 0x01
            if indicate and (conn.in_flight or conn.indications_pending):
                return  # NimBLE postpones: one indication at a time per connection
            if indicate and self.procs_used >= self.indicate_procs:
                return
            del conn.modified[handle]
            try:
                answer = await self._ask(IRQ_GATTS_READ_REQUEST, [0xFFFF, handle])
            except NoAnswer:
                continue
            if answer.get("s") or conn.closed:
                continue
            self.buffers_used += 1
            if indicate:
                self.procs_used += 1
                conn.indications_pending += 1
            conn.queue.append(_TxItem(indicate, handle, bytes.fromhex(answer.get("v", ""))))

    def _truncate(self, conn: _Conn, value: bytes) -> bytes:
        return value[: conn.connection.att_mtu - 3]

    def _send_pdu(self, conn: _Conn, pdu: att.ATT_PDU) -> None:
        assert self.device is not None
        self.device.send_l2cap_pdu(conn.handle, att.ATT_CID, bytes(pdu))

    async def _indicate(self, conn: _Conn, item: _TxItem) -> None:
        assert self.device is not None
        server = self.device.gatt_server
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        server.pending_confirmations[conn.connection] = fut
        conn.indications_pending -= 1
        conn.in_flight.append(item.handle)
        self._send_pdu(
            conn,
            att.ATT_Handle_Value_Indication(
                attribute_handle=item.handle, attribute_value=self._truncate(conn, item.value)
            ),
        )
        try:
            await asyncio.wait_for(fut, gatt.GATT_REQUEST_TIMEOUT)
            status = 0
        except TimeoutError:
            status = BLE_HS_ETIMEOUT
        finally:
            if server.pending_confirmations.get(conn.connection) is fut:
                server.pending_confirmations[conn.connection] = None
        if conn.closed:
            return  # the link went while waiting: _forget already failed it (ENOTCONN)
        conn.in_flight.remove(item.handle)
        self.procs_used -= 1
        self._emit(IRQ_GATTS_INDICATE_DONE, [conn.handle, item.handle, status])

    # -- security ---------------------------------------------------------------------

    def _pairing_config(self, connection: Connection) -> pairing.PairingConfig:
        conn = self._conns.get(connection.handle)
        if conn is None:
            conn = _Conn(connection)
        return pairing.PairingConfig(
            sc=bool(self.security["le_secure"]),
            mitm=bool(self.security["mitm"]),
            bonding=bool(self.security["bond"]),
            delegate=_Delegate(self, conn, int(self.security["io"])),
            identity_address_type=pairing.PairingConfig.AddressType.PUBLIC,
        )

    async def _repeat_pairing_check(self, conn: _Conn) -> None:
        """ble_sm_chk_repeat_pairing: an existing bond is deleted and pairing goes on."""
        key = secret_key(conn.connection.peer_address)
        for _ in range(4):
            if unpack_secret(await self._get_secret(SECRET_PEER, 0, key)) is None:
                return
            await self._delete_secret(SECRET_OUR, key)
            await self._delete_secret(SECRET_PEER, key)

    async def _passkey_action(self, conn: _Conn, action: int, number: int) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        conn.passkey = (action, fut)
        self._emit(IRQ_PASSKEY_ACTION, [conn.handle, action, number])
        try:
            return await asyncio.wait_for(fut, SMP_TIMEOUT)
        except TimeoutError:
            return None
        finally:
            conn.passkey = None

    async def _on_pairing(
        self, session: smp.Session, identity_address: hci.Address | None, keys: Any
    ) -> None:
        connection = session.connection
        conn = self._conns.get(connection.handle)
        if conn is None:
            return
        conn.settled.clear()
        try:
            await self._store_pairing(conn, session, identity_address, keys)
        finally:
            conn.settled.set()

    async def _store_pairing(
        self, conn: _Conn, session: smp.Session, identity_address: hci.Address | None, keys: Any
    ) -> None:
        connection = session.connection
        authenticated = session.pairing_method != smp.PairingMethod.JUST_WORKS
        conn.encrypted = True
        conn.authenticated = authenticated
        conn.key_size = connection.encryption_key_size or 16
        conn.bonded = bool(session.bonding)
        if session.bonding:
            address = identity_address or connection.peer_address
            if session.sc:
                ours = theirs = keys.ltk
            else:
                ours, theirs = keys.ltk_central, keys.ltk_peripheral
            our_blob = pack_secret(
                address,
                ltk=ours.value if ours else None,
                ediv=(ours.ediv or 0) if ours else 0,
                rand=(ours.rand or bytes(8)) if ours else bytes(8),
                irk=self.irk,
                key_size=conn.key_size,
                authenticated=authenticated,
                sc=bool(session.sc),
            )
            peer_blob = pack_secret(
                address,
                ltk=theirs.value if theirs else None,
                ediv=(theirs.ediv or 0) if theirs else 0,
                rand=(theirs.rand or bytes(8)) if theirs else bytes(8),
                irk=keys.irk.value if keys.irk else None,
                csrk=keys.csrk.value if keys.csrk else None,
                key_size=conn.key_size,
                authenticated=authenticated,
                sc=bool(session.sc),
            )
            await self._set_secret(SECRET_OUR, secret_key(address), our_blob)
            await self._set_secret(SECRET_PEER, secret_key(address), peer_blob)
        conn.pairing = False
        self._emit_encryption(conn)

    def _on_pairing_failure(self, connection: Connection) -> None:
        conn = self._conns.get(connection.handle)
        if conn is not None:
            conn.pairing = False
            self._emit_encryption(conn)

    def _emit_encryption(self, conn: _Conn) -> None:
        self._emit(
            IRQ_ENCRYPTION_UPDATE,
            [
                conn.handle,
                int(conn.encrypted),
                int(conn.authenticated),
                int(conn.bonded),
                conn.key_size if conn.encrypted else 0,
            ],
        )

    def _pairing_in_progress(self, conn: _Conn) -> bool:
        assert self.device is not None
        session = self.device.smp_manager.sessions.get(conn.handle)
        return conn.pairing or (session is not None and not session.completed)

    def _on_encryption(self, conn: _Conn) -> None:
        conn.encrypted = bool(conn.connection.encryption)
        conn.key_size = conn.connection.encryption_key_size or 16
        if self._pairing_in_progress(conn):
            return  # NimBLE reports once the pairing procedure ends
        if conn.restore is not None:
            conn.authenticated = conn.restore.authenticated
            conn.bonded = True
            conn.restore = None
        self._emit_encryption(conn)

    def _on_encryption_failure(self, conn: _Conn) -> None:
        if not self._pairing_in_progress(conn):
            self._emit_encryption(conn)

    async def _long_term_key(self, connection_handle: int, rand: bytes, ediv: int) -> bytes | None:
        """The LTK for an encryption request: the pairing's, or the application's bond."""
        assert self.device is not None
        conn = self._conns.get(connection_handle)
        if conn is None:
            return None
        ltk = self.device.smp_manager.get_long_term_key(conn.connection, rand, ediv)
        if ltk is not None:
            return ltk
        ours = unpack_secret(
            await self._get_secret(SECRET_OUR, 0, secret_key(conn.connection.peer_address))
        )
        if ours is None or ours.ltk is None:
            self._emit_encryption(conn)  # the restore fails: still unencrypted
            return None
        if not ours.sc and (ours.ediv != ediv or ours.rand != bytes(rand)):
            self._emit_encryption(conn)
            return None
        conn.restore = ours
        return ours.ltk
