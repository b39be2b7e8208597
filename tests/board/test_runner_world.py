"""The board runner's world (script -> world file, zone button presses) and its radio hook-up."""

from __future__ import annotations

import asyncio
from array import array

import pytest

from dermaroll import motion
from dermaroll.board import runner
from dermaroll.trace import Trace
from tests.board.boardtest import mpremote, need_micropython


def _trace(zones: list[str], rows: list[tuple[int, int]]) -> Trace:
    """A trace of (t_ms, zone index) rows, sensors at rest."""
    tr = Trace(counts_per_mm=7.07, zones=zones)
    for t, z in rows:
        for col in tr.columns():
            col.append(0)
        tr.t_ms[-1] = t
        tr.zone.append(z)
    return tr


def test_zone_changes_become_short_presses_in_the_default_order():
    tr = _trace(
        ["forehead", "nose", "chin", "left_cheek"], [(0, 0), (5000, 1), (9000, 2), (14000, 3)]
    )
    p = runner.zone_presses(tr, start_ms=1000)
    # unassigned -> forehead: 1 press; -> nose: 1; -> chin: 4; chin -> left_cheek wraps: 3.
    assert len(p) == 1 + 1 + 4 + 3
    assert all(up - down == runner.PRESS_MS for down, up in p)
    assert p[0][1] == 1000 - runner.PRESS_LEAD_MS
    assert p[1][1] == 6000 - runner.PRESS_LEAD_MS
    chin = p[2:6]
    assert chin[-1][1] == 10000 - runner.PRESS_LEAD_MS
    gaps = [b[0] - a[0] for a, b in zip(chin, chin[1:], strict=False)]
    assert gaps == [runner.PRESS_GAP_MS] * 3


def test_zones_the_button_cannot_select_are_refused():
    with pytest.raises(ValueError, match="unassigned"):
        runner.zone_presses(_trace(["nose", ""], [(0, 0), (100, 1)]), 0)
    with pytest.raises(ValueError, match="neck"):
        runner.zone_presses(_trace(["neck"], [(0, 0)]), 0)


def test_world_file_rows(tmp_path):
    r = motion.render(runner.board_demo_script(1))
    path = tmp_path / "w.bin"
    runner.write_world_trace(r.trace, path)
    a = array("i")
    a.frombytes(path.read_bytes())
    assert len(a) == 9 * len(r.trace)
    k = 1234
    row = a[9 * k : 9 * k + 9]
    assert list(row[:8]) == [c[k] for c in r.trace.columns()]
    assert runner.ZONE_NAMES[row[8]] == (r.trace.zones[r.trace.zone[k]] or "unassigned")


def test_session_script_is_long_enough_and_in_the_default_order():
    script = runner.session_script(3, seed=2)
    r = motion.render(script)
    assert r.trace.duration_ms >= 180_000
    runner.zone_presses(r.trace, 1000)  # would raise if the button could not follow


def test_board_with_its_radio_the_firmware_reaches_the_virtual_controller(tmp_path):
    need_micropython()
    pytest.importorskip("bumble")

    async def go():
        cfg = runner.BoardConfig(flash=str(tmp_path), speed=None, imu=None, radio=True)
        async with runner.VirtualBoard(cfg) as board:
            await board.wait_boot(1)
            out = await mpremote(
                board,
                "exec",
                "import bluetooth; ble = bluetooth.BLE(); ble.active(True); "
                "ble.config(gap_name='dermaroll-t'); print(ble.config('mac')[1].hex())",
            )
            assert out.strip() == cfg.unique_id  # the board's address is its unique id
            await asyncio.sleep(0.1)
            assert board.radio.active and board.radio.gap_name == b"dermaroll-t"
            radio = board.radio
        assert board.radio is None and radio.device is not None

    asyncio.run(go())
