"""Idle on the product firmware: slow advertising, light sleep, waking by the drum or the button.

The board runs boot.py/main.py with the radio on and idle_sleep_s = 20 in
settings.json. The script rolls the forehead, rests 45 s (the board slows its
advertising, then sleeps), rolls the forehead again (the drum wakes it: EXT1),
rests 45 s (it sleeps again) and moves on to the nose, whose zone press wakes
it (EXT0). Every pass of the script must be on the console, in the right zone,
the ones after each wake included; the board's power state changes (the
runner's `P light` / `P on` events) must come at those moments; advertising
slows down before each sleep (read from the radio). That runs as fast as the
board can go.

Then, at 5x real time for a bleak central: while a central is connected the
still board does not sleep (light sleep would stop the BLE controller and the
link would time out); once it disconnects, the board sleeps.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from bleak import BleakClient

from dermaroll import motion
from dermaroll.board import bleak_backend, runner
from dermaroll.board.bleak_backend import BleakClientBumble
from dermaroll.scoring import Score
from tests.board.boardtest import find_roller, need_micropython

SLICE_MS = 4000  # main.py's _SLEEP_SLICE_MS
IDLE_SLEEP_S = 20
REST_MS = 45000
SPEED = 5  # with the central: it connects within the 20 s of world time before a sleep
FAST, SLOW = 160, 1600  # the advertising intervals in 625 us units (roller.ble)


STROKES = {"dir": "vertical", "passes": 4, "style": "back_and_forth"}


def script(zones: list[dict]) -> dict:
    s = motion.everyday_script(
        "idle-sleep", 5, [{"zone": None, "strokes": [{"rest_ms": 3000}]}, *zones]
    )
    # A drum resting on a quadrature edge flickers, and each flicker would wake the
    # chip (roller.power): this test is about waking by rolling and pressing.
    s["noise"]["enc_flicker"] = 0
    return s


def rests_script() -> dict:
    rest = {"rest_ms": REST_MS}
    return script(
        [
            {"zone": "forehead", "strokes": [STROKES, rest, STROKES, rest]},
            {"zone": "nose", "strokes": [STROKES]},
        ]
    )


async def run(flash: Path) -> tuple[runner.VirtualBoard, list[tuple[int, int]], float]:
    cfg = runner.BoardConfig(flash=str(flash), speed=None, script=rests_script(), radio=True)
    adverts: list[tuple[int, int]] = []  # (console lines so far, interval) per advertising start
    t0 = time.monotonic()
    async with runner.VirtualBoard(cfg) as board:
        radio = board.radio
        assert radio is not None

        def on_radio(kind: str, info: dict) -> None:
            if kind == "advertising" and info.get("on"):
                adv = radio.controller.le_legacy_advertiser
                adverts.append((len(board.lines), adv.advertising_interval_min))

        radio.add_listener(on_radio)
        await board.wait_world(board.script_end_ms + IDLE_SLEEP_S * 1000, timeout=30)
    return board, adverts, time.monotonic() - t0


async def connected_run(flash: Path) -> tuple[runner.VirtualBoard, dict, float]:
    """Connect during the lead-in, stay until idle_sleep_s + 5 s after the last pass."""
    cfg = runner.BoardConfig(
        flash=str(flash),
        speed=SPEED,
        script=script([{"zone": "forehead", "strokes": [STROKES]}]),
        radio=True,
    )
    t0 = time.monotonic()
    async with runner.VirtualBoard(cfg) as board:
        bleak_backend.use_radio(board.radio)
        try:
            await board.wait_line("^SESSION ")
            device = await find_roller()
            async with BleakClient(device, backend=BleakClientBumble) as client:
                assert client.is_connected
                last = board.config.start_ms + board.truth[-1].t_end_ms
                await board.wait_world(last + (IDLE_SLEEP_S + 5) * 1000, timeout=30)
                disconnected = len(board.lines)
            sleep = await board.wait_line("^SLEEP ", since=disconnected, timeout=20)
        finally:
            bleak_backend.use_radio(None)
    return board, {"disconnected": disconnected, "sleep": sleep}, time.monotonic() - t0


def power_events(board: runner.VirtualBoard) -> list[tuple[str, float]]:
    return [(line.split()[1], ms) for ms, line in board.events if line.startswith("P ")]


def sleep_spans(power: list[tuple[str, float]]) -> list[list[float]]:
    """[asleep, awake] world ms per sleep; main.py sleeps in slices of SLICE_MS (the
    watchdog fed between them), so a wake right back into light sleep is one sleep."""
    spans: list[list[float]] = []
    for kind, ms in power:
        if kind == "light":
            if spans and spans[-1][1] >= 0 and ms - spans[-1][1] < 2:
                assert spans[-1][1] - spans[-1][2] <= SLICE_MS + 1, spans  # a slice's length
                spans[-1][1] = -1
                spans[-1][2] = ms
            else:
                spans.append([ms, -1, ms])
        else:
            assert kind == "on" and spans and spans[-1][1] < 0, power
            spans[-1][1] = ms
    return [[a, b] for a, b, _slice in spans]


def test_idle_board_sleeps_and_wakes_on_the_drum_and_the_button(tmp_path: Path) -> None:
    need_micropython()
    runner.install_firmware(tmp_path)
    (tmp_path / "settings.json").write_text(json.dumps({"idle_sleep_s": IDLE_SLEEP_S}))
    board, adverts, real = asyncio.run(run(tmp_path))
    lines = board.lines
    print("idle sleep: %.0f s of session in %.1f s real" % (board.script_end_ms / 1000, real))
    print("\n".join(line for line in lines if line[:5] in ("SLEEP", "WAKE ", "SESSI")))

    # A sleep per rest, the drum ending the first, the nose's zone press the second,
    # and a third after the nose.
    assert not [line for line in lines if line.startswith("settings:")], lines
    sleeps = [i for i, line in enumerate(lines) if line.startswith("SLEEP ")]
    wakes = [line for line in lines if line.startswith("WAKE ")]
    assert [lines[i] for i in sleeps] == ["SLEEP %d" % IDLE_SLEEP_S] * 3, lines
    assert wakes == ["WAKE encoder", "WAKE button"], wakes
    # Each wake starts the sampler's clock again (a SESSION line), and the
    # supervisor does not take the time asleep for a stalled task.
    assert sum(line.startswith("SESSION ") for line in lines) == 3
    assert not [line for line in lines if "stalled" in line], lines

    # Asleep exactly from the SLEEP line to a wake: world times of the power states.
    spans = sleep_spans(power_events(board))
    assert len(spans) == 3, spans  # the last one lasts to the end (or its slice's end)
    power = [(kind, ms) for span in spans for kind, ms in zip(("light", "on"), span, strict=True)]
    start = board.config.start_ms
    truth = board.truth
    # The first sleep: idle_sleep_s after the forehead's 4th pass ended (give or take
    # the last count, within jitter_counts); the drum wakes it as the 5th pass
    # starts: at its first count or two (the PCNT counts neither).
    assert abs(power[0][1] - (start + truth[3].t_end_ms) - IDLE_SLEEP_S * 1000) < 300, power
    assert 0 <= power[1][1] - (start + truth[4].t_start_ms) < 100, (power, truth[4])
    # The second: ended by the press that selects the nose, at its down edge.
    press = [down for down, _up in board.presses if power[2][1] < down <= power[3][1]]
    assert len(press) == 1 and power[3][1] - press[0] < 2, (power, board.presses)

    # Every pass counted, in the right zone, those right after each wake included.
    s = Score()
    s.add(truth, board.passes())
    print(s.report())
    assert len(truth) == 12 and len(board.passes()) == 12, board.passes()
    assert s.f1 == 1.0 and s.exact_cell_fraction == 1.0, s.report()
    assert [p.zone for p in board.passes()] == ["forehead"] * 8 + ["nose"] * 4

    # Advertising slowed down while still (before each sleep), fast again after waking.
    before_sleep = [iv for n, iv in adverts if n <= sleeps[0]]
    assert before_sleep[0] == FAST and before_sleep[-1] == SLOW, adverts
    after_wake = [iv for n, iv in adverts if sleeps[0] < n <= sleeps[1]]
    assert after_wake and after_wake[0] == FAST and after_wake[-1] == SLOW, adverts
    assert real < 30, real


def test_a_connected_central_keeps_the_still_board_awake(tmp_path: Path) -> None:
    need_micropython()
    runner.install_firmware(tmp_path)
    (tmp_path / "settings.json").write_text(json.dumps({"idle_sleep_s": IDLE_SLEEP_S}))
    board, host, real = asyncio.run(connected_run(tmp_path))
    print("connected: %.1f s real" % real, host)
    lines = board.lines
    # Connected at rest for idle_sleep_s + 5 s: no sleep; once the central has gone
    # the board sleeps at once (it has been idle all along).
    assert not [line for line in lines[: host["disconnected"]] if line.startswith("SLEEP")]
    assert int(host["sleep"].split()[1]) >= IDLE_SLEEP_S + 4, host
    assert len(board.passes()) == len(board.truth) == 4, board.passes()
    assert real < 30, real
