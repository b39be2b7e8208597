"""The virtual board's boot and REPL: what the ESP32 port's main.c and pyexec.c do, in MicroPython.

The board runner (host/dermaroll/board/runner.py) starts one interpreter per
boot, in the flash directory, with `micropython -c "import vrepl; vrepl.main()"`
and VBOARD_CONFIG naming its JSON configuration:

    speed, skip        the virtual clock (time.configure)
    t0_us              world time at this boot (the world goes on across resets)
    cause              "power", "hard", "wdt", "deepsleep" or "soft"
    mode               REPL mode to come up in: "friendly" (boot.py, main.py,
                       then `>>> `) or "raw" (after a soft reset from the raw
                       REPL: boot.py only, then the raw REPL, as on the ESP32)
    ctl_fd             file descriptor of the control pipe to the runner
    world              vboard.World's configuration (sensors, button, faults)
    unique_id          hex of machine.unique_id()

Console: stdin/stdout are pipes to the runner, which relays them to the
board's pseudo-terminal. A Ctrl-C from the terminal reaches the interpreter
as SIGINT (KeyboardInterrupt wherever it runs, as the unix port and the
ESP32's UART interrupt character do); at the REPL prompt it is the Ctrl-C key.

The REPL speaks what mpremote's transport_serial.py expects:

- friendly: `>>> ` prompt with echo and backspace, `... ` continuation lines,
  Ctrl-A raw REPL, Ctrl-B banner, Ctrl-C cancel, Ctrl-D soft reboot, Ctrl-E
  paste mode;
- raw: "raw REPL; CTRL-B to exit\\r\\n>"; source until Ctrl-D, "OK", its
  output, \\x04, the exception if any, \\x04, ">"; Ctrl-D on an empty input is
  a soft reset; Ctrl-B back to friendly; raw-paste (Ctrl-E 'A' Ctrl-A ->
  "R\\x01", a 2-byte window, \\x01 per window consumed, Ctrl-D ends and is
  acknowledged with \\x04).

A soft reset prints "MPY: soft reboot" and asks the runner (control pipe) for
a new interpreter, as the ESP32 restarts its VM; the flash directory stays.
"""

import json
import os
import sys
import time

import machine
import uselect
import vboard

VERSION = "MicroPython v1.28.0 on 2026-01-01; dermaroll virtual board (ESP32 simulated)"
BANNER = VERSION + '\r\nType "help()" for more information.\r\n'
ROM = {
    "power": "rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    "hard": "rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    "wdt": "rst:0x7 (TG0WDT_SYS_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    "deepsleep": "rst:0x5 (DEEPSLEEP_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
}
CAUSE = {
    "power": machine.PWRON_RESET,
    "hard": machine.SOFT_RESET,  # machine.reset() on an ESP32 reports SOFT_RESET
    "soft": machine.SOFT_RESET,
    "wdt": machine.WDT_RESET,
    "deepsleep": machine.DEEPSLEEP_RESET,
}
RAW_PASTE_WINDOW = 128

_out = sys.stdout
_in = sys.stdin.buffer
_poll = uselect.poll()
_poll.register(sys.stdin, uselect.POLLIN)


def w(s):
    _out.write(s)


def getc():
    """The next console byte; Ctrl-C (3) when SIGINT arrived; exits when the console is gone."""
    while True:
        try:
            if _poll.poll(50):
                b = _in.read(1)
                if not b:
                    sys.exit(0)  # the runner closed the console: power off
                return b[0]
            time._check()  # board events (timers, watchdog) go on while the REPL waits
        except KeyboardInterrupt:
            return 3


def soft_reset(mode):
    w("MPY: soft reboot\r\n")
    machine.board.repl_mode = mode
    machine.request("S", mode)


def run_file(name, g):
    """Run a flash file in the REPL's globals (pyexec_file_if_exists); False on SystemExit."""
    try:
        os.stat(name)
    except OSError:
        return True
    try:
        with open(name) as f:
            src = f.read()
        exec(compile(src, name, "exec"), g)
    except SystemExit:
        return False
    except BaseException as e:  # noqa: BLE001 - printed as on the board's console
        sys.print_exception(e, _out)
    return True


def _continues(src):
    # Whether friendly-REPL input needs more lines (a compound statement, open brackets).
    lines = src.split("\n")
    last = lines[-1]
    if last.rstrip().endswith(":") or last.endswith("\\"):
        return True
    depth = 0
    for ch in src:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    if depth > 0:
        return True
    return len(lines) > 1 and last != ""


def execute(src, g, mode="single"):
    """Compile and run REPL input; returns False for SystemExit (a soft reset)."""
    try:
        exec(compile(src, "<stdin>", mode), g)
    except SystemExit:
        return False
    except BaseException as e:  # noqa: BLE001
        sys.print_exception(e, _out)
    return True


def friendly(g):
    """The `>>> ` REPL; returns "raw" to switch to the raw REPL."""
    while True:
        try:
            r = _friendly_line(g)
        except KeyboardInterrupt:
            w("\r\n")
            continue
        if r is not None:
            return r


def _friendly_line(g):
    w(">>> ")
    src = ""
    line = bytearray()
    last = 0
    while True:
        c = getc()
        if c == 1 and not line and not src:  # Ctrl-A
            w("\r\n")
            return "raw"
        if c == 2:  # Ctrl-B
            w("\r\n" + BANNER)
            return None
        if c == 3:  # Ctrl-C
            w("\r\n")
            return None
        if c == 4:  # Ctrl-D
            if not line and not src:
                w("\r\n")
                soft_reset("friendly")
            continue
        if c == 5:  # Ctrl-E: paste mode
            w("\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
            _paste(g)
            return None
        if c in (8, 127):
            if line:
                line = line[:-1]
                w("\b \b")
            last = c
            continue
        if c == 13 or (c == 10 and last != 13):
            w("\r\n")
            text = bytes(line).decode()
            src = text if not src else src + "\n" + text
            line = bytearray()
            if src.strip() and _continues(src):
                w("... ")
                last = c
                continue
            if src.strip() and not execute(src, g):
                soft_reset("friendly")
            return None
        last = c
        if c == 10:
            continue
        if c == 9:
            c = 32
        line.append(c)
        w(chr(c) if c < 128 else "")


def _paste(g):
    buf = bytearray()
    while True:
        c = getc()
        if c == 3:
            w("\r\n")
            return
        if c == 4:
            w("\r\n")
            if not execute(bytes(buf).decode(), g, "exec"):
                soft_reset("friendly")
            return
        buf.append(c)
        if c == 13:
            w("\r\n=== ")
        elif c != 10:
            w(chr(c) if c < 128 else "")


def raw(g):
    """The raw REPL; returns "friendly" on Ctrl-B."""
    w("raw REPL; CTRL-B to exit\r\n")
    while True:
        try:
            r = _raw_one(g)
        except KeyboardInterrupt:
            continue
        if r == "reset":
            w("raw REPL; CTRL-B to exit\r\n")
        elif r is not None:
            return r


def _raw_one(g):
    w(">")
    line = bytearray()
    while True:
        c = getc()
        if c == 1:  # Ctrl-A
            if len(line) == 2 and line[0] == 5 and line[1] == 65:
                return _raw_paste(g)
            return "reset"
        if c == 2:  # Ctrl-B
            w("\r\n")
            return "friendly"
        if c == 3:
            line = bytearray()
        elif c == 4:
            break
        else:
            line.append(c)
    w("OK")
    if not line:
        w("\r\n")
        soft_reset("raw")
    _raw_exec(bytes(line), g)
    return None


def _raw_exec(src, g):
    try:
        code = compile(src, "<stdin>", "exec")
    except BaseException as e:  # noqa: BLE001 - a syntax error goes to the error part
        w("\x04")
        sys.print_exception(e, _out)
        w("\x04")
        return
    forced = False
    err = None
    try:
        exec(code, g)
    except SystemExit:
        forced = True
    except BaseException as e:  # noqa: BLE001
        err = e
    w("\x04")
    if err is not None:
        sys.print_exception(err, _out)
    w("\x04")
    if forced:
        soft_reset("raw")


def _raw_paste(g):
    n = RAW_PASTE_WINDOW
    sys.stdout.buffer.write(bytes((82, 1, n & 0xFF, n >> 8)))  # "R\x01", window (u16 LE)
    buf = bytearray()
    left = n
    while True:
        c = getc()
        if c == 4:
            w("\x04")
            break
        if c == 3:
            w("\x04")  # abort: the host acknowledges with its own \x04
            getc()
            return None
        buf.append(c)
        left -= 1
        if left == 0:
            w("\x01")
            left = n
    _raw_exec(bytes(buf), g)
    return None


def main():
    with open(os.getenv("VBOARD_CONFIG")) as f:
        cfg = json.load(f)
    time.configure(cfg.get("speed", 1000), cfg.get("skip", False))
    ctl = open("/dev/fd/%d" % cfg["ctl_fd"], "w")  # noqa: SIM115 - for the board's life
    board = machine.board
    world = cfg.get("world") or {}
    vboard.reset(world.get("enc_a", 32), world.get("enc_b", 33))
    board.ctl = ctl
    cause = cfg.get("cause", "power")
    mode = cfg.get("mode", "friendly")
    board.repl_mode = mode
    machine._reset_cause = CAUSE.get(cause, machine.PWRON_RESET)
    machine._wake_reason = machine.TIMER_WAKE if cause == "deepsleep" else 0
    if cfg.get("unique_id"):
        uid = cfg["unique_id"]
        machine._unique_id = bytes(int(uid[i : i + 2], 16) for i in range(0, len(uid), 2))
    t0 = cfg.get("t0_us", 0)
    vboard.World(world, t0, ctl)
    ctl.write("U %d %d\n" % (t0, time.boot_us()))
    if cause in ROM:
        w("ets Jul 29 2019 12:21:46\r\n\r\n%s\r\n" % ROM[cause])
    g = {"__name__": "__main__"}
    go_on = run_file("boot.py", g)
    if go_on and mode == "friendly":
        go_on = run_file("main.py", g)
    if not go_on:
        soft_reset(mode)
    if mode == "friendly":
        w(BANNER)
    while True:
        board.repl_mode = mode
        mode = raw(g) if mode == "raw" else friendly(g)
        if mode == "friendly":
            w(BANNER)
