"""Security on the virtual radio: permission flags, Just Works pairing, bonds kept by the
application through the secret IRQs, encryption restored from a bond, passkeys."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bumble import att

from dermaroll.board import bleak_backend
from dermaroll.board.bleak_backend import BleakClientBumble, BleakScannerBumble
from dermaroll.board.radio import unpack_secret
from tests.board.boardkit import Board, Central, DeviceError, aio, services

READ, WRITE = 0x02, 0x08
READ_ENC, READ_AUTHEN, WRITE_ENC = 0x0200, 0x0400, 0x1000
PROTECTED = services((1, READ | READ_ENC), (2, READ | WRITE | WRITE_ENC), (3, READ | READ_AUTHEN))


def key7(central: Central) -> bytes:
    """NimBLE's key for a peer: address type, then the address little-endian."""
    assert central.device is not None
    address = central.device.static_address
    return bytes([1]) + bytes(address)


async def att_error(awaitable: Any) -> int:
    with pytest.raises(att.ATT_Error) as e:
        await awaitable
    return e.value.error_code


@aio
async def test_flags_refuse_access_with_nimble_att_errors_until_paired() -> None:
    async with Board() as b:
        await b.x("agent.secrets = {}\nble.config(bond=True)")
        ((enc_r, enc_w, auth_r),) = await b.setup_peripheral(PROTECTED)
        central = await b.central()
        connection, peer = await central.connect()
        conn = (await b.event(1))[0]
        # Not encrypted and no bond: Insufficient Authentication, after NimBLE looked up
        # the peer's bond; the application's read handler is not asked.
        assert await att_error(peer.read_value(enc_r)) == 0x05
        assert await b.event(29) == (2, 0, key7(central))
        assert await att_error(peer.write_value(enc_w, b"x", with_response=True)) == 0x05
        assert 4 not in b.dev.codes() and 3 not in b.dev.codes()
        await connection.pair()
        assert await b.event(28) == (conn, 1, 0, 1, 16)  # Just Works: not authenticated
        assert await peer.read_value(enc_r) == b""
        await peer.write_value(enc_w, b"ok", with_response=True)
        assert (await b.event(3))[1] == enc_w
        # Encrypted but not authenticated (Just Works): still refused.
        assert await att_error(peer.read_value(auth_r)) == 0x05


@aio
async def test_bonding_goes_through_the_secret_irqs() -> None:
    async with Board() as b:
        await b.x("agent.secrets = {}\nble.config(bond=True)")
        await b.setup_peripheral(PROTECTED)
        central = await b.central()
        connection, _ = await central.connect()
        conn = (await b.event(1))[0]
        start = len(b.dev.events)
        await connection.pair()
        assert await b.event(28) == (conn, 1, 0, 1, 16)
        codes = [code for code, _ in b.dev.events[start:]]
        # Repeat-pairing check, our keys, the peer's keys, then the encryption update.
        assert codes == [29, 30, 30, 28]
        (_, check), (_, ours), (_, theirs), _ = b.dev.events[start:]
        assert check == (2, 0, key7(central))
        assert ours[:2] == (1, key7(central)) and len(ours[2]) == 80
        assert theirs[:2] == (2, key7(central)) and len(theirs[2]) == 80
        secret = unpack_secret(theirs[2])
        assert secret is not None and secret.ltk is not None and secret.sc
        assert await b.e("sorted(agent.secrets)") == [
            (1, key7(central)),
            (2, key7(central)),
            (10, b"irk"),
        ]


@aio
async def test_without_the_bond_flag_nothing_is_stored() -> None:
    async with Board() as b:
        # As MicroPython's ble_gap_pair multitest: mitm and le_secure, no bond.
        await b.x("agent.secrets = {}\nble.config(mitm=True, le_secure=True, bond=False)")
        await b.setup_peripheral(PROTECTED)
        central = await b.central()
        connection, _ = await central.connect()
        conn = (await b.event(1))[0]
        await connection.pair()
        assert await b.event(28) == (conn, 1, 0, 0, 16)
        assert 30 not in [code for code, _ in b.dev.events[4:]]


@aio
async def test_a_bond_restores_encryption_on_the_next_connection() -> None:
    async with Board() as b:
        await b.x("agent.secrets = {}\nble.config(bond=True)")
        ((enc_r, _, _),) = await b.setup_peripheral(PROTECTED)
        central = await b.central()
        connection, peer = await central.connect()
        await b.event(1)
        await connection.pair()
        await b.event(28)
        await connection.disconnect()
        await b.event(2)
        await b.x("ble.gap_advertise(20000)")
        connection, peer = await central.connect()
        conn = (await b.event(1))[0]
        # Bonded but not encrypted yet: Insufficient Encryption.
        assert await att_error(peer.read_value(enc_r)) == 0x0F
        start = len(b.dev.events)
        await connection.encrypt()
        assert await b.event(28) == (conn, 1, 0, 1, 16)
        # The LTK came from the application: GET_SECRET for our keys of this peer.
        assert (29, (1, 0, key7(central))) in b.dev.events[start:]
        assert 30 not in [code for code, _ in b.dev.events[start:]]  # no new pairing
        assert await peer.read_value(enc_r) == b""


@aio
async def test_pairing_again_replaces_the_old_bond() -> None:
    async with Board() as b:
        await b.x("agent.secrets = {}\nble.config(bond=True)")
        await b.setup_peripheral(PROTECTED)
        central = await b.central()
        connection, _ = await central.connect()
        await b.event(1)
        await connection.pair()
        await b.event(28)
        old = await b.e("agent.secrets[(2, %r)]" % key7(central))
        assert central.device is not None
        # The host forgets the bond, reconnects and pairs again.
        await central.device.keystore.delete(str(b.radio.address))
        await connection.disconnect()
        await b.event(2)
        await b.x("ble.gap_advertise(20000)")
        connection, _ = await central.connect()
        await b.event(1)
        start = len(b.dev.events)
        await connection.pair()
        await b.event(28)
        deletes = [args for code, args in b.dev.events[start:] if code == 30 and args[2] is None]
        # ble_store_util_delete_peer: our keys, then the peer's, each until none is left.
        assert deletes == [(1, key7(central), None)] * 2 + [(2, key7(central), None)] * 2
        new = await b.e("agent.secrets[(2, %r)]" % key7(central))
        assert new != old


@pytest.mark.parametrize(
    "board_io, host_io, action",
    [
        (1, 1, 4),  # display + yes/no on both: numeric comparison
        (2, 0, 2),  # the board has a keyboard, the host a display: the board inputs
        (0, 2, 3),  # the board displays, the host types
    ],
)
@aio
async def test_passkey_actions(board_io: int, host_io: int, action: int) -> None:
    async with Board() as b:
        await b.x("ble.config(bond=False, mitm=True, le_secure=True, io=%d)" % board_io)
        ((_, _, auth_r),) = await b.setup_peripheral(PROTECTED)
        central = await b.central(io=host_io, mitm=True)
        central.passkey = 123456
        connection, peer = await central.connect()
        conn = (await b.event(1))[0]
        pairing = asyncio.ensure_future(connection.pair())
        got = await b.event(31)
        if action == 4:
            assert central.numbers and got == (conn, 4, central.numbers[0])
            answer = 1  # accept
        elif action == 2:
            assert got == (conn, 2, 0)
            await asyncio.sleep(0.05)
            answer = central.displayed[0]
        else:
            assert got == (conn, 3, 0)
            answer = 123456
        with pytest.raises(DeviceError) as e:
            await b.x("ble.gap_passkey(%d, %d, 1)" % (conn, 7 - action if action != 4 else 2))
        assert e.value.errno == errno.EINVAL  # not the action asked for
        await b.x("ble.gap_passkey(%d, %d, %d)" % (conn, action, answer))
        await asyncio.wait_for(pairing, 5)
        assert await b.event(28) == (conn, 1, 1, 0, 16)  # authenticated
        assert await peer.read_value(auth_r) == b""
        with pytest.raises(DeviceError) as e:
            await b.x("ble.gap_passkey(%d, %d, 0)" % (conn, action))
        assert e.value.errno == errno.ENOENT  # nothing is waiting for a passkey


@aio
async def test_gap_pair_from_the_board_with_a_bleak_host() -> None:
    async with Board() as b:
        await b.x("agent.secrets = {}\nble.config(bond=True)")
        await b.setup_peripheral(PROTECTED)
        bleak_backend.use_radio(b.radio)
        device = await BleakScanner.find_device_by_address(
            "24:0A:C4:00:00:01", timeout=5, backend=BleakScannerBumble
        )
        assert device is not None
        async with BleakClient(device, backend=BleakClientBumble):
            conn = (await b.event(1))[0]
            with pytest.raises(DeviceError) as e:
                await b.x("ble.gap_pair(%d)" % (conn + 5))
            assert e.value.errno == errno.ENOTCONN
            await b.x("ble.gap_pair(%d)" % conn)  # a Security Request: the host pairs
            assert await b.event(28) == (conn, 1, 0, 1, 16)
