"""The simulated ESP32 peripherals (machine shadow) and the IMU register models, at register level.

These check the simulation against the hardware facts the drivers rely on
(values from the ESP32 port's machine.py and the chips' register maps), so a
driver bug cannot hide behind a model that makes the same mistake.
"""

import errno

import imu_models
import machine
import vboard
from mpytest import no_alloc, raises


def test_shadow_machine_is_the_simulation():
    assert hasattr(machine, "board") and hasattr(machine, "Encoder")
    assert machine.Pin(5) is machine.Pin(5)


def test_pin_levels_pulls_and_outside_drive():
    vboard.reset()
    Pin = machine.Pin
    p = Pin(4, Pin.IN, Pin.PULL_UP)
    assert p.value() == 1  # floating input with a pull-up
    vboard.drive(4, 0)
    assert p.value() == 0 and p() == 0
    vboard.drive(4, -1)
    assert p.value() == 1
    p.init(pull=Pin.PULL_DOWN)
    assert p.value() == 0
    o = Pin(5, Pin.OUT, value=1)
    assert o.value() == 1
    o.off()
    assert o.value() == 0
    vboard.drive(5, 1)  # an output ignores the outside
    assert o.value() == 0
    raises(ValueError, Pin, 99)


def test_pin_irq_edges_and_triggers():
    vboard.reset()
    Pin = machine.Pin
    seen = []
    p = Pin(12, Pin.IN)
    p.irq(lambda pin: seen.append((pin.id, pin.value())), Pin.IRQ_RISING)
    for level in (1, 0, 1, 1, 0):
        vboard.drive(12, level)
    assert seen == [(12, 1), (12, 1)], seen
    p.irq(lambda pin: seen.append(("f", pin.value())), Pin.IRQ_FALLING)
    vboard.drive(12, 1)
    vboard.drive(12, 0)
    assert seen[-1] == ("f", 0) and len(seen) == 3, seen
    p.irq(None)
    vboard.drive(12, 1)
    vboard.drive(12, 0)
    assert len(seen) == 3
    e = raises(ValueError, lambda: p.irq(lambda pin: None, Pin.IRQ_RISING, hard=True))
    assert "hard" in str(e)


def test_soft_irq_queue_holds_eight_and_drops_the_rest():
    vboard.reset()
    Pin = machine.Pin
    calls = []
    p = Pin(13, Pin.IN)
    p.irq(lambda pin: calls.append(pin.value()), Pin.IRQ_RISING | Pin.IRQ_FALLING)
    vboard.defer_irqs(True)
    for i in range(10):
        vboard.drive(13, (i + 1) & 1)
    assert calls == [] and vboard.dropped_irqs() == 2
    vboard.run_irqs()
    # Late handlers read the pin as it is now, not as it was at the edge.
    assert calls == [0] * 8, calls
    vboard.defer_irqs(False)


def test_i2c_routes_to_devices_and_nacks_with_enodev():
    vboard.reset()
    m = vboard.attach_imu("mpu6050", bus=0)
    vboard.attach_imu("lsm6dso", bus=1, addr=0x6B)
    i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21), freq=400000)
    assert i2c.scan() == [0x68]
    assert machine.I2C(1).scan() == [0x6B]
    assert i2c.readfrom_mem(0x68, 0x75, 1) == b"\x68"
    i2c.writeto_mem(0x68, 0x19, b"\x09")
    assert m.regs[0x19] == 9
    # Register pointer transactions: write the address, then read.
    i2c.writeto(0x68, b"\x75")
    assert i2c.readfrom(0x68, 1) == b"\x68"
    e = raises(OSError, i2c.readfrom_mem, 0x69, 0x75, 1)
    assert e.errno == errno.ENODEV
    vboard.unplug(0, 0x68)
    assert i2c.scan() == []
    e = raises(OSError, i2c.writeto_mem, 0x68, 0x6B, b"\x00")
    assert e.errno == errno.ENODEV
    vboard.plug(0, 0x68)
    assert i2c.readfrom_mem(0x68, 0x75, 1) == b"\x68"
    transactions, nbytes = vboard.bus_stats(0)
    assert transactions == 5 and nbytes > 0, (transactions, nbytes)
    raises(ValueError, machine.I2C, 2)


def test_pcnt_encoder_follows_the_drum_with_esp32_channel_rules():
    vboard.reset()
    Pin = machine.Pin
    enc = machine.Encoder(0, Pin(32), Pin(33), phases=4, filter_ns=1000)
    assert machine.Encoder(0) is enc and enc.filter_ticks == 80
    vboard.set_drum(10)
    assert enc.value() == 10
    vboard.set_drum(-7)
    assert enc.value() == -7
    assert enc.value(100) == -7 and enc.value() == 100
    vboard.set_drum(-5)
    assert enc.value() == 102
    machine.Encoder(0)  # no arguments: the running counter, untouched
    assert enc.value() == 102
    enc.deinit()
    raises(RuntimeError, enc.value)
    # 2x counts A edges only, 1x one edge per cycle; swapped pins count backwards.
    vboard.reset()
    e2 = machine.Encoder(1, Pin(32), Pin(33), phases=2)
    e1 = machine.Encoder(2, Pin(32), Pin(33), phases=1)
    sw = machine.Encoder(3, Pin(33), Pin(32), phases=4, filter_ns=99999)
    vboard.set_drum(40)
    assert (e2.value(), e1.value(), sw.value()) == (20, 10, -40)
    assert sw.filter_ticks == 1023  # the PCNT filter is capped at 1023 APB ticks
    raises(ValueError, lambda: machine.Encoder(4, Pin(32), Pin(33), phases=3))


def test_drum_edges_are_allocation_free():
    vboard.reset()
    Pin = machine.Pin
    enc = machine.Encoder(0, Pin(32), Pin(33), phases=4)
    no_alloc(vboard.set_drum, 500)
    no_alloc(vboard.set_drum, -500)
    assert enc.value() == -500


def test_mpu6050_model_registers_and_fifo_format():
    m = imu_models.Mpu6050()
    assert m.read_reg(0x75) == 0x68 and m.read_reg(0x6B) == 0x40  # asleep after reset
    assert not m.push(0, 0, 1000, 0, 0, 0)
    m.write_reg(0x6B, 0x01)
    m.write_reg(0x1C, 0x08)  # +-4 g: 8192 LSB/g
    m.write_reg(0x1B, 0x08)  # +-500 dps: 65.5 LSB/dps
    m.write_reg(0x23, 0x78)
    m.write_reg(0x6A, 0x40)
    assert m.push(0, -1000, 1000, 500000, 0, -1000)
    buf = bytearray(12)
    count = bytearray(2)
    m.read(0x72, count)
    assert count == b"\x00\x0c"
    m.read(0x74, buf)  # FIFO_R_W does not auto-increment
    assert buf[:6] == b"\x00\x00\xe0\x00\x20\x00", buf  # accel X, Y, Z big-endian
    assert buf[6:8] == bytes([32750 >> 8, 32750 & 0xFF])  # 500 dps * 65.5
    assert buf[10:12] == b"\xff\xbe"  # -1 dps -> -65.5 -> -66
    # Overflow: the oldest bytes go, FIFO_OFLOW_INT is set and cleared by reading.
    for _ in range(90):
        m.push(0, 0, 1000, 0, 0, 0)
    m.read(0x72, count)
    assert (count[0] << 8 | count[1]) == 1024 and m.lost == 90 * 12 - 1024
    assert m.read_reg(0x3A) & 0x10 and not m.read_reg(0x3A) & 0x10
    m.write_reg(0x6A, 0x44)  # FIFO_RESET (self-clearing) with FIFO_EN
    assert m.fifo.n == 0 and m.regs[0x6A] == 0x40
    m.write_reg(0x6B, 0x80)  # DEVICE_RESET
    assert m.regs[0x6B] == 0x40 and m.regs[0x1C] == 0


def test_mpu6500_keeps_old_data_when_fifo_mode_set():
    m = imu_models.Mpu6500()
    assert m.read_reg(0x75) == 0x70
    m.write_reg(0x6B, 0x01)
    m.write_reg(0x1A, 0x43)  # FIFO_MODE, DLPF 3
    m.write_reg(0x23, 0x78)
    m.write_reg(0x6A, 0x40)
    for i in range(50):
        m.push(i, 0, 0, 0, 0, 0)
    assert m.fifo.n == 42 * 12 and m.period_us() == 1000  # 1 kHz / (1 + 0)
    first = bytearray(2)
    m.read(0x74, first)
    assert first == b"\x00\x00"  # sample 0 kept, the newest were lost


def test_lsm6ds3_model_words_pattern_and_rollback():
    m = imu_models.Lsm6ds3()
    assert m.read_reg(0x0F) == 0x69
    m.write_reg(0x10, 0x48)  # 104 Hz, +-4 g
    m.write_reg(0x11, 0x44)  # 104 Hz, 500 dps
    m.write_reg(0x08, 0x09)
    m.write_reg(0x0A, 0x26)  # FIFO 104 Hz, continuous
    assert m.period_us() == 9615
    m.push(1000, 0, 0, 17500, 0, 0)
    st = bytearray(4)
    m.read(0x3A, st)
    assert st[0] == 6 and st[1] & 0x10 == 0 and st[2] == 0, st
    w = bytearray(4)
    m.read(0x3E, w)  # two words: the read window rolls back from 0x3F to 0x3E
    assert w == b"\xe8\x03\x00\x00", w  # gyro X first: 17500 mdps / 17.5 = 1000
    m.read(0x3A, st)
    assert st[0] == 4 and st[2] == 2, st  # FIFO_PATTERN: the third word of the set is next
    m.write_reg(0x0A, 0x00)  # bypass empties it
    m.read(0x3A, st)
    assert st[0] == 0 and st[1] & 0x10


def test_lsm6dso_model_tagged_words():
    m = imu_models.Lsm6dso()
    assert m.read_reg(0x0F) == 0x6C
    m.write_reg(0x10, 0x48)
    m.write_reg(0x11, 0x44)
    m.write_reg(0x09, 0x44)
    m.write_reg(0x0A, 0x06)
    m.push(0, 0, 1000, 0, 0, 0)
    m.push(0, 0, 1000, 0, 0, 0)
    st = bytearray(2)
    m.read(0x3A, st)
    assert st[0] == 4, st
    words = bytearray(28)
    m.read(0x78, words)  # 4 words of 7 bytes, window rolling back from 0x7E to 0x78
    tags = [words[i] for i in range(0, 28, 7)]
    # Gyro (1) then accel (2), TAG_CNT 0 then 1, even parity over the byte.
    assert tags == [0x09, 0x11, 0x0A, 0x12], [hex(t) for t in tags]
    assert words[12:14] == bytes([8197 & 0xFF, 8197 >> 8])  # accel Z: 1 g at 0.122 mg/LSB
    for _ in range(300):
        m.push(0, 0, 1000, 0, 0, 0)
    m.read(0x3A, st)
    assert st[1] & 0x48 == 0x48 and (st[1] & 3) << 8 | st[0] == 512, st
    m.read(0x3A, st)
    assert st[1] & 0x08 == 0  # FIFO_OVR_LATCHED clears when read
