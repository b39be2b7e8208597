"""roller.supervisor on a running virtual board: a stalled task ends in a watchdog reset,
the crash file says why, and the safe-mode flag leaves the REPL free until `mpremote rm`."""

from __future__ import annotations

import asyncio

from dermaroll.board import runner
from tests.board.boardtest import mpremote, need_micropython

# Boot 1 (power on): two supervised tasks; `worker` stops ticking at 3 s.
# Boot 2 (after the WDT): reports the cause and sets the safe-mode flag, then resets.
# Boot 3: safe mode, main.py returns and leaves the REPL.
MAIN = """\
import asyncio
import time

import machine
from roller.supervisor import Supervisor, safe_mode

cause = machine.reset_cause()
print("CAUSE", cause)
if safe_mode(0):
    print("SAFE MODE")
elif cause == machine.WDT_RESET:
    with open("crash.log") as f:
        print("CRASHLOG", f.read().replace("\\n", "|"))
    open("safe_mode", "w").close()
    machine.reset()
else:
    sup = Supervisor(wdt_ms=2000)
    t0 = time.ticks_ms()

    async def steady(beat):
        while True:
            beat.tick()
            await asyncio.sleep_ms(100)

    async def worker(beat):
        while True:
            if time.ticks_diff(time.ticks_ms(), t0) < 3000:
                beat.tick()
            await asyncio.sleep_ms(50)

    sup.add("steady", steady, stall_ms=1000)
    sup.add("worker", worker, stall_ms=1000)
    print("APP")
    asyncio.run(sup.run())
"""


def test_stalled_task_watchdog_reset_crash_file_and_safe_mode(tmp_path):
    need_micropython()
    flash = tmp_path / "flash"
    runner.install_firmware(flash)
    (flash / "main.py").write_text(MAIN)

    async def go():
        cfg = runner.BoardConfig(flash=str(flash), speed=None, imu=None)
        async with runner.VirtualBoard(cfg) as board:
            await board.wait_line("^APP$")
            stall = await board.wait_line("^supervisor: task worker stalled")
            boot2 = await board.wait_boot(2)
            assert board.boots[0].end == "W" and boot2.cause == "wdt", board.boots
            # Stalled at 3 s, noticed after 1 s (+ a 500 ms check), reset 2 s after the last feed.
            up_ms = (boot2.t0_us - board.boots[0].t0_us) / 1000
            assert 5000 <= up_ms <= 7000, up_ms
            await board.wait_line("^CAUSE 3$", since=boot2.first_line)
            log = await board.wait_line("^CRASHLOG ", since=boot2.first_line)
            assert "=== t=" in log and " stall worker|no tick for " in log, log
            assert stall in board.lines[: boot2.first_line]
            boot3 = await board.wait_boot(3)
            await board.wait_line("^SAFE MODE$", since=boot3.first_line)
            assert (flash / "safe_mode").exists()
            out = await mpremote(board, "exec", "print('REPL', 6 * 7)")
            assert "REPL 42" in out, out
            await mpremote(board, "rm", ":safe_mode")  # the documented way out
            assert not (flash / "safe_mode").exists()
            assert (flash / "crash.log").exists()

    asyncio.run(asyncio.wait_for(go(), 40))
