"""The device's BLE service (protocol/SPEC.md sections 3 and 4) on MicroPython's `bluetooth`.

Public API (the app owns the loop; nothing here blocks):

    ble = Ble(control.handle, model="DR-1", version="0.1.0",
              bond_file="bonds.json", on_closed=control.link_closed)
                                    # bonds loaded, IRQ set, radio on, GATT registered
    ble.start()                     # advertise (connectable, live state + name)
    ble.service()                   # call often from the app loop: runs control point
                                    #   requests, flushes the per-link queues, re-advertises,
                                    #   writes the bond file, applies the pairing window
    ble.announce_pass(buf, n)       # a live PassRecord to every link; False: a link's queue
                                    #   is full and nothing was queued (offer it again)
    ble.update_counts(buf, n)       # ZoneCounts of the zone just counted (read value + notify)
    ble.update_status(state, zone, battery, errors, oldest, newest, boot, session, passes)
                                    # Status (read value, notified on change), Battery Level,
                                    #   advertised state (its counter moves on a change)
    ble.set_idle(True|False)        # slow (1 s) / normal (100 ms) advertising interval
    ble.open_pairing_window(ms)     # a new host may bond during the next `ms` (closed
                                    #   once one has)
    ble.close_pairing_window(); ble.pairing_window_open(); ble.has_bond()
    ble.forget_bonds()              # drop every peer bond (RAM and flash)
    ble.links                       # the BleLink slots (conn < 0: free); ble.connections()
    ble.name, ble.serial, ble.mac   # dermaroll-XXXX, 12 hex digits, 6 bytes
    ble.irq_errors, ble.unknown_events, ble.requests_dropped, ble.refusals   # counters

`on_request(link, data, n, out)` is roller.control's `handle`: it gets each Control Point
write (data: a memoryview valid during the call, n bytes) on the app loop, never in the IRQ,
and returns the length of the response it wrote into `out` (20 bytes), 0 for none; Ble
indicates it on that link after anything handle() queued. `on_closed(link)` is called from
service() once per ended connection, before its slot is reused. A `BleLink` is the Link of
roller/control.py: `secure` (encrypted and bonded), `mtu` (payload bytes: 20 until an MTU
exchange), `raw` (RawSamples wanted; cleared when the connection ends),
`send_record(buf, n)` (PassRecord notification), `send_counts(buf, n)` (ZoneCounts
notification), `send_response(buf, n)` (Control Point indication), `send_raw(buf, n)`
(RawSamples, up to min(mtu, 245) bytes); each copies buf and returns False when its queue
is full (nothing queued; offer it again later).

Design:
- IRQ handler: short, guarded (an exception is counted in `irq_errors`, never escapes:
  on the ESP32 that would disable the handler for good), copies what it keeps, only sets
  fields and queues; all radio calls that can wait are made from service().
- Events for connection handles not seen yet (ESP-IDF 5.x sends MTU_EXCHANGED before
  CENTRAL_CONNECT) take a free link slot; a later CENTRAL_CONNECT keeps that state.
- Pacing: per link one ordered FIFO of preallocated 20-byte slots (PassRecord, ZoneCounts,
  Status, Battery notifications and Control Point indications, in the order queued), plus
  two RawSamples slots. gatts_notify raising OSError(ENOMEM) leaves the slot queued and
  service() retries it; one indication outstanding per link, the next after
  _IRQ_GATTS_INDICATE_DONE. Status, ZoneCounts and Battery are "latest value" flags per
  link that enter the FIFO when it has room. Record replies (send_record) may use all but
  `_RESERVE` slots so live passes and responses still fit.
- Security: the Control Point write is open (SPEC 3.2); the control core checks
  `link.secure` for the bonded opcodes. `secure` comes from _IRQ_ENCRYPTION_UPDATE
  (encrypted and bonded, and the bond stored by us).
- Pairing window: bonding is offered (`config(bond=True)`) only while the device has no
  bond or the window is open; otherwise pairing still works but without bonding, so the
  link is encrypted and not bonded (`secure` False). As a second guard, _IRQ_SET_SECRET
  for a new peer's keys outside the window returns False (keys not stored) and that link
  is marked insecure and disconnected. The window closes once a host's keys are stored
  (one new host per long press).
- Bonds: {(type, key): value} for secret types 1, 2, 10, loaded from BOND_FILE before
  active(True), saved from service() (write a temp file, then rename).
"""

import json
import os
import time

import bluetooth
from micropython import const

from dermaroll_protocol import (
    ATT_DEFAULT_PAYLOAD,
    BATTERY_LEVEL_CHAR,
    BATTERY_SERVICE,
    BATTERY_UNKNOWN,
    CONTROL_POINT_UUID,
    DEVICE_INFORMATION_SERVICE,
    FIRMWARE_REVISION_CHAR,
    MANUFACTURER_NAME_CHAR,
    MODEL_NUMBER_CHAR,
    PASS_RECORD_UUID,
    RAW_SAMPLES_UUID,
    SERIAL_NUMBER_CHAR,
    SERVICE_UUID,
    STATUS_SIZE,
    STATUS_UUID,
    ZONE_COUNTS_UUID,
    device_name,
    encode_adv,
    encode_scan_response,
    encode_status,
    firmware_revision,
)

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_GATTS_READ_REQUEST = const(4)
_IRQ_GATTS_INDICATE_DONE = const(20)
_IRQ_MTU_EXCHANGED = const(21)
_IRQ_ENCRYPTION_UPDATE = const(28)
_IRQ_GET_SECRET = const(29)
_IRQ_SET_SECRET = const(30)

_FLAG_READ = const(0x0002)
_FLAG_WRITE = const(0x0008)
_FLAG_NOTIFY = const(0x0010)
_FLAG_INDICATE = const(0x0020)
FLAG_READ_ENCRYPTED = const(0x0200)
FLAG_WRITE_ENCRYPTED = const(0x1000)

_SECRET_OURS = const(1)
_SECRET_PEER = const(2)
_SECRET_IRK = const(10)
_ENOMEM = const(12)

MAX_CONNECTIONS = const(4)
_SLOT = const(20)  # one FIFO slot: every message but RawSamples fits 20 bytes
_FIFO = const(16)  # slots per link
_RESERVE = const(4)  # slots send_record leaves for live passes and responses
_RAW_SLOTS = const(2)
_RAW_MAX = const(245)
_REQ_SLOTS = const(8)  # control point writes waiting for the app loop

# FIFO entry kinds: the index into Ble.handles below.
_K_PASS = const(0)
_K_COUNTS = const(1)
_K_CP = const(2)
_K_STATUS = const(3)
_K_RAW = const(4)
_K_BATTERY = const(5)

_DIRTY_STATUS = const(1)
_DIRTY_COUNTS = const(2)
_DIRTY_BATTERY = const(4)

ADV_INTERVAL_US = const(100000)
ADV_IDLE_INTERVAL_US = const(1000000)
_ADV_MIN_GAP_MS = const(100)  # at most one advertising data update per this many ms

BOND_FILE = "bonds.json"
MANUFACTURER = "dermaroll"


def _same_addr(addr, key_addr):
    """A connection's address (as displayed) against a secret key's (little-endian)."""
    return addr == key_addr or addr == bytes(reversed(key_addr))


class BleLink:
    """One connection (a slot of Ble.links): the Link the control core talks to."""

    def __init__(self, ble):
        self.ble = ble
        self.conn = -1  # connection handle, -1: slot free
        self.addr = b""
        self.mtu = ATT_DEFAULT_PAYLOAD
        self.secure = False
        self.encrypted = False
        self.refused = False  # bonding refused outside the pairing window: disconnect it
        self.closing = False  # disconnected; the slot is freed once the app was told
        self.raw = False  # RawSamples wanted (the control core sets it)
        self.dirty = 0
        self.indicating = False  # an indication is waiting for its confirmation
        self.enomem = 0
        self.sent = 0
        self.buf = bytearray(_FIFO * _SLOT)
        self.lens = bytearray(_FIFO)
        self.kinds = bytearray(_FIFO)
        self.head = 0
        self.count = 0
        self.raw_buf = bytearray(_RAW_SLOTS * _RAW_MAX)
        self.raw_lens = bytearray(_RAW_SLOTS)
        self.raw_head = 0
        self.raw_count = 0
        self.pending = bytearray(_SLOT)  # handle()'s response when the FIFO had no room
        self.pending_n = 0

    def _reset(self, conn):
        self.conn = conn
        self.addr = b""
        self.mtu = ATT_DEFAULT_PAYLOAD
        self.secure = False
        self.encrypted = False
        self.refused = False
        self.closing = False
        self.raw = False
        self.dirty = 0
        self.indicating = False
        self.head = 0
        self.count = 0
        self.raw_head = 0
        self.raw_count = 0
        self.pending_n = 0

    def _put(self, kind, buf, n, limit):
        if self.conn < 0 or self.count >= limit:
            return False
        if n > _SLOT:
            n = _SLOT
        i = (self.head + self.count) % _FIFO
        base = i * _SLOT
        b = self.buf
        for j in range(n):
            b[base + j] = buf[j]
        self.lens[i] = n
        self.kinds[i] = kind
        self.count += 1
        return True

    def send_record(self, buf, n):
        """A PassRecord notification (record access reply); False: queue full, retry."""
        return self._put(_K_PASS, buf, n, _FIFO - _RESERVE)

    def send_live(self, buf, n):
        """A live PassRecord (may use the reserved slots); False: queue full."""
        return self._put(_K_PASS, buf, n, _FIFO)

    def send_counts(self, buf, n):
        """A ZoneCounts notification (REPORT_COUNTS); False: queue full, retry."""
        return self._put(_K_COUNTS, buf, n, _FIFO - 1)

    def send_response(self, buf, n):
        """A Control Point response, indicated; False: queue full, retry."""
        return self._put(_K_CP, buf, n, _FIFO)

    def send_raw(self, buf, n):
        """A RawSamples notification (at most min(mtu, 245) bytes); False: no free slot."""
        if self.conn < 0 or self.raw_count >= _RAW_SLOTS:
            return False
        n = min(n, self.mtu, _RAW_MAX)
        i = (self.raw_head + self.raw_count) % _RAW_SLOTS
        base = i * _RAW_MAX
        r = self.raw_buf
        for j in range(n):
            r[base + j] = buf[j]
        self.raw_lens[i] = n
        self.raw_count += 1
        return True

    def room(self):
        return _FIFO - self.count if self.conn >= 0 else 0


class Ble:
    def __init__(
        self, on_request, model="DR-1", version="0.0.0", bond_file=BOND_FILE, on_closed=None
    ):
        self.on_request = on_request
        self.on_closed = on_closed
        self._out = bytearray(_SLOT)
        self.bond_file = bond_file
        self.irq_errors = 0
        self.last_irq_error = None
        self.requests_dropped = 0
        self.passes_dropped = 0
        self.unknown_events = 0
        self.refusals = 0
        self.links = [BleLink(self) for _ in range(MAX_CONNECTIONS)]
        self._req = bytearray(_REQ_SLOTS * _SLOT)
        self._req_len = bytearray(_REQ_SLOTS)
        self._req_link = [None] * _REQ_SLOTS
        self._req_head = 0
        self._req_count = 0
        self._status = bytearray(STATUS_SIZE)
        self._counts = bytearray(_SLOT)
        self._counts_n = 0
        self._battery = bytearray(1)
        self._battery[0] = BATTERY_UNKNOWN
        self._adv = bytearray(31)
        self._resp = bytearray(16)
        self._adv_state = bytearray(5)  # state, zone, passes lo, passes hi, battery
        self._adv_state[4] = BATTERY_UNKNOWN
        self._adv_counter = 0
        self._adv_dirty = True  # advertising (re)start wanted
        self._adv_at = time.ticks_ms()
        self._advertising = False
        self._started = False
        self._idle = False
        self._window_until = time.ticks_ms()
        self._window = False
        self._bond_flag = None
        self._refused_addr = None  # the address whose keys SET_SECRET refused last
        self._secrets_dirty = False
        self.secrets = {}
        self._load_secrets()

        self.ble = bluetooth.BLE()
        self.ble.irq(self._irq)  # before active(True): activation asks for the IRK
        self.ble.config(bond=self._bonding_allowed(), le_secure=True, mitm=False, io=3)
        self._bond_flag = self._bonding_allowed()
        self.ble.active(True)
        mac = self.ble.config("mac")[1]
        self.mac = bytes(mac)
        self.name = device_name(self.mac)
        self.serial = "".join("%02X" % b for b in self.mac)
        self.ble.config(gap_name=self.name)
        self._register(model, version)
        encode_scan_response(self._resp, 0, self.mac)
        encode_status(self._status, 0, 0, 0, BATTERY_UNKNOWN, 0, 0, 0, 0, 0)
        self.ble.gatts_write(self.h_status, self._status)  # type: ignore[arg-type]
        self.ble.gatts_write(self.h_battery, self._battery)  # type: ignore[arg-type]
        self._encode_adv()

    # -- setup ------------------------------------------------------------------------

    def _register(self, model, version):
        U = bluetooth.UUID
        dermaroll = (
            U(SERVICE_UUID),
            (
                (U(PASS_RECORD_UUID), _FLAG_NOTIFY),
                (U(ZONE_COUNTS_UUID), _FLAG_READ | _FLAG_NOTIFY),
                (U(CONTROL_POINT_UUID), _FLAG_WRITE | _FLAG_INDICATE),
                (U(STATUS_UUID), _FLAG_READ | _FLAG_NOTIFY),
                (U(RAW_SAMPLES_UUID), _FLAG_NOTIFY),
            ),
        )
        dis = (
            U(DEVICE_INFORMATION_SERVICE),
            (
                (U(MANUFACTURER_NAME_CHAR), _FLAG_READ),
                (U(MODEL_NUMBER_CHAR), _FLAG_READ),
                (U(SERIAL_NUMBER_CHAR), _FLAG_READ),
                (U(FIRMWARE_REVISION_CHAR), _FLAG_READ),
            ),
        )
        battery = (U(BATTERY_SERVICE), ((U(BATTERY_LEVEL_CHAR), _FLAG_READ | _FLAG_NOTIFY),))
        ((hp, hc, hcp, hs, hr), (hm, hmo, hse, hfw), (hb,)) = self.ble.gatts_register_services(
            (dermaroll, dis, battery)
        )
        self.h_pass = hp
        self.h_counts = hc
        self.h_cp = hcp
        self.h_status = hs
        self.h_raw = hr
        self.h_battery = hb
        # FIFO kind -> value handle
        self.handles = (hp, hc, hcp, hs, hr, hb)
        self.revision = firmware_revision(version)
        self.model = model
        w = self.ble.gatts_write
        w(hm, MANUFACTURER.encode())
        w(hmo, model.encode())
        w(hse, self.serial.encode())
        w(hfw, self.revision.encode())

    def start(self):
        """Start advertising (connectable)."""
        self._started = True
        self._adv_dirty = True
        self._advertise()

    # -- the IRQ handler: short, guarded, no radio calls that wait ---------------------

    def _irq(self, event, data):
        try:
            return self._on_irq(event, data)
        except Exception as e:
            self.irq_errors += 1
            self.last_irq_error = e
            return None

    def _on_irq(self, event, data):
        if event == _IRQ_GATTS_WRITE:
            conn, handle = data
            if handle == self.h_cp:
                link = self._link(conn, True)
                if link is not None:
                    self._queue_request(link, self.ble.gatts_read(handle))
            return None
        if event == _IRQ_GATTS_READ_REQUEST:
            return 0
        if event == _IRQ_GATTS_INDICATE_DONE:
            link = self._link(data[0], False)
            if link is not None:
                link.indicating = False
            return None
        if event == _IRQ_CENTRAL_CONNECT:
            conn = data[0]
            link = self._link(conn, True)
            if link is not None:
                link.addr = bytes(data[2])
            self._advertising = False  # NimBLE stops advertising on a connection
            self._adv_dirty = True
            return None
        if event == _IRQ_CENTRAL_DISCONNECT:
            link = self._link(data[0], False)
            if link is not None:
                link.conn = -1
                link.closing = True  # service() tells the app, then the slot is free
                link.count = 0
                link.raw_count = 0
                link.pending_n = 0
                link.indicating = False
                link.secure = False
                link.raw = False
            self._advertising = False
            self._adv_dirty = True
            return None
        if event == _IRQ_MTU_EXCHANGED:
            link = self._link(data[0], True)
            if link is not None:
                link.mtu = data[1] - 3
            return None
        if event == _IRQ_ENCRYPTION_UPDATE:
            conn, encrypted, _authenticated, bonded, _key_size = data
            link = self._link(conn, True)
            if link is not None:
                link.encrypted = bool(encrypted)
                ref = self._refused_addr
                if ref is not None and bonded and (not link.addr or _same_addr(link.addr, ref)):
                    self._refused_addr = None
                    link.refused = True
                link.secure = bool(encrypted and bonded) and not link.refused
            return None
        if event == _IRQ_GET_SECRET:
            return self._get_secret(data[0], data[1], data[2])
        if event == _IRQ_SET_SECRET:
            return self._set_secret(data[0], data[1], data[2])
        return None

    def _link(self, conn, create):
        free = None
        for link in self.links:
            if link.conn == conn:
                return link
            if free is None and link.conn < 0 and not link.closing:
                free = link
        if not create:
            self.unknown_events += 1
            return None
        if free is None:
            self.unknown_events += 1
            return None
        free._reset(conn)
        return free

    def _queue_request(self, link, value):
        if self._req_count >= _REQ_SLOTS:
            self.requests_dropped += 1
            return
        i = (self._req_head + self._req_count) % _REQ_SLOTS
        n = min(len(value), _SLOT)
        base = i * _SLOT
        for j in range(n):
            self._req[base + j] = value[j]
        self._req_len[i] = n
        self._req_link[i] = link
        self._req_count += 1

    def _get_secret(self, sec_type, index, key):
        if key is not None:
            return self.secrets.get((sec_type, bytes(key)))
        for (t, _k), value in self.secrets.items():
            if t == sec_type:
                if index == 0:
                    return value
                index -= 1
        return None

    def _set_secret(self, sec_type, key, value):
        k = (sec_type, bytes(key))
        if value is None:
            if k in self.secrets:
                del self.secrets[k]
                self._secrets_dirty = True
                return True
            return False
        if sec_type != _SECRET_IRK and k not in self.secrets and not self._bonding_allowed():
            self.refusals += 1
            self._refused_addr = bytes(key)[1:7]
            return False
        self.secrets[k] = bytes(value)
        self._secrets_dirty = True
        if sec_type == _SECRET_PEER:
            self._window = False  # one new host per window; service() withdraws bonding
        return True

    # -- bonds --------------------------------------------------------------------------

    def has_bond(self):
        return any(k[0] == _SECRET_PEER for k in self.secrets)

    def _bonding_allowed(self):
        if self._window and time.ticks_diff(self._window_until, time.ticks_ms()) <= 0:
            self._window = False
        return self._window or not self.has_bond()

    def open_pairing_window(self, ms):
        """Let a new host bond during the next `ms` milliseconds."""
        self._window_until = time.ticks_add(time.ticks_ms(), ms)
        self._window = True
        self._apply_bond_flag()

    def close_pairing_window(self):
        self._window = False
        self._apply_bond_flag()

    def pairing_window_open(self):
        return self._bonding_allowed() and self._window

    def forget_bonds(self):
        """Drop every peer bond (our IRK stays); bonded links lose `secure`."""
        for k in list(self.secrets):
            if k[0] != _SECRET_IRK:
                del self.secrets[k]
        for link in self.links:
            link.secure = False
        self._save_secrets()
        self._apply_bond_flag()

    def _apply_bond_flag(self):
        allowed = self._bonding_allowed()
        if allowed != self._bond_flag:
            self._bond_flag = allowed
            self.ble.config(bond=allowed)

    def _load_secrets(self):
        try:
            with open(self.bond_file) as f:
                raw = json.load(f)
            for item in raw:
                self.secrets[(int(item[0]), bytes.fromhex(item[1]))] = bytes.fromhex(item[2])
        except (OSError, ValueError, TypeError, IndexError, KeyError) as e:
            if not isinstance(e, OSError):
                print("ble: bond file unreadable, bonds dropped:", e)
            self.secrets = {}

    def _save_secrets(self):
        self._secrets_dirty = False
        items = [[t, k.hex(), v.hex()] for (t, k), v in self.secrets.items()]
        tmp = self.bond_file + ".tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(items, f)
            os.rename(tmp, self.bond_file)
        except OSError as e:
            print("ble: cannot save bonds:", e)
            self._secrets_dirty = True

    # -- live state -----------------------------------------------------------------------

    def announce_pass(self, buf, n):
        """Queue a live PassRecord on every link; False (nothing queued): a link is full."""
        for link in self.links:
            if link.conn >= 0 and link.count >= _FIFO:
                return False
        for link in self.links:
            if link.conn >= 0:
                link.send_live(buf, n)
        return True

    def update_counts(self, buf, n):
        """The ZoneCounts of the zone just counted: the read value, notified to every link."""
        n = min(n, _SLOT)
        for j in range(n):
            self._counts[j] = buf[j]
        self._counts_n = n
        self.ble.gatts_write(self.h_counts, memoryview(self._counts)[:n])  # type: ignore[arg-type]
        for link in self.links:
            link.dirty |= _DIRTY_COUNTS

    def update_status(self, state, zone, battery, errors, oldest, newest, boot, session, passes):
        """The current Status (read value, notified when it changed) and advertised state."""
        old = bytes(self._status)
        encode_status(self._status, 0, state, zone, battery, errors, oldest, newest, boot, session)
        if self._status != old:
            self.ble.gatts_write(self.h_status, self._status)  # type: ignore[arg-type]
            for link in self.links:
                link.dirty |= _DIRTY_STATUS
        if battery != self._battery[0]:
            self._battery[0] = battery
            self.ble.gatts_write(self.h_battery, self._battery)  # type: ignore[arg-type]
            for link in self.links:
                link.dirty |= _DIRTY_BATTERY
        passes = min(passes, 0xFFFF)
        s = self._adv_state
        if (
            s[0] != state
            or s[1] != zone
            or s[2] != passes & 0xFF
            or s[3] != passes >> 8
            or s[4] != battery
        ):
            s[0] = state
            s[1] = zone
            s[2] = passes & 0xFF
            s[3] = passes >> 8
            s[4] = battery
            self._adv_counter = (self._adv_counter + 1) & 0xFF
            self._encode_adv()
            self._adv_dirty = True

    def _encode_adv(self):
        s = self._adv_state
        encode_adv(self._adv, 0, s[0], s[1], s[2] | s[3] << 8, s[4], self._adv_counter)

    def set_idle(self, idle):
        """Idle: advertise at ADV_IDLE_INTERVAL_US instead of ADV_INTERVAL_US."""
        idle = bool(idle)
        if idle != self._idle:
            self._idle = idle
            self._adv_dirty = True

    def connections(self):
        return sum(1 for link in self.links if link.conn >= 0)

    # -- the app loop's part --------------------------------------------------------------

    def service(self):
        """Run queued requests, flush the links, re-advertise, save bonds. Call often."""
        for link in self.links:
            if link.closing:
                link.closing = False
                if self.on_closed is not None:
                    self.on_closed(link)
            elif link.pending_n and link.send_response(link.pending, link.pending_n):
                link.pending_n = 0
        while self._req_count:
            i = self._req_head
            req_link = self._req_link[i]
            if req_link is not None and req_link.pending_n:
                break  # its previous response waits for room: keep the order
            n = self._req_len[i]
            self._req_link[i] = None
            self._req_head = (i + 1) % _REQ_SLOTS
            self._req_count -= 1
            if req_link is not None and req_link.conn >= 0:
                self._dispatch(req_link, memoryview(self._req)[i * _SLOT : i * _SLOT + n], n)
        for link in self.links:
            if link.conn >= 0:
                if link.refused:
                    link.refused = False
                    try:
                        self.ble.gap_disconnect(link.conn)  # type: ignore[arg-type]
                    except OSError:
                        pass
                self._flush(link)
        if self._secrets_dirty:
            self._save_secrets()
        self._apply_bond_flag()
        if self._adv_dirty and self._started:
            self._advertise()

    def _dispatch(self, link, data, n):
        out = self._out
        m = self.on_request(link, data, n, out)
        if m and not link.send_response(out, m):
            for j in range(m):
                link.pending[j] = out[j]
            link.pending_n = m

    def _advertise(self):
        now = time.ticks_ms()
        if self._advertising and time.ticks_diff(now, self._adv_at) < _ADV_MIN_GAP_MS:
            return
        self._adv_dirty = False
        if self.connections() >= MAX_CONNECTIONS:
            self._advertising = False
            return
        self._adv_at = now
        interval = ADV_IDLE_INTERVAL_US if self._idle else ADV_INTERVAL_US
        try:
            self.ble.gap_advertise(interval, self._adv, resp_data=self._resp)
            self._advertising = True
        except OSError:
            self._adv_dirty = True  # e.g. ENOMEM at the connection limit: try again later

    def _flush(self, link):
        ble = self.ble
        # Latest-value notifications enter the FIFO when there is room.
        if link.dirty and link.count < _FIFO:
            if link.dirty & _DIRTY_STATUS and link.count < _FIFO:
                link._put(_K_STATUS, self._status, STATUS_SIZE, _FIFO)
                link.dirty &= ~_DIRTY_STATUS
            if link.dirty & _DIRTY_COUNTS and link.count < _FIFO:
                if self._counts_n:
                    link._put(_K_COUNTS, self._counts, self._counts_n, _FIFO)
                link.dirty &= ~_DIRTY_COUNTS
            if link.dirty & _DIRTY_BATTERY and link.count < _FIFO:
                link._put(_K_BATTERY, self._battery, 1, _FIFO)
                link.dirty &= ~_DIRTY_BATTERY
        # The disconnect IRQ may run between any two bytecodes here (on the virtual board:
        # right after a radio call) and empty the queue: stop at once when it did, or the
        # count would go below 0 and this loop would never end.
        conn = link.conn
        mv = memoryview(link.buf)
        while link.count > 0:
            i = link.head
            kind = link.kinds[i]
            data = mv[i * _SLOT : i * _SLOT + link.lens[i]]
            try:
                if kind == _K_CP:
                    if link.indicating:
                        break
                    link.indicating = True
                    ble.gatts_indicate(conn, self.handles[kind], data)  # type: ignore[call-arg]
                else:
                    ble.gatts_notify(conn, self.handles[kind], data)  # type: ignore[call-arg, arg-type]
            except OSError as e:
                if kind == _K_CP:
                    link.indicating = False
                if e.args[0] == _ENOMEM:
                    link.enomem += 1
                    break  # buffers full: the same slot goes again next time
                # Not connected any more (the disconnect event follows): drop it.
            if link.conn != conn:
                return
            link.sent += 1
            link.head = (i + 1) % _FIFO
            link.count -= 1
        rv = memoryview(link.raw_buf)
        while link.raw_count > 0:
            i = link.raw_head
            try:
                raw = rv[i * _RAW_MAX : i * _RAW_MAX + link.raw_lens[i]]
                ble.gatts_notify(conn, self.h_raw, raw)  # type: ignore[call-arg, arg-type]
            except OSError as e:
                if e.args[0] == _ENOMEM:
                    link.enomem += 1
                    break
            if link.conn != conn:
                return
            link.raw_head = (i + 1) % _RAW_SLOTS
            link.raw_count -= 1
