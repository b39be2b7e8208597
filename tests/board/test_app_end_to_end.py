"""The product firmware (firmware/main.py) end to end: a scripted session, BLE and serial hosts.

The board runs boot.py/main.py with the radio on; a multi-zone script drives
the drum, the IMU and the zone button. Two hosts listen at once: plain bleak
through the Bumble backend (Pass Record notifications, then REPORT_COUNTS on
the Control Point and the Zone Counts notifications it sends) and pyserial on
the console (tests/board/serialhost.py: the same over the serial link). The
passes each host receives must be exactly the passes printed on the console,
those must match the script's ground truth, and the zone counts must be the
tally of the passes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from bleak import BleakClient

import dermaroll_protocol as p
from dermaroll.board import bleak_backend, runner
from dermaroll.board.bleak_backend import BleakClientBumble
from dermaroll.scoring import DIRECTIONS, Score
from tests.board.boardtest import counts_tally, find_roller, need_micropython
from tests.board.serialhost import SerialHost

REST_MS = 20000  # no zone, the roller resting: the hosts connect meanwhile
SPEED = 5


def key(seq: int, zone: int, direction: int) -> tuple[int, str, str]:
    return (seq, runner.ZONE_NAMES[zone], DIRECTIONS[direction])


def tally(passes: list[tuple[int, str, str]]) -> dict[tuple[str, str], int]:
    return dict(Counter((zone, d) for _seq, zone, d in passes))


async def ble_host(board: runner.VirtualBoard, started: asyncio.Event) -> dict:
    """Subscribe to passes, wait for the script's end, ask REPORT_COUNTS."""
    device = await find_roller()
    records: list[dict] = []
    counts: list[dict] = []
    responses: list[dict] = []
    async with BleakClient(device, backend=BleakClientBumble) as client:
        await client.start_notify(
            p.PASS_RECORD_UUID, lambda _c, d: records.append(p.decode_pass_record(bytes(d)))
        )
        await client.start_notify(
            p.ZONE_COUNTS_UUID, lambda _c, d: counts.append(p.decode_zone_counts(bytes(d)))
        )
        await client.start_notify(
            p.CONTROL_POINT_UUID, lambda _c, d: responses.append(p.decode_response(bytes(d)))
        )
        started.set()
        assert not board.passes(), "the session started before the host subscribed"
        await board.wait_world(board.script_end_ms + 3000, timeout=50)
        counts.clear()
        req = bytearray(2)
        p.encode_request(req, 0, p.OP_REPORT_COUNTS, 7)
        await client.write_gatt_char(p.CONTROL_POINT_UUID, bytes(req), response=True)
        async with asyncio.timeout(5):
            while not responses:
                await asyncio.sleep(0.01)
        status = p.decode_status(await client.read_gatt_char(p.STATUS_UUID))
    return {"records": records, "counts": counts, "response": responses[0], "status": status}


async def serial_host(board: runner.VirtualBoard, started: asyncio.Event) -> dict:
    """Wake the serial link (GET_INFO), collect PassRecords, then REPORT_COUNTS."""
    host = SerialHost(board.pty_path)
    try:
        req = bytearray(3)
        p.encode_request_u8(req, 0, p.OP_GET_INFO, 1, p.INFO_FIRMWARE)  # wakes the link
        host.send(bytes(req))
        end = time.monotonic() + 5
        while not host.responses():
            assert time.monotonic() < end, bytes(host.raw[-300:])
            await host.read_for(0.02)
        started.set()
        await board.wait_world(board.script_end_ms + 3000, timeout=50)
        await host.read_for(0.3)
        before = len(host.frames)
        p.encode_request(req, 0, p.OP_REPORT_COUNTS, 8)
        host.send(bytes(req[:2]))
        end = time.monotonic() + 5
        while not any(
            t == p.CONTROL_RESPONSE and p.decode_response(b)["op"] == p.OP_REPORT_COUNTS
            for t, b in host.frames[before:]
        ):
            assert time.monotonic() < end, bytes(host.raw[-300:])
            await host.read_for(0.05)
        frames = host.frames
    finally:
        host.close()
    return {
        "records": [p.decode_pass_record(b) for t, b in frames[:before] if t == p.PASS_RECORD],
        "counts": [p.decode_zone_counts(b) for t, b in frames[before:] if t == p.ZONE_COUNTS],
        "responses": [p.decode_response(b) for t, b in frames if t == p.CONTROL_RESPONSE],
    }


async def session(flash: Path) -> tuple[runner.VirtualBoard, dict, dict, float]:
    script = runner.session_script(1.5, seed=4)
    # The zone button's first press comes after the rest, not while the board boots.
    script["zones"].insert(0, {"zone": None, "strokes": [{"rest_ms": REST_MS}]})
    cfg = runner.BoardConfig(
        flash=str(flash), speed=SPEED, imu="mpu6050", script=script, radio=True
    )
    t0 = time.monotonic()
    async with runner.VirtualBoard(cfg) as board:
        await board.wait_line("^SESSION ")
        bleak_backend.use_radio(board.radio)
        ble_up, serial_up = asyncio.Event(), asyncio.Event()
        ble = asyncio.create_task(ble_host(board, ble_up))
        ser = asyncio.create_task(serial_host(board, serial_up))
        ble_res, ser_res = await asyncio.gather(ble, ser)
    return board, ble_res, ser_res, time.monotonic() - t0


def test_session_over_ble_and_serial_matches_console_and_truth(tmp_path: Path) -> None:
    need_micropython()
    runner.install_firmware(tmp_path)
    board, ble, ser, real = asyncio.run(session(tmp_path))
    print("end to end: %.0f s of session in %.1f s real" % (board.script_end_ms / 1000, real))

    console = [(q.seq, q.zone, q.dir) for q in board.passes()]
    s = Score()
    s.add(board.truth, board.passes())
    print(s.report())
    assert s.f1 >= 0.99, s.report()
    assert s.exact_cell_fraction == 1.0, s.report()
    assert len({q[1] for q in console}) >= 3, console  # a multi-zone session
    assert [q[0] for q in console] == list(range(1, len(console) + 1))

    # Every pass on the console came over BLE and over the serial link, the same ones.
    for name, res in (("ble", ble), ("serial", ser)):
        got = [key(r["seq"], r["zone"], r["direction"]) for r in res["records"]]
        assert got == console, name
        assert {r["boot"] for r in res["records"]} == {1}, name
        assert len({r["session"] for r in res["records"]}) == 1, name
    ble_tally = tally(console)
    truth_tally = dict(Counter((q.zone, q.dir) for q in board.truth))
    assert ble_tally == truth_tally

    # REPORT_COUNTS: one ZoneCounts per zone used, equal to the passes' tally.
    assert ble["response"]["result"] == p.SUCCESS, ble["response"]
    assert ble["response"]["op"] == p.OP_REPORT_COUNTS
    assert counts_tally(ble["counts"]) == ble_tally, ble["counts"]
    assert counts_tally(ser["counts"]) == ble_tally, ser["counts"]
    assert [r["result"] for r in ser["responses"]] == [p.SUCCESS, p.SUCCESS], ser["responses"]
    assert ble["status"]["newest"] == len(console), ble["status"]
    assert real < 60, real
