"""Fuzzing the running app (firmware/main.py) on the virtual board, over BLE and serial at once.

While a scripted session rolls passes, two hosts send requests built by a seeded
generator: valid ones, mutations of valid ones (bit flips, truncation, extension,
other tokens, unknown opcodes, bad operands, bad setting ids, types and texts) and
random bytes. Plain bleak (Bumble backend) writes them to the Control Point of an
unbonded link, keeping at most WINDOW requests unanswered; pyserial writes them as
frames on the console, with damaged frames, other message types, line noise and
text in between (never a 0x03: Ctrl-C stops the app on purpose, SPEC 7.3).

Every response must decode and answer exactly one request (op, token) with a code
that request may get (its parse by the codec, the link's security, the opcode's
outcomes). The session data follows a model fed only by valid requests and by the
passes: the serial link shows both in the device's order (a PassRecord goes out
when its pass is logged; session changes log the queued passes first), so every
session change comes from the serial link and the BLE generator leaves valid
START_SESSION / END_SESSION out. Settings (GET_SETTING), stored records
(REPORT_NUMBER, DELETE_RECORDS, REPORT_RECORDS), counts (REPORT_COUNTS) and Status
(session, oldest, newest; then again once every record is deleted) are checked
against it. The board never resets, no task crashes, and the passes on the console
are the script's.

Knobs: DERMAROLL_FUZZ_SEED (printed), DERMAROLL_FUZZ_COUNT (items per link).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import re
import time
from collections import Counter, deque
from pathlib import Path

from bleak import BleakClient

import dermaroll_protocol as p
from dermaroll.board import bleak_backend, runner
from dermaroll.board.bleak_backend import BleakClientBumble
from dermaroll.scoring import DIRECTIONS, match
from tests.board.boardtest import find_roller, need_micropython
from tests.board.serialhost import SerialHost, request_frame

SEED = int(os.environ.get("DERMAROLL_FUZZ_SEED", "2026"))
COUNT = int(os.environ.get("DERMAROLL_FUZZ_COUNT", "10000"))
SPEED = 1  # the device's time runs as the radio's (real time)
# Minutes of rolling: BLE takes about 130 writes/s, the passes go on a little after it.
SCRIPT_MIN = COUNT / 7000
# Requests a well-behaved host leaves unanswered at most. The device holds 8 writes
# waiting for its loop and 16 messages per link; past about 25 it drops writes.
WINDOW = 8
BATCH = 100  # serial items written at once (a few KB: the pty relay is in this loop)
PAUSE = 0.3  # s between serial batches
BOOT = 1
INFO = {1: "dermaroll", 2: "DR-1", 3: "240AC4000001", 4: "0.1.0 p1.0"}
SESSION_OPS = (p.OP_START_SESSION, p.OP_END_SESSION)
UNKNOWN_OPS = [op for op in range(256) if op not in p.REQUESTS]
TEXTS = (b"x,y,z", b"x,-z,y", b"-y,x,z", b"auto", b"mpu6050", b"lsm6dso", b"", b"q", b"\xff")
S = p.SUCCESS
OUTCOMES = {
    p.OP_SET_ZONE: {S},
    p.OP_NEXT_ZONE: {S},
    p.OP_START_SESSION: {S},
    p.OP_END_SESSION: {S},
    p.OP_RESET_COUNTS: {S},
    p.OP_GET_SETTING: {S},
    p.OP_SET_SETTING: {S, p.INVALID_OPERAND},
    p.OP_SET_TIME: {S},
    p.OP_CALIBRATE: {p.FAILED},  # main.py gives the control point no gravity source
    p.OP_RAW_STREAM: {S},
    p.OP_GET_INFO: {S},
    p.OP_REPORT_COUNTS: {S, p.FAILED},  # FAILED: the BLE queue had no room
    p.OP_REPORT_RECORDS: {S, p.NO_RECORDS_FOUND, p.BUSY, p.ABORTED},
    p.OP_DELETE_RECORDS: {S, p.NO_RECORDS_FOUND, p.BUSY},
    p.OP_ABORT: {S, p.BUSY},
    p.OP_REPORT_NUMBER: {S, p.BUSY},
}


def parse(body: bytes) -> tuple[int, list[int]]:
    """What the device must make of a request: the codec's code (NO_RESPONSE, SUCCESS or the
    error to answer) and its fields."""
    out = [0] * p.REQUEST_SLOTS
    try:
        p.parse_request(body, out)
    except p.ProtocolError as e:
        return e.code, out
    return S, out


def zone_name(zone: int) -> str:
    """As the console prints it: the name, or the number of a further zone (7..15)."""
    return runner.ZONE_NAMES[zone] if zone < len(runner.ZONE_NAMES) else str(zone)


def u32(v: int) -> bytes:
    return (v & 0xFFFFFFFF).to_bytes(4, "little")


class Model:
    """The session data as the valid requests and the passes must have left it."""

    def __init__(self) -> None:
        self.settings: dict[int, object] = {}
        self.seen: dict[int, set[object]] = {}  # every value a setting has had
        self.session = 1  # a fresh flash: main.py opens session 1
        self.active = True
        self.outside = False  # the counts are session 0's (passes since an END)
        self.counts: Counter[tuple[int, int]] = Counter()
        self.live: dict[int, bytes] = {}  # seq -> the PassRecord sent when it was logged
        self.stored: set[int] = set()
        self.replays = 0  # records of the serial link's running REPORT_RECORDS
        self.zone_counts: list[dict] = []  # ZoneCounts since the last REPORT_COUNTS answer
        self.reported: list[dict] = []  # those of the last REPORT_COUNTS

    def current(self) -> int:
        return self.session if self.active else 0

    def set(self, sid: int, value: object) -> None:
        self.settings[sid] = value
        self.seen.setdefault(sid, set()).add(value)

    def on_record(self, body: bytes) -> None:
        rec = p.decode_pass_record(body)
        seq = rec["seq"]
        if seq in self.live:  # a record access reply: the very record logged
            assert body == self.live[seq], (rec, p.decode_pass_record(self.live[seq]))
            assert seq in self.stored, seq
            self.replays += 1
            return
        assert seq == len(self.live) + 1, (seq, len(self.live))
        assert rec["boot"] == BOOT and rec["session"] == self.current(), (rec, self.current())
        if not self.active and not self.outside:  # the first pass after END
            self.counts.clear()
            self.outside = True
        self.counts[(rec["zone"], rec["direction"])] += 1
        self.live[seq] = body
        self.stored.add(seq)

    def matching(self, ge: int) -> int:
        return sum(1 for s in self.stored if s >= ge)

    def on_response(self, q: list[int], r: dict) -> None:
        """A serial response, in the device's order with the records around it."""
        op, res = q[0], r["result"]
        if res not in (S, p.NO_RECORDS_FOUND, p.ABORTED):
            return  # answered without doing it (checked against the request in Link.answer)
        ge = 1 if q[2] == p.OPERATOR_ALL else q[3]
        if op == p.OP_START_SESSION:
            self.session = self.session % 0xFFFF + 1
            assert r["session"] == self.session, (r, self.session)
            self.active, self.outside = True, False
            self.counts.clear()
        elif op == p.OP_END_SESSION:
            assert r["session"] == self.current(), (r, self.current())
            self.active = False
        elif op == p.OP_RESET_COUNTS:
            self.counts.clear()
        elif op == p.OP_SET_SETTING:
            self.set(q[2], r["value"])
        elif op == p.OP_GET_SETTING:
            if q[2] not in self.settings:  # the first reading
                self.set(q[2], r["value"])
            assert r["value"] == self.settings[q[2]], (r, self.settings[q[2]])
        elif op == p.OP_DELETE_RECORDS:
            gone = {s for s in self.stored if s <= q[3]}
            assert (res, r.get("count")) == ((S, len(gone)) if gone else (p.NO_RECORDS_FOUND, None))
            self.stored -= gone
        elif op == p.OP_REPORT_NUMBER:
            assert r["count"] == self.matching(ge), (q, r, sorted(self.stored))
        elif op == p.OP_REPORT_RECORDS and res in (S, p.ABORTED):
            if res == S:
                assert r["count"] == self.replays, (r, self.replays)
            self.replays = 0
        elif op == p.OP_REPORT_RECORDS and res == p.NO_RECORDS_FOUND:
            assert self.matching(ge) == 0, (q, sorted(self.stored))
        elif op == p.OP_REPORT_COUNTS:
            assert r["zones"] == len(self.zone_counts), (r, self.zone_counts)
            self.reported, self.zone_counts = self.zone_counts, []


class Link:
    """The requests one host sent that must get a response, matched by (op, token)."""

    def __init__(self, name: str, secure: bool, model: Model) -> None:
        self.name = name
        self.secure = secure
        self.model = model
        self.pending: dict[tuple[int, int], deque] = {}
        self.outstanding = 0
        self.sent = 0
        self.results: Counter[int] = Counter()
        self.read_settings: list[tuple[int, object]] = []
        self.arrived = asyncio.Event()

    def free_token(self, body: bytes) -> bytes:
        """The body with a token no unanswered request of its opcode uses."""
        if len(body) < 2 or (body[0], body[1]) not in self.pending:
            return body
        token = next(t for t in range(256) if (body[0], t) not in self.pending)
        return body[:1] + bytes([token]) + body[2:]

    def expect(self, body: bytes) -> None:
        self.sent += 1
        code, q = parse(body)
        if code == p.NO_RESPONSE:
            return
        self.pending.setdefault((body[0], body[1]), deque()).append((code, q))
        self.outstanding += 1

    def answer(self, data: bytes) -> tuple[list[int], dict]:
        r = p.decode_response(data)
        key = (r["op"], r["token"])
        assert self.pending.get(key), "%s: a response no request is waiting for: %r" % (
            self.name,
            r,
        )
        code, q = self.pending[key].popleft()
        if not self.pending[key]:
            del self.pending[key]
        self.outstanding -= 1
        self.results[r["result"]] += 1
        if code != S:
            want = {code}
        elif q[0] in p.BONDED_OPCODES and not self.secure:
            want = {p.NOT_PERMITTED}
        elif q[0] == p.OP_GET_TIME:
            want = {S if q[2] in (p.BOOT_CURRENT, BOOT) else p.NO_RECORDS_FOUND}
        else:
            want = OUTCOMES[q[0]]
        assert r["result"] in want, "%s: %r answered %r, want one of %s" % (self.name, q, r, want)
        if r["result"] == S:
            self._check_data(q, r)
        self.arrived.set()
        return q, r

    def _check_data(self, q: list[int], r: dict) -> None:
        op = q[0]
        if op in (p.OP_SET_ZONE, p.OP_RAW_STREAM):
            assert r.get("zone", r.get("on")) == q[2], r
        elif op == p.OP_NEXT_ZONE:
            assert 1 <= r["zone"] <= runner.LAST_ZONE, r
        elif op == p.OP_GET_INFO:
            assert (r["field"], r["text"]) == (q[2], INFO[q[2]]), r
        elif op in (p.OP_SET_TIME, p.OP_GET_TIME):
            assert r["boot"] == BOOT, r
            if op == p.OP_SET_TIME:
                assert (r["epoch_s"], r["epoch_ms"]) == (q[2], q[3]), (q, r)
        elif op in (p.OP_GET_SETTING, p.OP_SET_SETTING):
            assert (r["setting"], r["type"]) == (q[2], p.SETTINGS[q[2] - 1][1]), (q, r)
            if not self.secure:  # settings change on the serial link only: checked at the end
                self.read_settings.append((q[2], r["value"]))


class Requests:
    """Request bodies: valid, mutated, random (the generator both hosts use)."""

    def __init__(self, rng: random.Random, model: Model, sessions: bool) -> None:
        self.rng = rng
        self.model = model
        self.ops = [op for op in p.REQUESTS if sessions or op not in SESSION_OPS]
        self.sessions = sessions
        self.kinds: Counter[str] = Counter()

    def next(self) -> bytes:
        while True:
            k = self.rng.random()
            kind = "valid" if k < 0.35 else "mutated" if k < 0.85 else "random"
            body = getattr(self, kind)()
            code, q = parse(body)
            if self.sessions or code != S or q[0] not in SESSION_OPS:
                self.kinds[kind] += 1
                return body

    def random(self) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, 24))

    def seq(self) -> int:
        newest = len(self.model.live)
        r = self.rng
        return r.choice((0, 1, newest, newest - r.randint(1, 20), newest + 1, r.getrandbits(32)))

    def valid(self) -> bytes:
        r = self.rng
        op = r.choice(self.ops)
        b = bytearray([op, r.randrange(256)])
        if op == p.OP_SET_ZONE:
            b.append(r.randint(0, p.MAX_ZONE))
        elif op == p.OP_GET_SETTING:
            b.append(r.randint(1, len(p.SETTINGS)))
        elif op == p.OP_SET_SETTING:
            sid = r.randint(1, len(p.SETTINGS))
            stype = p.SETTINGS[sid - 1][1]
            b += bytes([sid, stype])
            if stype == p.SETTING_TEXT:
                text = r.choice(TEXTS)
                b += bytes([len(text)]) + text
            else:
                now = self.model.settings.get(sid, 0)
                now = now if isinstance(now, int) else 0
                v = r.choice((now, now + 1, now - 1, now * 2, now // 2, 0, -1, r.getrandbits(32)))
                b += u32(v)
        elif op == p.OP_SET_TIME:
            b += u32(r.getrandbits(32)) + r.randrange(1000).to_bytes(2, "little")
        elif op == p.OP_GET_TIME:
            b += r.choice((p.BOOT_CURRENT, BOOT, r.randrange(0x10000))).to_bytes(2, "little")
        elif op == p.OP_CALIBRATE:
            b.append(r.randint(1, 2))
        elif op == p.OP_RAW_STREAM:
            b.append(r.randint(0, 1))
        elif op == p.OP_GET_INFO:
            b.append(r.randint(1, 4))
        elif op in (p.OP_REPORT_RECORDS, p.OP_REPORT_NUMBER):
            operator = r.choice((p.OPERATOR_ALL, p.OPERATOR_GE, p.OPERATOR_GE))
            b += bytes([operator]) + u32(0 if operator == p.OPERATOR_ALL else self.seq())
        elif op == p.OP_DELETE_RECORDS:
            b += bytes([p.OPERATOR_LE]) + u32(self.seq())
        return bytes(b)

    def mutated(self) -> bytes:
        r = self.rng
        b = bytearray(self.valid())
        kind = r.randrange(8)
        if kind == 0:  # bit flips
            for _ in range(r.randint(1, 3)):
                i = r.randrange(len(b))
                b[i] ^= 1 << r.randrange(8)
        elif kind == 1:  # truncated
            del b[r.randrange(len(b)) :]
        elif kind == 2:  # extended
            b += r.randbytes(r.randint(1, 12))
        elif kind == 3:  # another token
            b[1] = r.randrange(256)
        elif kind == 4:  # an opcode the device does not know
            b[0] = r.choice(UNKNOWN_OPS)
        elif kind == 5:  # a bad operand byte
            if len(b) > 2:
                b[r.randrange(2, len(b))] = r.randrange(256)
            else:
                b.append(r.randrange(256))
        elif kind == 6:  # a bad setting: id, type, text length or UTF-8
            b = bytearray([r.choice((p.OP_GET_SETTING, p.OP_SET_SETTING)), r.randrange(256)])
            b += bytes([r.choice((0, len(p.SETTINGS) + 1, r.randrange(256))), r.randrange(4)])
            b += bytes([r.randrange(256)]) + r.randbytes(r.randint(0, 16))
        else:  # a byte replaced
            b[r.randrange(len(b))] = r.randrange(256)
        return bytes(b)


def serial_item(rng: random.Random, gen: Requests, link: Link) -> bytes:
    """What the serial host writes next: mostly a request frame, else damage and noise."""
    k = rng.random()
    if k < 0.75:
        return request_frame(link.free_token(gen.next()))
    if k < 0.85:  # a request frame damaged on the wire (escaped after: no Ctrl-C byte)
        wire = bytearray(p.frame(p.CONTROL_REQUEST, link.free_token(gen.valid())))
        i = rng.randrange(1, len(wire) - 1)
        how = rng.randrange(4)
        if how == 0:
            wire[i] ^= 1 << rng.randrange(8)
        elif how == 1:
            del wire[i]
        elif how == 2:
            wire.insert(i, rng.randrange(256))
        else:
            del wire[i:]
        return p.escape(bytes(wire))
    if k < 0.9:  # a valid frame of a type the device does not take
        return p.frame(rng.choice((1, 2, 3, 4, 6, 9, 0x7F, 0xFF)), rng.randbytes(20), escaped=True)
    if k < 0.97:  # line noise (0x03 is Ctrl-C on a MicroPython console, SPEC 7.3)
        return rng.randbytes(rng.randint(1, 60)).replace(b"\x03", b"")
    return b"typed text %d\r\n" % rng.randrange(1000)


class SerialFuzz:
    """The serial host: items in batches, each batch answered before the next."""

    def __init__(self, host: SerialHost, model: Model) -> None:
        self.host = host
        self.model = model
        self.link = Link("serial", True, model)
        self.ref = p.Deframer(escaped=True)  # what the device reads from the bytes sent
        self.read = 0  # frames of host.frames handled
        self.items = 0
        self.types: Counter[int] = Counter()

    def write(self, data: bytes) -> None:
        for t, body in self.ref.feed(data):
            if t == p.CONTROL_REQUEST:
                self.link.expect(body)
        self.host.write(data)

    def handle(self) -> None:
        model = self.model
        frames = self.host.frames
        while self.read < len(frames):
            t, body = frames[self.read]
            self.read += 1
            self.types[t] += 1
            if t == p.CONTROL_RESPONSE:
                q, r = self.link.answer(body)
                model.on_response(q, r)
            elif t == p.PASS_RECORD:
                model.on_record(body)
            elif t == p.ZONE_COUNTS:
                model.zone_counts.append(p.decode_zone_counts(body))
            else:
                raise AssertionError("serial: a frame of type %d" % t)

    async def settle(self, timeout: float = 20) -> None:
        """Read until every request sent has its response."""
        end = time.monotonic() + timeout
        while True:
            self.host.pump()
            self.handle()
            if not self.link.outstanding:
                return
            assert time.monotonic() < end, "serial: %d requests unanswered: %r" % (
                self.link.outstanding,
                list(self.link.pending.items())[:5],
            )
            await asyncio.sleep(0.002)

    async def request(self, body: bytes) -> None:
        self.write(request_frame(self.link.free_token(body)))
        await self.settle()

    async def start(self) -> None:
        """Wake the link (GET_INFO), then read every setting into the model."""
        await self.request(bytes([p.OP_GET_INFO, 0, p.INFO_FIRMWARE]))
        for sid in range(1, len(p.SETTINGS) + 1):
            await self.request(bytes([p.OP_GET_SETTING, sid, sid]))
        assert len(self.model.settings) == len(p.SETTINGS)

    async def run(self, seed: str, count: int, other: asyncio.Task) -> float:
        """`count` items at least, and on until the `other` host is done (pausing between
        batches) so that session changes and deletes meet the passes all along."""
        rng = random.Random(seed)
        gen = Requests(random.Random(seed + "-requests"), self.model, sessions=True)
        self.gen = gen
        t0 = time.monotonic()
        while self.items < count or not other.done():
            self.write(b"".join(serial_item(rng, gen, self.link) for _ in range(BATCH)))
            self.items += BATCH
            await self.settle()
            await asyncio.sleep(PAUSE)
        return time.monotonic() - t0


class BleFuzz:
    """The BLE host: unbonded, Control Point writes with at most WINDOW unanswered."""

    def __init__(self, client: BleakClient, model: Model) -> None:
        self.client = client
        self.model = model
        self.link = Link("ble", False, model)
        self.responses: list[bytes] = []
        self.records: list[bytes] = []
        self.statuses: list[dict] = []
        self.counts = 0
        self.writes = 0

    def _on_response(self, _c: object, data: bytearray) -> None:
        self.responses.append(bytes(data))
        self.link.arrived.set()

    async def subscribe(self) -> None:
        c = self.client
        await c.start_notify(p.CONTROL_POINT_UUID, self._on_response)
        await c.start_notify(p.PASS_RECORD_UUID, lambda _c, d: self.records.append(bytes(d)))
        await c.start_notify(p.STATUS_UUID, lambda _c, d: self.statuses.append(p.decode_status(d)))
        await c.start_notify(p.ZONE_COUNTS_UUID, self._on_counts)

    def _on_counts(self, _c: object, data: bytearray) -> None:
        p.decode_zone_counts(bytes(data))
        self.counts += 1

    def handle(self) -> None:
        while self.responses:
            self.link.answer(self.responses.pop(0))

    async def wait(self, most: int, timeout: float = 10) -> None:
        """Until at most `most` requests are unanswered."""
        async with asyncio.timeout(timeout):
            while True:
                self.handle()
                if self.link.outstanding <= most:
                    return
                self.link.arrived.clear()
                await self.link.arrived.wait()

    async def run(self, seed: str, count: int) -> float:
        gen = Requests(random.Random(seed), self.model, sessions=False)
        self.gen = gen
        t0 = time.monotonic()
        for _ in range(count):
            body = self.link.free_token(gen.next())
            await self.wait(WINDOW - 1)
            self.link.expect(body)
            await self.client.write_gatt_char(p.CONTROL_POINT_UUID, body, response=True)
            self.writes += 1
        await self.wait(0)
        return time.monotonic() - t0


async def fuzz(flash: Path) -> dict:
    script = runner.session_script(SCRIPT_MIN, seed=SEED)
    cfg = runner.BoardConfig(flash=str(flash), speed=SPEED, script=script, radio=True)
    model = Model()
    async with runner.VirtualBoard(cfg) as board:
        await board.wait_line("^SESSION ")
        bleak_backend.use_radio(board.radio)
        host = SerialHost(board.pty_path)
        try:
            serial = SerialFuzz(host, model)
            await serial.start()
            device = await find_roller()
            lost = []
            async with BleakClient(
                device, backend=BleakClientBumble, disconnected_callback=lost.append
            ) as client:
                ble = BleFuzz(client, model)
                await ble.subscribe()
                status0 = p.decode_status(await client.read_gatt_char(p.STATUS_UUID))
                t0 = time.monotonic()
                ble_task = asyncio.create_task(ble.run("%d-ble" % SEED, COUNT))
                serial_s = await serial.run("%d-serial" % SEED, COUNT, ble_task)
                ble_s = await ble_task
                fuzz_s = time.monotonic() - t0
                passes_during = len(model.live)
                await board.wait_world(board.script_end_ms + 3000, timeout=60)
                # The final state: counts, settings, records (checked against the model).
                await serial.request(bytes([p.OP_REPORT_COUNTS, 1]))
                for sid in range(1, len(p.SETTINGS) + 1):
                    await serial.request(bytes([p.OP_GET_SETTING, 2, sid]))
                await serial.request(bytes([p.OP_REPORT_NUMBER, 3, p.OPERATOR_ALL]) + u32(0))
                await serial.request(bytes([p.OP_REPORT_RECORDS, 4, p.OPERATOR_ALL]) + u32(0))
                await ble.wait(0)
                status = p.decode_status(await client.read_gatt_char(p.STATUS_UUID))
                oldest = min(model.stored, default=0)
                # With every record deleted, Status.newest still holds the last seq assigned.
                assert oldest > 0, "no record left to delete: the script ended before the fuzz"
                everything = bytes([p.OP_DELETE_RECORDS, 5, p.OPERATOR_LE]) + u32(len(model.live))
                await serial.request(everything)
                await asyncio.sleep(0.1)  # a few app loops
                emptied = p.decode_status(await client.read_gatt_char(p.STATUS_UUID))
                assert not lost, "the BLE link was lost during the fuzz"
        except BaseException:
            print("console, last lines:", *board.lines[-40:], sep="\n  ")
            raise
        finally:
            host.close()
    return {
        "board": board,
        "model": model,
        "serial": serial,
        "ble": ble,
        "status0": status0,
        "status": status,
        "emptied": emptied,
        "oldest": oldest,
        "times": (fuzz_s, ble_s, serial_s),
        "passes_during": passes_during,
    }


def test_10000_fuzzed_requests_each_over_ble_and_serial_while_rolling(tmp_path: Path) -> None:
    need_micropython()
    runner.install_firmware(tmp_path)
    print("fuzz seed %d (DERMAROLL_FUZZ_SEED), %d items per link" % (SEED, COUNT))
    res = asyncio.run(fuzz(tmp_path))
    board, model, serial, ble = res["board"], res["model"], res["serial"], res["ble"]
    fuzz_s, ble_s, serial_s = res["times"]
    print("fuzz: %.1f s, both hosts at once" % fuzz_s)
    print(
        "BLE: %d writes in %.1f s (%.0f/s), %s, results %s"
        % (ble.writes, ble_s, ble.writes / ble_s, dict(ble.gen.kinds), dict(ble.link.results))
    )
    print(
        "serial: %d items (%d request frames the device read) in %.1f s, %s, results %s"
        % (serial.items, serial.link.sent, serial_s, dict(serial.gen.kinds), serial.link.results)
    )
    print(*(ln for ln in board.lines if ln.startswith("STAT ")), sep="\n")
    print(
        "passes: %d (%d during the fuzz), serial frames %s, BLE records %d, zone counts %d"
        % (len(model.live), res["passes_during"], dict(serial.types), len(ble.records), ble.counts)
    )

    # Never crashed nor reset; the device's output on the console never corrupt.
    assert len(board.boots) == 1, board.boots
    bad = [ln for ln in board.lines if re.search(r"supervisor: task|Traceback|Error", ln)]
    assert not bad, bad
    assert not (tmp_path / "crash.log").exists()
    assert serial.host.reader.dropped == []

    # As many requests as asked for, each answered as the link allows (checked as they came).
    assert ble.writes >= COUNT and serial.items >= COUNT
    assert ble.link.outstanding == 0 and serial.link.outstanding == 0
    assert ble.link.results[p.NOT_PERMITTED] > 0 and serial.link.results[p.SUCCESS] > 0
    assert serial.link.results[p.INVALID_OPERAND] > 0 and ble.link.results[p.INVALID_OPERAND] > 0

    # Passes went on being counted: the console's are the script's and the serial link's.
    console = board.passes()
    assert [(q.seq, q.zone, q.dir) for q in console] == [
        (s, zone_name(r["zone"]), DIRECTIONS[r["direction"]])
        for s, r in ((s, p.decode_pass_record(b)) for s, b in model.live.items())
    ]
    anywhere = [dataclasses.replace(q, zone="any") for q in console]  # zones were fuzzed
    truth = [dataclasses.replace(t, zone="any") for t in board.truth]
    pairs = match(truth, anywhere)
    assert len(console) == len(truth) == len(pairs), (len(console), len(truth), len(pairs))
    assert res["passes_during"] >= 20, res["passes_during"]
    # Every PassRecord on BLE (live or a record access reply) is the one logged.
    for body in ble.records:
        assert body == model.live[p.decode_pass_record(body)["seq"]]

    # The session data is what the valid requests and the passes made it.
    status0, status = res["status0"], res["status"]
    assert (status0["session"], status0["newest"], status0["boot"]) == (1, 0, BOOT), status0
    assert status["session"] == model.current(), (status, model.current())
    assert status["newest"] == len(model.live), (status, len(model.live))
    assert status["oldest"] == res["oldest"], (status, res["oldest"])
    assert status["boot"] == BOOT
    assert not model.stored, sorted(model.stored)
    assert (res["emptied"]["oldest"], res["emptied"]["newest"]) == (0, len(model.live)), res
    counts = {(c["zone"], d): c[name] for c in model.reported for d, name in enumerate(DIRECTIONS)}
    assert {k: v for k, v in counts.items() if v} == dict(model.counts), model.reported
    assert all(c["session"] == model.current() for c in model.reported), model.reported
    assert all(s["newest"] <= len(model.live) for s in ble.statuses)
    # BLE read every setting as one of the values the serial link gave it.
    assert all(v in model.seen[sid] for sid, v in ble.link.read_settings), model.seen
