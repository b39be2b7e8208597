"""Fault injection on the virtual board: power cut, IMU unplugged and back, encoder noise bursts."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from dermaroll.board import runner
from dermaroll.scoring import Score, match
from tests.board.boardtest import need_micropython


def _snapshot(flash: Path) -> dict[str, str]:
    return {
        str(p.relative_to(flash)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(flash.rglob("*"))
        if p.is_file()
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_power_cut_at_a_chosen_moment_then_the_next_boot_works(tmp_path):
    need_micropython()
    runner.install_firmware(tmp_path)
    (tmp_path / "settings.json").write_text('{"pause_ms": 400}')
    script = runner.board_demo_script(3)
    cut_ms = 20_000

    async def go():
        cfg = runner.BoardConfig(
            flash=str(tmp_path), speed=None, script=script, faults=[runner.power_cut(cut_ms)]
        )
        async with runner.VirtualBoard(cfg) as board:
            await board.wait_boot(1)
            pid = board.pid
            while board.powered:
                await asyncio.sleep(0.01)
            assert pid is not None and not _alive(pid)  # the interpreter was killed
            assert board.boots[0].end == "C"
            # It stopped at the chosen world time, not later.
            assert cut_ms * 1000 <= board.world_us < cut_ms * 1000 + 5000, board.world_us
            at_cut = _snapshot(tmp_path)
            passes = board.passes()
            lines = len(board.lines)
            await asyncio.sleep(0.3)
            assert len(board.lines) == lines  # nothing runs while the power is off
            assert _snapshot(tmp_path) == at_cut  # nor writes the flash
            # Every pass that ended well before the cut was reported, as the script made it.
            done = [t for t in board.truth if t.t_end_ms + cfg.start_ms < cut_ms - 1000]
            assert len(done) >= 5
            assert len(match(done, passes)) == len(done)
            # Power back: boot.py, main.py, a new session on the same flash.
            await board.power_on()
            boot = await board.wait_boot(2)
            assert boot.cause == "power"
            assert abs(boot.t0_us - cut_ms * 1000) < 5000  # the world went on from the cut
            await board.wait_line("^SESSION ", since=boot.first_line)
            await board.wait_line("^PASS ", since=boot.first_line, timeout=30)
            # A cut from outside, at once, works the same way.
            pid = board.pid
            await board.power_cut()
            assert pid is not None and not _alive(pid) and not board.powered
            at_cut = _snapshot(tmp_path)
            await asyncio.sleep(0.3)
            assert _snapshot(tmp_path) == at_cut

    asyncio.run(go())


def test_imu_unplugged_mid_session_the_encoder_keeps_counting(tmp_path):
    need_micropython()
    runner.install_firmware(tmp_path)
    script = runner.session_script(1.5, seed=5)
    unplug_ms, dur_ms = 20_000, 15_000
    board, _ = asyncio.run(
        runner.run_session(
            tmp_path, script, speed=None, faults=[runner.imu_unplug(unplug_ms, dur_ms)]
        )
    )
    assert board.fault_log[:2] == ["unplug imu 0x68", "plug imu 0x68"], board.fault_log
    stat = [line for line in board.lines if line.startswith("STAT ")][0]
    fields = dict(kv.split("=") for kv in stat.split()[1:])
    assert int(fields["imu_errors"]) >= 10, stat  # it noticed, and kept retrying
    # The IMU came back (re-set up after its power cycle): samples after the window.
    assert int(fields["imu_samples"]) > 0.8 * 100 * (60 - dur_ms / 1000), stat
    s = Score()
    passes = board.passes()
    s.add(board.truth, passes)
    print(s.report())
    start = board.config.start_ms
    during = [
        t
        for t in board.truth
        if t.t_start_ms + start >= unplug_ms and t.t_end_ms + start <= unplug_ms + dur_ms
    ]
    assert len(during) >= 5, len(during)
    # Every pass rolled while the IMU was away was still counted, from the encoder alone,
    # and with no IMU sample in it its direction is unknown: the detector says diagonal
    # (never a stale guess from the last gravity estimate).
    matched = match(during, passes)
    assert len(matched) == len(during)
    assert all(passes[j].dir == "diagonal" for _, j in matched), [passes[j] for _, j in matched]
    assert s.f1 >= 0.99, s.report()
    # Before the unplug and once the IMU is back (after its 1 s retry and the gravity
    # filter settling) the directions are right again.
    clear = [
        t
        for t in board.truth
        if t.t_end_ms + start < unplug_ms or t.t_start_ms + start > unplug_ms + dur_ms + 3000
    ]
    outside = Score()
    outside.add(
        clear, [passes[j] for i, j in match(board.truth, passes) if board.truth[i] in clear]
    )
    assert len(clear) >= 20 and outside.direction_accuracy >= 0.99, outside.report()


def test_encoder_noise_bursts_are_filtered_or_cancel_out(tmp_path):
    need_micropython()
    runner.install_firmware(tmp_path)
    script = runner.board_demo_script(4)
    noise = runner.encoder_noise(3_000, 30_000, per_ms=2, min_ns=100, max_ns=3000)
    clean, _ = asyncio.run(runner.run_session(tmp_path, script, speed=None))
    noisy, _ = asyncio.run(runner.run_session(tmp_path, script, speed=None, faults=[noise]))
    log = [f for f in noisy.fault_log if f.startswith("noise end")]
    assert len(log) == 1, noisy.fault_log
    words = log[0].split()
    glitches, counted, filtered = int(words[3]), int(words[5]), int(words[7])
    assert glitches == 60_000 and counted > 10_000 and filtered > 10_000, log
    s = Score()
    s.add(noisy.truth, noisy.passes())
    print(s.report())
    assert s.f1 >= 0.99 and s.direction_accuracy >= 0.99 and s.exact_cell_fraction >= 0.97
    # Pulses the filter let through are two edges each: the count comes back, the passes
    # are the very ones of the clean run (lengths to the count).
    key = [(p.zone, p.dir, p.length_mm) for p in clean.passes()]
    assert [(p.zone, p.dir, p.length_mm) for p in noisy.passes()] == key
