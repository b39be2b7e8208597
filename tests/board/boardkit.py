"""Test fixtures for the virtual board's radio: a VirtualRadio, a MicroPython process running
an app against it, and Bumble centrals on the same link.

pytest-asyncio is not used: each test is a plain function whose body runs under
`asyncio.run` (the `aio` decorator), and everything a test starts is stopped in
`finally` blocks (`Board` is an async context manager).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import functools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bumble import hci, pairing
from bumble.device import Connection, Device, DeviceConfiguration, Peer
from bumble.host import Host

from dermaroll.board import bleak_backend
from dermaroll.board.radio import VirtualRadio
from tests import micropython_harness as harness

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
DEVICE_DIR = harness.ROOT / "host" / "dermaroll" / "board" / "device"
TEST_TIMEOUT = 30.0


def aio(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async test body with asyncio.run and an overall timeout."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        async def main() -> Any:
            try:
                return await asyncio.wait_for(fn(*args, **kwargs), TEST_TIMEOUT)
            finally:
                bleak_backend.use_radio(None)
                bleak_backend.use_transport(None)

        return asyncio.run(main())

    return wrapper


class DeviceError(Exception):
    """An exception raised inside MicroPython by an agent command."""

    def __init__(self, kind: str, args: tuple[Any, ...]) -> None:
        super().__init__(kind, args)
        self.kind = kind
        self.exc_args = args

    @property
    def errno(self) -> Any:
        return self.exc_args[0] if self.exc_args else None


def _literal(text: str) -> Any:
    """Parse the agent's repr (memoryviews come as h'<hex>')."""
    text = re.sub(r"h'([0-9a-f]*)'", r"bytes.fromhex('\1')", text)
    if "bytes.fromhex" in text:
        return eval(text, {"__builtins__": {}, "bytes": bytes})  # only literals and fromhex
    return ast.literal_eval(text)


class DeviceProcess:
    """The MicroPython interpreter running `app` with the board's modules on MICROPYPATH."""

    def __init__(self, radio: VirtualRadio, app: str, extra_env: dict[str, str] | None = None):
        self.radio = radio
        self.app = APPS / app
        self.extra_env = extra_env or {}
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.events: list[tuple[int, Any]] = []
        self._changed = asyncio.Condition()
        self._results: dict[int, asyncio.Future[str]] = {}
        self._next = 0
        self._reader: asyncio.Task[None] | None = None
        self._event_cursor = 0

    async def start(self, ready: str | None = "READY") -> None:
        exe = harness.find_micropython()
        assert exe is not None, harness.MISSING
        env = dict(os.environ)
        env.update(self.radio.device_env)
        env.update(self.extra_env)
        env["MICROPYPATH"] = os.pathsep.join([str(DEVICE_DIR), str(APPS), harness.FROZEN])
        self.proc = await asyncio.create_subprocess_exec(
            exe,
            str(self.app),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=str(APPS),
        )
        self._reader = asyncio.create_task(self._read())
        if ready is not None:
            await self.wait_line(ready)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            text = line.decode(errors="replace").rstrip("\n")
            self.lines.append(text)
            if text.startswith("EV "):
                _, code, rest = text.split(" ", 2)
                self.events.append((int(code), _literal(rest)))
            elif text.startswith(("R ", "X ")):
                parts = text.split(" ", 2)
                fut = self._results.pop(int(parts[1]), None)
                if fut is not None and not fut.done():
                    fut.set_result(text)
            async with self._changed:
                self._changed.notify_all()
        for fut in self._results.values():
            if not fut.done():
                fut.set_exception(EOFError("the device process ended:\n" + self.output()))
        async with self._changed:
            self._changed.notify_all()

    def output(self) -> str:
        return "\n".join(self.lines)

    async def _command(self, mode: str, src: str, timeout: float) -> Any:
        assert self.proc is not None and self.proc.stdin is not None
        self._next += 1
        ident = self._next
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._results[ident] = fut
        src = src.replace("\n", "\\n")
        self.proc.stdin.write(("%d %s %s\n" % (ident, mode, src)).encode())
        await self.proc.stdin.drain()
        text = await asyncio.wait_for(fut, timeout)
        kind, _, rest = text.split(" ", 2)
        if kind == "X":
            name, args = rest.split(" ", 1)
            raise DeviceError(name, _literal(args))
        return _literal(rest)

    async def e(self, expression: str, timeout: float = 10.0) -> Any:
        """Evaluate an expression in the app; return its value (or raise DeviceError)."""
        return await self._command("e", expression, timeout)

    async def x(self, statements: str, timeout: float = 10.0) -> None:
        """Execute statements in the app (or raise DeviceError)."""
        await self._command("x", statements, timeout)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        async def loop() -> Any:
            async with self._changed:
                while not (result := predicate()):
                    if self.proc is not None and self.proc.returncode is not None:
                        raise EOFError("the device process ended:\n" + self.output())
                    await self._changed.wait()
                return result

        try:
            return await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(
                "timed out waiting; device output so far:\n" + self.output()
            ) from None

    async def wait_line(self, text: str, timeout: float = 10.0) -> str:
        return await self.wait_for(
            lambda: next((line for line in self.lines if text in line), None), timeout
        )

    async def event(self, code: int, timeout: float = 10.0) -> Any:
        """The next event `code` after the previous one returned by event() (in order)."""

        def find() -> Any:
            for i in range(self._event_cursor, len(self.events)):
                if self.events[i][0] == code:
                    self._event_cursor = i + 1
                    return (self.events[i][1],)
            return None

        return (await self.wait_for(find, timeout))[0]

    def codes(self) -> list[int]:
        return [code for code, _ in self.events]

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()


class Central:
    """A Bumble central on the radio's link (for what bleak cannot do)."""

    def __init__(self, radio: VirtualRadio, io: int = 3, mitm: bool = False) -> None:
        self.radio = radio
        self.io = io
        self.mitm = mitm
        self.device: Device | None = None
        self.controller: Any = None
        self.numbers: list[int] = []
        self.accept_numbers = True
        self.passkey: int | None = None
        self.displayed: list[int] = []

    async def start(self) -> Central:
        source, sink = self.radio.open_host_transport()
        self.controller = source
        config = DeviceConfiguration(name="central", address=hci.Address.generate_static_address())
        device = Device(config=config, host=Host(source, sink))
        central = self

        class Delegate(pairing.PairingDelegate):
            async def compare_numbers(self, number: int, digits: int) -> bool:
                central.numbers.append(number)
                return central.accept_numbers

            async def get_number(self) -> int | None:
                return central.passkey

            async def display_number(self, number: int, digits: int) -> None:
                central.displayed.append(number)

        device.pairing_config_factory = lambda connection: pairing.PairingConfig(
            sc=True,
            mitm=self.mitm,
            bonding=True,
            delegate=Delegate(pairing.PairingDelegate.IoCapability(self.io)),
            identity_address_type=pairing.PairingConfig.AddressType.RANDOM,
        )
        await device.power_on()
        self.device = device
        return self

    async def connect(self, timeout: float = 5.0) -> tuple[Connection, Peer]:
        assert self.device is not None
        connection = await self.device.connect(self.radio.address, timeout=timeout)
        return connection, Peer(connection)

    async def scan(
        self, duration: float = 0.1, active: bool = True, expect: bool = True
    ) -> list[Any]:
        """Advertisements heard during `duration` seconds (only the board advertises);
        with `expect`, keep listening (up to 3 s) until at least one is heard."""
        assert self.device is not None
        heard: list[Any] = []
        one = asyncio.Event()

        def on_adv(advertisement: Any) -> None:
            heard.append(advertisement)
            one.set()

        self.device.on(self.device.EVENT_ADVERTISEMENT, on_adv)
        await self.device.start_scanning(active=active, filter_duplicates=False)
        await asyncio.sleep(duration)
        if expect:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(one.wait(), 3)
        await self.device.stop_scanning()
        self.device.remove_listener(self.device.EVENT_ADVERTISEMENT, on_adv)
        return heard

    async def stop(self) -> None:
        if self.controller is not None:
            self.radio.remove_host_controller(self.controller)
            self.controller = None


class Board:
    """A radio, the agent (or another app) on MicroPython, and centrals; all torn down on exit."""

    def __init__(self, app: str = "agent.py", **radio_kwargs: Any) -> None:
        self.radio = VirtualRadio(**radio_kwargs)
        self.app = app
        self.dev: DeviceProcess | None = None
        self.centrals: list[Central] = []

    async def __aenter__(self) -> Board:
        await self.radio.start()
        try:
            self.dev = DeviceProcess(self.radio, self.app)
            await self.dev.start()
        except BaseException:
            await self.radio.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            for central in self.centrals:
                await central.stop()
            if self.dev is not None:
                await self.dev.stop()
        finally:
            await self.radio.stop()

    async def central(self, **kwargs: Any) -> Central:
        central = await Central(self.radio, **kwargs).start()
        self.centrals.append(central)
        return central

    # Shortcuts to the device.
    async def e(self, expression: str, timeout: float = 10.0) -> Any:
        assert self.dev is not None
        return await self.dev.e(expression, timeout)

    async def x(self, statements: str, timeout: float = 10.0) -> None:
        assert self.dev is not None
        await self.dev.x(statements, timeout)

    async def event(self, code: int, timeout: float = 10.0) -> Any:
        assert self.dev is not None
        return await self.dev.event(code, timeout)

    async def setup_peripheral(
        self, services: str, adv: bytes = b"\x02\x01\x06", interval_us: int = 20000
    ) -> Any:
        """Activate, register `services` (MicroPython source), advertise; return the handles."""
        await self.x("ble.active(True)")
        handles = await self.e("ble.gatts_register_services(%s)" % services)
        await self.x("ble.gap_advertise(%d, %r)" % (interval_us, adv))
        return handles


SVC = "UUID('6E400001-B5A3-F393-E0A9-E50E24DCCA9E')"


def chr_uuid(n: int) -> str:
    return "UUID('6E40%04X-B5A3-F393-E0A9-E50E24DCCA9E')" % n


def uuid_str(n: int) -> str:
    return "6e40%04x-b5a3-f393-e0a9-e50e24dcca9e" % n


def services(*chars: tuple[int, int] | tuple[int, int, list[tuple[int, int]]]) -> str:
    """MicroPython source for one service with characteristics (n, flags[, [(n, flags)]])."""
    parts = []
    for char in chars:
        if len(char) == 2:
            parts.append("(%s, %d)" % (chr_uuid(char[0]), char[1]))
        else:
            descs = ", ".join("(UUID(0x%04X), %d)" % d for d in char[2])
            parts.append("(%s, %d, (%s,))" % (chr_uuid(char[0]), char[1], descs))
    return "((%s, (%s,)),)" % (SVC, ", ".join(parts))


def find_char(peer: Peer, n: int) -> Any:
    for service in peer.services:
        for characteristic in service.characteristics:
            if characteristic.uuid.to_hex_str("-").lower() == uuid_str(n):
                return characteristic
    raise KeyError(n)


async def discover(peer: Peer) -> None:
    await peer.discover_services()
    for service in peer.services:
        await service.discover_characteristics()
        for characteristic in service.characteristics:
            await characteristic.discover_descriptors()
