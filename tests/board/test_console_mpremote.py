"""The board's console: real `mpremote` against its pty, and the friendly REPL a terminal sees."""

from __future__ import annotations

import asyncio

from dermaroll.board import runner
from tests.board.boardtest import PtyClient, mpremote, need_micropython

MAIN_V1 = "print('MAIN v1')\n"
MAIN_V2 = "import machine\nprint('MAIN v2 cause', machine.reset_cause())\n"


def _flash(tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "boot.py").write_text("print('BOOT')\n")
    (flash / "main.py").write_text(MAIN_V1)
    return flash


def test_mpremote_ls_cp_exec_run_reset_and_the_new_main_boots(tmp_path):
    need_micropython()
    flash = _flash(tmp_path)
    new_main = tmp_path / "main_v2.py"
    new_main.write_text(MAIN_V2)
    script = tmp_path / "job.py"
    script.write_text("import os\nprint('RUN', sorted(os.listdir()))\n")

    async def go():
        cfg = runner.BoardConfig(flash=str(flash), speed=None, imu=None)
        async with runner.VirtualBoard(cfg) as board:
            await board.wait_line("^MAIN v1$")
            assert board.lines.index("BOOT") < board.lines.index("MAIN v1")
            out = await mpremote(board, "ls")
            assert "%d main.py" % len(MAIN_V1) in out, out
            await mpremote(board, "cp", str(new_main), ":main.py")
            assert (flash / "main.py").read_text() == MAIN_V2  # on the flash directory
            out = await mpremote(board, "ls")
            assert "%d main.py" % len(MAIN_V2) in out, out
            out = await mpremote(board, "exec", "print(6 * 7)")
            assert out.strip() == "42"
            out = await mpremote(board, "exec", "raise ValueError('boom')", status=1)
            assert "ValueError: boom" in out, out
            out = await mpremote(board, "run", str(script))
            assert "RUN ['boot.py', 'main.py']" in out, out
            boots = len(board.boots)
            await mpremote(board, "reset")
            boot = await board.wait_boot(boots + 1)
            line = await board.wait_line("^MAIN v2 cause", since=boot.first_line)
            # machine.reset(): a new interpreter, boot.py then the new main.py
            assert board.boots[-1].cause == "hard" and line.endswith(" 5"), (board.boots, line)
            assert board.lines[board.boots[-1].first_line :].count("BOOT") == 1
            await mpremote(board, "soft-reset")
            soft = board.boots[-1]
            assert soft.cause == "soft" and soft.mode == "raw"
            assert "MPY: soft reboot" in board.lines
            # After a soft reset into the raw REPL, boot.py runs and main.py does not (ESP32).
            await asyncio.sleep(0.2)
            assert "MAIN v2" not in " ".join(board.lines[soft.first_line :])
            out = await mpremote(board, "exec", "import machine; print(machine.reset_cause())")
            assert out.strip() == "5"
            # mpremote left the raw REPL with Ctrl-B: the friendly REPL's banner.
            await board.wait_line('Type "help\\(\\)" for more information', since=soft.first_line)

    asyncio.run(go())


def test_friendly_repl_ctrl_c_interrupts_main_and_ctrl_d_soft_reboots(tmp_path):
    need_micropython()
    flash = _flash(tmp_path)
    (flash / "main.py").write_text(
        "import asyncio\n"
        "async def loop():\n"
        "    n = 0\n"
        "    while True:\n"
        "        n += 1\n"
        "        print('tick', n)\n"
        "        await asyncio.sleep_ms(500)\n"
        "asyncio.run(loop())\n"
    )

    async def go():
        cfg = runner.BoardConfig(flash=str(flash), speed=10, imu=None)
        async with runner.VirtualBoard(cfg) as board:
            term = PtyClient(board.pty_path)
            try:
                await term.expect(rb"tick 3\r\n")
                term.send(b"\x03")  # Ctrl-C: KeyboardInterrupt in main.py, then the REPL
                got = await term.expect(rb">>> ")
                assert b"KeyboardInterrupt" in got and b'Type "help()"' in got, got
                term.send(b"1 + 2\r")
                assert b"3\r\n>>> " in await term.expect(rb"3\r\n>>> ")
                term.send(b"def f(x):\r    return x * 5\r\r")
                await term.expect(rb"\.\.\. .*>>> ")
                term.send(b"f(7)\r")
                await term.expect(rb"35\r\n>>> ")
                term.send(b"import time\r")
                await term.expect(rb">>> ")
                term.send(b"time.sleep(100)\r")  # Ctrl-C stops a REPL command too
                await asyncio.sleep(0.3)
                term.send(b"\x03")
                got = await term.expect(rb">>> ", timeout=15)
                assert b"KeyboardInterrupt" in got, got
                term.send(b"\x05x = 1\ry = x + 41\rprint(y)\r\x04")  # paste mode
                await term.expect(rb"42\r\n>>> ")
                term.send(b"\x02")  # Ctrl-B: the banner again
                await term.expect(rb"Type \"help\(\)\" for more information\.\r\n>>> ")
                term.send(b"\x04")  # Ctrl-D: soft reboot, main.py runs again
                await term.expect(rb"MPY: soft reboot\r\n")
                await term.expect(rb"tick 1\r\n")
                assert board.boots[-1].cause == "soft" and board.boots[-1].mode == "friendly"
            finally:
                term.close()

    asyncio.run(go())


def test_power_states_deepsleep_watchdog_and_reset_cause(tmp_path):
    need_micropython()
    flash = _flash(tmp_path)
    (flash / "main.py").write_text(
        "import machine, time\n"
        "print('CAUSE', machine.reset_cause(), 'WAKE', machine.wake_reason())\n"
        "if machine.reset_cause() == machine.PWRON_RESET:\n"
        "    machine.deepsleep(60000)\n"
        "if machine.reset_cause() == machine.DEEPSLEEP_RESET:\n"
        "    w = machine.WDT(timeout=3000)\n"
        "    time.sleep_ms(10000)\n"
        "print('IDLE')\n"
    )

    async def go():
        cfg = runner.BoardConfig(flash=str(flash), speed=None, imu=None)
        async with runner.VirtualBoard(cfg) as board:
            await board.wait_line("^IDLE$", timeout=20)
            causes = [line for line in board.lines if line.startswith("CAUSE")]
            assert causes == ["CAUSE 1 WAKE 0", "CAUSE 4 WAKE 4", "CAUSE 3 WAKE 0"], causes
            assert [b.cause for b in board.boots] == ["power", "deepsleep", "wdt"]
            # 60 s of deep sleep and 3 s until the watchdog bit, in world time
            wake = board.boots[1].t0_us - board.events[0][0] * 1000
            assert 59_900_000 <= wake <= 60_100_000, wake
            bite = board.boots[2].t0_us - board.boots[1].t0_us
            assert 3_000_000 <= bite < 3_200_000, bite

    asyncio.run(go())
