"""The `dermaroll` command.

Exit codes: 0 success, 2 bad usage or bad input (a malformed trace or script,
an unknown setting), 1 any other failure. Errors are one line on stderr, and
nothing goes to stdout before the input has been fully validated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
from typing import Any, NoReturn

from dermaroll import __version__

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad usage or bad input: exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (`dermaroll replay: error: ...`)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, "%s: error: %s (see %s --help)\n" % (self.prog, message, self.prog))


def _add_runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runtime",
        choices=("micropython", "cpython"),
        help="run the firmware's detector in this interpreter (default: MicroPython when "
        "installed, else CPython with a note on stderr)",
    )


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="dermaroll",
        description="Host tools for the dermaroll smart derma roller: replay sensor traces "
        "through the firmware's own pass detection, synthesize sessions, run the demo.",
        epilog="`dermaroll COMMAND --help` tells more. Exit status: 0 success, 2 bad usage "
        "or input, 1 other failure.",
    )
    ap.add_argument("--version", action="version", version="dermaroll %s" % __version__)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "replay",
        help="count the passes in a sensor trace (CSV) with the firmware's detector",
        description="Run the firmware's pass detector and session over a sensor trace\n"
        "(DESIGN.md section 6 CSV) and print the passes and the per-zone guidance\n"
        "verdicts (4-5 passes per direction, vertical first). A malformed trace is\n"
        "rejected with FILE:LINE: message before anything is printed.",
        epilog="Examples:\n  dermaroll replay session.csv\n"
        "  dermaroll replay session.csv --json --set min_pass_mm=12 --set pause_ms=500",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("trace", metavar="TRACE", help="trace file (CSV, '# dermaroll-trace 1')")
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON Lines: one object per pass, then one summary object",
    )
    _add_runtime(p)
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a device setting for this replay, e.g. min_pass_mm=12 (repeatable); "
        "counts_per_mm defaults to the trace's own",
    )

    p = sub.add_parser(
        "synth",
        help="render a motion script into a sensor trace (and its ground truth)",
        description="Render a scripted rolling session (docs/motion-script.md) into a "
        "sensor trace, with the passes the script makes as ground truth.",
    )
    p.add_argument("script", metavar="SCRIPT", help="motion script (JSON)")
    p.add_argument("-o", "--output", metavar="TRACE", required=True, help="trace file to write")
    p.add_argument(
        "--truth",
        metavar="TRUTH.jsonl",
        help="also write the ground truth, in the JSON Lines form of `replay --json`",
    )
    p.add_argument("--seed", type=int, help="override the script's seed")
    p.add_argument(
        "--loose",
        action="store_true",
        help="skip the checks that keep every scripted pass unambiguous for the detector",
    )

    p = sub.add_parser(
        "demo",
        help="roll a scripted session on the virtual board and watch the passes arrive",
        description="Generate a short scripted session with the motion model (forehead "
        "done by the book, nose rolled horizontally first, then a cheek), play it on the "
        "virtual board running the firmware's own boot.py/main.py in MicroPython, show "
        "each pass as the firmware prints it on its console, and compare the result with "
        "what the script did. Without the MicroPython interpreter (or with --runtime "
        "cpython) the trace is replayed through the detector instead, and it says so.",
    )
    p.add_argument("--seed", type=int, default=1, help="motion model seed (default 1)")
    p.add_argument("--save", metavar="TRACE", help="keep the generated trace in this file")
    p.add_argument(
        "--speed",
        default="8",
        metavar="N|max",
        help="virtual board speed: N x real time, or max (default 8)",
    )
    _add_runtime(p)

    p = sub.add_parser(
        "sim",
        help="run a virtual board: console on a pty, BLE radio, scripted motion",
        description="Start a virtual dermaroll board (docs/virtual-board.md): the firmware "
        "from a flash directory runs in the MicroPython unix interpreter with simulated "
        "ESP32 peripherals, its console on a pseudo-terminal (mpremote connect PTY), its "
        "radio on a virtual BLE link. With --script the motion model rolls that session "
        "on the drum and the IMU, and zone changes press the zone button. Ctrl-C stops "
        "the board.",
        epilog="Examples:\n  dermaroll sim --fs ./flash\n"
        "  dermaroll sim --script session.json --speed max --port-link /tmp/roller\n"
        "  dermaroll sim --script session.json --fault unplug@30000:5000 --fault cut@60000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--script", metavar="SESSION", help="motion script (JSON) to roll")
    p.add_argument(
        "--speed",
        default="1",
        metavar="N|max",
        help="N x real time (N >= 1), or max: as fast as allowed, idle waits skipped (default 1)",
    )
    p.add_argument(
        "--fs",
        metavar="DIR",
        help="flash directory (created with the firmware's files if missing or empty; "
        "default: a temporary one)",
    )
    p.add_argument(
        "--imu",
        default="mpu6050",
        choices=("mpu6050", "mpu6500", "lsm6ds3", "lsm6dso", "none"),
        help="IMU chip on the I2C bus (default mpu6050)",
    )
    p.add_argument("--mount", default="x,y,z", help="how the IMU is mounted (default x,y,z)")
    p.add_argument(
        "--port-link", metavar="PATH", help="also make PATH a symlink to the console pty"
    )
    p.add_argument(
        "--fault",
        metavar="KIND@MS[:DUR]",
        action="append",
        default=[],
        help="inject a fault at world time MS: cut@MS, unplug@MS[:DUR], noise@MS:DUR,"
        " tear@MS[:KEEP] (the next flash write keeps KEEP bytes, then the power goes) (repeatable)",
    )
    p.add_argument("--no-radio", action="store_true", help="no virtual BLE radio")
    p.add_argument("--quiet", action="store_true", help="do not echo the console here")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return EXIT_USAGE
    handler = {"replay": cmd_replay, "synth": cmd_synth, "demo": cmd_demo, "sim": cmd_sim}[
        args.command
    ]
    try:
        return handler(args)
    except UsageError as e:
        return _fail(EXIT_USAGE, str(e))
    except KeyboardInterrupt:
        return _fail(EXIT_FAILURE, "interrupted")
    except BrokenPipeError:
        # stdout closed early (`dermaroll replay x.csv | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - one line, not a traceback
        return _fail(EXIT_FAILURE, "%s: %s" % (type(e).__name__, e))


def _fail(code: int, message: str) -> int:
    print("dermaroll: %s" % message.replace("\n", " "), file=sys.stderr)
    return code


# ---------------------------------------------------------------------------
# replay


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` items -> checked setting values (UsageError on the first bad one)."""
    from dermaroll import mpcompat

    mpcompat.install()
    from roller import settings

    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageError("--set %s: want KEY=VALUE" % item)
        if key not in settings.NUMBERS and key not in settings.TEXTS:
            known = ", ".join(sorted(list(settings.NUMBERS) + list(settings.TEXTS)))
            raise UsageError("--set %s: unknown setting %r (known: %s)" % (item, key, known))
        try:
            out[key] = settings.parse(key, text.strip())
        except ValueError as e:
            raise UsageError("--set %s: %s" % (item, e)) from None
    return out


def cmd_replay(args: argparse.Namespace) -> int:
    from dermaroll import replay as rp
    from dermaroll.trace import TraceError, read_trace

    overrides = parse_sets(args.set)
    try:
        trace = read_trace(args.trace)
        result = rp.replay(trace, args.runtime, overrides)
    except TraceError as e:
        # `FILE:LINE: message`, the form editors and DESIGN.md section 6 use.
        print(str(e).replace("\n", " "), file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:  # settings that do not go together
        raise UsageError("--set: %s" % e) from None
    except rp.ReplayError as e:
        return _fail(EXIT_FAILURE, str(e))
    if args.json:
        sys.stdout.write("".join(line + "\n" for line in result.json_lines()))
    else:
        sys.stdout.write(format_result(result, trace, args.trace))
    sys.stdout.flush()
    return EXIT_OK


def format_result(result, trace, name: str) -> str:
    """The readable form: a table of passes, then the zone summary with verdicts."""
    out = []
    seconds = trace.duration_ms / 1000
    out.append(
        "%s: %d samples, %.1f s, %g counts/mm; replayed in %s"
        % (name, len(trace), seconds, trace.counts_per_mm, _runtime_name(result.runtime))
    )
    out.append("")
    if result.passes:
        out.append("%4s  %-14s %-10s %9s %9s %8s" % ("#", "zone", "dir", "start", "end", "length"))
        for p in result.passes:
            out.append(
                "%4d  %-14s %-10s %8.2fs %8.2fs %5.1f mm"
                % (p.seq, p.zone, p.dir, p.t_start_ms / 1000, p.t_end_ms / 1000, p.length_mm)
            )
    else:
        out.append("no passes")
    out.append("")
    if result.summary:
        out.append(
            "%-14s %-16s %-16s %8s  %s" % ("zone", "vertical", "horizontal", "diagonal", "remarks")
        )
        # unassigned goes last, apart from the zones
        zones = sorted(result.summary.items(), key=lambda item: item[0] == "unassigned")
        for zone, z in zones:
            remarks = "horizontal before vertical (order)" if z.order else ""
            out.append(
                "%-14s %-16s %-16s %8d  %s"
                % (
                    zone,
                    "%d  %s" % (z.vertical, z.verdict_vertical),
                    "%d  %s" % (z.horizontal, z.verdict_horizontal),
                    z.diagonal,
                    remarks,
                )
            )
        out.append("")
        out.append("target: 4-5 passes per direction and zone, vertical first")
    return "\n".join(out) + "\n"


def _runtime_name(runtime: str) -> str:
    return {"micropython": "MicroPython", "cpython": "CPython"}.get(runtime, runtime)


# ---------------------------------------------------------------------------
# synth


def cmd_synth(args: argparse.Namespace) -> int:
    from dermaroll import motion
    from dermaroll.trace import write_trace

    try:
        script = motion.load_script(args.script)
        if args.seed is not None:
            script["seed"] = args.seed
        rendered = motion.render(script, strict=not args.loose, name=args.script)
    except motion.ScriptError as e:
        text = str(e) if str(e).startswith(args.script) else "%s: %s" % (args.script, e)
        raise UsageError(text) from None
    try:
        write_trace(args.output, rendered.trace)
        if args.truth:
            motion.write_truth(args.truth, rendered)
    except OSError as e:
        return _fail(EXIT_FAILURE, "%s: %s" % (e.filename or args.output, e.strerror or e))
    print(
        "wrote %s: %d samples, %.1f s at %g Hz; the script makes %d passes and %d adjustments%s"
        % (
            args.output,
            len(rendered.trace),
            rendered.trace.duration_ms / 1000,
            float(rendered.trace.meta.get("sample_hz", "0")),
            len(rendered.truth),
            rendered.adjustments,
            " (ground truth: %s)" % args.truth if args.truth else "",
        )
    )
    return EXIT_OK


# ---------------------------------------------------------------------------
# demo


def _parse_speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise UsageError("--speed %s: want a number >= 1 or max" % text) from None
    if not speed >= 1 or math.isinf(speed):
        raise UsageError("--speed %s: want a number >= 1 or max" % text)
    return speed


def cmd_demo(args: argparse.Namespace) -> int:
    from dermaroll.board import runner

    speed = _parse_speed(args.speed)
    if args.runtime != "cpython" and runner.find_micropython() is not None:
        return _demo_on_board(args, speed)
    if args.runtime != "cpython":
        print(
            "dermaroll demo: the MicroPython interpreter is missing, so the virtual board "
            "cannot run; replaying the session through the detector instead",
            file=sys.stderr,
        )
    return _demo_replay(args)


def _demo_on_board(args: argparse.Namespace, speed: float | None) -> int:
    import asyncio
    import time

    from dermaroll import motion
    from dermaroll.board import runner
    from dermaroll.scoring import Score
    from dermaroll.trace import write_trace

    script = runner.board_demo_script(args.seed)
    rendered = motion.render(script, name="demo")
    if args.save:
        write_trace(args.save, rendered.trace)
    out = sys.stdout
    out.write(
        "dermaroll demo: the motion model rolls a %.0f s session (seed %d) on the virtual "
        "board at %s:\n"
        "  forehead: 5 vertical strokes back and forth, 2 small adjustments, 4 horizontal "
        "with lifts;\n  nose: 2 horizontal, then 4 vertical (horizontal first: the `order` "
        "remark);\n  left cheek: 4 vertical, 2 diagonal.\n"
        "The board runs the firmware's boot.py and main.py in MicroPython (unix port, "
        "simulated ESP32 peripherals); zone changes are presses of its zone button.\n"
        "Passes as they arrive on the board's console:\n\n"
        % (
            rendered.trace.duration_ms / 1000,
            args.seed,
            "max speed" if speed is None else "%gx real time" % speed,
        )
    )
    out.flush()
    t0 = time.monotonic()

    def show(line: str) -> None:
        if line.startswith(("PASS ", "ZONE ", "dermaroll fw")):
            out.write("  [%5.1fs] %s\n" % (time.monotonic() - t0, line))
            out.flush()

    with tempfile.TemporaryDirectory(prefix="dermaroll-demo-") as flash:
        runner.install_firmware(flash)
        try:
            board, real = asyncio.run(
                runner.run_session(flash, script, speed=speed, on_line=show, timeout=600)
            )
        except runner.BoardError as e:
            return _fail(EXIT_FAILURE, str(e))
    passes = board.passes()
    score = Score()
    score.add(board.truth, passes)
    summary = motion.summarize(passes)  # type: ignore[arg-type]
    same = summary == rendered.summary()
    out.write(
        "\n%-14s %-16s %-16s %8s  %s\n" % ("zone", "vertical", "horizontal", "diagonal", "remarks")
    )
    for zone, z in summary.items():
        out.write(
            "%-14s %-16s %-16s %8d  %s\n"
            % (
                zone,
                "%d  %s" % (z["vertical"], z["verdict"]["vertical"]),
                "%d  %s" % (z["horizontal"], z["verdict"]["horizontal"]),
                z["diagonal"],
                "horizontal before vertical (order)" if z["remarks"] else "",
            )
        )
    out.write("target: 4-5 passes per direction and zone, vertical first\n")
    out.write(
        "\n%.0f s of session in %.1f s (%.0fx real time).\n"
        "script: %d passes, board: %d; F1 %.3f, direction accuracy %.3f; per-zone counts %s "
        "the script's.\n"
        % (
            (board.script_end_ms - board.config.start_ms) / 1000,
            real,
            board.world_ms / 1000 / real if real else 0,
            len(board.truth),
            len(passes),
            score.f1,
            score.direction_accuracy,
            "match" if same else "DIFFER from",
        )
    )
    return EXIT_OK if same else EXIT_FAILURE


def cmd_sim(args: argparse.Namespace) -> int:
    import asyncio

    from dermaroll import motion
    from dermaroll.board import runner

    speed = _parse_speed(args.speed)
    script = None
    if args.script:
        try:
            script = motion.load_script(args.script)
            motion.render(script, name=args.script)  # checked before anything starts
        except motion.ScriptError as e:
            text = str(e) if str(e).startswith(args.script) else "%s: %s" % (args.script, e)
            raise UsageError(text) from None
    faults = [_parse_fault(f) for f in args.fault]
    if runner.find_micropython() is None:
        return _fail(EXIT_FAILURE, runner.MICROPYTHON_MISSING)
    try:
        return asyncio.run(_sim(args, speed, script, faults))
    except KeyboardInterrupt:
        print("dermaroll sim: stopped", file=sys.stderr)
        return EXIT_OK


def _parse_fault(text: str) -> Any:
    from dermaroll.board import runner

    kind, at, when = text.partition("@")
    t, _, dur = when.partition(":")
    try:
        t_ms = int(t)
        dur_ms = int(dur) if dur else 0
    except ValueError:
        raise UsageError("--fault %s: want KIND@MS[:DUR] with whole milliseconds" % text) from None
    if not at or t_ms < 0 or dur_ms < 0:
        raise UsageError("--fault %s: want KIND@MS[:DUR]" % text)
    if kind == "cut":
        return runner.power_cut(t_ms)
    if kind == "unplug":
        return runner.imu_unplug(t_ms, dur_ms)
    if kind == "noise":
        if not dur_ms:
            raise UsageError("--fault %s: noise wants a duration, noise@MS:DUR" % text)
        return runner.encoder_noise(t_ms, dur_ms)
    if kind == "tear":  # the number after ':' is the bytes the torn write keeps
        return runner.torn_write(t_ms, dur_ms)
    raise UsageError("--fault %s: unknown fault %r (cut, unplug, noise, tear)" % (text, kind))


async def _sim(args: argparse.Namespace, speed: float | None, script: Any, faults: list) -> int:
    import asyncio
    import signal

    from dermaroll.board import runner

    temp = None
    flash = args.fs
    if flash is None:
        temp = tempfile.mkdtemp(prefix="dermaroll-flash-")
        flash = temp
    if not os.path.isdir(flash) or not os.listdir(flash):
        runner.install_firmware(flash)
    out = sys.stdout

    def echo(line: str) -> None:
        if not args.quiet:
            out.write("| %s\n" % line)
            out.flush()

    radio = not args.no_radio
    if radio:
        try:
            import bumble  # noqa: F401
        except ImportError:
            print("dermaroll sim: bumble is not installed: no radio", file=sys.stderr)
            radio = False
    cfg = runner.BoardConfig(
        flash=flash,
        speed=speed,
        imu=None if args.imu == "none" else args.imu,
        mount=args.mount,
        script=script,
        faults=faults,
        radio=radio,
    )
    board = runner.VirtualBoard(cfg, on_line=echo)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    link = args.port_link
    try:
        async with board:
            if link:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(link)
                os.symlink(board.pty_path, link)
            out.write(
                "virtual board up\n  console: %s%s\n"
                % (board.pty_path, " (link: %s)" % link if link else "")
            )
            out.write("  connect: mpremote connect %s\n" % (link or board.pty_path))
            if board.radio is not None:
                r = board.radio
                out.write(
                    "  BLE: address %s, name %r until the firmware sets its own; other hosts: "
                    "%s\n" % (r.address.to_string(False), r.gap_name.decode(), r.hci_transport)
                )
            else:
                out.write("  BLE: no radio\n")
            out.write(
                "  flash: %s%s; speed: %s; imu: %s\n"
                % (
                    os.path.abspath(flash),
                    " (temporary)" if temp else "",
                    "max" if speed is None else "%gx" % speed,
                    args.imu,
                )
            )
            if script is not None:
                out.write(
                    "  script: %s, %d passes over %.0f s (world time %d..%d ms)\n"
                    % (
                        args.script,
                        len(board.truth),
                        (board.script_end_ms - cfg.start_ms) / 1000,
                        cfg.start_ms,
                        board.script_end_ms,
                    )
                )
            out.write("Ctrl-C stops the board.\n")
            out.flush()
            reported = script is None
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
                if not reported and board.world_ms >= board.script_end_ms + 3000:
                    reported = True
                    s = runner.score(board)
                    out.write("script done: %s\n" % s.report())
                    out.flush()
    finally:
        if link and os.path.islink(link):
            os.unlink(link)
        if temp is not None:
            import shutil

            shutil.rmtree(temp, ignore_errors=True)
    out.write("board stopped\n")
    return EXIT_OK


def _demo_replay(args: argparse.Namespace) -> int:
    from dermaroll import motion
    from dermaroll import replay as rp
    from dermaroll.trace import read_trace, write_trace

    script = motion.demo_script(args.seed)
    rendered = motion.render(script, name="demo")
    with tempfile.TemporaryDirectory(prefix="dermaroll-demo-") as tmp:
        path = args.save or os.path.join(tmp, "demo.csv")
        write_trace(path, rendered.trace)
        trace = read_trace(path)  # the same path a recorded trace takes
        try:
            result = rp.replay(trace, args.runtime)
        except rp.ReplayError as e:
            return _fail(EXIT_FAILURE, str(e))
    out = sys.stdout
    out.write(
        "dermaroll demo: the motion model rolled a %.0f s session (seed %d, %s Hz, %g counts/mm):\n"
        "  forehead: 5 vertical strokes back and forth, 2 small adjustments, 4 horizontal with "
        "lifts;\n  nose: 2 horizontal, then 4 vertical (horizontal first: the `order` remark);\n"
        "  no zone selected: 2 diagonal passes.\n"
        "The trace went through the firmware's own detector and session in %s%s.\n\n"
        % (
            trace.duration_ms / 1000,
            args.seed,
            trace.meta.get("sample_hz", "?"),
            trace.counts_per_mm,
            _runtime_name(result.runtime),
            " (saved as %s)" % args.save if args.save else "",
        )
    )
    out.write(format_result(result, trace, args.save or "demo trace"))
    truth = rendered.summary()
    same = {z: s.to_json() for z, s in result.summary.items()} == truth
    out.write(
        "\nscript: %d passes, detected: %d; per-zone counts %s the script's.\n"
        % (
            len(rendered.truth),
            len(result.passes),
            "match" if same else "DIFFER from",
        )
    )
    if not same:
        out.write("script's summary: %s\n" % json.dumps(truth))
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
