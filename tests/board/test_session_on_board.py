"""Scripted sessions on the virtual board: the firmware's passes against the script's ground truth.

The firmware's own boot.py/main.py run on the board; the motion model drives
the drum and the IMU on the virtual clock, and zone changes press the zone
button. Bounds (never loosened): pass-level F1 >= 0.99, direction accuracy
>= 0.99, exact per-zone/per-direction counts >= 0.97; the 10-minute session
at >= 20x real time.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from dermaroll.board import runner
from dermaroll.scoring import Score
from tests.board.boardtest import need_micropython


def _check(board: runner.VirtualBoard) -> Score:
    s = Score()
    s.add(board.truth, board.passes())
    print(s.report())
    assert s.f1 >= 0.99, s.report()
    assert s.direction_accuracy >= 0.99, s.report()
    assert s.exact_cell_fraction >= 0.97, s.report()
    return s


@pytest.mark.parametrize("imu,seed", [("mpu6050", 0), ("lsm6dso", 1)])
def test_ten_minute_session_at_20x_matches_the_truth(tmp_path, imu, seed):
    need_micropython()
    script = runner.session_script(10, seed=seed)
    runner.install_firmware(tmp_path)
    board, real = asyncio.run(runner.run_session(tmp_path, script, speed=None, imu=imu))
    session_s = (board.script_end_ms - board.config.start_ms) / 1000
    assert session_s >= 600
    factor = board.script_end_ms / 1000 / real
    print("%s: %.0f s session in %.2f s real: %.0fx real time" % (imu, session_s, real, factor))
    assert factor >= 20, factor
    assert len(board.truth) >= 200
    s = _check(board)
    assert s.detected == len(board.passes())
    stats = [line for line in board.lines if line.startswith("STAT ")]
    last = dict(kv.split("=") for kv in stats[-1].split()[1:])
    assert len(stats) >= 9 and last["imu_errors"] == "0" and last["imu_overflows"] == "0", last
    # Busy time costs virtual time (at 1x in max mode), so a host hiccup can make a tick
    # late; a skipped tick loses no travel (cumulative counts), but they must stay rare.
    assert int(last["missed"]) * 1000 <= int(last["ticks"]), last
    zones = [line for line in board.lines if line.startswith("ZONE ")]
    assert len(zones) == len(board.presses)  # every press seen, one zone step each


def test_scaled_speed_runs_at_that_speed_and_still_matches(tmp_path):
    need_micropython()
    script = runner.board_demo_script(2)
    runner.install_firmware(tmp_path)

    async def go():
        cfg = runner.BoardConfig(flash=str(tmp_path), speed=20, imu="lsm6ds3", script=script)
        async with runner.VirtualBoard(cfg) as board:
            await board.wait_line("^SESSION ")
            w1, t1 = board.world_us, time.monotonic()
            await board.wait_world(board.script_end_ms + 3000)
            w2, t2 = board.world_us, time.monotonic()
        return board, (w2 - w1) / 1e6 / (t2 - t1)

    board, factor = asyncio.run(go())
    print("speed 20: world time ran at %.1fx real time" % factor)
    # Heartbeats come every 250 ms of world time: the measure is good to about 1 %.
    assert 18.5 <= factor <= 21, factor
    _check(board)
