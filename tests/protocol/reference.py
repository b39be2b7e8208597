"""A second, deliberately plain implementation of protocol/SPEC.md, for golden vectors and
differential tests.

Written from the SPEC's tables with int.to_bytes and a textbook COBS and bitwise
CRC, sharing no code with protocol/dermaroll_protocol.py, so that agreement
between the two means something. CPython only.
"""

from __future__ import annotations

# SPEC section 5: (field, size in bytes, signed) in wire order.
LAYOUTS = {
    "pass_record": [
        ("seq", 4, False),
        ("boot", 2, False),
        ("t_end_ms", 4, False),
        ("session", 2, False),
        ("zone", 1, False),
        ("direction", 1, False),
        ("length_01mm", 2, False),
        ("duration_ms", 2, False),
        ("flags", 1, False),
    ],
    "zone_counts": [
        ("session", 2, False),
        ("zone", 1, False),
        ("flags", 1, False),
        ("vertical", 2, False),
        ("horizontal", 2, False),
        ("diagonal", 2, False),
    ],
    "status": [
        ("major", 1, False),
        ("minor", 1, False),
        ("state", 1, False),
        ("zone", 1, False),
        ("battery", 1, False),
        ("errors", 2, False),
        ("oldest", 4, False),
        ("newest", 4, False),
        ("boot", 2, False),
        ("session", 2, False),
    ],
}

# SPEC section 6.4: opcode -> operands after (opcode, token).
REQUEST_OPERANDS = {
    0x01: [("zone", 1, False)],
    0x02: [],
    0x03: [],
    0x04: [],
    0x05: [],
    0x06: [("setting", 1, False)],
    0x07: None,  # setting value: see setting_value()
    0x08: [("epoch_s", 4, False), ("epoch_ms", 2, False)],
    0x09: [("boot", 2, False)],
    0x0A: [("pose", 1, False)],
    0x0B: [("on", 1, False)],
    0x0C: [("field", 1, False)],
    0x0D: [],
    0x10: [("operator", 1, False), ("seq", 4, False)],
    0x11: [("operator", 1, False), ("seq", 4, False)],
    0x12: [],
    0x13: [("operator", 1, False), ("seq", 4, False)],
}
TIME = [("boot", 2, False), ("device_ms", 4, False), ("epoch_s", 4, False), ("epoch_ms", 2, False)]
# SPEC section 6.4: opcode -> data after (opcode, token, result) on SUCCESS.
RESPONSE_DATA = {
    0x01: [("zone", 1, False)],
    0x02: [("zone", 1, False)],
    0x03: [("session", 2, False)],
    0x04: [("session", 2, False)],
    0x05: [],
    0x06: None,
    0x07: None,
    0x08: TIME,
    0x09: TIME,
    0x0A: "pose",
    0x0B: [("on", 1, False)],
    0x0C: "field",
    0x0D: [("zones", 1, False)],
    0x10: [("count", 4, False)],
    0x11: [("count", 4, False)],
    0x12: [],
    0x13: [("count", 4, False)],
}
SERVICE_UUID = "3ff10001-3ae2-4c76-aeb1-5ab7b15fd273"


def put(fields: dict, layout) -> bytes:
    return b"".join(fields[name].to_bytes(size, "little", signed=s) for name, size, s in layout)


def text(value: str) -> bytes:
    data = value.encode("utf-8")
    return bytes([len(data)]) + data


def setting_value(f: dict) -> bytes:
    head = bytes([f["setting"], f["type"]])
    if f["type"] == 2:
        return head + text(f["value"])
    return head + f["value"].to_bytes(4, "little", signed=True)


def encode(kind: str, f: dict) -> bytes:
    """The bytes of one message, from the same field dicts as the codec uses."""
    if kind in LAYOUTS:
        return put(f, LAYOUTS[kind])
    if kind == "raw_samples":
        samples = f["samples"]
        out = f["t0_ms"].to_bytes(4, "little") + bytes([(len(samples) - 1) * 16 + f["zone"]])
        t = f["t0_ms"]
        for t_ms, enc, ax, ay, az, gx, gy, gz in samples:
            out += bytes([t_ms - t]) + (enc % 65536).to_bytes(2, "little")
            for v in (ax, ay, az, gx // 100, gy // 100, gz // 100):
                out += v.to_bytes(2, "little", signed=True)
            t = t_ms
        return out
    if kind == "adv_state":
        return bytes([f["major"] * 16 + f["state"], f["zone"]]) + put(
            f, [("passes", 2, False), ("battery", 1, False), ("counter", 1, False)]
        )
    if kind == "request":
        head = bytes([f["op"], f["token"]])
        layout = REQUEST_OPERANDS[f["op"]]
        return head + (setting_value(f) if layout is None else put(f, layout))
    if kind == "response":
        head = bytes([f["op"], f["token"], f["result"]])
        if f["result"] != 1:
            return head
        layout = RESPONSE_DATA[f["op"]]
        if layout is None:
            return head + setting_value(f)
        if isinstance(layout, str):
            return head + bytes([f[layout]]) + text(f["text"])
        return head + put(f, layout)
    raise ValueError(kind)


def adv(state: int, zone: int, passes: int, battery: int, counter: int) -> bytes:
    """SPEC section 4.1, byte for byte."""
    uuid_le = bytes.fromhex(SERVICE_UUID.replace("-", ""))[::-1]
    flags = bytes([2, 0x01, 0x06])
    uuids = bytes([17, 0x07]) + uuid_le
    state_bytes = encode(
        "adv_state",
        {
            "major": 1,
            "state": state,
            "zone": zone,
            "passes": passes,
            "battery": battery,
            "counter": counter,
        },
    )
    manufacturer = bytes([9, 0xFF, 0xFF, 0xFF]) + state_bytes
    return flags + uuids + manufacturer


def scan_response(mac: bytes) -> bytes:
    name = ("dermaroll-%02X%02X" % (mac[4], mac[5])).encode()
    return bytes([len(name) + 1, 0x09]) + name


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE, bit by bit."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = (crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def cobs_encode(data: bytes) -> bytes:
    """Cheshire & Baker COBS, the textbook loop (any length)."""
    out = bytearray([0])
    code_at, code = 0, 1
    for i, byte in enumerate(data):
        if byte:
            out.append(byte)
            code += 1
        if not byte or code == 0xFF:
            out[code_at] = code
            code = 1
            code_at = len(out)
            if not byte or i + 1 < len(data):
                out.append(0)
    if code_at < len(out):  # a block that ended with the data needs no new code byte
        out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes | None:
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0 or i + code > len(data):
            return None
        out += data[i + 1 : i + code]
        i += code
        if code < 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


def frame(msg_type: int, body: bytes) -> bytes:
    payload = bytes([msg_type]) + body
    return b"\x00" + cobs_encode(payload + crc16(payload).to_bytes(2, "little")) + b"\x00"


def escape(data: bytes) -> bytes:
    out = bytearray()
    for byte in data:
        out += bytes([0x10, byte ^ 0x20]) if byte in (0x03, 0x10) else bytes([byte])
    return bytes(out)


def unframe(chunk: bytes) -> tuple[int, bytes] | None:
    """(type, body) if `chunk` (between delimiters) is a valid frame, else None."""
    if not 0 < len(chunk) <= 249 or 0 in chunk:
        return None
    raw = cobs_decode(chunk)
    if raw is None or len(raw) < 3 or crc16(raw[:-2]) != int.from_bytes(raw[-2:], "little"):
        return None
    return raw[0], raw[1:-2]


def is_console_text(chunk: bytes) -> bool:
    """SPEC section 7.4: printable bytes (tab, CR, >= 0x80 allowed) and at least one newline."""
    printable = all(b in (9, 10, 13) or 32 <= b < 127 or b >= 128 for b in chunk)
    return printable and 10 in chunk
