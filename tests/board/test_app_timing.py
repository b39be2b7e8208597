"""The running app's timing with a bleak host, briefly (issue 5, must-show 7; bench/app).

bench/app/bench_app.py's measurement at its quick size, run once for the
module: firmware/main.py at speed 1 (the radio runs on real time, so the
board's clock and the host's are one) on a flash whose pass log is full, a
~30 s session, a bleak host (Bumble backend) subscribed to PassRecord,
ZoneCounts, Status and the Control Point, and a REPORT_RECORDS (all) of the
whole log while passes go on. Latencies are printed, never judged: they are
real time on a shared machine.

Overruns are measured in a run of their own in skip mode (see its test): the
sampler's STAT counters after a burst of live passes and a REPORT_RECORDS of
the whole log.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

import pytest
from bleak import BleakClient

import dermaroll_protocol as p
from dermaroll.board import bleak_backend, runner
from dermaroll.board.bleak_backend import BleakClientBumble
from tests.board.boardtest import find_roller, need_micropython

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "app"))
import bench_app  # noqa: E402

CAPACITY = 2048  # roller.passlog's default ring: 16 segments x 128


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> bench_app.Run:
    need_micropython()
    r = asyncio.run(bench_app.measure(tmp_path_factory.mktemp("flash"), 0.3, 3000, stat=False))
    print(bench_app.report(r))
    return r


def test_every_pass_is_notified_live_after_its_end(run: bench_app.Run) -> None:
    assert run.prefilled == (1, CAPACITY)
    console = [q.seq for q in run.board.passes()]
    assert len(console) >= 8, console
    assert console == list(range(CAPACITY + 1, CAPACITY + 1 + len(console)))
    assert sorted(run.live()) == console
    # Causality on one clock (speed 1: world time is the host's time too).
    assert all(lat > 0 for lat in run.latencies()), run.latencies()


def test_report_records_sends_the_whole_log_in_order_then_answers(run: bench_app.Run) -> None:
    assert run.response["result"] == p.SUCCESS, run.response
    sent = run.transferred()
    assert run.response["count"] == len(sent) == CAPACITY, (run.response, len(sent))
    assert sent == list(range(sent[0], sent[0] + CAPACITY)), sent[:3]
    # It ends at the newest record when it was asked (passes overwrite the oldest ones).
    assert CAPACITY <= sent[-1] <= CAPACITY + len(run.live()), sent[-1]
    # Nothing arrived but the live passes once and the transfer once.
    assert len(run.arrivals) == len(run.live()) + CAPACITY
    assert max(Counter(seq for seq, _at, _end in run.arrivals).values()) <= 2


async def _busy_radio(flash: Path) -> tuple[runner.VirtualBoard, dict, int, int]:
    """Skip mode: a full log, a session rolling, a bleak host taking live passes and the
    whole log; returns the board, the REPORT_RECORDS answer, records received, and the
    console line index when the answer came."""
    runner.install_firmware(flash)
    bench_app.prefill_log(flash)
    script = runner.session_script(1.0, seed=6)
    script["zones"].insert(0, {"zone": None, "strokes": [{"rest_ms": 2000}]})
    cfg = runner.BoardConfig(flash=str(flash), speed=None, imu="mpu6050", script=script, radio=True)
    records: list[int] = []
    responses: list[dict] = []
    async with runner.VirtualBoard(cfg) as board:
        await board.wait_line("^SESSION ")
        bleak_backend.use_radio(board.radio)
        try:
            device = await find_roller()
            async with BleakClient(device, backend=BleakClientBumble) as client:
                await client.start_notify(
                    p.PASS_RECORD_UUID, lambda _c, d: records.append(p.decode_pass_record(d)["seq"])
                )
                await client.start_notify(p.STATUS_UUID, lambda _c, _d: None)
                await client.start_notify(
                    p.CONTROL_POINT_UUID,
                    lambda _c, d: responses.append(p.decode_response(bytes(d))),
                )
                req = bytearray(7)
                p.encode_request_records(req, 0, p.OP_REPORT_RECORDS, 3, p.OPERATOR_ALL, 0)
                await client.write_gatt_char(p.CONTROL_POINT_UUID, bytes(req), response=True)
                async with asyncio.timeout(60):
                    while not responses:
                        await asyncio.sleep(0.005)
                answered = len(board.lines)
                await board.wait_world(board.script_end_ms + 1000, timeout=60)
        finally:
            bleak_backend.use_radio(None)
        # The next STAT line covers everything since SESSION: the burst and the transfer.
        await board.wait_line("^STAT ", since=answered, timeout=60)
    return board, responses[0], len(records), answered


# Missed sampler slots the host may cause in the 24,000 ticks of this run. Skip mode
# charges busy code by wall time, so the interpreter preempted on a loaded machine
# shows up as a late tick: alone on this 2-core machine 0 in 8 of 9 runs (1 once,
# with another test running beside it), three copies at once 0-8. An app that holds
# the loop past a 5 ms slot while it sends (a busy wait of 6 ms in the record
# transfer's pump, tried) misses 600 and more.
HOST_NOISE_SLOTS = 50


def test_no_sampler_overrun_during_notifications_and_the_transfer(tmp_path: Path) -> None:
    """Skip mode: virtual time is the firmware's own work (radio calls, local on an ESP32,
    are not charged; waits jump), so late ticks here are the app's doing, up to the few a
    busy host can add (HOST_NOISE_SLOTS). (At speed 1 the host's scheduling and the
    radio's round trips count in full: the bench prints those numbers.)"""
    need_micropython()
    board, response, received, answered = asyncio.run(_busy_radio(tmp_path))
    assert response["result"] == p.SUCCESS and response["count"] >= CAPACITY, response
    passes = board.passes()
    assert len(passes) >= 20 and received >= CAPACITY + len(passes) // 2, (received, len(passes))
    assert len(passes) == len(board.truth), (len(passes), len(board.truth))
    stats = [line for line in board.lines[answered:] if line.startswith("STAT ")]
    fields = dict(kv.split("=") for kv in stats[0].split()[1:])
    print(stats[0])
    assert int(fields["missed"]) <= HOST_NOISE_SLOTS, stats[0]
    assert int(fields["imu_overflows"]) == 0, stats[0]
