"""Sensor traces: reader and writer for the CSV format of DESIGN.md section 6.

A trace holds one row per sample (``t_ms, enc, ax, ay, az, gx, gy, gz, zone``)
and is stored column by column: eight ``array('i')`` columns and, for the zone,
a per-row index into the list of distinct zone ids (``""`` = no zone).

Reading is fast because the common case never looks at single fields in
Python: the rows are joined and split once and converted with one
``map(int, ...)``, and every check (column counts, integer syntax, range,
``t_ms`` order) is done on whole columns. Only when such a check fails, or the
body has comment lines the fast path cannot skip, is the file walked line by
line, which finds the exact first offending line. Either way a malformed file
raises one :class:`TraceError` whose text is ``FILE:LINE: message``.
"""

from __future__ import annotations

import json
import math
import operator
import os
import re
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import IO

MAGIC = "dermaroll-trace"
VERSION = "1"
HEADER = ("t_ms", "enc", "ax", "ay", "az", "gx", "gy", "gz", "zone")
NUMERIC = HEADER[:8]
INT_MIN = -(2**31)
INT_MAX = 2**31 - 1

# 'i' is the 32-bit C int on every platform this runs on; check anyway.
_TC = "i" if array("i").itemsize == 4 else "l"
_INT = re.compile(r"[+-]?[0-9]+\Z")
_BLOCK = 32768  # rows converted at a time by the fast reader
_MAGIC_LINE = re.compile(r"#\s*dermaroll-trace\s+(\S+)\s*\Z")


class TraceError(ValueError):
    """A malformed trace; ``str()`` is the one-line ``FILE:LINE: message``."""

    def __init__(self, source: str, line: int, message: str) -> None:
        where = "%s:%d" % (source, line) if line > 0 else source
        super().__init__("%s: %s" % (where, message))
        self.source = source
        self.line = line
        self.message = message


def _column(values: Iterable[int] = ()) -> array:
    return array(_TC, values)


@dataclass
class Trace:
    """One recorded or synthetic session, column by column."""

    counts_per_mm: float
    t_ms: array = field(default_factory=_column)
    enc: array = field(default_factory=_column)
    ax: array = field(default_factory=_column)
    ay: array = field(default_factory=_column)
    az: array = field(default_factory=_column)
    gx: array = field(default_factory=_column)
    gy: array = field(default_factory=_column)
    gz: array = field(default_factory=_column)
    # Per-row index into `zones`; `zones` lists the distinct zone ids in order
    # of first appearance ("" = no zone selected).
    zone: array = field(default_factory=lambda: array("H"))
    zones: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    source: str = "<trace>"
    # Where things stand in the file, for messages about values the reader
    # accepts but a consumer rejects: the line of each metadata key, the line
    # of the first row, and the lines skipped (blank, comment) among the rows.
    meta_lines: dict[str, int] = field(default_factory=dict)
    first_line: int = 0
    skipped_lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.t_ms)

    def columns(self) -> tuple[array, ...]:
        """The eight numeric columns in file order."""
        return (self.t_ms, self.enc, self.ax, self.ay, self.az, self.gx, self.gy, self.gz)

    def zone_ids(self) -> list[str]:
        """The zone id of every row."""
        return list(map(self.zones.__getitem__, self.zone))

    def row_line(self, row: int) -> int:
        """File line number of row `row` (0 when the trace was not read from a file)."""
        if not self.first_line:
            return 0
        line = self.first_line + row
        for skipped in self.skipped_lines:
            if skipped > line:
                break
            line += 1
        return line

    def zone_first_row(self, index: int) -> int:
        """Row index of the first row with zone id ``zones[index]``."""
        return self.zone.index(index)

    @property
    def duration_ms(self) -> int:
        return self.t_ms[-1] - self.t_ms[0] if len(self.t_ms) else 0

    @classmethod
    def from_rows(
        cls,
        counts_per_mm: float,
        columns: Sequence[Sequence[int]],
        zone_ids: Sequence[str],
        meta: dict[str, str] | None = None,
        source: str = "<trace>",
    ) -> Trace:
        """Build a trace from eight integer columns and a zone id per row (no file checks)."""
        if len(columns) != 8:
            raise ValueError("want 8 numeric columns, got %d" % len(columns))
        n = len(zone_ids)
        if any(len(c) != n for c in columns):
            raise ValueError("columns differ in length")
        names = list(dict.fromkeys(zone_ids))
        index = {z: i for i, z in enumerate(names)}
        tr = _with_columns(cls(counts_per_mm), [_column(c) for c in columns])
        tr.zone = array("H", map(index.__getitem__, zone_ids))
        tr.zones = names
        tr.meta = dict(meta or {})
        tr.source = source
        return tr


def _with_columns(tr: Trace, cols: Sequence[array]) -> Trace:
    tr.t_ms, tr.enc, tr.ax, tr.ay, tr.az, tr.gx, tr.gy, tr.gz = cols
    return tr


# ---------------------------------------------------------------------------
# Reading


def read_trace(path: str | os.PathLike[str], name: str | None = None) -> Trace:
    """Read and validate the trace file at `path` (messages name it as `name` or the path)."""
    source = name if name is not None else os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TraceError(source, 0, "cannot read: %s" % (e.strerror or e)) from None
    return parse_trace(data, source)


def parse_trace(data: bytes | str, source: str = "<trace>") -> Trace:
    """Parse trace text (bytes are decoded as UTF-8, a byte-order mark is dropped)."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise TraceError(source, line, "not valid UTF-8 text") from None
    else:
        text = data[1:] if data.startswith("\ufeff") else data
    lines = text.split("\n")

    first = lines[0].strip()
    m = _MAGIC_LINE.match(first)
    if m is None:
        raise TraceError(
            source,
            1,
            "not a dermaroll trace: the first line must be '# %s %s'" % (MAGIC, VERSION),
        )
    if m.group(1) != VERSION:
        raise TraceError(
            source, 1, "trace format version %r is not supported (want %s)" % (m.group(1), VERSION)
        )

    meta: dict[str, str] = {}
    meta_lines: dict[str, int] = {}
    header = 0  # index into `lines` of the header line
    for i in range(1, len(lines)):
        s = lines[i].strip()
        if not s:
            continue
        if s[0] == "#":
            key, colon, value = s[1:].partition(":")
            key = key.strip()
            if colon and key and " " not in key:
                meta[key] = value.strip()
                meta_lines[key] = i + 1
            continue
        fields = tuple(f.strip() for f in s.split(","))
        if fields != HEADER:
            raise TraceError(
                source, i + 1, "wrong header: want %r, got %r" % (",".join(HEADER), s[:120])
            )
        header = i
        break
    else:
        last = len(lines) - 1 if len(lines) > 1 and not lines[-1] else len(lines)
        raise TraceError(source, last, "no header line (%s) after the metadata" % ",".join(HEADER))

    counts_per_mm = _counts_per_mm(meta, meta_lines, source, header + 1)

    body = lines[header + 1 :]
    while body and not body[-1].strip():
        body.pop()  # the final newline, trailing blank lines
    skipped: list[int] = []
    cols = _rows_fast(body, header + 2, skipped)
    if cols is None:
        skipped = []
        cols = _rows_slow(body, header + 2, source, skipped)
    numeric, zone_raw = cols

    names = list(dict.fromkeys(zone_raw))  # in order of first appearance
    index = {z: i for i, z in enumerate(names)}
    tr = _with_columns(Trace(counts_per_mm), numeric)
    tr.zone = array("H", map(index.__getitem__, zone_raw))
    tr.zones = names
    tr.meta = meta
    tr.meta_lines = meta_lines
    tr.source = source
    tr.first_line = header + 2
    tr.skipped_lines = skipped
    return tr


def _counts_per_mm(meta: dict[str, str], lines: dict[str, int], source: str, header: int) -> float:
    text = meta.get("counts_per_mm")
    if text is None:
        raise TraceError(source, header, "no '# counts_per_mm: VALUE' metadata before the header")
    line = lines["counts_per_mm"]
    try:
        value = float(text)
    except ValueError:
        raise TraceError(source, line, "counts_per_mm: %r is not a number" % text) from None
    if not math.isfinite(value) or value <= 0:
        raise TraceError(source, line, "counts_per_mm must be a positive number, got %r" % text)
    return value


def _is_skipped(line: str) -> bool:
    s = line.strip()
    return not s or s[0] == "#"


def _rows_fast(
    body: list[str], first_line: int, skipped: list[int]
) -> tuple[list[array], list[str]] | None:
    """Columns of a well-formed body, or None when any row needs a closer look."""
    n = len(body)
    commas = list(map(str.count, body, repeat(",", n)))
    if commas.count(8) != n:
        # Blank and comment lines are skipped; any other odd line is an error
        # that the line-by-line pass reports.
        keep = []
        for ln, (line, c) in enumerate(zip(body, commas, strict=True), first_line):
            if c == 8:
                keep.append(line)
            elif _is_skipped(line):
                skipped.append(ln)
            else:
                return None
        body = keep
        n = len(body)
    values = _column()
    zone_raw: list[str] = []
    # In blocks, so the temporary strings and lists stay small on long traces.
    for i in range(0, n, _BLOCK):
        block = body[i : i + _BLOCK]
        parts = list(map(str.rpartition, block, repeat(",", len(block))))
        got = _numbers(",".join(map(itemgetter(0), parts)))
        if got is None or len(got) != 8 * len(block):
            return None
        values.extend(got)
        zone_raw.extend(map(str.strip, map(itemgetter(2), parts)))
    cols = [values[k::8] for k in range(8)]
    t = cols[0]
    if any(map(operator.gt, t, t[1:])):
        return None
    return cols, zone_raw


def _numbers(numbers: str) -> array | None:
    """The comma-separated integers of `numbers`, or None if any is not a valid field."""
    if not numbers:
        return None
    # The JSON scanner converts integers about twice as fast as int(); what it
    # also takes (floats, true/false, nested values) is kept out below, and
    # what it refuses (a '+' sign, leading zeros) goes through int().
    if "t" in numbers or "f" in numbers:
        return None
    try:
        return array(_TC, json.loads("[" + numbers + "]"))
    except (ValueError, TypeError, OverflowError):
        pass
    # int() also takes '1_000' and non-ASCII digits; the format does not.
    if "_" in numbers or not numbers.isascii():
        return None
    try:
        return array(_TC, map(int, numbers.split(",")))
    except (ValueError, OverflowError):
        return None  # not an integer (or a comment line with 8 commas), out of range


def _rows_slow(
    body: list[str], first_line: int, source: str, skipped: list[int]
) -> tuple[list[array], list[str]]:
    """Line by line: the columns, or a TraceError for the first bad line."""
    cols: list[list[int]] = [[] for _ in NUMERIC]
    zone_raw: list[str] = []
    last_t = None
    for ln, line in enumerate(body, first_line):
        if _is_skipped(line):
            skipped.append(ln)
            continue
        parts = line.split(",")
        if len(parts) != 9:
            raise TraceError(
                source,
                ln,
                "wrong column count: want 9 (%s), got %d" % (",".join(HEADER), len(parts)),
            )
        for k in range(8):
            p = parts[k].strip()
            if not p.isascii() or not _INT.match(p):
                raise TraceError(source, ln, "%s: not an integer: %r" % (NUMERIC[k], p[:40]))
            v = int(p)
            if v < INT_MIN or v > INT_MAX:
                raise TraceError(source, ln, "%s: %d is out of the 32-bit range" % (NUMERIC[k], v))
            cols[k].append(v)
        t = cols[0][-1]
        if last_t is not None and t < last_t:
            raise TraceError(source, ln, "t_ms decreases: %d after %d" % (t, last_t))
        last_t = t
        zone_raw.append(parts[8].strip())
    return [_column(c) for c in cols], zone_raw


# ---------------------------------------------------------------------------
# Writing


def format_trace(trace: Trace) -> str:
    """The trace as CSV text (DESIGN.md section 6)."""
    head = ["# %s %s" % (MAGIC, VERSION), "# counts_per_mm: %r" % float(trace.counts_per_mm)]
    for key, value in trace.meta.items():
        if key == "counts_per_mm":
            continue
        value = str(value).replace("\n", " ").replace("\r", " ")
        head.append("# %s: %s" % (key, value))
    head.append(",".join(HEADER))
    row = "{},{},{},{},{},{},{},{},{}".format
    rows = map(row, *trace.columns(), trace.zone_ids())
    return "\n".join(head) + "\n" + "".join(r + "\n" for r in rows)


def write_trace(dest: str | os.PathLike[str] | IO[str], trace: Trace) -> None:
    """Write the trace to a path or an open text file."""
    text = format_trace(trace)
    if hasattr(dest, "write"):
        dest.write(text)  # type: ignore[union-attr]
        return
    with open(dest, "w", encoding="utf-8", newline="\n") as f:  # type: ignore[arg-type]
        f.write(text)


def records(trace: Trace, zone_map: Sequence[int]) -> bytes:
    """Little-endian int32 records ``t_ms, enc, ax, ay, az, zone`` (the replay pipe format).

    `zone_map` gives the firmware zone index for each entry of ``trace.zones``.
    """
    n = len(trace)
    rec = array(_TC, bytes(24 * n))
    rec[0::6] = trace.t_ms
    rec[1::6] = trace.enc
    rec[2::6] = trace.ax
    rec[3::6] = trace.ay
    rec[4::6] = trace.az
    rec[5::6] = array(_TC, map(zone_map.__getitem__, trace.zone))
    if sys.byteorder == "big":
        rec.byteswap()
    return rec.tobytes()
