"""Test application for the virtual board's radio (not the product firmware).

A small sensor peripheral: a counter that notifies, a status that is
indicated, a command characteristic the host writes to, and a setting that
may only be written over an encrypted link. It keeps bonds through the
secret IRQs, re-advertises after a disconnection and retries a notification
that fails with ENOMEM -- what a careful firmware does. It reports what
happens on stdout, one line per fact, for the test to follow.

Commands (written to COMMAND): b"burst N" sends N counter notifications
(4-byte little-endian sequence number, padded to min(MTU - 3, 32) bytes);
b"status" indicates b"ok" on STATUS.
"""

import struct
import time

import bluetooth
from micropython import const

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_GATTS_INDICATE_DONE = const(20)
_IRQ_MTU_EXCHANGED = const(21)
_IRQ_ENCRYPTION_UPDATE = const(28)
_IRQ_GET_SECRET = const(29)
_IRQ_SET_SECRET = const(30)

_FLAG_WRITE_ENCRYPTED = const(0x1000)
_ENOMEM = const(12)

SERVICE = bluetooth.UUID("7d2a0001-3c5e-4a0f-9d1e-5a6b7c8d9e0f")
COUNTER = bluetooth.UUID("7d2a0002-3c5e-4a0f-9d1e-5a6b7c8d9e0f")
STATUS = bluetooth.UUID("7d2a0003-3c5e-4a0f-9d1e-5a6b7c8d9e0f")
COMMAND = bluetooth.UUID("7d2a0004-3c5e-4a0f-9d1e-5a6b7c8d9e0f")
SETTING = bluetooth.UUID("7d2a0005-3c5e-4a0f-9d1e-5a6b7c8d9e0f")


def advertising_payload(name, service):
    flags = b"\x02\x01\x06"
    uuid = bytes(service)
    return flags + bytes((len(uuid) + 1, 0x07)) + uuid, bytes((len(name) + 1, 0x09)) + name


class App:
    def __init__(self):
        self.ble = bluetooth.BLE()
        self.secrets = {}
        self.mtu = {}
        self.work = []
        self.advertise = True
        self.ble.irq(self.irq)
        self.ble.config(bond=True, le_secure=True, io=3)
        self.ble.active(True)
        self.ble.config(gap_name=b"vboard-test")
        chars = (
            (COUNTER, bluetooth.FLAG_READ | bluetooth.FLAG_NOTIFY),
            (STATUS, bluetooth.FLAG_READ | bluetooth.FLAG_INDICATE),
            (COMMAND, bluetooth.FLAG_WRITE),
            (SETTING, bluetooth.FLAG_READ | bluetooth.FLAG_WRITE | _FLAG_WRITE_ENCRYPTED),
        )
        handles = self.ble.gatts_register_services(((SERVICE, chars),))
        ((self.counter, self.status, self.command, self.setting),) = handles
        self.ble.gatts_write(self.counter, struct.pack("<I", 0))
        self.ble.gatts_write(self.status, b"idle")
        self.adv, self.resp = advertising_payload(b"vboard-test", SERVICE)

    def irq(self, event, data):
        if event == _IRQ_CENTRAL_CONNECT:
            self.mtu[data[0]] = 23
            print("connect", data[0])
        elif event == _IRQ_CENTRAL_DISCONNECT:
            self.mtu.pop(data[0], None)
            self.advertise = True
            print("disconnect", data[0])
        elif event == _IRQ_GATTS_WRITE:
            conn, handle = data
            if handle == self.command:
                self.work.append((conn, self.ble.gatts_read(handle)))
            elif handle == self.setting:
                print("setting", self.ble.gatts_read(handle))
        elif event == _IRQ_MTU_EXCHANGED:
            self.mtu[data[0]] = data[1]
            print("mtu", data[1])
        elif event == _IRQ_GATTS_INDICATE_DONE:
            print("indicated", data[2])
        elif event == _IRQ_ENCRYPTION_UPDATE:
            print("encryption", data[1], data[2], data[3], data[4])
        elif event == _IRQ_GET_SECRET:
            sec_type, index, key = data
            if key is None:
                found = [v for (t, _), v in sorted(self.secrets.items()) if t == sec_type]
                return found[index] if index < len(found) else None
            return self.secrets.get((sec_type, bytes(key)))
        elif event == _IRQ_SET_SECRET:
            sec_type, key, value = data
            key = (sec_type, bytes(key))
            if value is None:
                return self.secrets.pop(key, None) is not None
            self.secrets[key] = bytes(value)
            print("bonded" if sec_type == 2 else "secret", sec_type)
            return True
        return None

    def burst(self, conn, count):
        size = min(self.mtu.get(conn, 23) - 3, 32)
        enomem = 0
        seq = 0
        while seq < count:
            payload = struct.pack("<I", seq) + b"x" * (size - 4)
            try:
                self.ble.gatts_notify(conn, self.counter, payload)
            except OSError as e:
                if e.args[0] != _ENOMEM:
                    print("notify failed", e.args[0])
                    return
                enomem += 1
                time.sleep_ms(2)
                continue
            seq += 1
        print("burst done", count, "enomem", enomem)

    def run(self):
        print("READY")
        while True:
            if self.advertise:
                self.advertise = False
                self.ble.gap_advertise(20000, self.adv, resp_data=self.resp)
                print("advertising")
            while self.work:
                conn, command = self.work.pop(0)
                if command.startswith(b"burst "):
                    self.burst(conn, int(command[6:]))
                elif command == b"status":
                    self.ble.gatts_write(self.status, b"ok")
                    self.ble.gatts_indicate(conn, self.status)
            time.sleep_ms(5)


App().run()
