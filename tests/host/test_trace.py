"""Trace reader and writer: DESIGN.md section 6, every malformed case and every accepted variant."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dermaroll import trace as tr
from dermaroll.trace import HEADER, Trace, TraceError, parse_trace, read_trace, write_trace

HEAD = "# dermaroll-trace 1\n# counts_per_mm: 1.53\nt_ms,enc,ax,ay,az,gx,gy,gz,zone\n"
ROW0 = "0,0,12,-3,998,100,-50,20,forehead\n"
ROW1 = "10,1,15,-2,1001,140,-40,25,forehead\n"
GOOD = HEAD + ROW0 + ROW1


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dermaroll.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def lines(*rows: str) -> str:
    return "".join(r + "\n" for r in rows)


# (name, file text, line the error names, a word the message contains)
MALFORMED = [
    ("empty file", "", 1, "dermaroll-trace"),
    ("no magic line", "t_ms,enc,ax,ay,az,gx,gy,gz,zone\n0,0,0,0,0,0,0,0,\n", 1, "dermaroll-trace"),
    ("magic not first", "# counts_per_mm: 2\n# dermaroll-trace 1\n" + HEAD[20:], 1, "first line"),
    ("other version", GOOD.replace("trace 1", "trace 2"), 1, "version"),
    (
        "missing counts_per_mm",
        lines("# dermaroll-trace 1", "# sample_hz: 100", ",".join(HEADER)),
        3,
        "counts_per_mm",
    ),
    ("counts_per_mm zero", GOOD.replace("1.53", "0"), 2, "positive"),
    ("counts_per_mm negative", GOOD.replace("1.53", "-1.5"), 2, "positive"),
    ("counts_per_mm not a number", GOOD.replace("1.53", "abc"), 2, "not a number"),
    ("counts_per_mm empty", GOOD.replace("1.53", ""), 2, "not a number"),
    ("counts_per_mm nan", GOOD.replace("1.53", "nan"), 2, "positive"),
    ("counts_per_mm inf", GOOD.replace("1.53", "inf"), 2, "positive"),
    ("wrong header names", GOOD.replace("gx,gy,gz", "gx,gz,gy"), 3, "header"),
    ("header missing a column", GOOD.replace(",zone\n", "\n"), 3, "header"),
    (
        "no header, data at once",
        HEAD.replace("t_ms,enc,ax,ay,az,gx,gy,gz,zone\n", "") + ROW0,
        3,
        "header",
    ),
    ("no header at all", lines("# dermaroll-trace 1", "# counts_per_mm: 2"), 2, "header"),
    ("8 columns", GOOD + "20,1,15,-2,1001,140,-40,25\n", 6, "column"),
    ("10 columns", GOOD + "20,1,15,-2,1001,140,-40,25,forehead,x\n", 6, "column"),
    ("empty line of commas", GOOD + ",,,,,,,,\n", 6, "t_ms"),
    ("float t_ms", GOOD + "20.5,1,15,-2,1001,140,-40,25,nose\n", 6, "t_ms"),
    ("text in enc", GOOD + "20,x,15,-2,1001,140,-40,25,nose\n", 6, "enc"),
    ("empty ax", GOOD + "20,1,,-2,1001,140,-40,25,nose\n", 6, "ax"),
    ("exponent in ay", GOOD + "20,1,1,1e3,1001,140,-40,25,nose\n", 6, "ay"),
    ("underscore in az", GOOD + "20,1,1,1,1_001,140,-40,25,nose\n", 6, "az"),
    ("non-ASCII digit in gx", GOOD + "20,1,1,1,1,\u0661\u0664,-40,25,nose\n", 6, "gx"),
    ("true in gy", GOOD + "20,1,1,1,1,1,true,25,nose\n", 6, "gy"),
    ("space inside gz", GOOD + "20,1,1,1,1,1,1,2 5,nose\n", 6, "gz"),
    ("NaN in gz", GOOD + "20,1,1,1,1,1,1,NaN,nose\n", 6, "gz"),
    ("out of 32-bit range", GOOD + "20,4294967296,1,1,1,1,1,1,nose\n", 6, "range"),
    ("t_ms decreases", GOOD + "9,1,15,-2,1001,140,-40,25,forehead\n", 6, "decreases"),
    (
        "decrease after comment and blank lines",
        HEAD + ROW0 + "# note\n\n" + ROW1 + "   \n5,1,1,1,1,1,1,1,\n",
        9,
        "decreases",
    ),
    (
        "comment line with 8 commas stays skipped, bad row after it",
        HEAD + ROW0 + "# a,b,c,d,e,f,g,h,i\n" + "x,1,1,1,1,1,1,1,\n",
        6,
        "t_ms",
    ),
    ("invalid UTF-8", (GOOD + "20,1,1,1,1,1,1,1,nose\n").replace("nose", "n\udcffse"), 6, "UTF-8"),
]


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@pytest.mark.parametrize("name,text,line,word", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_rejected_with_file_and_line(name, text, line, word):
    with pytest.raises(TraceError) as info:
        parse_trace(_bytes(text), "trace.csv")
    e = info.value
    assert (e.source, e.line) == ("trace.csv", line), str(e)
    assert str(e).startswith("trace.csv:%d: " % line)
    assert word.lower() in str(e).lower(), str(e)
    assert "\n" not in str(e)


@pytest.mark.parametrize("name,text,line,word", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_rejected_by_the_cli_before_any_output(tmp_path, name, text, line, word):
    path = tmp_path / "trace.csv"
    path.write_bytes(_bytes(text))
    extra = ["--json"] if len(name) % 2 else ["--runtime", "cpython"]
    proc = cli("replay", "trace.csv", *extra, cwd=tmp_path)
    assert proc.returncode == 2, proc
    assert proc.stdout == ""
    err = proc.stderr.splitlines()
    assert len(err) == 1, proc.stderr
    assert err[0].startswith("trace.csv:%d: " % line), err[0]


def test_first_error_in_file_order_is_the_one_reported():
    text = GOOD + "20,1,1,1,1,1,1,x,nose\n" + "30,1,1,1,1,1,1,1\n" + "5,1,1,1,1,1,1,1,\n"
    with pytest.raises(TraceError) as info:
        parse_trace(text, "t.csv")
    assert info.value.line == 6 and "gz" in info.value.message
    text = GOOD + "20,1,1,1,1,1,1,1\n" + "30,1,1,1,1,1,1,x,nose\n"
    with pytest.raises(TraceError) as info:
        parse_trace(text, "t.csv")
    assert info.value.line == 6 and "column" in info.value.message


def test_bom_and_crlf_keep_line_numbers():
    text = "\ufeff" + (GOOD + "# c\n" + "20,1,x,1,1,1,1,1,\n").replace("\n", "\r\n")
    with pytest.raises(TraceError) as info:
        parse_trace(text.encode("utf-8"), "t.csv")
    assert info.value.line == 7


def test_missing_file_is_one_line_naming_it(tmp_path):
    proc = cli("replay", str(tmp_path / "nope.csv"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "nope.csv" in proc.stderr


# ---------------------------------------------------------------------------
# Accepted variants


def test_reads_the_design_example():
    t = parse_trace(GOOD, "x")
    assert t.counts_per_mm == 1.53
    assert list(t.t_ms) == [0, 10] and list(t.enc) == [0, 1]
    assert [list(c) for c in t.columns()[2:]] == [
        [12, 15],
        [-3, -2],
        [998, 1001],
        [100, 140],
        [-50, -40],
        [20, 25],
    ]
    assert t.zone_ids() == ["forehead", "forehead"]


def test_accepts_crlf_bom_spaces_blank_and_comment_lines():
    text = (
        "\ufeff# dermaroll-trace 1 \r\n"
        "#  counts_per_mm :  2.5 \r\n"
        "# recorded_by: someone, with: colons\r\n"
        "\r\n"
        " t_ms , enc ,ax,ay,az,gx,gy,gz, zone \r\n"
        "\r\n"
        "# a comment\r\n"
        " 0 , -3 , 1, 2, 3, 4, 5, 6 , left_cheek \r\n"
        "  \r\n"
        "   # indented comment, with, commas, , , , , ,\r\n"
        "+10,007,-1,-2,-3,-4,-5,-6,\r\n"
        "10,8,0,0,1000,0,0,0,   \r\n"
    )
    t = parse_trace(text.encode("utf-8"), "x")
    assert t.counts_per_mm == 2.5
    assert t.meta["recorded_by"] == "someone, with: colons"
    assert list(t.t_ms) == [0, 10, 10] and list(t.enc) == [-3, 7, 8]
    assert list(t.gz) == [6, -6, 0]
    assert t.zone_ids() == ["left_cheek", "", ""]
    assert t.row_line(0) == 8 and t.row_line(1) == 11 and t.row_line(2) == 12


def test_no_rows_is_valid():
    for text in (HEAD, HEAD.rstrip("\n"), HEAD + "\n\n# nothing recorded\n"):
        t = parse_trace(text, "x")
        assert len(t) == 0 and t.zones == []


def test_any_zone_id_and_unknown_metadata():
    text = HEAD.replace("# counts_per_mm", "# firmware: 0.1\n# counts_per_mm") + lines(
        "0,0,0,0,1000,0,0,0,jawline",
        "5,0,0,0,1000,0,0,0,zone with spaces",
        "6,0,0,0,1000,0,0,0,Stirn \u00fcber",
        "7,0,0,0,1000,0,0,0,jawline",
    )
    t = parse_trace(text, "x")
    assert t.zones == ["jawline", "zone with spaces", "Stirn \u00fcber"]
    assert list(t.zone) == [0, 1, 2, 0]
    assert t.meta["firmware"] == "0.1"


def test_fast_and_line_by_line_readers_agree_on_a_long_file():
    n = 2 * tr._BLOCK + 5  # several blocks of the fast reader
    rows = [
        "%d,%d,%d,%d,%d,%d,%d,%d,%s"
        % (i * 5, i // 3, i % 7 - 3, -i, 1000, i, -i, 0, ("forehead", "", "nose")[i // 1000 % 3])
        for i in range(n)
    ]
    text = HEAD + "\n".join(rows) + "\n"
    fast = parse_trace(text, "x")
    body = text.split("\n")[3:-1]
    slow_cols, slow_zones = tr._rows_slow(body, 4, "x", [])
    assert len(fast) == n
    assert [list(c) for c in fast.columns()] == [list(c) for c in slow_cols]
    assert fast.zone_ids() == slow_zones
    # a decrease right at a block boundary, and a bad field deep in the last block
    k = tr._BLOCK
    bad = rows[:k] + ["%d,0,0,0,0,0,0,0," % (5 * k - 6)] + rows[k + 1 :]
    with pytest.raises(TraceError) as info:
        parse_trace(HEAD + "\n".join(bad), "x")
    assert info.value.line == 4 + k and "decreases" in info.value.message
    bad = rows[:-2] + ["%d,0,0,0,0,0,0,0.5," % (5 * n)] + rows[-1:]
    with pytest.raises(TraceError) as info:
        parse_trace(HEAD + "\n".join(bad), "x")
    assert info.value.line == 4 + n - 2 and "gz" in info.value.message


_FIELD = st.one_of(
    st.integers(-(2**31), 2**31 - 1).map(str),
    st.sampled_from(
        [
            "",
            " 5 ",
            "+7",
            "007",
            "1.5",
            "x",
            "1_0",
            "true",
            "2147483648",
            "-0",
            "\u0663",
            "NaN",
            "1e2",
            "[1]",
            '"3"',
        ]
    ),
)
_ROW = st.one_of(
    st.lists(_FIELD, min_size=8, max_size=8).map(lambda f: ",".join(f) + ",zone"),
    st.lists(_FIELD, min_size=7, max_size=9).map(lambda f: ",".join(f)),
    st.sampled_from(["", "   ", "# note", "# a,b,c,d,e,f,g,h,i", "\r"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ROW, max_size=12))
def test_fast_path_never_disagrees_with_the_line_by_line_reader(rows):
    """Whatever the fast path accepts, the exact reader accepts with the same values."""
    body = list(rows)
    fast = tr._rows_fast(list(body), 4, [])
    try:
        slow = tr._rows_slow(list(body), 4, "x", [])
    except TraceError:
        slow = None
    if fast is not None:
        assert slow is not None
        assert [list(c) for c in fast[0]] == [list(c) for c in slow[0]]
        assert fast[1] == slow[1]
    # and parse_trace gives the exact reader's verdict either way
    text = HEAD + "\n".join(body)
    try:
        t = parse_trace(text, "x")
    except TraceError:
        assert slow is None
    else:
        assert slow is not None and [list(c) for c in t.columns()] == [list(c) for c in slow[0]]


# ---------------------------------------------------------------------------
# Writer


def test_write_then_read_round_trip(tmp_path):
    cols = [
        [0, 5, 9, 9, 15],
        [0, -1, 2, 2**31 - 1, -(2**31)],
        [1, 2, 3, 4, 5],
        [-1, -2, -3, -4, -5],
        [1000, 999, 1001, 0, -1000],
        [7, 8, 9, 10, 11],
        [0, 0, 0, 0, 0],
        [-32768, 32767, 1, 2, 3],
    ]
    zones = ["forehead", "", "neck", "forehead", ""]
    t = Trace.from_rows(7.07, cols, zones, {"sample_hz": "200", "note": "round\ntrip"})
    path = tmp_path / "rt.csv"
    write_trace(path, t)
    back = read_trace(path)
    assert back.counts_per_mm == 7.07
    assert [list(c) for c in back.columns()] == cols
    assert back.zone_ids() == zones
    assert back.meta["sample_hz"] == "200" and back.meta["note"] == "round trip"
    assert path.read_text().startswith("# dermaroll-trace 1\n# counts_per_mm: 7.07\n")


def test_records_are_little_endian_int32_in_pipe_order():
    t = Trace.from_rows(
        1.0, [[1, 2], [3, -4], [5, 6], [7, 8], [9, 10], [0, 0], [0, 0], [0, 0]], ["nose", "x"]
    )
    raw = tr.records(t, [2, 7])
    assert struct.unpack("<12i", raw) == (1, 3, 5, 7, 9, 2, 2, -4, 6, 8, 10, 7)
