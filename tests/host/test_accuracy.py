"""THE accuracy test: the firmware's detector against the motion model's ground truth.

The corpus (tests/host/conftest.py: 32 scripted sessions covering 50/100/200
Hz, 0.8-20 counts/mm, diagonal passes, back-and-forth, lift-and-return,
adjustments, heavy noise and tremor, zone changes, no-zone passes and the
`order` case) is replayed in MicroPython and in CPython. Both runtimes must
answer identically, and against the truth: pass-level F1 >= 0.99 (a detected
pass matches a true one of the same zone whose time overlaps it), direction
accuracy >= 0.99 over matched passes, and exact counts in >= 97% of the
(session, zone, direction) cells.
"""

from __future__ import annotations

from dermaroll import replay, scoring

F1_MIN = 0.99
DIRECTION_MIN = 0.99
EXACT_CELLS_MIN = 0.97


def _differences(r, result) -> list[str]:
    """What differs from the truth in one session, pass by pass, for the report."""
    out = []
    pairs = scoring.match(r.truth, result.passes)
    matched_t = {i for i, _ in pairs}
    matched_d = {j for _, j in pairs}
    for i, t in enumerate(r.truth):
        if i not in matched_t:
            out.append(
                "%s: missed truth pass %d %s %s %d-%d ms %.1f mm (e %.1f deg)"
                % (r.name, t.seq, t.zone, t.dir, t.t_start_ms, t.t_end_ms, t.length_mm, t.e_deg)
            )
    for j, d in enumerate(result.passes):
        if j not in matched_d:
            out.append(
                "%s: extra detected pass %d %s %s %d-%d ms %.1f mm"
                % (r.name, d.seq, d.zone, d.dir, d.t_start_ms, d.t_end_ms, d.length_mm)
            )
    for i, j in pairs:
        t, d = r.truth[i], result.passes[j]
        if t.dir != d.dir:
            out.append(
                "%s: truth pass %d is %s (e %.1f deg), detected %d says %s"
                % (r.name, t.seq, t.dir, t.e_deg, d.seq, d.dir)
            )
    return out


def test_detector_against_the_motion_model(corpus, have_micropython, capsys):
    score = scoring.Score()
    problems: list[str] = []
    samples = 0
    for r in corpus:
        mpy = replay.replay(r.trace, "micropython")
        cpy = replay.replay(r.trace, "cpython")
        # One implementation, two interpreters: identical answers, line for line.
        assert mpy.lines == cpy.lines, r.name
        assert mpy.json_lines() == cpy.json_lines(), r.name
        score.add(r.truth, mpy.passes)
        problems += _differences(r, mpy)
        samples += len(r.trace)
    with capsys.disabled():
        print("\naccuracy over %d samples: %s" % (samples, score.report()))
        print(
            "sessions with every (zone, direction) count exact: %.4f" % score.exact_session_fraction
        )
    detail = "\n".join(problems[:40])
    assert score.sessions >= 30
    assert score.f1 >= F1_MIN, detail
    assert score.direction_accuracy >= DIRECTION_MIN, detail
    assert score.exact_cell_fraction >= EXACT_CELLS_MIN, detail


def test_scoring_counts_misses_extras_and_wrong_directions():
    """The scorer itself: a known mix of errors gives the known numbers."""
    from dermaroll.motion import TruthPass

    truth = [
        TruthPass(1, "nose", "vertical", 0, 100, 30.0),
        TruthPass(2, "nose", "vertical", 200, 300, 30.0),
        TruthPass(3, "nose", "horizontal", 400, 500, 30.0),
        TruthPass(4, "chin", "horizontal", 600, 700, 30.0),
    ]
    detected = [
        TruthPass(1, "nose", "vertical", 10, 110, 30.0),  # match
        TruthPass(2, "nose", "diagonal", 190, 290, 30.0),  # match, wrong direction
        TruthPass(3, "chin", "horizontal", 400, 500, 30.0),  # wrong zone: extra + miss
        TruthPass(4, "chin", "horizontal", 610, 690, 30.0),  # match
        TruthPass(5, "chin", "horizontal", 800, 900, 12.0),  # extra
    ]
    s = scoring.Score()
    s.add(truth, detected)
    assert (s.matched, s.truth, s.detected) == (3, 4, 5)
    assert abs(s.f1 - 2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4)) < 1e-12
    assert s.direction_accuracy == 2 / 3
    # cells: nose v/h/d = 2/1/0 vs 1/0/1 -> 0 exact of 3; chin 0/1/0 vs 0/3/0 -> 2 of 3
    assert (s.exact_cells, s.cells) == (2, 6)
    assert s.exact_session_fraction == 0.0


def test_the_accuracy_bounds_catch_a_detector_that_miscounts(corpus):
    """The same scoring flags a detector set up wrong (min_pass_mm 35 drops real passes)."""
    score = scoring.Score()
    for r in corpus[:6]:
        score.add(r.truth, replay.replay(r.trace, "cpython", {"min_pass_mm": 35.0}).passes)
    assert score.f1 < F1_MIN and score.exact_cell_fraction < EXACT_CELLS_MIN
