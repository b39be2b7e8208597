"""Settings under the real MicroPython interpreter."""

import os

from mpytest import raises

from roller import settings

TMP = "/tmp/dermaroll_mpy_test_settings.json"


def _write(text):
    with open(TMP, "w") as f:
        f.write(text)


def test_defaults_without_file():
    s = settings.Settings().load("/nonexistent/settings.json")
    assert not s.error
    assert s["min_pass_mm"] == 10.0 and s["pause_ms"] == 400
    cpm = s.counts_per_mm()
    assert 7.0 < cpm < 7.1, cpm  # 400 counts / (pi * 18 mm)


def test_garbage_file_gives_defaults_and_flag():
    _write("{not json")
    s = settings.Settings().load(TMP)
    assert s.error and "not valid JSON" in s.errors[0], s.errors
    assert s["reverse_mm"] == 1.5


def test_bad_values_and_unknown_keys_reported():
    _write('{"pause_ms": -5, "min_pass_mm": "ten", "reverse_mm": 2, "colour": "red"}')
    s = settings.Settings().load(TMP)
    assert s["pause_ms"] == 400 and s["min_pass_mm"] == 10.0
    assert s["reverse_mm"] == 2.0 and isinstance(s["reverse_mm"], float)
    assert len(s.errors) == 2, s.errors
    assert s.unknown == ["colour"]


def test_cross_check_and_save_roundtrip():
    s = settings.Settings()
    e = raises(ValueError, s.set, "horizontal_min_deg", 20)
    assert "below" in str(e)
    s.set("counts_per_mm", 1.53)
    s.set("mount", "-y,x,z")
    s.save(TMP)
    t = settings.Settings().load(TMP)
    assert not t.error and t.counts_per_mm() == 1.53 and t["mount"] == "-y,x,z"
    os.remove(TMP)


def test_mount_parsing():
    assert settings.parse_mount("x,-z,y") == ((0, 1), (2, -1), (1, 1))
    raises(ValueError, settings.parse_mount, "x,x,z")
    raises(ValueError, settings.parse_mount, "x,y")
    raises(ValueError, settings.parse_mount, "x,q,z")


def test_update_is_atomic_and_order_free():
    s = settings.Settings()
    s.update({"horizontal_min_deg": 20.0, "vertical_max_deg": 10.0})
    assert s["vertical_max_deg"] == 10.0 and s["horizontal_min_deg"] == 20.0
    raises(ValueError, s.update, {"pause_ms": 500, "min_pass_mm": -1})
    assert s["pause_ms"] == 400  # nothing of a rejected update is kept
