"""Helpers for the virtual board tests (not a test file): mpremote, a pty client."""

from __future__ import annotations

import asyncio
import os
import re
import select
import sys
import time
import tty
from pathlib import Path

import pytest
from bleak import BleakScanner
from bleak.backends.device import BLEDevice

import dermaroll_protocol as dp
from dermaroll.board import runner
from dermaroll.board.bleak_backend import BleakScannerBumble
from dermaroll.scoring import DIRECTIONS

MPREMOTE = Path(sys.executable).with_name("mpremote")


def need_micropython() -> None:
    if runner.find_micropython() is None:
        if os.environ.get("CI"):
            pytest.fail(runner.MICROPYTHON_MISSING)
        pytest.skip(runner.MICROPYTHON_MISSING)


async def find_roller(timeout: float = 5) -> BLEDevice:
    """The board advertising the dermaroll service, found by unchanged bleak (Bumble backend)."""
    device = await BleakScanner.find_device_by_filter(
        lambda _d, ad: dp.SERVICE_UUID in ad.service_uuids,
        timeout=timeout,
        backend=BleakScannerBumble,
    )
    assert device is not None, "the board was not found by its service UUID"
    return device


def counts_tally(counts: list[dict]) -> dict[tuple[str, str], int]:
    """ZoneCounts messages (decoded) as {(zone name, direction name): passes}, zeros left out."""
    return {(runner.ZONE_NAMES[c["zone"]], d): c[d] for c in counts for d in DIRECTIONS if c[d]}


def names(tally: dict[tuple[int, int], int]) -> dict[tuple[str, str], int]:
    """A {(zone index, direction index): n} tally keyed by names, as counts_tally gives."""
    return {(runner.ZONE_NAMES[z], DIRECTIONS[d]): n for (z, d), n in tally.items()}


async def mpremote(
    board: runner.VirtualBoard, *args: str, timeout: float = 30, status: int = 0
) -> str:
    """Run the real mpremote against the board's console pty; its output (exit status checked)."""
    proc = await asyncio.create_subprocess_exec(
        str(MPREMOTE),
        "connect",
        board.pty_path,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == status, "mpremote %s: exit %s\n%s" % (args, proc.returncode, text)
    return text


class PtyClient:
    """A terminal on the board's console: what a user (or picocom) sees."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)
        self.buf = b""

    def close(self) -> None:
        os.close(self.fd)

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    async def expect(self, pattern: bytes, timeout: float = 10) -> bytes:
        """Read until `pattern` (a regex) shows up; returns everything up to its end."""
        end = time.monotonic() + timeout
        rx = re.compile(pattern, re.S)
        while True:
            m = rx.search(self.buf)
            if m:
                got, self.buf = self.buf[: m.end()], self.buf[m.end() :]
                return got
            if time.monotonic() > end:
                raise AssertionError("no %r on the console; got %r" % (pattern, self.buf[-400:]))
            r, _, _ = select.select([self.fd], [], [], 0)
            if r:
                self.buf += os.read(self.fd, 4096)
            else:
                await asyncio.sleep(0.01)
