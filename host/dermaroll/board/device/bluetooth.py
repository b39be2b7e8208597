"""`bluetooth` for the virtual board: MicroPython's ESP32 (NimBLE) API over a virtual radio.

The unix port has no `bluetooth`, so this module is what `import bluetooth`
finds when this folder is on MICROPYPATH. It implements the peripheral half of
the API as the ESP32 port does (extmod/modbluetooth.c + modbluetooth_nimble.c,
MicroPython 1.28, ESP-IDF NimBLE defaults): `BLE()` (a singleton), `UUID`, the
five `FLAG_*` constants, `active`, `config`, `irq`, `gap_advertise`,
`gap_disconnect`, `gap_pair`, `gap_passkey` and the `gatts_*` methods.
Central-role methods (`gap_scan`, `gap_connect`, `gattc_*`) exist but raise
NotImplementedError: the virtual board is a peripheral.

The radio itself (controller, link, ATT server, SMP) runs in the board
runner's CPython process (`dermaroll.board.radio.VirtualRadio`). This module
keeps what NimBLE keeps in MicroPython's memory on the device -- the GATT
value database, the IRQ handler, the GAP name and security settings -- and
talks to the radio over a unix-domain socket named by the environment
variable DERMAROLL_BLE (``unix:/path``, from `VirtualRadio.device_env`).
Without it, `active(True)` fails with OSError(ETIMEDOUT), as an ESP32 whose
controller never comes up does. It uses the real `uos`, `uselect` and
`usocket`, never the board's virtual-time shadows, and no `time` at all.

IRQ delivery. On the ESP32, NimBLE calls the handler synchronously from its
own task while holding the GIL, i.e. between two bytecodes of the main
program, whatever the program is doing. Here a reader thread receives events
from the radio, queues them and hands them to the main thread with
`micropython.schedule`, so the handler runs between bytecodes of the main
thread, one event at a time, in the radio's order, and the firmware calls
nothing special. When the main thread is blocked in a system call (sleeping,
`select.poll` inside asyncio, reading the console), scheduled functions would
wait until the call returns; if an event is not picked up within 2 ms the
reader thread runs `gc.collect()`, which makes MicroPython signal the main
thread (its GC stack scan), so the blocking call returns EINTR, runs the
scheduled work and resumes -- the same signal MicroPython sends whenever
another thread collects. Read requests and secrets need an answer: the
radio waits for it (and answers the central with an ATT error if none comes
in time).

Addresses, keys and values arrive as memoryviews that are only valid during
the handler call (their bytes are cleared afterwards, as the ESP32 reuses
them): copy what you keep. Where MicroPython's documentation is silent, the
ESP32 port's behaviour is followed; docs/virtual-board.md ("Radio") lists
those choices.
"""

import _thread
import binascii
import errno
import gc
import json
import struct
import sys
import time  # the board's virtual clock: radio calls are not charged to it

import micropython
import uos as os  # the real modules: this folder shadows `os`, `select` and `time`
import uselect as select  # (virtual time must not leak into the radio's thread)
import usocket as socket
import utime
from micropython import const

FLAG_READ = const(0x0002)
FLAG_WRITE_NO_RESPONSE = const(0x0004)
FLAG_WRITE = const(0x0008)
FLAG_NOTIFY = const(0x0010)
FLAG_INDICATE = const(0x0020)

_IRQ_GATTS_WRITE = const(3)
_IRQ_GATTS_READ_REQUEST = const(4)
_IRQ_GET_SECRET = const(29)
_IRQ_SET_SECRET = const(30)

_EAPP = const(-9)  # NimBLE's BLE_HS_EAPP passed through as a negative errno
_HCI_INVALID_PARAMS = const(-530)  # BLE_HS_HCI_ERR(0x12), negated
_ATT_ATTR_NOT_FOUND = const(0x0A)
_DEFAULT_ATTR_LEN = const(20)
_MAX_NAME_LEN = const(31)
_SECRET_OUR_IRK = const(10)
# NimBLE's built-in IRK, used when the application keeps no secrets.
_DEFAULT_IRK = b"\xef\x8d\xe2\x16\x4f\xec\x43\x0d\xbf\x5b\xdd\x34\xc0\x53\x1e\xb8"
_SECRET_LEN = const(80)  # dermaroll.board.radio packs bonds into 80-byte blobs

# Frame kinds on the socket: device -> radio 'C' call, 'A' answer to a
# question; radio -> device 'R' reply to a call, 'E' event (or question):
# the reader thread queues every frame that is not a reply.
_KIND_CALL = const(0x43)
_KIND_ANSWER = const(0x41)
_KIND_REPLY = const(0x52)
_HEADER = "<BI"
_KICK_FIRST_MS = const(2)
_KICK_MAX_MS = const(64)


def _hex(data):
    return binascii.hexlify(data).decode()


def _unhex(text):
    return binascii.unhexlify(text)


def _buffer(value):
    """The bytes of any object with the buffer protocol (str included), like mp_get_buffer_raise."""
    if isinstance(value, UUID):
        return bytes(value._data)
    return bytes(memoryview(value))


class UUID:
    """A Bluetooth UUID: 16-bit (int, 2 bytes), 32-bit (4 bytes) or 128-bit (16 bytes, string).

    Bytes are little-endian, as in the ESP32 port; strings are the usual
    big-endian text with any dashes. Equal UUIDs of the same size compare
    equal and hash alike; UUIDs of different sizes are never equal.
    `bytes(uuid)` gives the little-endian bytes.
    """

    def __init__(self, value):
        if isinstance(value, int):
            if value > 65535:
                raise ValueError("invalid UUID")
            self._data = bytes((value & 0xFF, (value >> 8) & 0xFF))
            return
        buf = _buffer(value)
        if len(buf) in (2, 4, 16):
            self._data = buf
            return
        data = bytearray(16)
        n = 32
        for c in buf:
            if c == 0x2D:  # '-'
                continue
            if 0x30 <= c <= 0x39:
                v = c - 0x30
            elif 0x41 <= c <= 0x46:
                v = c - 0x37
            elif 0x61 <= c <= 0x66:
                v = c - 0x57
            else:
                raise ValueError("invalid char in UUID")
            n -= 1
            if n < 0:
                raise ValueError("UUID too long")
            if n % 2 == 0:
                data[n // 2] |= v
            else:
                data[n // 2] = v << 4
        if n > 0:
            raise ValueError("UUID too short")
        self._data = bytes(data)

    def __iter__(self):
        return iter(self._data)

    def __hash__(self):
        return hash(self._data)

    def _cmp(self, other):
        # Same size: compare the bytes; different sizes: compare the sizes (as the port does).
        if len(self._data) == len(other._data):
            a, b = self._data, other._data
        else:
            a, b = len(self._data), len(other._data)
        return (a > b) - (a < b)

    def __eq__(self, other):
        if not isinstance(other, UUID):
            return False
        return len(self._data) == len(other._data) and self._data == other._data

    def __ne__(self, other):
        return not self.__eq__(other)

    def __lt__(self, other):
        return self._cmp(other) < 0

    def __le__(self, other):
        return self._cmp(other) <= 0

    def __gt__(self, other):
        return self._cmp(other) > 0

    def __ge__(self, other):
        return self._cmp(other) >= 0

    def __repr__(self):
        n = len(self._data)
        out = "UUID(0x" if n <= 4 else "UUID('"
        for i in range(n):
            if i in (4, 6, 8, 10):
                out += "-"
            out += "%02x" % self._data[n - 1 - i]
        return out + ("')" if n == 16 else ")")

    __str__ = __repr__


def _nimble_uuid(uuid):
    """The UUID as NimBLE registers it: the port builds 32-bit UUIDs from data[1] three times."""
    d = uuid._data
    if len(d) == 4:
        return bytes((d[0], d[1], d[1], d[1]))
    return d


class _Entry:
    """One value in the GATT database (mp_bluetooth_gatts_db_entry_t)."""

    def __init__(self, size):
        self.data = bytearray(size)
        self.n = 0
        self.append = False


class _Link:
    """The socket to the radio, its reader thread and the IRQ queue."""

    def __init__(self, ble, sock):
        self.ble = ble
        self.sock = sock
        self.open = True
        self.lock = _thread.allocate_lock()  # guards queue/scheduled
        self.queue = []
        self.scheduled = False
        self.drains = 0
        self.reply = None
        self.reply_ready = _thread.allocate_lock()
        self.reply_ready.acquire()
        self.send_lock = _thread.allocate_lock()
        self.next_id = 0
        self.hold = 0  # > 0 while the main thread applies a reply: events wait
        self.draining = False
        _thread.start_new_thread(self._reader, ())

    # -- wire --------------------------------------------------------------

    def send(self, kind, obj):
        body = json.dumps(obj).encode()
        frame = struct.pack(_HEADER, kind, len(body)) + body
        self.send_lock.acquire()
        try:
            view = memoryview(frame)
            while view:
                n = self.sock.send(view)
                view = view[n:]
        finally:
            self.send_lock.release()

    def call(self, obj):
        """Send a call and wait for its reply (the main thread only); no virtual time passes."""
        t0 = utime.ticks_us()
        try:
            return self._call(obj)
        finally:
            time._uncharge(utime.ticks_diff(utime.ticks_us(), t0))

    def _call(self, obj):
        if not self.open:
            raise OSError(errno.EIO)
        self.next_id += 1
        obj["id"] = self.next_id
        try:
            self.send(_KIND_CALL, obj)
        except OSError:
            self.open = False
            raise OSError(errno.EIO) from None
        self.reply_ready.acquire()
        reply = self.reply
        self.reply = None
        if reply is None:
            raise OSError(errno.EIO)  # the radio went away
        reply = json.loads(reply)
        if reply.get("id") != obj["id"]:
            raise OSError(errno.EIO)
        return reply

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    # -- reader thread -----------------------------------------------------

    def _reader(self):
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        wait_ms = -1
        seen = 0
        try:
            while True:
                if wait_ms >= 0 and not poller.poll(wait_ms):
                    # The main thread has not picked the events up: it is blocked.
                    if self.scheduled and self.drains == seen:
                        gc.collect()  # signals the main thread (EINTR), see the module doc
                        wait_ms = min(wait_ms * 2, _KICK_MAX_MS)
                    else:
                        wait_ms = -1
                    continue
                header = self._recv_exact(5)
                if header is None:
                    break
                kind, size = struct.unpack(_HEADER, header)
                body = self._recv_exact(size)
                if body is None:
                    break
                if kind == _KIND_REPLY:
                    self.reply = body
                    self.reply_ready.release()
                    continue
                self.lock.acquire()
                self.queue.append(body)
                start = not self.scheduled
                if start:
                    self.scheduled = True
                    seen = self.drains
                self.lock.release()
                if start:
                    self._schedule()
                    wait_ms = _KICK_FIRST_MS
        except Exception as e:  # a broken socket (or a full heap) ends the link
            print("bluetooth (virtual board): radio link lost:", repr(e))
        self.open = False
        if self.reply_ready.locked():
            self.reply = None
            self.reply_ready.release()

    def _schedule(self):
        while True:
            try:
                micropython.schedule(self._drain, None)
                return
            except RuntimeError:  # schedule queue full: let the main thread run it down
                select.poll().poll(1)

    # -- main thread ---------------------------------------------------------

    def _drain(self, _):
        self.drains += 1
        if self.draining or self.hold:
            # A drain further up the stack, or release(), will deliver the queue.
            self.lock.acquire()
            self.scheduled = False
            self.lock.release()
            return
        self.draining = True
        try:
            while True:
                self.lock.acquire()
                if not self.queue or self.hold:
                    self.scheduled = False
                    self.lock.release()
                    return
                body = self.queue.pop(0)
                self.lock.release()
                try:
                    self.ble._on_event(json.loads(body))
                except Exception as e:  # never let one event stop the rest
                    print("bluetooth (virtual board): internal error")
                    sys.print_exception(e)
        finally:
            self.draining = False

    def release(self):
        """End a hold (main thread): deliver what arrived meanwhile at the next bytecode."""
        self.hold -= 1
        if self.hold or self.draining:
            return
        # No branch while the lock is held: a jump runs pending scheduled work, and a
        # _drain there would wait for this lock, held by its own thread: a deadlock.
        self.lock.acquire()
        queued = len(self.queue)
        scheduled = self.scheduled
        self.lock.release()
        if queued and not scheduled:
            self.scheduled = True  # if the reader schedules one too, that drain finds none
            try:
                micropython.schedule(self._drain, None)
            except RuntimeError:  # the schedule queue is full: deliver now
                self._drain(None)


def _open_socket():
    spec = os.getenv("DERMAROLL_BLE")
    if not spec:
        raise OSError(errno.ETIMEDOUT)
    path = spec[5:] if spec.startswith("unix:") else spec
    # MicroPython takes a raw struct sockaddr_un for AF_UNIX.
    if sys.platform == "darwin":
        raw = bytes((0, socket.AF_UNIX)) + path.encode() + b"\0"
    else:
        raw = struct.pack("H", socket.AF_UNIX) + path.encode() + b"\0"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(raw)
    except OSError:
        s.close()
        raise OSError(errno.ETIMEDOUT) from None
    return s


_ble = None


class BLE:
    """The Bluetooth interface; `BLE()` always returns the same object."""

    def __new__(cls):
        global _ble
        if _ble is None:
            _ble = object.__new__(cls)
            _ble._setup()
        return _ble

    def __init__(self):
        pass

    def _setup(self):
        self._handler = None
        self._link = None
        self._active = False
        self._epoch = 0
        self._db = {}
        self._gap_name = b"MPY ESP32"
        self._mtu = 256
        self._mac = None
        self._security = {"bond": False, "mitm": False, "le_secure": True, "io": 3}

    # -- general -------------------------------------------------------------

    def active(self, *args):
        if len(args) > 1:
            raise TypeError("function takes 1 or 2 positional arguments")
        if args:
            if args[0]:
                self._start()
            else:
                self._stop()
        return self._active

    def _stop(self):
        if not self._active:
            return
        self._active = False
        self._db = {}
        self._mac = None
        try:
            self._call({"op": "active", "on": False})
        except OSError:
            pass

    def _start(self):
        self._stop()  # like mp_bluetooth_init: a running stack is shut down first
        if self._link is None or not self._link.open:
            self._link = _Link(self, _open_socket())
        irk = self._load_irk()

        def apply(reply):
            self._epoch = reply["epoch"]
            self._mac = (reply["addr_type"], _unhex(reply["addr"]))
            self._new_db(reply["db"])
            self._active = True

        try:
            self._call(
                {
                    "op": "active",
                    "on": True,
                    "name": _hex(self._gap_name),
                    "mtu": self._mtu,
                    "irk": _hex(irk),
                    "security": self._security,
                },
                apply=apply,
            )
        except OSError:
            raise OSError(errno.ETIMEDOUT) from None

    def _new_db(self, handles):
        self._db = {}
        for h in handles:
            self._db[h] = _Entry(_DEFAULT_ATTR_LEN)

    def _load_irk(self):
        """NimBLE's start-up: restore peer IRKs, load or create our IRK, restore again."""
        self._restore_irks()
        key = b"irk"
        irk = self._get_secret(_SECRET_OUR_IRK, 0, key)
        if irk is not None and len(irk) == 16:
            self._restore_irks()
            return irk
        irk = os.urandom(16)
        if not self._set_secret(_SECRET_OUR_IRK, key, irk):
            return _DEFAULT_IRK
        self._restore_irks()
        return irk

    def _restore_irks(self):
        i = 0
        while True:
            value = self._get_secret(2, i, None)
            if value is None or len(value) != _SECRET_LEN:
                return
            i += 1

    def config(self, *args, **kwargs):
        if not kwargs:
            if len(args) != 1:
                raise TypeError("must query one param")
            key = args[0]
            if not isinstance(key, str):
                raise TypeError("can't convert %s to str" % type(key).__name__)
            if key == "gap_name":
                return bytes(self._gap_name)
            if key == "mac":
                if not self._active:
                    raise OSError(errno.ENODEV)
                if self._mac[1] is None:
                    raise OSError(errno.EINVAL)  # RPA: the port cannot report it
                return (self._mac[0], bytes(self._mac[1]))
            if key == "mtu":
                if not self._active:
                    raise OSError(errno.ENODEV)
                return self._mtu
            raise ValueError("unknown config param")
        if args:
            raise TypeError("can't specify pos and kw args")
        for key, value in kwargs.items():
            if key == "gap_name":
                name = _buffer(value)
                if len(name) > _MAX_NAME_LEN:
                    raise OSError(errno.EINVAL)
                self._gap_name = name
                if self._active:
                    self._call({"op": "name", "name": _hex(name)})
            elif key == "mtu":
                if not self._active:
                    raise OSError(errno.ENODEV)
                mtu = int(value)
                if not 23 <= mtu <= 527:
                    raise OSError(errno.EINVAL)
                self._mtu = mtu
                self._call({"op": "mtu", "mtu": mtu})
            elif key == "addr_mode":
                if not self._active:
                    raise OSError(errno.ENODEV)
                self._call({"op": "addr_mode", "mode": int(value)}, apply=self._apply_mac)
            elif key in ("bond", "mitm", "le_secure"):
                self._security[key] = bool(value)
                if self._active:
                    self._call({"op": "security", "security": self._security})
            elif key == "io":
                self._security["io"] = int(value)
                if self._active:
                    self._call({"op": "security", "security": self._security})
            else:
                raise ValueError("unknown config param")
        return None

    def _apply_mac(self, reply):
        if "addr" in reply:
            t = reply["addr_type"]
            self._mac = (t, None if reply["addr"] is None else _unhex(reply["addr"]))

    def irq(self, handler):
        if handler is not None and not callable(handler):
            raise ValueError("invalid handler")
        self._handler = handler

    # -- GAP -----------------------------------------------------------------

    def gap_advertise(self, interval_us=500000, adv_data=None, *, resp_data=None, connectable=True):
        if interval_us is None:
            if self._active:
                self._call({"op": "adv", "interval": None})
            return None
        if not self._active:
            raise OSError(errno.ENODEV)
        interval_us = int(interval_us)
        adv = None if adv_data is None else _buffer(adv_data)
        resp = None if resp_data is None else _buffer(resp_data)
        if (adv is not None and len(adv) > 31) or (resp is not None and len(resp) > 31):
            raise OSError(errno.EINVAL)
        units = interval_us // 625
        if units != 0 and not 0x20 <= units <= 0x4000:
            raise OSError(_HCI_INVALID_PARAMS)
        self._call(
            {
                "op": "adv",
                "interval": units,
                "adv": None if adv is None else _hex(adv),
                "resp": None if resp is None else _hex(resp),
                "connectable": bool(connectable),
            }
        )
        return None

    def gap_disconnect(self, conn_handle):
        conn_handle = int(conn_handle)
        if not self._active:
            raise OSError(errno.ENODEV)
        return bool(self._call({"op": "disconnect", "conn": conn_handle}, ok=(errno.ENOTCONN,)))

    def gap_pair(self, conn_handle):
        conn_handle = int(conn_handle)
        if not self._active:
            raise OSError(errno.ENODEV)
        self._call({"op": "pair", "conn": conn_handle})

    def gap_passkey(self, conn_handle, action, passkey):
        if not self._active:
            raise OSError(errno.ENODEV)
        self._call(
            {
                "op": "passkey",
                "conn": int(conn_handle),
                "action": int(action),
                "passkey": int(passkey),
            }
        )

    def gap_scan(self, *args):
        raise NotImplementedError("the virtual board's radio is a peripheral only")

    def gap_connect(self, *args):
        raise NotImplementedError("the virtual board's radio is a peripheral only")

    # -- GATT server ---------------------------------------------------------

    def gatts_register_services(self, services):
        if not self._active:
            raise OSError(errno.ENODEV)
        wire = []
        for service in services:
            items = tuple(service)
            if len(items) != 2:
                raise ValueError("requested length 2 but object has length %d" % len(items))
            suuid, chars = items
            if not isinstance(suuid, UUID):
                raise ValueError("invalid service UUID")
            wchars = []
            for char in chars:
                citems = tuple(char)
                if len(citems) < 2 or len(citems) > 3:
                    raise ValueError("invalid characteristic tuple")
                if not isinstance(citems[0], UUID):
                    raise ValueError("invalid characteristic UUID")
                descs = []
                if len(citems) == 3:
                    for desc in citems[2]:
                        ditems = tuple(desc)
                        if len(ditems) != 2:
                            raise ValueError(
                                "requested length 2 but object has length %d" % len(ditems)
                            )
                        if not isinstance(ditems[0], UUID):
                            raise ValueError("invalid descriptor UUID")
                        descs.append([_hex(_nimble_uuid(ditems[0])), int(ditems[1])])
                wchars.append([_hex(_nimble_uuid(citems[0])), int(citems[1]), descs])
            wire.append([_hex(_nimble_uuid(suuid)), wchars])
        reply = self._call(
            {"op": "register", "services": wire}, apply=lambda r: self._new_db(r["db"])
        )
        return tuple(tuple(handles) for handles in reply["handles"])

    def gatts_read(self, value_handle):
        entry = self._db.get(int(value_handle)) if self._active else None
        if entry is None:
            return b""
        value = bytes(entry.data[: entry.n])
        if entry.append:
            entry.n = 0
        return value

    def gatts_write(self, value_handle, data, send_update=False):
        value_handle = int(value_handle)
        value = _buffer(data)
        if not self._active:
            raise OSError(errno.ENODEV)
        entry = self._db.get(value_handle)
        if entry is None:
            raise OSError(errno.EINVAL)
        if len(value) > len(entry.data):
            entry.data = bytearray(len(value))
        entry.data[: len(value)] = value
        entry.n = len(value)
        if send_update:
            self._link.send(_KIND_CALL, {"op": "update", "handle": value_handle})
        return len(value)

    def gatts_notify(self, conn_handle, value_handle, data=None):
        self._notify_indicate("notify", conn_handle, value_handle, data)

    def gatts_indicate(self, conn_handle, value_handle, data=None):
        self._notify_indicate("indicate", conn_handle, value_handle, data)

    def _notify_indicate(self, op, conn_handle, value_handle, data):
        conn_handle = int(conn_handle)
        value_handle = int(value_handle)
        if not self._active:
            raise OSError(errno.ENODEV)
        if data is None:
            # NimBLE reads the stored value through the access callback, with no connection.
            if self._read_request(0xFFFF, value_handle):
                raise OSError(_EAPP)
            entry = self._db.get(value_handle)
            value = b"" if entry is None else bytes(entry.data[: entry.n])
        else:
            value = _buffer(data)
        self._call({"op": op, "conn": conn_handle, "handle": value_handle, "value": _hex(value)})

    def gatts_set_buffer(self, value_handle, buffer_size, append=False):
        if not self._active:
            raise OSError(errno.ENODEV)
        entry = self._db.get(int(value_handle))
        if entry is None:
            raise OSError(errno.EINVAL)
        entry.data = bytearray(int(buffer_size))
        entry.n = 0
        entry.append = bool(append)

    def gattc_discover_services(self, *args):
        raise NotImplementedError("the virtual board's radio is a peripheral only")

    gattc_discover_characteristics = gattc_discover_services
    gattc_discover_descriptors = gattc_discover_services
    gattc_read = gattc_discover_services
    gattc_write = gattc_discover_services
    gattc_exchange_mtu = gattc_discover_services

    # -- plumbing ------------------------------------------------------------

    def _call(self, obj, ok=(), apply=None):
        """A round trip to the radio. Events that arrive meanwhile are held until the
        reply has been applied (`apply(reply)`), so none sees half-updated state."""
        link = self._link
        link.hold += 1
        try:
            reply = link.call(obj)
            err = reply.get("err", 0)
            if err and err not in ok:
                raise OSError(err)
            if apply is not None:
                apply(reply)
            if ok:
                return not err
            return reply
        finally:
            link.release()

    def _invoke(self, event, data, scrub=()):
        """Call the handler like invoke_irq_handler: exceptions print and disable it."""
        handler = self._handler
        if handler is None:
            return None
        try:
            return handler(event, data)
        except BaseException as e:  # the port catches everything here
            print("Unhandled exception in IRQ callback handler")
            sys.print_exception(e)
            self._handler = None
            return None
        finally:
            for buf in scrub:
                for i in range(len(buf)):
                    buf[i] = 0

    def _read_request(self, conn_handle, value_handle):
        result = self._invoke(_IRQ_GATTS_READ_REQUEST, (conn_handle, value_handle))
        if result is True:
            return 1
        if isinstance(result, int) and result is not False:
            return result
        return 0

    def _get_secret(self, sec_type, index, key):
        kbuf = None if key is None else bytearray(key)
        result = self._invoke(
            _IRQ_GET_SECRET,
            (sec_type, index, None if kbuf is None else memoryview(kbuf)),
            () if kbuf is None else (kbuf,),
        )
        if result is None:
            return None
        try:
            return bytes(memoryview(result))
        except TypeError:
            return None

    def _set_secret(self, sec_type, key, value):
        kbuf = bytearray(key)
        vbuf = None if value is None else bytearray(value)
        scrub = (kbuf,) if vbuf is None else (kbuf, vbuf)
        result = self._invoke(
            _IRQ_SET_SECRET,
            (sec_type, memoryview(kbuf), None if vbuf is None else memoryview(vbuf)),
            scrub,
        )
        return bool(result)

    def _on_event(self, msg):
        """One event or question from the radio (runs on the main thread, scheduled)."""
        question = msg.get("q")
        if msg.get("epoch") != self._epoch or not self._active:
            if question is not None:
                self._answer(question, {"s": 0x0E, "r": False})
            return
        event = msg["e"]
        args = msg.get("a", ())
        if event == _IRQ_GATTS_READ_REQUEST:
            status = self._read_request(args[0], args[1])
            answer = {"s": status}
            if not status:
                entry = self._db.get(args[1])
                if entry is None:
                    answer["s"] = _ATT_ATTR_NOT_FOUND
                else:
                    answer["v"] = _hex(entry.data[: entry.n])
            self._answer(question, answer)
        elif event == _IRQ_GATTS_WRITE:
            entry = self._db.get(args[1])
            if entry is not None:
                value = _unhex(msg["v"])
                offset = entry.n if entry.append else 0
                n = min(len(entry.data), len(value) + offset)
                entry.data[offset:n] = value[: n - offset]
                entry.n = n
                self._invoke(_IRQ_GATTS_WRITE, (args[0], args[1]))
            if question is not None:
                self._answer(question, {"s": 0 if entry is not None else _ATT_ATTR_NOT_FOUND})
        elif event == _IRQ_GET_SECRET:
            key = None if args[2] is None else _unhex(args[2])
            value = self._get_secret(args[0], args[1], key)
            self._answer(question, {"v": None if value is None else _hex(value)})
        elif event == _IRQ_SET_SECRET:
            value = None if args[2] is None else _unhex(args[2])
            self._answer(question, {"r": self._set_secret(args[0], _unhex(args[1]), value)})
        else:
            scrub = ()
            if "addr" in msg:
                buf = bytearray(_unhex(msg["addr"]))
                args = (args[0], args[1], memoryview(buf))
                scrub = (buf,)
            self._invoke(event, tuple(args), scrub)
            if question is not None:
                self._answer(question, {})

    def _answer(self, question, obj):
        obj["q"] = question
        try:
            self._link.send(_KIND_ANSWER, obj)
        except OSError:
            pass
