"""The product firmware's BLE security (SPEC 3.2) with the button's pairing window, end to end.

The board runs boot.py/main.py with the radio on and no motion script; its zone
button is pressed long (the pairing window, `PAIRING open N`) and very long
(`BONDS forgotten`) at scripted world times. Three hosts, each with its own
identity and bond store, all plain bleak through the Bumble backend: A reaches
the radio in this process, B and C through its HCI transport (as other laptops
would).

The LED (settings `led`, GPIO2) is watched through the board's output-pin
events: it blinks the PAIRING pattern while a window is open, and only then.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from bleak import BleakClient

import dermaroll_protocol as p
from dermaroll.board import bleak_backend, runner
from dermaroll.board.bleak_backend import BleakClientBumble
from tests.board.boardtest import find_roller, need_micropython
from tests.board.test_ble_service import request, response_collector

SPEED = 2
WINDOW_S = 10  # pairing_window_s's lowest value, set over BLE by the first bonded host
# Button presses, world ms [down, up]: long, long, very long (decided at release).
BOND_PRESS = [6_000, 10_000]  # B bonds in this window, which closes it
IDLE_PRESS = [14_000, 18_000]  # nobody bonds: it times out after WINDOW_S
FORGET_PRESS = [32_000, 43_000]
SETTING = p.setting_id("pairing_window_s")
PEER_KEY = 2  # NimBLE's secret type for a peer's keys in bonds.json (roller.ble)
REFUSED = [p.NOT_PERMITTED] * 3
# Bonded: the setting is stored, the counts reset; DELETE_RECORDS runs and finds no pass.
DONE = [p.SUCCESS, p.SUCCESS, p.NO_RECORDS_FOUND]


class Host:
    """One bleak client on the board: Control Point requests and their indicated answers."""

    def __init__(self, client: BleakClient) -> None:
        self.client = client
        self.got, self.event, self.on = response_collector()
        self.token = 0

    async def start(self) -> Host:
        await self.client.start_notify(p.CONTROL_POINT_UUID, self.on)
        return self

    async def ask(self, op: int, *operands: int) -> dict:
        """A request (no operands, a setting id, a SET_SETTING INT value, or DELETE_RECORDS)."""
        self.token = (self.token + 1) & 0xFF
        buf = bytearray(8)
        if op == p.OP_SET_SETTING:
            n = p.encode_request_setting(
                buf, 0, op, self.token, operands[0], p.SETTING_INT, operands[1]
            )
        elif op == p.OP_DELETE_RECORDS:
            n = p.encode_request_records(buf, 0, op, self.token, p.OPERATOR_LE, operands[0])
        elif operands:
            n = p.encode_request_u8(buf, 0, op, self.token, operands[0])
        else:
            n = p.encode_request(buf, 0, op, self.token)
        answer = p.decode_response(await request(self.client, self.got, self.event, bytes(buf[:n])))
        assert (answer["op"], answer["token"]) == (op, self.token), answer
        return answer

    async def results(self) -> list[int]:
        """The answers to the three bonded opcodes that change settings or erase data."""
        return [
            (await self.ask(p.OP_SET_SETTING, SETTING, WINDOW_S))["result"],
            (await self.ask(p.OP_RESET_COUNTS))["result"],
            (await self.ask(p.OP_DELETE_RECORDS, 0))["result"],
        ]


def use_host(name: str, board: runner.VirtualBoard) -> None:
    """Bleak's way to the radio for host A (in-process), B or C (the HCI transport).

    The bleak backend keeps one identity and bond store per way: B and C name the
    same TCP port differently, so they are two more laptops.
    """
    if name == "A":
        bleak_backend.use_transport(None)
        bleak_backend.use_radio(board.radio)
        return
    bleak_backend.use_radio(None)
    spec = board.radio.hci_transport
    bleak_backend.use_transport(spec if name == "B" else spec.replace("127.0.0.1", "localhost"))


async def connect(
    name: str, board: runner.VirtualBoard, on_lost: Callable[[BleakClient], None] | None = None
) -> tuple[BleakClient, Host]:
    """Host `name` connected to the board (on_lost: bleak's disconnected_callback)."""
    use_host(name, board)
    client = BleakClient(
        await find_roller(), disconnected_callback=on_lost, backend=BleakClientBumble
    )
    await client.connect()
    return client, await Host(client).start()


def peer_bonds(flash: Path) -> int:
    """Peers whose keys the device keeps on flash."""
    path = flash / "bonds.json"
    if not path.exists():
        return 0
    return sum(1 for item in json.loads(path.read_text()) if item[0] == PEER_KEY)


async def wait_for(what: Callable[[], bool], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not what():
            await asyncio.sleep(0.02)


async def scenario(flash: Path) -> dict:
    """The story of SPEC 3.2 on one board; returns what the test checks."""
    presses = [BOND_PRESS, IDLE_PRESS, FORGET_PRESS]
    cfg = runner.BoardConfig(flash=str(flash), speed=SPEED, radio=True, presses=presses)
    seen: list[tuple[str, float]] = []  # the button's console lines, at world ms

    def on_line(line: str) -> None:
        if line.startswith(("PAIRING", "BONDS")):
            seen.append((line, board.estimate_world_us() / 1000))

    board = runner.VirtualBoard(cfg, on_line=on_line)
    out: dict = {"seen": seen}
    t0 = time.monotonic()
    async with board:
        await board.wait_line("^SESSION ")
        # A: the device has no bond yet. Unbonded, the bonded opcodes are refused and
        # change nothing; this first host may bond, and then they work.
        a_client, a = await connect("A", board)
        out["a_unbonded"] = await a.results()
        out["a_setting"] = (await a.ask(p.OP_GET_SETTING, SETTING))["value"]
        await a_client.pair()
        out["a_bonded"] = await a.results()
        out["bonds_a"] = peer_bonds(flash)
        # B, before any long press: pairing gives an encrypted link without a bond.
        b_client, b = await connect("B", board)
        await b_client.pair()
        out["b_outside"] = await b.results()
        out["bonds_b_outside"] = peer_bonds(flash)
        await b_client.disconnect()
        # Bumble keeps the keys of a pairing the device did not bond (a laptop would not):
        # forget them, or B's next pair() tries them and fails (PIN or key missing).
        await b_client.unpair()
        out["outside_done_ms"] = board.estimate_world_us() / 1000
        # A long press opens the window: now B bonds.
        await board.wait_line("^PAIRING open ", timeout=30)
        b_client, b = await connect("B", board)
        await b_client.pair()
        out["b_inside"] = await b.results()
        await wait_for(lambda: peer_bonds(flash) == 2)
        await b_client.disconnect()
        # The second window times out; then C, a third host, cannot bond.
        await board.wait_world(IDLE_PRESS[1] + WINDOW_S * 1000 + 1000, timeout=30)
        c_client, c = await connect("C", board)
        await c_client.pair()
        out["c_after"] = await c.results()
        out["bonds_c_after"] = peer_bonds(flash)
        await c_client.disconnect()
        # A very long press forgets every bond: A's bonded link loses its rights at once.
        await board.wait_line("^BONDS forgotten", timeout=30)
        out["a_forgotten"] = await a.results()
        out["bonds_forgotten"] = peer_bonds(flash)
        await a_client.disconnect()
        bleak_backend.use_transport(None)  # B's and C's way goes with this radio
    out["real"] = time.monotonic() - t0
    out["events"] = board.events
    return out


def test_bonded_opcodes_and_the_pairing_window_on_the_button(tmp_path: Path) -> None:
    need_micropython()
    runner.install_firmware(tmp_path)
    res = asyncio.run(scenario(tmp_path))
    print(res)
    assert res["a_unbonded"] == REFUSED
    assert res["a_setting"] == 60  # the refused SET_SETTING changed nothing
    assert res["a_bonded"] == DONE and res["bonds_a"] == 1
    assert res["b_outside"] == REFUSED and res["bonds_b_outside"] == 1
    assert res["outside_done_ms"] < BOND_PRESS[1]  # B was refused before the window opened
    assert res["b_inside"] == DONE
    assert res["c_after"] == REFUSED and res["bonds_c_after"] == 2
    assert res["a_forgotten"] == REFUSED and res["bonds_forgotten"] == 0
    lines = [line for line, _ in res["seen"]]
    opened = "PAIRING open %d" % WINDOW_S  # A's SET_SETTING took effect
    assert lines == [opened, "PAIRING closed", opened, "PAIRING closed", "BONDS forgotten"]
    (_, open1), (_, closed1), (_, open2), (_, closed2), (_, forgot) = res["seen"]
    # World times are the runner's estimate when the line came (within a few ms, both
    # ways): the app acts on a release within a loop; the window lasts WINDOW_S.
    assert BOND_PRESS[1] - 100 <= open1 < BOND_PRESS[1] + 500
    assert IDLE_PRESS[1] - 100 <= open2 < IDLE_PRESS[1] + 500
    assert FORGET_PRESS[1] - 100 <= forgot < FORGET_PRESS[1] + 500
    assert closed1 - open1 < WINDOW_S * 1000 / 2  # closed by B's bond, not by time
    assert WINDOW_S * 1000 - 100 <= closed2 - open2 < WINDOW_S * 1000 + 500
    # The LED: the PAIRING blink (0.5 s on, 0.5 s off) while a window is open, dark
    # otherwise (no motion, no error, a full battery: no other pattern plays).
    led = [(ms, line.split()[2]) for ms, line in res["events"] if line.startswith("O 2 ")]
    assert led and all(open1 - 100 <= ms for ms, _level in led), led

    def edges(a: float, b: float) -> list[str]:
        return [level for ms, level in led if a <= ms < b]

    assert edges(open1 - 100, open1 + 900)[:2] == ["1", "0"], led  # on at once, then off
    assert edges(closed1 + 100, open2 - 100) == [], led
    blink = edges(open2 - 100, closed2 + 100)
    assert 2 * WINDOW_S - 2 <= len(blink) <= 2 * WINDOW_S + 2, blink  # 1 Hz for WINDOW_S
    assert blink[-1] == "0" and edges(closed2 + 100, forgot + 1000) == [], led
    assert res["real"] < 60
