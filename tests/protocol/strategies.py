"""Hypothesis strategies for every message of protocol 1: field dicts as the codec uses them."""

from __future__ import annotations

from hypothesis import strategies as st

import dermaroll_protocol as dp

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
i32 = st.integers(-(2**31), 2**31 - 1)
zone = st.integers(0, dp.MAX_ZONE)
battery = st.one_of(st.integers(0, 100), st.just(dp.BATTERY_UNKNOWN))
state = st.integers(dp.STATE_IDLE, dp.STATE_ERROR)


def _text(max_bytes=dp.MAX_TEXT):
    return st.text(max_size=max_bytes).filter(lambda s: len(s.encode("utf-8")) <= max_bytes)


pass_record = st.fixed_dictionaries(
    {
        "seq": u32,
        "boot": u16,
        "t_end_ms": u32,
        "session": u16,
        "zone": zone,
        "direction": st.integers(0, 2),
        "length_01mm": u16,
        "duration_ms": u16,
        "flags": u8,
    }
)

zone_counts = st.fixed_dictionaries(
    {
        "session": u16,
        "zone": zone,
        "flags": u8,
        "vertical": u16,
        "horizontal": u16,
        "diagonal": u16,
    }
)


@st.composite
def status(draw):
    oldest, newest = sorted((draw(u32), draw(u32)))
    return {
        "major": dp.PROTOCOL_MAJOR,
        "minor": dp.PROTOCOL_MINOR,
        "state": draw(state),
        "zone": draw(zone),
        "battery": draw(battery),
        "errors": draw(u16),
        "oldest": oldest,
        "newest": newest,
        "boot": draw(u16),
        "session": draw(u16),
    }


@st.composite
def raw_samples(draw, max_samples=dp.RAW_MAX_SAMPLES):
    """Values the wire carries exactly: enc16, milli-g, gyro in multiples of 100 mdps."""
    n = draw(st.integers(1, max_samples))
    t0 = draw(st.integers(0, 0xFFFFFFFF - 255 * max_samples))
    t = t0
    samples = []
    i16 = st.integers(-32768, 32767)
    for _ in range(n):
        t += draw(st.integers(0, 255))
        accel = [draw(i16) for _ in range(3)]
        gyro = [draw(i16) * 100 for _ in range(3)]
        samples.append((t, draw(u16), *accel, *gyro))
    return {"t0_ms": t0, "zone": draw(zone), "samples": samples}


adv_state = st.fixed_dictionaries(
    {
        "major": st.just(dp.PROTOCOL_MAJOR),
        "state": state,
        "zone": zone,
        "passes": u16,
        "battery": battery,
        "counter": u8,
    }
)


def _setting(draw):
    sid = draw(st.integers(1, len(dp.SETTINGS)))
    stype = dp.SETTINGS[sid - 1][1]
    value = draw(_text()) if stype == dp.SETTING_TEXT else draw(i32)
    return {"setting": sid, "type": stype, "value": value}


_OPERANDS = {
    dp.OP_SET_ZONE: lambda d: {"zone": d(zone)},
    dp.OP_GET_SETTING: lambda d: {"setting": d(st.integers(1, len(dp.SETTINGS)))},
    dp.OP_SET_SETTING: _setting,
    dp.OP_SET_TIME: lambda d: {"epoch_s": d(u32), "epoch_ms": d(st.integers(0, 999))},
    dp.OP_GET_TIME: lambda d: {"boot": d(u16)},
    dp.OP_CALIBRATE: lambda d: {"pose": d(st.integers(dp.POSE_FLAT, dp.POSE_UPRIGHT))},
    dp.OP_RAW_STREAM: lambda d: {"on": d(st.integers(0, 1))},
    dp.OP_GET_INFO: lambda d: {"field": d(st.integers(dp.INFO_MANUFACTURER, dp.INFO_FIRMWARE))},
    dp.OP_REPORT_RECORDS: lambda d: {
        "operator": d(st.sampled_from([dp.OPERATOR_ALL, dp.OPERATOR_GE])),
        "seq": d(u32),
    },
    dp.OP_REPORT_NUMBER: lambda d: {
        "operator": d(st.sampled_from([dp.OPERATOR_ALL, dp.OPERATOR_GE])),
        "seq": d(u32),
    },
    dp.OP_DELETE_RECORDS: lambda d: {"operator": dp.OPERATOR_LE, "seq": d(u32)},
}
OPCODES = sorted(dp.REQUESTS)


@st.composite
def request(draw):
    op = draw(st.sampled_from(OPCODES))
    operands = _OPERANDS.get(op, lambda d: {})(draw)
    return {"op": op, "token": draw(u8), **operands}


_TIME = lambda d: {  # noqa: E731
    "boot": d(u16),
    "device_ms": d(u32),
    "epoch_s": d(u32),
    "epoch_ms": d(st.integers(0, 999)),
}
_COUNT = lambda d: {"count": d(u32)}  # noqa: E731
_DATA = {
    dp.OP_SET_ZONE: lambda d: {"zone": d(zone)},
    dp.OP_NEXT_ZONE: lambda d: {"zone": d(zone)},
    dp.OP_START_SESSION: lambda d: {"session": d(u16)},
    dp.OP_END_SESSION: lambda d: {"session": d(u16)},
    dp.OP_GET_SETTING: _setting,
    dp.OP_SET_SETTING: _setting,
    dp.OP_SET_TIME: _TIME,
    dp.OP_GET_TIME: _TIME,
    dp.OP_CALIBRATE: lambda d: {
        "pose": d(st.integers(dp.POSE_FLAT, dp.POSE_UPRIGHT)),
        "text": d(_text()),
    },
    dp.OP_RAW_STREAM: lambda d: {"on": d(st.integers(0, 1))},
    dp.OP_GET_INFO: lambda d: {
        "field": d(st.integers(dp.INFO_MANUFACTURER, dp.INFO_FIRMWARE)),
        "text": d(_text()),
    },
    dp.OP_REPORT_COUNTS: lambda d: {"zones": d(u8)},
    dp.OP_REPORT_RECORDS: _COUNT,
    dp.OP_DELETE_RECORDS: _COUNT,
    dp.OP_REPORT_NUMBER: _COUNT,
}


@st.composite
def response(draw):
    op = draw(st.sampled_from(OPCODES))
    result = draw(st.one_of(st.just(dp.SUCCESS), u8.filter(lambda r: r != dp.SUCCESS)))
    data = _DATA.get(op, lambda d: {})(draw) if result == dp.SUCCESS else {}
    return {"op": op, "token": draw(u8), "result": result, **data}


MESSAGES = {
    "pass_record": pass_record,
    "zone_counts": zone_counts,
    "status": status(),
    "raw_samples": raw_samples(),
    "request": request(),
    "response": response(),
    "adv_state": adv_state,
}
