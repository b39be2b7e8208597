"""The running app's timing on the virtual board, seen from a bleak host (Bumble backend).

    python bench/app/bench_app.py [--quick]

firmware/main.py boots on a flash whose pass log is full (pre-filled to its
2048-record capacity by roller.passlog in MicroPython), with the radio on,
at speed 1: the radio runs on real time, so only at speed 1 are the host's
arrival times and the board's clock the same clock (a virtual ms is a real
ms). A scripted session with a zone change every ~20 s plays after a rest
in which the host connects and subscribes to PassRecord, ZoneCounts, Status
and the Control Point. During the session it asks REPORT_RECORDS (all): the
whole log goes out as PassRecord notifications while live passes go on.

Printed (results in bench/app/README.md):

- latency, per live pass: its end (the PassRecord's t_end_ms, device clock,
  mapped to world time) to the PassRecord notification at the host, split
  into detection (end -> the PASS line reaching the runner) and the rest
  (log append, BLE, the radio's connection events);
- the whole-log transfer: records, seconds, records/s, live passes meanwhile;
- the sampler's STAT line at t = 60 s (late, missed, max_lag_ms,
  forced_drains) covering the session, the burst and the transfer;
- the MEM line (gc.mem_free / mem_alloc after start-up).

The log append's own cost is bench/passlog's (not measured again here).
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "host", ROOT / "protocol", ROOT):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from bleak import BleakClient  # noqa: E402

import dermaroll_protocol as p  # noqa: E402
from dermaroll.board import bleak_backend, runner  # noqa: E402
from dermaroll.board.bleak_backend import BleakClientBumble  # noqa: E402
from tests.board.boardtest import find_roller  # noqa: E402

REST_MS = 8000  # the roller resting after boot: the host connects meanwhile
STAT_MS = 60000  # main.py prints STAT every 60 s of sampler time
_STAT_RE = re.compile(r"^STAT (.*)$")
_MEM_RE = re.compile(r"^MEM free (\d+) alloc (\d+)$")

# Fills roller.passlog's default ring in the flash directory (cwd), as passes would.
_PREFILL = """
from array import array
from roller.passlog import PassLog
log = PassLog()
log.open()
p = array("i", (0, 1, 0, 0, 0, 400))
for s in range(log.last_seq + 1, log.last_seq + 1 + log.capacity):
    p[0] = s
    p[3] = s * 1000
    p[4] = s * 1000 + 600
    log.append(p, 1, 0)
log.close()
print(log.oldest, log.newest, log.capacity)
"""


def prefill_log(flash: Path) -> tuple[int, int]:
    """Fill the flash's pass log to capacity; returns (oldest, newest) seq."""
    exe = runner.find_micropython()
    if exe is None:
        raise runner.BoardError(runner.MICROPYTHON_MISSING)
    env = dict(os.environ, MICROPYPATH=".")
    out = subprocess.run(
        [exe, "-c", _PREFILL], cwd=flash, env=env, capture_output=True, text=True, check=True
    )
    oldest, newest, capacity = map(int, out.stdout.split())
    assert newest - oldest + 1 == capacity, out.stdout
    return oldest, newest


@dataclass
class Run:
    """What one measured session gave. Times are world ms (the board's clock)."""

    board: runner.VirtualBoard
    prefilled: tuple[int, int]  # oldest, newest seq put in the log before boot
    # Every PassRecord notification at the host, in arrival order: seq, arrival,
    # its t_end_ms mapped to world time. A pass made after boot arrives live and,
    # when it was in the log at the REPORT_RECORDS, once more from the transfer.
    arrivals: list[tuple[int, float, float]] = field(default_factory=list)
    printed: dict[int, float] = field(default_factory=dict)  # seq -> arrival of its PASS line
    transfer_ms: tuple[float, float] = (0.0, 0.0)  # REPORT_RECORDS written, response arrived
    response: dict = field(default_factory=dict)
    stat: dict[str, int] = field(default_factory=dict)  # the STAT line at 60 s, if waited for
    errors: dict[str, int] = field(default_factory=dict)  # Status.errors: live, transfer, end
    mem: tuple[int, int] = (0, 0)
    real_s: float = 0.0

    def live(self) -> dict[int, tuple[float, float]]:
        """seq -> (arrival, end) of the first arrival of each pass made after boot."""
        out: dict[int, tuple[float, float]] = {}
        for seq, at, end in self.arrivals:
            if seq > self.prefilled[1] and seq not in out:
                out[seq] = (at, end)
        return out

    def transferred(self) -> list[int]:
        """The seqs that came from the transfer, in arrival order: the pre-filled records,
        then the second arrival of each pass made after boot."""
        seen: set[int] = set()
        out = []
        for seq, _at, _end in self.arrivals:
            if seq <= self.prefilled[1] or seq in seen:
                out.append(seq)
            seen.add(seq)
        return out

    def latencies(self) -> list[float]:
        """Pass end -> its notification at the host, per live pass."""
        return [at - end for at, end in self.live().values()]

    def detection(self) -> list[float]:
        """Pass end -> its PASS line at the runner, per live pass."""
        live = self.live()
        return [self.printed[s] - live[s][1] for s in live if s in self.printed]


async def _host(board: runner.VirtualBoard, run: Run, transfer_at_ms: float, end_ms: float) -> None:
    """Subscribe to everything, ask REPORT_RECORDS (all) at transfer_at_ms, read Status around."""
    device = await find_roller()
    responses: list[dict] = []

    def on_record(_c: object, data: bytearray) -> None:
        now = board.estimate_world_us() / 1000
        rec = p.decode_pass_record(bytes(data))
        run.arrivals.append((rec["seq"], now, board.boots[-1].world_ms(rec["t_end_ms"])))

    async def errors() -> int:
        return p.decode_status(await client.read_gatt_char(p.STATUS_UUID))["errors"]

    async with BleakClient(device, backend=BleakClientBumble) as client:
        await client.start_notify(p.PASS_RECORD_UUID, on_record)
        await client.start_notify(p.ZONE_COUNTS_UUID, lambda _c, _d: None)
        await client.start_notify(p.STATUS_UUID, lambda _c, _d: None)
        await client.start_notify(
            p.CONTROL_POINT_UUID, lambda _c, d: responses.append(p.decode_response(bytes(d)))
        )
        await board.wait_world(transfer_at_ms, timeout=transfer_at_ms / 1000 + 30)
        run.errors["live"] = await errors()
        req = bytearray(7)
        p.encode_request_records(req, 0, p.OP_REPORT_RECORDS, 9, p.OPERATOR_ALL, 0)
        t0 = board.estimate_world_us() / 1000
        await client.write_gatt_char(p.CONTROL_POINT_UUID, bytes(req), response=True)
        async with asyncio.timeout(60):
            while not responses:
                await asyncio.sleep(0.005)
        run.transfer_ms = (t0, board.estimate_world_us() / 1000)
        run.response = responses[0]
        run.errors["transfer"] = await errors()
        await board.wait_world(end_ms, timeout=end_ms / 1000 + 30)
        run.errors["end"] = await errors()


async def measure(
    flash: Path, minutes: float, transfer_after_ms: int, *, stat: bool = True, seed: int = 4
) -> Run:
    """Boot the app on a full log, play a session with a host connected; see the module doc.

    The transfer is asked `transfer_after_ms` into the script's rolling. With
    `stat`, the board runs on to its first STAT line (60 s after SESSION),
    which then covers the whole session.
    """
    runner.install_firmware(flash)
    prefilled = prefill_log(flash)
    script = runner.session_script(minutes, seed=seed)
    script["zones"].insert(0, {"zone": None, "strokes": [{"rest_ms": REST_MS}]})
    cfg = runner.BoardConfig(flash=str(flash), speed=1, imu="mpu6050", script=script, radio=True)
    printed: dict[int, float] = {}

    def on_line(line: str) -> None:
        if line.startswith("PASS "):
            printed[int(line.split()[1])] = board.estimate_world_us() / 1000

    board = runner.VirtualBoard(cfg, on_line=on_line)
    run = Run(board, prefilled, printed=printed)
    t0 = time.monotonic()
    async with board:
        line = await board.wait_line("^SESSION ")
        stat_ms = board.boots[-1].world_ms(int(line.split()[1])) + STAT_MS
        end_ms = board.script_end_ms + 2000
        if stat:  # the script's passes are over by then; its last rest may be cut
            end_ms = min(end_ms, stat_ms - 500)
        bleak_backend.use_radio(board.radio)
        try:
            await _host(board, run, cfg.start_ms + REST_MS + transfer_after_ms, end_ms)
        finally:
            bleak_backend.use_radio(None)
        if stat:
            m = _STAT_RE.match(await board.wait_line(_STAT_RE.pattern, timeout=STAT_MS / 1000))
            assert m is not None
            run.stat = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
        run.real_s = time.monotonic() - t0
    mem = next(m for m in (_MEM_RE.match(x) for x in board.lines) if m)
    run.mem = (int(mem.group(1)), int(mem.group(2)))
    return run


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def report(run: Run) -> str:
    lat = run.latencies()
    det = run.detection()
    rest = [at - run.printed[s] for s, (at, _end) in run.live().items() if s in run.printed]
    t0, t1 = run.transfer_ms
    n = len(run.transferred())
    free, alloc = run.mem

    def dist(name: str, xs: list[float]) -> str:
        return "  %-36s: p50 %6.1f  p95 %6.1f  max %6.1f  ms (n=%d)" % (
            name,
            statistics.median(xs),
            pct(xs, 0.95),
            max(xs),
            len(xs),
        )

    live_during = sum(1 for at, _end in run.live().values() if t0 <= at <= t1)
    lines = [
        "session at speed 1 (1 virtual ms = 1 real ms), %.0f s real; log pre-filled %d..%d"
        % (run.real_s, *run.prefilled),
        "latency, pass end (t_end_ms) -> PassRecord at the bleak host, %d live passes:" % len(lat),
        dist("end -> notified", lat),
        dist("  detection: end -> PASS line", det),
        dist("  rest: PASS line -> notified", rest),
        "REPORT_RECORDS (all) of the full log: %d records in %.2f s (%.0f/s), %d live"
        " passes meanwhile; response %s count %s"
        % (
            n,
            (t1 - t0) / 1000,
            n / ((t1 - t0) / 1000),
            live_during,
            "SUCCESS" if run.response.get("result") == p.SUCCESS else run.response,
            run.response.get("count"),
        ),
        "Status.errors (0x0004: sampler overrun) after the live passes 0x%04x, after the"
        " transfer 0x%04x, at the end 0x%04x"
        % (run.errors["live"], run.errors["transfer"], run.errors["end"]),
        "MEM after start-up: free %d alloc %d bytes (unix heap %d KiB)"
        % (free, alloc, (free + alloc) // 1024),
    ]
    st = run.stat
    if st:
        lines.append(
            "sampler at t=%d ms (STAT): late=%d missed=%d max_lag_ms=%d forced_drains=%d ticks=%d"
            % (
                st["t_ms"],
                st["late"],
                st["missed"],
                st["max_lag_ms"],
                st["forced_drains"],
                st["ticks"],
            )
        )
    return "\n".join(lines)


async def stat_at(flash: Path, speed: float | None, host: bool) -> dict[str, int]:
    """The first STAT line of the app with the radio on, at `speed`, with or without a
    bleak host subscribed to PassRecords: which clock setting the overruns come from."""
    runner.install_firmware(flash)
    script = runner.session_script(0.5, seed=4)
    script["zones"].insert(0, {"zone": None, "strokes": [{"rest_ms": REST_MS}]})
    cfg = runner.BoardConfig(
        flash=str(flash), speed=speed, imu="mpu6050", script=script, radio=True
    )
    async with runner.VirtualBoard(cfg) as board:
        await board.wait_line("^SESSION ")
        if host:
            bleak_backend.use_radio(board.radio)
            try:
                device = await find_roller()
                async with BleakClient(device, backend=BleakClientBumble) as client:
                    await client.start_notify(p.PASS_RECORD_UUID, lambda _c, _d: None)
                    await board.wait_line(_STAT_RE.pattern, timeout=90)
            finally:
                bleak_backend.use_radio(None)
        m = _STAT_RE.match(await board.wait_line(_STAT_RE.pattern, timeout=90))
    assert m is not None
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def main() -> int:
    quick = "--quick" in sys.argv
    if runner.find_micropython() is None:
        sys.exit("bench_app: the `micropython` interpreter is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        if quick:  # ~30 s of rolling; Status bits instead of the STAT line at 60 s
            run = asyncio.run(measure(Path(tmp), 0.3, 3000, stat=False))
        else:  # ~50 s of rolling, all of it under the first STAT line
            run = asyncio.run(measure(Path(tmp), 0.5, 12000))
    print(report(run))
    if quick:
        return 0
    print("first STAT line by clock setting (radio on; the same ~50 s session, no transfer):")
    for speed, host in ((5, True), (5, False), (1, True), (None, False)):
        with tempfile.TemporaryDirectory() as tmp:
            st = asyncio.run(stat_at(Path(tmp), speed, host))
        print(
            "  speed %-4s %-12s: late=%d missed=%d max_lag_ms=%d"
            % (
                "max" if speed is None else speed,
                "bleak host" if host else "no host",
                st["late"],
                st["missed"],
                st["max_lag_ms"],
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
