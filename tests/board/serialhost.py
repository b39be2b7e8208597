"""A host on the device's serial link, for tests (not a test file; the host library comes later).

`SerialHost(path)` opens a console with pyserial the way SPEC 7.4 asks a host
to: DTR and RTS are never toggled (on an ESP32 devkit they drive EN and IO0;
both stay deasserted from before the port is opened). It writes requests as
escaped frames (SPEC 7.3) and reads frames, classifying every chunk between
two 0x00 as SPEC 7.2 says: a frame, console text (kept in `texts`), or
dropped (counted). Nothing here comes from the firmware: the frame codec is
protocol/dermaroll_protocol.py's host side (`frame`, `escape`, `unframe`).
"""

from __future__ import annotations

import time
from typing import Any

import serial

import dermaroll_protocol as dp


def is_text(chunk: bytes) -> bool:
    """SPEC 7.2 rule 3: printable (tab, CR, 0x20-0x7E, >= 0x80) and containing a newline."""
    if b"\n" not in chunk:
        return False
    return all(b in (9, 10, 13) or 0x20 <= b <= 0x7E or b >= 0x80 for b in chunk)


def request_frame(body: bytes) -> bytes:
    """A ControlRequest as a host writes it: framed, then escaped (no 0x03 in it)."""
    return dp.frame(dp.CONTROL_REQUEST, body, escaped=True)


class FrameReader:
    """Splits device output into frames, console text and dropped chunks (SPEC 7.2)."""

    def __init__(self) -> None:
        self.chunk = bytearray()
        self.frames: list[tuple[int, bytes]] = []
        self.texts: list[bytes] = []
        self.dropped: list[bytes] = []

    def feed(self, data: bytes) -> None:
        for b in data:
            if b:
                self.chunk.append(b)
                continue
            chunk = bytes(self.chunk)
            self.chunk.clear()
            if chunk:
                self._classify(chunk)

    def _classify(self, chunk: bytes) -> None:
        try:
            self.frames.append(dp.unframe(chunk))
            return
        except dp.ProtocolError:
            pass
        if is_text(chunk):
            self.texts.append(chunk)
        else:
            self.dropped.append(chunk)


class SerialHost:
    """pyserial on a console: send requests, collect what comes back."""

    def __init__(self, path: str) -> None:
        port = serial.Serial()
        port.port = path
        port.baudrate = 115200
        port.timeout = 0
        port.dsrdtr = False
        port.rtscts = False
        # Set before open(): pyserial applies these once at open and never pulses them.
        port.dtr = False
        port.rts = False
        port.open()
        self.port = port
        self.reader = FrameReader()
        self.raw = bytearray()  # everything read, for failure messages

    def close(self) -> None:
        self.port.close()

    def write(self, data: bytes) -> None:
        assert 0x03 not in data, "0x03 on the console is Ctrl-C"
        self.port.write(data)
        self.port.flush()

    def send(self, body: bytes) -> None:
        self.write(request_frame(body))

    def pump(self) -> int:
        """Read whatever is there (never waits); the number of bytes."""
        data = self.port.read(65536)
        if data:
            self.raw += data
            self.reader.feed(data)
        return len(data)

    @property
    def frames(self) -> list[tuple[int, bytes]]:
        return self.reader.frames

    async def wait_frames(self, count: int, timeout: float = 10) -> list[tuple[int, bytes]]:
        """Wait until at least `count` frames have come in (since open); returns them all."""
        import asyncio

        end = time.monotonic() + timeout
        while len(self.reader.frames) < count:
            if not self.pump():
                if time.monotonic() > end:
                    raise AssertionError(
                        "%d of %d frames after %.0f s; last bytes %r"
                        % (len(self.reader.frames), count, timeout, bytes(self.raw[-300:]))
                    )
                await asyncio.sleep(0.005)
        return self.reader.frames

    async def read_for(self, seconds: float) -> None:
        """Keep reading for `seconds` (the app prints all the time: there is no quiet)."""
        import asyncio

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if not self.pump():
                await asyncio.sleep(0.01)
        self.pump()

    def responses(self) -> list[dict[str, Any]]:
        return [dp.decode_response(body) for t, body in self.frames if t == dp.CONTROL_RESPONSE]
