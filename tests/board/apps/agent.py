"""A MicroPython stand-in application that a CPython test drives line by line.

stdin: ``<id> e <expression>`` or ``<id> x <statements>`` (``\\n`` escaped as
``\\\\n``); stdout: ``R <id> <repr>`` for a result, ``X <id> <type> <args>`` for
an exception, and ``EV <event> <args>`` for every IRQ the handler sees
(memoryviews as ``h'<hex>'``). What the handler returns is set through
``agent`` (see `Agent`). The main loop blocks reading stdin, so IRQs reach it
through the module's wake-up of a blocked main thread.
"""

import sys

import bluetooth
import utime as time  # the real clock, even if the board shadows `time`
from micropython import const

_IRQ_GATTS_READ_REQUEST = const(4)
_IRQ_GET_SECRET = const(29)
_IRQ_SET_SECRET = const(30)


def show(value):
    if isinstance(value, memoryview):
        return "h'%s'" % bytes(value).hex()
    if isinstance(value, tuple):
        return "(" + "".join(show(v) + ", " for v in value) + ")"
    return repr(value)


class Agent:
    def __init__(self):
        self.read_reply = {}  # value handle -> what the handler returns for a read request
        self.secrets = None  # a dict to keep secrets in; None: the handler keeps none
        self.raise_on = None  # an event code whose IRQ raises
        self.kept = []  # data tuples kept past the call (to check memoryview reuse)
        self.keep = False
        self.echo = None  # (value_handle, op): on a write to it, notify/indicate it back
        self.log_writes = False  # print "W <hex>" with the value of every written handle
        self.sleep_on = None  # an event code whose IRQ sleeps for sleep_ms (a slow handler)
        self.sleep_ms = 0

    def irq(self, event, data):
        if event == 3 and self.log_writes:
            print("W", ble.gatts_read(data[1]).hex())
            return None
        print("EV", event, show(data))
        if event == self.sleep_on:
            time.sleep_ms(self.sleep_ms)
        if self.keep:
            self.kept.append(data)
        if event == self.raise_on:
            raise ValueError("boom %d" % event)
        if event == _IRQ_GATTS_READ_REQUEST:
            return self.read_reply.get(data[1], 0)
        if event == _IRQ_GET_SECRET:
            if self.secrets is None:
                return None
            sec_type, index, key = data
            if key is None:
                found = [v for (t, _), v in sorted(self.secrets.items()) if t == sec_type]
                return found[index] if index < len(found) else None
            return self.secrets.get((sec_type, bytes(key)))
        if event == _IRQ_SET_SECRET:
            if self.secrets is None:
                return False
            sec_type, key, value = data
            key = (sec_type, bytes(key))
            if value is None:
                if key in self.secrets:
                    del self.secrets[key]
                    return True
                return False
            self.secrets[key] = bytes(value)
            return True
        if event == 3 and self.echo is not None and data[1] == self.echo[0]:
            conn, handle = data
            value = ble.gatts_read(handle)
            if self.echo[1] == "notify":
                ble.gatts_notify(conn, handle, value)
            else:
                ble.gatts_indicate(conn, handle, value)
        return None


agent = Agent()
ble = bluetooth.BLE()
ble.irq(agent.irq)
UUID = bluetooth.UUID
g = {"ble": ble, "bluetooth": bluetooth, "agent": agent, "UUID": UUID, "time": time}
print("READY")
while True:
    line = sys.stdin.readline()
    if not line:
        break
    ident, mode, src = line.rstrip("\n").split(" ", 2)
    src = src.replace("\\n", "\n")
    try:
        if mode == "e":
            print("R", ident, show(eval(src, g)))
        else:
            exec(src, g)
            print("R", ident, "None")
    except Exception as e:
        print("X", ident, type(e).__name__, repr(e.args))
