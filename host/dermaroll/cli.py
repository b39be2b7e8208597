"""The `dermaroll` command.

Exit codes: 0 success, 2 bad usage or bad input (a malformed trace or script,
an unknown setting), 1 any other failure. Errors are one line on stderr, and
nothing goes to stdout before the input has been fully validated.
"""

from __future__ import annotations

import argparse
import json
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
        help="synthesize a session and replay it in MicroPython",
        description="Generate a short scripted session with the motion model (forehead "
        "done by the book, nose rolled horizontally first, a few passes with no zone), "
        "replay it through the firmware's detector in MicroPython and compare the "
        "result with what the script did.",
    )
    p.add_argument("--seed", type=int, default=1, help="motion model seed (default 1)")
    p.add_argument("--save", metavar="TRACE", help="keep the generated trace in this file")
    _add_runtime(p)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return EXIT_USAGE
    handler = {"replay": cmd_replay, "synth": cmd_synth, "demo": cmd_demo}[args.command]
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


def cmd_demo(args: argparse.Namespace) -> int:
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
