"""protocol/SPEC.md and the codec say the same thing: tables, UUIDs, sizes and examples."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import dermaroll_protocol as dp
from tests.protocol.test_vectors import VECTORS

SPEC = (Path(__file__).resolve().parents[2] / "protocol" / "SPEC.md").read_text(encoding="utf-8")


def table_rows(first_cell_pattern: str) -> list[list[str]]:
    """The cells of the Markdown table rows whose first cell matches."""
    rows = []
    for line in SPEC.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(first_cell_pattern, cells[0]):
            rows.append(cells)
    return rows


def row_named(rows: list[list[str]], name: str) -> list[str]:
    found = [r for r in rows if r[1] == name]
    assert len(found) == 1, (name, found)
    return found[0]


def test_opcode_table_matches_the_codec():
    rows = table_rows(r"`0x[0-9A-F]{2}`")
    for op, (name, size, _) in dp.REQUESTS.items():
        row = row_named(rows, name)
        assert row[0] == "`0x%02X`" % op, name
        assert row[3] == str(size) or (op == dp.OP_SET_SETTING and row[3] == "5–19"), row
        assert (row[5] == "yes") == (op in dp.BONDED_OPCODES), row


def test_response_codes_match_the_codec():
    rows = table_rows(r"`0x[0-9A-F]{2}`")
    names = ["SUCCESS", "OPCODE_NOT_SUPPORTED", "INVALID_OPERAND", "NO_RECORDS_FOUND"]
    names += ["BUSY", "NOT_PERMITTED", "FAILED", "ABORTED"]
    for name in names:
        assert row_named(rows, name)[0] == "`0x%02X`" % getattr(dp, name), name


def test_settings_table_matches_the_codec():
    found = re.findall(r"\| (\d+) \| (\w+) \| (INT|MILLI|TEXT) \|", SPEC)
    names = {"INT": dp.SETTING_INT, "MILLI": dp.SETTING_MILLI, "TEXT": dp.SETTING_TEXT}
    table = sorted((int(i), name, names[t]) for i, name, t in found)
    assert table == [(i + 1, name, t) for i, (name, t) in enumerate(dp.SETTINGS)]


def test_message_types_sizes_and_uuids():
    types = {
        "PassRecord (5.1)": dp.PASS_RECORD,
        "ZoneCounts (5.2)": dp.ZONE_COUNTS,
        "Status (5.3)": dp.STATUS,
        "RawSamples (5.4)": dp.RAW_SAMPLES,
        "ControlRequest (6)": dp.CONTROL_REQUEST,
        "ControlResponse (6)": dp.CONTROL_RESPONSE,
    }
    rows = {r[0]: r for r in table_rows(r"\w+ \([0-9.]+\)")}
    for name, value in types.items():
        assert rows[name][-1] == "`0x%02X`" % value, name
    assert "### 5.1 PassRecord (%d bytes)" % dp.PASS_RECORD_SIZE in SPEC
    assert "### 5.2 ZoneCounts (%d bytes)" % dp.ZONE_COUNTS_SIZE in SPEC
    assert "### 5.3 Status (%d bytes)" % dp.STATUS_SIZE in SPEC
    assert (
        "### 5.4 RawSamples (%d + %d n bytes, n = 1..%d)"
        % (
            dp.RAW_HEADER_SIZE,
            dp.RAW_SAMPLE_SIZE,
            dp.RAW_MAX_SAMPLES,
        )
        in SPEC
    )
    assert "≤ **%d** bytes" % dp.MAX_BODY in SPEC and "≤ **%d**" % dp.MAX_FRAME in SPEC
    for name in ("SERVICE", "PASS_RECORD", "ZONE_COUNTS", "CONTROL_POINT", "STATUS", "RAW_SAMPLES"):
        text = getattr(dp, name + "_UUID")
        assert "`%s`" % text in SPEC and uuid.UUID(text).version == 4
    assert uuid.UUID(dp.SERVICE_UUID).bytes[::-1] == dp.SERVICE_UUID_LE
    assert dp.SERVICE_UUID_LE.hex(" ") in SPEC


def _is_hex(word: str) -> bool:
    return re.fullmatch(r"[0-9a-f]+", word) is not None


def test_examples_are_golden_vectors():
    examples = SPEC[SPEC.index("## 9. Examples") :]
    known = [v["hex"] for v in VECTORS["messages"]] + [v["frame_hex"] for v in VECTORS["frames"]]
    known += [v[k] for v in VECTORS["advertising"] for k in ("adv_hex", "scan_response_hex")]
    blocks = re.findall(r"```\n(.*?)```", examples, re.S)
    assert len(blocks) >= 6
    for block in blocks:
        for line in block.splitlines():
            wire = ""
            for word in line.split():  # the bytes, up to the first word of comment
                if not _is_hex(word):
                    break
                wire += word
            assert len(wire) >= 4 and any(wire in k for k in known), line
