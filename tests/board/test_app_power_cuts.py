"""Power cuts at random moments of a session, some in the middle of a pass log append.

One board and one flash directory live through RUNS power cuts at random
world times (seeded: the seed is printed, DERMAROLL_CUT_SEED replays one).
Half are plain cuts (the interpreter killed wherever the firmware waits),
half torn writes (runner.torn_write: the power goes in the middle of the
next flash write, a pass record's, with a random number of its 24 bytes on
the flash). After each cut the flash is read here, by a reader of the format
in docs/pass-log.md, then the board is powered on again. Each time:

- every pass the console ever printed is in the log as printed (seq, zone,
  direction, times as the boot's ticks_ms, length, boot, session);
- a torn record lies where the fault log says, with the bytes the tear
  kept; the next boot skips it (its slot is clean at the next cut) and the
  seqs go on above it: consecutive within a boot, never one printed twice;
- REPORT_COUNTS on the serial link, asked as the board boots, answers the
  tally of the log's records of the session (plus passes printed before);
- the boot counter (state file, records) goes up by one per boot.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import struct
import time
from binascii import crc_hqx
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import dermaroll_protocol as dp
from dermaroll import motion
from dermaroll.board import runner
from dermaroll.scoring import DIRECTIONS
from roller import passlog  # importable once runner has installed the micropython shim
from tests.board.boardtest import counts_tally, names, need_micropython
from tests.board.serialhost import request_frame

RUNS = 24  # half plain cuts, half torn writes
SCRIPT_MINUTES = 6.0
RECORD = passlog.RECORD_SIZE
PER_SEGMENT = passlog.PER_SEGMENT
CAPACITY = passlog.SEGMENTS * PER_SEGMENT
_RECORD = struct.Struct("<BBBBIHHIIH")  # docs/pass-log.md, without the CRC
_TEAR = re.compile(r"^tear (\S+) at (\d+) kept (\d+) of (\d+)$")


class Record(NamedTuple):
    seq: int
    zone: int
    direction: int
    t_start: int
    t_end: int
    length: int  # 0.1 mm
    boot: int
    session: int


def _sealed(data: bytes, magic: int) -> bool:
    """Starts with `magic`, ends with the CRC-16/CCITT-FALSE of the rest."""
    return data[0] == magic and crc_hqx(data[:-2], 0xFFFF) == int.from_bytes(data[-2:], "little")


class Flash:
    """What the flash holds after a cut: the pass log's slots, its state, the session snapshot."""

    def __init__(self, root: Path) -> None:
        self.slots: list[bytes] = []
        for seg in range(passlog.SEGMENTS):
            data = (root / passlog.DIR / ("s%02d" % seg)).read_bytes()
            assert len(data) == PER_SEGMENT * RECORD, (seg, len(data))
            self.slots += [data[i : i + RECORD] for i in range(0, len(data), RECORD)]
        self.records: dict[int, Record] = {}
        self.damaged: set[int] = set()
        for slot, raw in enumerate(self.slots):
            if raw in (bytes(RECORD), b"\xff" * RECORD):
                continue  # blank
            f = _RECORD.unpack_from(raw)
            seq = f[4]
            if _sealed(raw, passlog.MAGIC) and seq and seq % CAPACITY == slot:
                self.records[seq] = Record(seq, f[2], f[3], f[7], f[8], f[9], f[5], f[6])
            else:
                self.damaged.add(slot)
        state = (root / passlog.DIR / "state").read_bytes()
        assert len(state) == 14 and _sealed(state, 0xD5), state
        _, _, self.boot, self.watermark, self.high = struct.unpack_from("<BBHII", state)
        snap = (root / "session.bin").read_bytes()
        assert len(snap) == 10 and _sealed(snap, 0xE1), snap
        _, self.active, self.session, self.since = struct.unpack_from("<BBHI", snap)

    def tally(self, session: int, since: int) -> Counter[tuple[int, int]]:
        """(zone, direction) counts of the session's records after seq `since`."""
        return Counter(
            (r.zone, r.direction)
            for r in self.records.values()
            if r.session == session and r.seq > since
        )


def _pass(line: str, session_ms: int) -> tuple[int, int, int, int, int, int]:
    """A console PASS line as logged: (seq, zone, direction, t_start, t_end, length in
    0.1 mm), its times (ms since the SESSION line) turned into the boot's ticks_ms."""
    w = line.split()
    mm, tenth = w[6].split(".")
    return (
        int(w[1]),
        runner.ZONE_NAMES.index(w[2]),
        DIRECTIONS.index(w[3]),
        (session_ms + int(w[4])) & 0xFFFFFFFF,
        (session_ms + int(w[5])) & 0xFFFFFFFF,
        int(mm) * 10 + int(tenth),
    )


def boot_output(data: bytes) -> list[tuple]:
    """A boot's output in order: ("PASS", fields) per console pass, (type, body) per frame."""
    out: list[tuple] = []
    session_ms = 0
    for chunk in data.split(b"\x00"):
        if not chunk:
            continue
        try:
            out.append(dp.unframe(chunk))
            continue
        except dp.ProtocolError:
            pass  # console text
        for line in chunk.decode(errors="replace").splitlines():
            w = line.split()
            if len(w) == 2 and w[0] == "SESSION":
                session_ms = int(w[1])
            elif len(w) == 7 and w[0] == "PASS":
                out.append(("PASS", _pass(line, session_ms)))
    return out


def schedule(rng: random.Random, truth_ends: list[int], end_ms: int) -> list[runner.Fault]:
    """RUNS faults in world time, each well after the previous one's boot."""
    kinds = ["cut", "tear"] * (RUNS // 2)
    rng.shuffle(kinds)
    faults = []
    t = 4000
    for kind in kinds:
        if kind == "cut":
            t += rng.randint(4000, 12000)
            faults.append(runner.power_cut(t))
            continue
        arm = t + rng.randint(4000, 8000)
        faults.append(runner.torn_write(arm, rng.randint(0, RECORD)))
        # It tears the first append after `arm`: one of the next two passes (a boot's
        # detector may miss a stroke it came in the middle of). The next fault after both.
        t = [e for e in truth_ends if e > arm + 500][1] + 3000
    assert t < end_ms - 5000, "the script is too short for the schedule"
    return faults


def counts_answer(out: list[tuple], token: int) -> tuple[dict, list[dict], list[tuple]]:
    """The REPORT_COUNTS answer `token` in a boot's output: the response, the ZoneCounts
    sent with it, and the console passes printed before it."""
    at = [
        i
        for i, (t, body) in enumerate(out)
        if t == dp.CONTROL_RESPONSE and dp.decode_response(body)["token"] == token
    ]
    assert len(at) == 1, "REPORT_COUNTS %d: %d answers" % (token, len(at))
    response = dp.decode_response(out[at[0]][1])
    counts = [dp.decode_zone_counts(body) for t, body in out[: at[0]] if t == dp.ZONE_COUNTS]
    return response, counts, [p for t, p in out[: at[0]] if t == "PASS"]


def check_tear(line: str, keep: int, seq: int, now: Flash) -> set[int]:
    """The tear hit the append of `seq`, where the fault log `line` says, and left the
    bytes it kept; returns the damaged slot it left (none if the record landed whole)."""
    slot = seq % CAPACITY
    m = _TEAR.match(line)
    assert m is not None, line
    file = "%s/s%02d" % (passlog.DIR, slot // PER_SEGMENT)
    assert m.groups() == (file, str(slot % PER_SEGMENT * RECORD), str(keep), str(RECORD))
    raw = now.slots[slot]
    assert raw[keep:] == bytes(RECORD - keep), raw  # the rest never got there
    if keep == 0:
        return set()
    assert raw[0] == passlog.MAGIC, raw
    if keep >= 8:
        assert int.from_bytes(raw[4:8], "little") == seq, raw
    if keep == RECORD:
        assert seq in now.records  # whole, though the power went before it was announced
    # A record torn short is damaged (unless the bytes it lost were zeros anyway).
    return set() if seq in now.records else {slot}


async def run_cuts(flash: Path, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    script = runner.session_script(SCRIPT_MINUTES, seed=seed % 1000)
    start_ms = runner.BoardConfig.start_ms
    rendered = motion.render(script)
    ends = [t.t_end_ms + start_ms for t in rendered.truth]
    faults = schedule(rng, ends, start_ms + rendered.trace.duration_ms)
    cfg = runner.BoardConfig(flash=str(flash), speed=None, script=script, faults=faults)
    board = runner.VirtualBoard(cfg)
    printed: dict[int, Record] = {}  # every pass the console printed, as logged
    next_seq = 1  # the seq the next pass must get
    before: Flash | None = None  # the flash at the previous cut
    session = 0
    mid = 0  # tears that put some of the record's bytes on the flash, not all
    async with board:
        mark = 0
        for n in range(1, RUNS + 2):
            # Asked before the interpreter is up: the request waits on the console for
            # the serial link, which answers it in the app loop's first round.
            while board.pid is None:
                await asyncio.sleep(0.001)
            board.write(request_frame(bytes([dp.OP_REPORT_COUNTS, n])))
            fault = faults[n - 1] if n <= RUNS else None
            end = time.monotonic() + 30
            if fault is None:  # the last boot: one pass, then the runner cuts
                await board.wait_line("^PASS ", since=board.boots[n - 1].first_line)
                await board.power_cut()
            while board.powered:
                assert time.monotonic() < end, "boot %d: no cut" % n
                await asyncio.sleep(0.005)
            kind = "runner" if fault is None else fault.kind
            assert board.boots[n - 1].end == "C" and board.events[-1][1] == "C " + kind, (
                board.events[-3:]
            )
            out = boot_output(bytes(board.transcript[mark:]))
            now = Flash(flash)
            if n == 1:
                session = now.session
            assert (now.session, now.active, now.since) == (session, 1, 0)  # one session, on
            assert now.boot == n  # this boot counted, once
            # The counts as the board came up: the log's tally for the session (as the
            # last cut left it), plus any pass printed before the answer.
            response, counts, early = counts_answer(out, n)
            assert response["op"] == dp.OP_REPORT_COUNTS and response["result"] == dp.SUCCESS
            assert response["zones"] == len(counts) and all(
                c["session"] == session for c in counts
            ), (response, counts)
            expect = before.tally(session, before.since) if before is not None else Counter()
            expect.update((p[1], p[2]) for p in early)
            assert counts_tally(counts) == names(expect), (n, counts, expect)
            # The seqs go on: consecutive, above every seq printed or torn before.
            for p in (p for t, p in out if t == "PASS"):
                assert p[0] == next_seq, (n, p, next_seq)
                next_seq += 1
                printed[p[0]] = Record(*p, boot=n, session=session)
            # Every pass ever printed is in flash, intact.
            for seq, rec in printed.items():
                assert now.records.get(seq) == rec, (n, seq, now.records.get(seq), rec)
            damaged: set[int] = set()
            if fault is not None and fault.kind == "tear":
                keep = fault.args[0]
                assert len(board.fault_log) == sum(f.kind == "tear" for f in faults[:n])
                damaged = check_tear(board.fault_log[-1], keep, next_seq, now)
                next_seq += keep > 0  # logged or burned: never handed out again
                mid += 0 < keep < RECORD
            # Damage from an earlier tear was cleaned at boot; only this cut's is there.
            assert now.damaged == damaged, (n, now.damaged, damaged)
            before = now
            mark = len(board.transcript)
            if fault is not None:
                await board.power_on()
    tears = sum(f.kind == "tear" for f in faults)
    return {"boots": RUNS + 1, "passes": len(printed), "tears": tears, "mid_record": mid}


def test_power_cuts_at_random_moments_keep_the_log_the_seqs_and_the_counts(tmp_path):
    need_micropython()
    seed = int(os.environ.get("DERMAROLL_CUT_SEED") or random.randrange(1 << 30))
    print("power cuts: seed %d (DERMAROLL_CUT_SEED=%d replays it)" % (seed, seed))
    runner.install_firmware(tmp_path)
    t0 = time.monotonic()
    stats = asyncio.run(run_cuts(tmp_path, seed))
    print("power cuts: %s in %.1f s" % (stats, time.monotonic() - t0))
    # Enough of the session, and most tears in the middle of a record (0 < keep < 24).
    assert stats["passes"] >= 60 and stats["mid_record"] >= RUNS // 4, stats
