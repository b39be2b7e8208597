"""Every pass exactly once over BLE while the link drops at random moments (SPEC 6.6).

The product firmware (firmware/main.py) runs a multi-zone session with the radio
on. One bleak host (Bumble backend) bonds, keeps the live PassRecords and, on
every connection, resynchronises as SPEC 6.6 says: read Status,
REPORT_RECORDS >= committed + 1, commit on its answer, DELETE_RECORDS <=
committed (bonded). The radio link is dropped (`VirtualRadio.drop_link`: a
supervision timeout, nothing exchanged) once per connection, at a moment a
seeded RNG picks (seed printed; DERMAROLL_DROP_SEED overrides it):

- live:     while live passes stream, after a random time;
- request:  right after the REPORT_RECORDS write was acknowledged;
- transfer: after the k-th PassRecord of the transfer (k random below the
            number due), before its answer;
- answer:   after the answer, before DELETE_RECORDS;
- delete:   right after the DELETE_RECORDS write, before its answer.

At the end the host's records (dermaroll.recordsync) must be exactly seqs
1..newest, none lost, none conflicting, and their tally per (zone, direction)
must equal the device's REPORT_COUNTS and the PASS lines on the console.

A focused test drops links while roller.ble drains a full notification queue
(tests/board/apps/ble_app.py): the disconnect IRQ that empties the queue in
the middle of the drain must not send the device into an endless loop.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from bleak import BleakClient

import dermaroll_protocol as p
from dermaroll.board import bleak_backend, runner
from dermaroll.board.bleak_backend import BleakClientBumble
from dermaroll.board.radio import VirtualRadio
from dermaroll.recordsync import RecordSync
from dermaroll.scoring import DIRECTIONS
from tests.board.boardkit import DeviceProcess, aio
from tests.board.boardtest import counts_tally, find_roller, names, need_micropython

SEED = int(os.environ.get("DERMAROLL_DROP_SEED", "7"))
DROPS_MIN = 24  # drop -> reconnect -> resync cycles (the must-show asks for >= 20)
REST_MS = 6000  # no zone, the roller resting: the host bonds meanwhile
SPEED = 5
SESSION_MIN = 2.0  # minutes of scripted rolling
ANSWER_S = 5.0  # a control response comes within this (real seconds) or the test fails
# Where a connection's link is dropped: cards per shuffled round (deck()).
PHASES = {"live": 2, "request": 1, "transfer": 5, "answer": 1, "delete": 1}
TRANSFER_MIN = 8  # before a "transfer" connection, let this many records pile up


class LinkDown(Exception):
    """This connection's link is gone (dropped by the test)."""


class Host:
    """The bleak host: one connection at a time, the record bookkeeping across them."""

    def __init__(self, board: runner.VirtualBoard, rng: random.Random) -> None:
        self.board = board
        self.rng = rng
        self.sync = RecordSync()
        self.client: BleakClient | None = None
        self.lost = asyncio.Event()
        self.responses: list[dict] = []
        self.counts: list[dict] = []
        self.token = 0
        self.arrived = 0  # PassRecord notifications on this connection
        self.deleted_upto = 0
        self.planned: Counter[str] = Counter()  # connections by the phase drawn for them
        self.phases: Counter[str] = Counter()  # drops by the phase they hit
        self.connections = 0
        self.deletes = 0

    # -- the link ------------------------------------------------------------------

    def on_record(self, _c: object, data: bytearray) -> None:
        self.sync.add(p.decode_pass_record(bytes(data)))
        self.arrived += 1

    async def connect(self) -> None:
        device = await find_roller()
        lost = self.lost = asyncio.Event()
        client = BleakClient(
            device, disconnected_callback=lambda _c: lost.set(), backend=BleakClientBumble
        )
        await client.connect()
        self.client = client
        self.connections += 1
        self.arrived = 0
        self.responses = []
        responses = self.responses
        # Subscribe before asking (SPEC 3.5); then bond, or encrypt from the bond:
        # DELETE_RECORDS needs a bonded link (SPEC 3.2).
        await client.start_notify(p.PASS_RECORD_UUID, self.on_record)
        await client.start_notify(
            p.CONTROL_POINT_UUID, lambda _c, d: responses.append(p.decode_response(bytes(d)))
        )
        await client.start_notify(
            p.ZONE_COUNTS_UUID, lambda _c, d: self.counts.append(p.decode_zone_counts(bytes(d)))
        )
        await client.start_notify(p.STATUS_UUID, lambda _c, d: None)  # read when needed
        await client.pair()

    async def drop(self, phase: str) -> None:
        """Drop the radio link now, as a supervision timeout does."""
        assert await self.board.radio.drop_link() == 1, phase
        await asyncio.wait_for(self.lost.wait(), 5)
        self.phases[phase] += 1
        assert self.client is not None
        await self.client.disconnect()
        self.client = None

    async def cut(self, phase: str) -> None:
        """Drop the link in the middle of the procedure: raises LinkDown."""
        await self.drop(phase)
        raise LinkDown(phase)

    async def request(self, op: int, operands: bytes = b"") -> int:
        """Write a request (with response); its token."""
        assert self.client is not None
        self.token = (self.token + 1) & 0xFF
        await self.client.write_gatt_char(
            p.CONTROL_POINT_UUID, bytes([op, self.token]) + operands, response=True
        )
        return self.token

    def answered(self, op: int, token: int) -> dict | None:
        for r in self.responses:
            if r["op"] == op and r["token"] == token:
                return r
        return None

    async def answer(self, op: int, token: int) -> dict:
        end = time.monotonic() + ANSWER_S
        while (r := self.answered(op, token)) is None:
            assert time.monotonic() < end, "no answer to op %#x: %s" % (op, self.responses)
            await asyncio.sleep(0.005)
        return r

    async def records_request(self, op: int, operator: int, seq: int) -> int:
        buf = bytearray(7)
        p.encode_request_records(buf, 0, op, 0, operator, seq)
        return await self.request(op, bytes(buf[2:]))

    # -- one connection: the host procedure of SPEC 6.6 -----------------------------

    async def resync(self, phase: str | None) -> None:
        """Status, REPORT_RECORDS >= c + 1, commit, DELETE_RECORDS <= c. Cuts the link
        (LinkDown) at `phase` when it is one of these steps."""
        assert self.client is not None
        status = p.decode_status(await self.client.read_gatt_char(p.STATUS_UUID))
        ge = self.sync.begin(status)
        due = status["newest"] - self.sync.committed
        if ge == 1:
            token = await self.records_request(p.OP_REPORT_RECORDS, p.OPERATOR_ALL, 0)
        else:
            token = await self.records_request(p.OP_REPORT_RECORDS, p.OPERATOR_GE, ge)
        start = self.arrived
        if phase == "request":
            await self.cut(phase)
        if phase == "transfer":
            # Records of the transfer in, its answer not: a drop inside the transfer.
            k = self.rng.randint(1, max(1, due // 2))
            while self.arrived - start < k and not self.answered(p.OP_REPORT_RECORDS, token):
                await asyncio.sleep(0)
            if not self.answered(p.OP_REPORT_RECORDS, token):
                await self.cut(phase)
            # The transfer was over before the k-th record: the drop falls to the live phase.
        answer = await self.answer(p.OP_REPORT_RECORDS, token)
        assert answer["result"] in (p.SUCCESS, p.NO_RECORDS_FOUND), answer
        lost = self.sync.complete()
        assert not lost, "records reported lost: %s" % lost
        if phase == "answer":
            await self.cut(phase)
        if self.sync.committed > self.deleted_upto:
            token = await self.records_request(
                p.OP_DELETE_RECORDS, p.OPERATOR_LE, self.sync.committed
            )
            if phase == "delete":
                await self.cut(phase)
            r = await self.answer(p.OP_DELETE_RECORDS, token)
            assert r["result"] in (p.SUCCESS, p.NO_RECORDS_FOUND), r
            self.deleted_upto = self.sync.committed
            self.deletes += 1

    async def live(self, next_phase: str, until_ms: float) -> None:
        """Stream live passes, then drop. Before a "transfer" connection, until records
        beyond the committed one pile up (so the transfer has records to cut into)."""
        end = time.monotonic() + (4.0 if next_phase == "transfer" else self.rng.uniform(0.1, 1.2))
        while time.monotonic() < end and self.board.world_ms < until_ms:
            if next_phase == "transfer":
                held = sum(1 for s in self.sync.records if s > self.sync.committed)
                if held >= TRANSFER_MIN:
                    break
            await asyncio.sleep(0.01)
        await self.drop("live")

    async def report_counts(self) -> tuple[dict, list[dict]]:
        self.counts.clear()
        token = await self.request(p.OP_REPORT_COUNTS)
        return await self.answer(p.OP_REPORT_COUNTS, token), list(self.counts)


def deck(rng: random.Random) -> Iterator[str]:
    """Drop phases in shuffled rounds of PHASES' weights: every phase in every round."""
    cards = [phase for phase, n in PHASES.items() for _ in range(n)]
    while True:
        rng.shuffle(cards)
        yield from cards


async def session(flash: Path) -> tuple[runner.VirtualBoard, Host, dict]:
    script = runner.session_script(SESSION_MIN, seed=SEED)
    script["zones"].insert(0, {"zone": None, "strokes": [{"rest_ms": REST_MS}]})
    cfg = runner.BoardConfig(flash=str(flash), speed=SPEED, script=script, radio=True)
    async with runner.VirtualBoard(cfg) as board:
        await board.wait_line("^SESSION ")
        bleak_backend.use_radio(board.radio)
        host = Host(board, random.Random(SEED))
        end_ms = board.script_end_ms + 3000  # the last passes are out
        plan = deck(random.Random(SEED))
        phase = next(plan)
        try:
            while sum(host.phases.values()) < DROPS_MIN or board.world_ms < end_ms:
                await host.connect()
                host.planned[phase] += 1
                after = next(plan)
                try:
                    await host.resync(phase)
                    await host.live(after, end_ms)
                except LinkDown:
                    pass
                phase = after
            # The last connection: no drop; resync, then the device's own counts.
            await host.connect()
            await host.resync(None)
            answer, counts = await host.report_counts()
            assert host.client is not None
            status = p.decode_status(await host.client.read_gatt_char(p.STATUS_UUID))
            await host.client.disconnect()
        finally:
            bleak_backend.use_radio(None)
    return board, host, {"answer": answer, "counts": counts, "status": status}


def console_times(board: runner.VirtualBoard) -> dict[int, tuple[int, int]]:
    """seq -> (t_end_ms as device ticks, duration_ms) from the SESSION and PASS lines."""
    out = {}
    start = 0
    for line in board.lines:
        f = line.split()
        if f[:1] == ["SESSION"]:
            start = int(f[1])
        elif f[:1] == ["PASS"]:
            out[int(f[1])] = (start + int(f[5]), int(f[5]) - int(f[4]))
    return out


def test_link_drops_every_pass_exactly_once(tmp_path: Path) -> None:
    need_micropython()
    runner.install_firmware(tmp_path)
    print("link drops: seed %d" % SEED)
    t0 = time.monotonic()
    board, host, dev = asyncio.run(session(tmp_path))
    real = time.monotonic() - t0
    sync = host.sync
    drops = sum(host.phases.values())
    print(
        "link drops: %d drops by phase %s (drawn %s), %d connections, %d deletes, "
        "%d records, %d duplicates received, %.0f s of session in %.1f s real"
        % (
            drops,
            dict(host.phases),
            dict(host.planned),
            host.connections,
            host.deletes,
            len(sync.records),
            sync.duplicates,
            board.script_end_ms / 1000,
            real,
        )
    )
    console = board.passes()
    assert len({q.zone for q in console}) >= 3, console  # a multi-zone session
    newest = dev["status"]["newest"]
    assert newest == len(console) == console[-1].seq, (newest, len(console))

    # Every pass once: seqs 1..newest, nothing lost, no two versions of a record.
    assert sorted(sync.records) == list(range(1, newest + 1)), sync.missing(newest)
    assert not sync.lost and not sync.conflicts, (sync.lost, sync.conflicts)
    assert sync.committed == newest
    # The same passes the console printed (seq, zone, direction).
    got = [
        (r["seq"], runner.ZONE_NAMES[r["zone"]], DIRECTIONS[r["direction"]])
        for _s, r in sorted(sync.records.items())
    ]
    assert got == [(q.seq, q.zone, q.dir) for q in console]
    # Live and resent records are one record (a conflict would show above): the device
    # time of the pass end (SPEC 5.1), the same as on the console.
    times = {s: (r["t_end_ms"], r["duration_ms"]) for s, r in sync.records.items()}
    assert times == console_times(board)
    # Host tally == device tally (REPORT_COUNTS of the session) == console tally.
    session_id = dev["status"]["session"]
    assert {r["session"] for r in sync.records.values()} == {session_id}
    assert dev["answer"]["result"] == p.SUCCESS, dev["answer"]
    tally = names(sync.tally(session_id))
    assert tally == counts_tally(dev["counts"]), dev["counts"]
    assert tally == dict(Counter((q.zone, q.dir) for q in console))

    # The drops were the ones asked for: enough, in every phase, some inside a transfer;
    # the resyncs re-sent records that had come live, and dedup dropped them.
    assert drops >= DROPS_MIN and host.connections == drops + 1
    assert set(host.phases) == set(PHASES), host.phases
    assert host.phases["transfer"] >= 5, host.phases
    assert sync.duplicates > 0
    assert dev["status"]["oldest"] == 0  # everything committed was deleted
    assert real < 120, real


async def drop_during_burst(radio: VirtualRadio, dev: DeviceProcess) -> int:
    """Connect, start a burst of 200 PassRecords, drop the link once 20 have arrived;
    the number that arrived."""
    got: list[bytes] = []
    lost = asyncio.Event()
    client = BleakClient(
        await find_roller(), disconnected_callback=lambda _c: lost.set(), backend=BleakClientBumble
    )
    await client.connect()
    await client.start_notify(p.PASS_RECORD_UUID, lambda _c, d: got.append(bytes(d)))
    await dev.x("burst(200)")
    async with asyncio.timeout(5):
        while len(got) < 20:  # the queue is draining now
            await asyncio.sleep(0)
    assert await radio.drop_link() == 1
    await asyncio.wait_for(lost.wait(), 5)
    await client.disconnect()
    return len(got)


@aio
async def test_link_drop_while_the_notification_queue_drains(tmp_path: Path) -> None:
    """roller.ble: a disconnect IRQ between two notifications of a drain (the virtual
    board runs it right after a radio call) empties the link's queue; the drain stops
    there, the device goes on, and the closed link's queue is empty, not negative."""
    need_micropython()
    async with VirtualRadio() as radio:
        dev = DeviceProcess(radio, "ble_app.py", {"BLE_APP_BONDS": str(tmp_path / "bonds.json")})
        await dev.start()
        try:
            bleak_backend.use_radio(radio)
            for _ in range(5):
                assert await drop_during_burst(radio, dev) < 200  # dropped mid-burst
                # The device still answers, and no link slot holds a queue.
                queues = await dev.e("[(k.conn, k.count, k.raw_count) for k in ble.links]")
                assert queues == [(-1, 0, 0)] * len(queues), queues
        finally:
            bleak_backend.use_radio(None)
            await dev.stop()
