"""roller.serial_link on the virtual board: the real interpreter, its console pty, pyserial.

The device runs tests/board/apps/serial_echo.py as main.py (the link with its
defaults, an echo on_request, a ticker printing console text); the host is
tests/board/serialhost.py on the board's pty, opened without touching DTR/RTS.
What the device should answer is computed from what was sent with the
protocol's host-side Deframer (escaped=True), the reference for SPEC 7.2/7.3.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import dermaroll_protocol as dp
from dermaroll.board import runner
from tests.board.boardtest import PtyClient, mpremote, need_micropython
from tests.board.serialhost import SerialHost, request_frame

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).with_name("apps") / "serial_echo.py"
ECHO_MAX = 64


def _flash(tmp_path: Path) -> Path:
    flash = tmp_path / "flash"
    (flash / "roller").mkdir(parents=True)
    (flash / "boot.py").write_text("print('BOOT')\n")
    shutil.copyfile(APP, flash / "main.py")
    for name in ("__init__.py", "serial_link.py"):
        shutil.copyfile(ROOT / "firmware" / "roller" / name, flash / "roller" / name)
    shutil.copyfile(ROOT / "protocol" / "dermaroll_protocol.py", flash / "dermaroll_protocol.py")
    return flash


def echo(body: bytes) -> bytes | None:
    """The app's defined response to a request body (None: it answers nothing)."""
    if len(body) < 2 or body[0] == 0x7E:
        return None
    return bytes([body[0], body[1], dp.SUCCESS]) + body[2 : 2 + ECHO_MAX]


def lone_lf(wire: bytes) -> bool:
    return any(b == 10 and (i == 0 or wire[i - 1] != 13) for i, b in enumerate(wire))


def stats(line: str) -> dict[str, int]:
    """The app's STATS line (it may follow a frame on the same console line)."""
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line[line.index("STATS ") :])}


class Reference:
    """What the device must have seen and answered, from the bytes the host sent."""

    def __init__(self) -> None:
        self.deframer = dp.Deframer(escaped=True)
        self.answers: list[bytes] = []
        self.requests = 0
        self.ignored = 0

    def feed(self, data: bytes) -> None:
        for t, body in self.deframer.feed(data):
            if t != dp.CONTROL_REQUEST:
                self.ignored += 1
                continue
            self.requests += 1
            answer = echo(body)
            if answer is not None:
                self.answers.append(answer)


def responses(host: SerialHost) -> list[bytes]:
    return [body for t, body in host.frames if t == dp.CONTROL_RESPONSE]


@contextlib.asynccontextmanager
async def _echo_board(flash: Path) -> AsyncIterator[runner.VirtualBoard]:
    """The board at real speed, no IMU, once the echo app is up and ticking."""
    cfg = runner.BoardConfig(flash=str(flash), speed=1.0, imu=None)
    async with runner.VirtualBoard(cfg) as board:
        await board.wait_line("^SERIAL APP READY$", timeout=20)
        await board.wait_line("^TICK 2$")
        yield board


def test_requests_among_garbage_all_answered_in_order_then_ctrl_c_and_mpremote(tmp_path):
    need_micropython()
    flash = _flash(tmp_path)

    async def go():
        async with _echo_board(flash) as board:
            host = SerialHost(board.pty_path)
            try:
                # Silence: before a valid frame the console carries text only, although
                # the app offers a Status every 100 ms; text the host types is skipped.
                ref = Reference()
                hello = b"hello device\r\n\x00\x01\x02\x7f\x00"  # text, then a dropped chunk
                ref.feed(hello)
                host.write(hello)
                await host.read_for(0.4)
                assert host.frames == [] and host.reader.dropped == [], host.raw[-200:]
                assert b"TICK " in host.raw  # the app's text, undelimited: not yet a chunk
                assert b"\x00" not in board.transcript  # not one frame delimiter so far

                def send(data: bytes) -> None:
                    ref.feed(data)
                    host.write(data)

                bodies = [bytes([0x0C, 0, 4])]  # GET_INFO firmware revision wakes the link
                bodies += [bytes([0x01 + i % 0x20, i % 256, 3, 0x10, 10, i]) for i in range(1, 60)]
                bodies += [
                    bytes([0x7E, 200]),
                    bytes([0x0D, 201]),
                    bytes([0x0C]),
                    bytes(range(1, 80)),
                ]
                junk = [
                    b"",
                    b"abc\r\n",
                    b"\x00\x05\x06\x07",  # a chunk that is not COBS: dropped
                    b"\x00" + b"Z" * 400,  # oversize: dropped (ended by the next frame's 0x00)
                    b"\x00\x10\x41",  # bad escape: dropped
                    b"\x00\x00\x00",
                ]
                for i, body in enumerate(bodies):
                    send(junk[i % len(junk)])
                    send(request_frame(body))
                await host.wait_frames(1)
                got_all = len(ref.answers)
                t0 = time.monotonic()
                while len(responses(host)) < got_all and time.monotonic() - t0 < 10:
                    await host.wait_frames(len(host.frames) + 1)
                assert responses(host) == ref.answers  # every one, once, in order
                assert len(ref.answers) == len(bodies) - 2  # 0x7E and the 1-byte request
                since = len(board.lines)
                send(request_frame(bytes([0x7F, 1])))
                line = await board.wait_line("STATS frames_in=", since=since)
                s = stats(line)
                assert s["requests"] == ref.requests == len(bodies) + 1  # with the STATS request
                assert s["frames_in"] == ref.deframer.frames
                assert s["dropped"] == ref.deframer.dropped >= 4, (s, ref.deframer.dropped)
                assert s["texts"] == ref.deframer.texts >= 1
                assert s["errors"] == 1 and s["ignored"] == 0  # the 0x7E request
                assert s["muted"] >= 2  # the Status offers before the wake-up
                await host.wait_frames(len(host.frames) + 1)
                await host.read_for(0.3)
                # Status frames (the ticker) only since the link woke; nothing dropped.
                kinds = {t for t, _ in host.frames}
                assert kinds == {dp.CONTROL_RESPONSE, dp.STATUS}, kinds
                assert host.reader.dropped == []
                assert any(t.strip().startswith(b"REQ ") for t in host.reader.texts)
                # Frames holding a lone 0x0A came through as written (nothing dropped above).
                assert any(lone_lf(dp.frame(t, b)) for t, b in host.frames)

                # Ctrl-C on the pty stops the app as on any MicroPython board.
                host.port.write(b"\r\x03")
                await board.wait_line("^KeyboardInterrupt", timeout=10)
                await host.read_for(0.3)
                assert host.raw.endswith(b">>> "), host.raw[-200:]
                # Ctrl-D: soft reboot, main.py runs again, the new link is silent again.
                mark = len(board.transcript)
                host.port.write(b"\x04")
                boots = len(board.lines)
                await board.wait_line("^SERIAL APP READY$", since=boots)
                await board.wait_line("^TICK 3$", since=boots)
                assert b"\x00" not in board.transcript[mark:]
                n = len(host.frames)
                host.send(bytes([0x0C, 9, 4]))
                await host.wait_frames(n + 1)
                assert host.frames[n] == (dp.CONTROL_RESPONSE, bytes([0x0C, 9, 1, 4]))
            finally:
                host.close()
            # mpremote interrupts the running app (its Ctrl-C) and works: ls.
            assert not any(line.startswith("KeyboardInterrupt") for line in board.lines[boots:])
            out = await mpremote(board, "ls")
            assert re.search(r"\d+ main.py", out) and "roller/" in out, out
            assert any(line.startswith("KeyboardInterrupt") for line in board.lines[boots:])

    asyncio.run(go())


def test_2000_random_and_mutated_frames_through_the_pty(tmp_path):
    need_micropython()
    flash = _flash(tmp_path)
    rng = random.Random(2026)

    def mutate(wire: bytearray) -> bytes:
        """One frame (unescaped) damaged one of several ways."""
        kind = rng.randrange(5)
        if kind == 0:  # bit flips
            for _ in range(rng.randint(1, 3)):
                wire[rng.randrange(1, len(wire) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1:  # a byte lost
            del wire[rng.randrange(1, len(wire) - 1)]
        elif kind == 2:  # a byte inserted
            wire.insert(rng.randrange(1, len(wire) - 1), rng.randrange(256))
        elif kind == 3:  # truncated, the rest never comes
            wire = wire[: rng.randrange(1, len(wire) - 1)]
        else:  # a random byte replaced
            wire[rng.randrange(1, len(wire) - 1)] = rng.randrange(256)
        return dp.escape(bytes(wire))

    def item(i: int) -> bytes:
        k = rng.randrange(10)
        body = bytes([rng.randrange(256) for _ in range(rng.randint(0, 30))])
        if k < 4:  # a valid request
            return request_frame(bytes([rng.randrange(1, 0x20), i & 0xFF]) + body)
        if k < 7:  # a mutated request
            return mutate(bytearray(dp.frame(dp.CONTROL_REQUEST, bytes([1, i & 0xFF]) + body)))
        if k < 8:  # a valid frame of a device->host or unknown type
            return dp.frame(rng.choice([1, 2, 3, 6, 9, 0xFF]), body, escaped=True)
        if k < 9:  # line noise (no 0x03: that is Ctrl-C)
            return bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))).replace(
                b"\x03", b""
            )
        return b"\x00random text %d\r\n" % i

    async def go():
        async with _echo_board(flash) as board:
            host = SerialHost(board.pty_path)
            ref = Reference()
            items = 0
            try:
                t0 = time.monotonic()
                for batch in range(25):
                    data = b"".join(item(batch * 100 + j) for j in range(100))
                    items += 100
                    data += request_frame(bytes([0x0C, batch, 4]))  # every batch ends answered
                    ref.feed(data)
                    host.write(data)
                    want = len(ref.answers)
                    while len(responses(host)) < want:
                        await host.wait_frames(len(host.frames) + 1, timeout=10)
                    assert responses(host) == ref.answers, batch
                send_s = time.monotonic() - t0
                since = len(board.lines)
                stats_request = request_frame(bytes([0x7F, 0xAA]))
                ref.feed(stats_request)
                host.write(stats_request)
                s = stats(await board.wait_line("STATS frames_in=", since=since))
                await host.wait_frames(len(host.frames) + 1)
            finally:
                host.close()
            assert items >= 2000 and ref.requests >= 700, (items, ref.requests)
            assert s["requests"] == ref.requests and s["errors"] == 0, s
            assert s["dropped"] == ref.deframer.dropped > 500, (s, ref.deframer.dropped)
            assert s["frames_in"] == ref.deframer.frames and s["ignored"] == ref.ignored > 100
            assert s["texts"] == ref.deframer.texts
            assert responses(host) == ref.answers  # exactly one each, in order
            assert host.reader.dropped == []
            assert any(lone_lf(dp.frame(t, b)) for t, b in host.frames)
            assert board.lines.count("SERIAL APP READY") == 1  # never crashed nor restarted
            assert send_s < 30, send_s

    asyncio.run(go())


def test_device_frames_reach_the_pty_byte_for_byte(tmp_path):
    need_micropython()
    flash = _flash(tmp_path)

    async def go():
        async with _echo_board(flash) as board:
            term = PtyClient(board.pty_path)
            try:
                term.send(request_frame(bytes([0x0C, 1, 10, 10])))
                want = dp.frame(dp.CONTROL_RESPONSE, bytes([0x0C, 1, 1, 10, 10]))
                assert want.count(b"\n") == 2 and b"\r" not in want
                # The ESP32 writes sys.stdout.buffer untranslated; so does the board.
                got = await term.expect(re.escape(want), timeout=5)
                assert got.endswith(want)
            finally:
                term.close()

    asyncio.run(go())
