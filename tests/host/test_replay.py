"""Replay in both runtimes, and the `dermaroll` command: JSON format, table, errors, synth, demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dermaroll import cli, motion, replay
from dermaroll.trace import Trace, TraceError, parse_trace, write_trace


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dermaroll.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def hand_trace() -> Trace:
    """Three passes worked out by hand from DESIGN.md section 5.

    100 Hz, 1 count/mm. Forehead, axle level: 0 -> 30 counts between 1010 and
    1100 ms. No zone from 3000 ms, axle upright from 1500 ms: 30 -> 0 between
    4010 and 4100 ms. Zone `neck` from 6000 ms, axle at 45 degrees from 4500
    ms: 0 -> -20 between 7010 and 7100 ms. Data ends at 8000 ms.
    """
    cols: list[list[int]] = [[] for _ in range(8)]
    zones = []
    enc = 0
    for t in range(0, 8010, 10):
        if 1010 <= t <= 1100:
            enc += 3
        elif 4010 <= t <= 4100:
            enc -= 3
        elif 7010 <= t <= 7100:
            enc -= 2
        if t < 1500:
            a = (0, 500, 866)
        elif t < 4500:
            a = (1000, 0, 0)
        else:
            a = (707, 0, 707)
        for col, v in zip(cols, (t, enc, *a, 0, 0, 0), strict=True):
            col.append(v)
        zones.append("forehead" if t < 3000 else ("" if t < 6000 else "neck"))
    return Trace.from_rows(1.0, cols, zones, {"sample_hz": "100"}, source="hand.csv")


HAND_JSON = [
    '{"type": "pass", "seq": 1, "zone": "forehead", "dir": "vertical", "t_start_ms": 1000, '
    '"t_end_ms": 1100, "length_mm": 30.0}',
    '{"type": "pass", "seq": 2, "zone": "unassigned", "dir": "horizontal", "t_start_ms": 4000, '
    '"t_end_ms": 4100, "length_mm": 30.0}',
    '{"type": "pass", "seq": 3, "zone": "neck", "dir": "diagonal", "t_start_ms": 7000, '
    '"t_end_ms": 7100, "length_mm": 20.0}',
    '{"type": "summary", "zones": {'
    '"unassigned": {"vertical": 0, "horizontal": 1, "diagonal": 0, '
    '"verdict": {"vertical": "under", "horizontal": "under"}, "remarks": ["order"]}, '
    '"forehead": {"vertical": 1, "horizontal": 0, "diagonal": 0, '
    '"verdict": {"vertical": "under", "horizontal": "under"}, "remarks": []}, '
    '"neck": {"vertical": 0, "horizontal": 0, "diagonal": 1, '
    '"verdict": {"vertical": "under", "horizontal": "under"}, "remarks": []}}}',
]


@pytest.fixture()
def hand_csv(tmp_path) -> Path:
    path = tmp_path / "hand.csv"
    write_trace(path, hand_trace())
    return path


def test_library_replay_of_the_hand_trace_in_cpython():
    res = replay.replay(hand_trace(), "cpython")
    assert res.json_lines() == HAND_JSON
    assert res.runtime == "cpython" and res.samples == 801


def test_library_replay_of_the_hand_trace_in_micropython(have_micropython):
    res = replay.replay(hand_trace(), "micropython")
    assert res.json_lines() == HAND_JSON
    assert res.runtime == "micropython"


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_cli_json_is_exactly_the_design_format(hand_csv, runtime, request):
    if runtime == "micropython":
        request.getfixturevalue("have_micropython")
    proc = run_cli("replay", str(hand_csv), "--json", "--runtime", runtime)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == HAND_JSON
    assert proc.stderr == ""
    for line in proc.stdout.splitlines()[:-1]:
        assert list(json.loads(line)) == [
            "type",
            "seq",
            "zone",
            "dir",
            "t_start_ms",
            "t_end_ms",
            "length_mm",
        ]


def test_cli_set_overrides_settings_and_counts_per_mm(hand_csv):
    proc = run_cli(
        "replay", str(hand_csv), "--json", "--runtime", "cpython", "--set", "min_pass_mm=25"
    )
    passes = [json.loads(x) for x in proc.stdout.splitlines()[:-1]]
    assert [p["seq"] for p in passes] == [1, 2]  # the 20 mm pass is now an adjustment
    proc = run_cli(
        "replay",
        str(hand_csv),
        "--json",
        "--runtime",
        "cpython",
        "--set",
        "counts_per_mm=2",
        "--set",
        "min_pass_mm=10",
    )
    passes = [json.loads(x) for x in proc.stdout.splitlines()[:-1]]
    assert [p["length_mm"] for p in passes] == [15.0, 15.0, 10.0]


@pytest.mark.parametrize(
    "item,word",
    [
        ("nosuch=1", "unknown setting"),
        ("min_pass_mm", "KEY=VALUE"),
        ("min_pass_mm=abc", "not a number"),
        ("min_pass_mm=0", "outside"),
        ("pause_ms=1.5", "whole number"),
        ("vertical_max_deg=80", "below vertical_max_deg"),
    ],
)
def test_cli_bad_set_is_a_usage_error_before_output(hand_csv, item, word):
    proc = run_cli("replay", str(hand_csv), "--runtime", "cpython", "--set", item)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and word in proc.stderr, proc.stderr


def test_trace_counts_per_mm_outside_the_settings_range_names_its_line(tmp_path, hand_csv):
    text = hand_csv.read_text().replace("# counts_per_mm: 1.0", "# counts_per_mm: 250")
    path = tmp_path / "big.csv"
    path.write_text(text)
    proc = run_cli("replay", str(path), "--runtime", "cpython")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("%s:2: counts_per_mm" % path)
    proc = run_cli("replay", str(path), "--runtime", "cpython", "--set", "counts_per_mm=1")
    assert proc.returncode == 0, proc.stderr


def test_cli_table_shows_passes_and_verdicts(hand_csv):
    proc = run_cli("replay", str(hand_csv), "--runtime", "cpython")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "801 samples" in out and "CPython" in out
    assert "forehead" in out and "vertical" in out and "30.0 mm" in out
    lines = out.splitlines()
    neck = next(x for x in lines if x.startswith("neck "))
    assert "0  under" in neck and neck.split()[-1] == "1"
    unassigned = next(x for x in lines if x.startswith("unassigned "))
    assert "(order)" in unassigned
    # unassigned is listed after the zones
    assert lines.index(unassigned) > lines.index(neck)


def test_empty_trace_replays_to_no_passes(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("# dermaroll-trace 1\n# counts_per_mm: 3\nt_ms,enc,ax,ay,az,gx,gy,gz,zone\n")
    proc = run_cli("replay", str(path), "--json", "--runtime", "cpython")
    assert proc.returncode == 0
    assert proc.stdout == '{"type": "summary", "zones": {}}\n'


def test_zone_table_maps_names_and_caps_extra_ids():
    head = "# dermaroll-trace 1\n# counts_per_mm: 3\nt_ms,enc,ax,ay,az,gx,gy,gz,zone\n"
    ids = ["", "unassigned", "chin", "forehead"] + ["z%d" % i for i in range(9)]
    rows = "".join("%d,0,0,0,1000,0,0,0,%s\n" % (i, z) for i, z in enumerate(ids))
    trace = parse_trace(head + rows, "z.csv")
    zone_map, names = replay.zone_table(trace)
    assert zone_map == [0, 0, 6, 1] + list(range(7, 16))
    assert names[:7] == [
        "unassigned",
        "forehead",
        "nose",
        "left_cheek",
        "right_cheek",
        "upper_lip",
        "chin",
    ]
    assert names[7] == "z0" and names[15] == "z8"
    trace = parse_trace(head + rows + "# one more\n99,0,0,0,1000,0,0,0,z9\n", "z.csv")
    with pytest.raises(TraceError) as info:
        replay.zone_table(trace)
    assert str(info.value).startswith("z.csv:18: zone 'z9'")


def test_fallback_to_cpython_with_a_note_when_micropython_is_missing(monkeypatch, capsys, hand_csv):
    monkeypatch.setattr(replay, "find_micropython", lambda: None)
    res = replay.replay(hand_trace())
    assert res.runtime == "cpython" and res.json_lines() == HAND_JSON
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CPython" in err
    with pytest.raises(replay.ReplayError, match="MicroPython interpreter was not found"):
        replay.replay(hand_trace(), "micropython")
    # through the command: explicit runtime -> failure (1), default -> note + result
    assert cli.main(["replay", str(hand_csv), "--runtime", "micropython"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1
    assert cli.main(["replay", str(hand_csv), "--json"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == HAND_JSON and "note" in out.err


def test_micropython_path_comes_from_the_installed_packages():
    import importlib.util

    path = replay.micropython_path()
    roller_dir = importlib.util.find_spec("roller").submodule_search_locations[0]
    assert path[0] == os.path.dirname(os.path.abspath(roller_dir))
    assert os.path.isfile(os.path.join(path[0], "roller", "detector.py"))
    assert os.path.isfile(os.path.join(path[1], "replayer.py"))


def test_runtimes_agree_on_a_noisy_session(have_micropython):
    r = motion.render(motion.corpus_scripts(8, 5)[7])
    a = replay.replay(r.trace, "micropython")
    b = replay.replay(r.trace, "cpython")
    assert a.lines == b.lines and a.passes


# ---------------------------------------------------------------------------
# synth and demo


def test_synth_writes_trace_and_truth_that_replay_agrees_with(tmp_path):
    script = tmp_path / "s.json"
    script.write_text(json.dumps(motion.demo_script(3)))
    out, truth = tmp_path / "s.csv", tmp_path / "truth.jsonl"
    proc = run_cli("synth", str(script), "-o", str(out), "--truth", str(truth))
    assert proc.returncode == 0, proc.stderr
    assert "17 passes" in proc.stdout
    truth_lines = truth.read_text().splitlines()
    assert len(truth_lines) == 18
    assert json.loads(truth_lines[0])["type"] == "pass"
    rep = run_cli("replay", str(out), "--json", "--runtime", "cpython")
    got = rep.stdout.splitlines()
    assert len(got) == len(truth_lines)
    assert json.loads(got[-1]) == json.loads(truth_lines[-1])  # same counts, verdicts, remarks
    seed = run_cli("synth", str(script), "-o", str(tmp_path / "t.csv"), "--seed", "4")
    assert seed.returncode == 0
    assert (tmp_path / "t.csv").read_text() != out.read_text()


def test_synth_bad_script_is_one_line_usage_error(tmp_path):
    script = tmp_path / "bad.json"
    script.write_text(json.dumps({"zones": [{"zone": "nose", "strokes": [{"dir": "up"}]}]}))
    proc = run_cli("synth", str(script), "-o", str(tmp_path / "x.csv"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "bad.json" in proc.stderr and "dir" in proc.stderr
    assert not (tmp_path / "x.csv").exists()


def test_demo_runs_in_micropython(have_micropython, tmp_path):
    saved = tmp_path / "demo.csv"
    proc = run_cli("demo", "--save", str(saved))
    assert proc.returncode == 0, proc.stderr
    assert "MicroPython" in proc.stdout and "match" in proc.stdout
    assert saved.exists()


def test_help_lists_the_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for word in ("replay", "synth", "demo"):
        assert word in proc.stdout
    proc = run_cli("replay", "--help")
    assert "--json" in proc.stdout and "--set" in proc.stdout and "--runtime" in proc.stdout
    proc = run_cli("replay")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
