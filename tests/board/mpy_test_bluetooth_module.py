"""The board's `bluetooth` under MicroPython without a radio: UUID, BLE(), config, errors."""

import errno
import os

import bluetooth
from mpytest import raises

UUID = bluetooth.UUID


def _no_radio():
    os.unsetenv("DERMAROLL_BLE")


def test_uuid_from_int_and_buffers():
    assert bytes(UUID(0x180F)) == b"\x0f\x18"
    assert bytes(UUID(b"\x0f\x18")) == b"\x0f\x18"
    assert bytes(UUID(bytearray(b"\x78\x56\x34\x12"))) == b"\x78\x56\x34\x12"
    assert bytes(UUID(memoryview(bytes(range(16))))) == bytes(range(16))
    assert bytes(UUID(UUID(0x2A00))) == b"\x00\x2a"
    raises(ValueError, UUID, 0x10000)


def test_uuid_from_string():
    u = UUID("6E400001-B5A3-F393-E0A9-E50E24DCCA9E")
    assert bytes(u) == bytes.fromhex("9eca dc24 0ee5 a9e0 93f3 a3b5 0100 406e".replace(" ", ""))
    assert UUID("6e400001b5a3f393e0a9e50e24dcca9e") == u
    assert raises(ValueError, UUID, "6E400001-B5A3-F393-E0A9-E50E24DCCA9").args[0] == (
        "UUID too short"
    )
    assert raises(ValueError, UUID, "6E400001-B5A3-F393-E0A9-E50E24DCCA9E0").args[0] == (
        "UUID too long"
    )
    assert raises(ValueError, UUID, "6E400001-B5A3-F393-E0A9-E50E24DCCA9G").args[0] == (
        "invalid char in UUID"
    )
    # As in the port, a string of 2, 4 or 16 characters is taken as raw bytes.
    assert bytes(UUID("ab")) == b"ab"


def test_uuid_equality_hash_order_repr():
    assert UUID(0x1800) == UUID(b"\x00\x18")
    assert hash(UUID(0x1800)) == hash(UUID(b"\x00\x18"))
    assert {UUID(0x1800): 1}[UUID(0x1800)] == 1
    assert UUID(0x1800) != UUID(0x1801)
    # Same value, different sizes: never equal (the port compares sizes first).
    assert UUID(0x1800) != UUID(b"\x00\x18\x00\x00")
    assert UUID(0x1800) < UUID(0x1801) and UUID(0x1801) > UUID(0x1800)
    assert UUID(0xFFFF) < UUID(b"\x00\x00\x00\x00")  # 2 bytes sort before 4
    assert UUID(0x1800) != 0x1800
    assert repr(UUID(0x180F)) == "UUID(0x180f)"
    assert repr(UUID(b"\x78\x56\x34\x12")) == "UUID(0x12345678)"
    assert str(UUID("6E400001-B5A3-F393-E0A9-E50E24DCCA9E")) == (
        "UUID('6e400001-b5a3-f393-e0a9-e50e24dcca9e')"
    )


def test_ble_is_a_singleton_with_flags():
    assert bluetooth.BLE() is bluetooth.BLE()
    assert (
        bluetooth.FLAG_READ,
        bluetooth.FLAG_WRITE_NO_RESPONSE,
        bluetooth.FLAG_WRITE,
        bluetooth.FLAG_NOTIFY,
        bluetooth.FLAG_INDICATE,
    ) == (0x0002, 0x0004, 0x0008, 0x0010, 0x0020)
    assert not hasattr(bluetooth, "FLAG_READ_ENCRYPTED")  # define it with const()


def test_active_without_a_radio_times_out():
    _no_radio()
    ble = bluetooth.BLE()
    assert raises(OSError, ble.active, True).args[0] == errno.ETIMEDOUT
    assert ble.active() is False


def test_config_while_inactive():
    _no_radio()
    ble = bluetooth.BLE()
    assert ble.config("gap_name") == b"MPY ESP32"
    ble.config(gap_name="roller")
    assert ble.config("gap_name") == b"roller"
    ble.config(gap_name=b"MPY ESP32")
    assert raises(OSError, ble.config, "mac").args[0] == errno.ENODEV
    assert raises(OSError, ble.config, "mtu").args[0] == errno.ENODEV
    assert raises(OSError, lambda: ble.config(mtu=100)).args[0] == errno.ENODEV
    assert raises(OSError, lambda: ble.config(addr_mode=1)).args[0] == errno.ENODEV
    assert raises(OSError, lambda: ble.config(gap_name=b"x" * 32)).args[0] == errno.EINVAL
    ble.config(bond=True, mitm=True, le_secure=True, io=3)  # allowed before active
    ble.config(bond=False, mitm=False)
    assert raises(ValueError, ble.config, "bond").args[0] == "unknown config param"
    raises(ValueError, ble.config, "rxbuf")  # ESP32: no ring buffer
    raises(ValueError, lambda: ble.config(rxbuf=512))
    raises(ValueError, lambda: ble.config(colour="red"))
    raises(TypeError, ble.config)
    raises(TypeError, ble.config, "mac", "mtu")
    raises(TypeError, lambda: ble.config("mac", gap_name=b"x"))


def test_calls_while_inactive():
    _no_radio()
    ble = bluetooth.BLE()
    raises(ValueError, ble.irq, 5)
    ble.irq(None)
    ble.irq(lambda event, data: None)
    ble.gap_advertise(None)  # stopping is always allowed
    assert raises(OSError, ble.gap_advertise, 100000, b"").args[0] == errno.ENODEV
    assert ble.gatts_read(12) == b""
    assert raises(OSError, ble.gatts_write, 12, b"x").args[0] == errno.ENODEV
    assert raises(OSError, ble.gatts_notify, 0, 12, b"x").args[0] == errno.ENODEV
    assert raises(OSError, ble.gatts_set_buffer, 12, 100).args[0] == errno.ENODEV
    assert raises(OSError, ble.gap_disconnect, 0).args[0] == errno.ENODEV
    svc = ((UUID(0x180F), ((UUID(0x2A19), bluetooth.FLAG_READ),)),)
    assert raises(OSError, ble.gatts_register_services, svc).args[0] == errno.ENODEV
    raises(NotImplementedError, ble.gap_scan, 1000)
    raises(NotImplementedError, ble.gattc_read, 0, 1)
