"""The IMU: chip probe by WHO_AM_I, mounting (chip axes -> roller frame), FIFO record decoding.

Two families are supported, each in its own module with the same interface:

- roller.drivers.mpu6050: MPU-6050 / MPU-6500 (and the 6500's MPU-9250/9255/6515
  relatives) at 0x68/0x69, WHO_AM_I register 0x75;
- roller.drivers.lsm6ds: LSM6DS3 and LSM6DSO at 0x6A/0x6B, WHO_AM_I register 0x0F.

A driver is set up for accel +-4 g, gyro +-500 dps, an output rate >= imu_hz
and its FIFO, then read in bursts:

    imu = open_imu(settings)       # probes, builds and sets up the driver
    n = imu.pending()              # samples waiting (0 after an overflow, counted in imu.overflows)
    m = imu.read(min(n, imu.cap))  # one burst read; m samples decoded into imu.out
    imu.out[6*i : 6*i+6]           # ax, ay, az (milli-g), gx, gy, gz (milli-dps), roller frame

plus `setup()`, `reset_fifo()`, `period_us` (actual sample period), `cap`,
`name`, `addr`, `overflows`, `resyncs`. Reads go with `readfrom_mem_into`
into preallocated buffers through preallocated memoryviews (slicing one
would allocate), and decoding is integer-only, so the drain allocates nothing.

Integer range: raw counts are 16-bit and each scale factor K/2**S is chosen so
that |raw * K| < 2**30 (a 31-bit small int on the ESP32; the unix port's
63-bit ints would not notice an overflow, so this is checked here by hand):
32768 * 15634 = 5.1e8 is the largest product. The decoders are viper (machine
words, no objects at all), and what they store in `out` is within +-573,000.
"""

from array import array

import machine
import micropython
from micropython import const

from roller.settings import parse_mount

SAMPLE_INTS = const(6)  # ax, ay, az, gx, gy, gz
RECORD = const(12)  # bytes of one untagged FIFO record: six 16-bit values
CONF_LEN = const(20)  # decode table: 6 x (high byte, low byte, signed K), accel shift, gyro shift

MPU_ADDRESSES = (0x68, 0x69)
LSM_ADDRESSES = (0x6A, 0x6B)
MPU_WHO_AM_I_REG = const(0x75)
LSM_WHO_AM_I_REG = const(0x0F)
# WHO_AM_I value -> model name. The MPU-6500 register set covers its relatives.
MPU_IDS = {0x68: "mpu6050", 0x70: "mpu6500", 0x71: "mpu9250", 0x73: "mpu9255", 0x74: "mpu6515"}
# 0x6A: LSM6DSL / LSM6DS3TR-C, whose FIFO registers are the LSM6DS3's (4 KB instead of 8);
# 0x6C also answers for the LSM6DSOX.
LSM_IDS = {0x69: "lsm6ds3", 0x6A: "lsm6dsl", 0x6C: "lsm6dso"}
MODEL_FAMILY = {"mpu6050": "mpu", "mpu6500": "mpu", "lsm6ds3": "lsm", "lsm6dso": "lsm"}


class ImuNotFound(Exception):
    """No supported IMU answered; the message names the bus, addresses and what answered."""


def decode_conf(mount, accel_at, gyro_at, big_endian, ka, sa, kg, sg):
    """Decode table for a 12-byte record: per roller axis the chip axis' byte offsets and signed K.

    `mount` is settings.parse_mount()'s result; values are raw * K >> S, rounded.
    """
    conf = array("h", bytes(2 * CONF_LEN))
    for k in range(3):
        chip, sign = mount[k]
        for slot, base, scale in ((k, accel_at, ka), (k + 3, gyro_at, kg)):
            first = base + 2 * chip
            conf[3 * slot] = first if big_endian else first + 1  # high byte
            conf[3 * slot + 1] = first + 1 if big_endian else first  # low byte
            conf[3 * slot + 2] = sign * scale
    conf[18] = sa
    conf[19] = sg
    return conf


@micropython.viper
def decode(buf: ptr8, n: int, conf: ptr16, out: ptr32) -> int:  # noqa: F821
    """Decode n 12-byte records from buf into out (6 ints each, roller frame); returns n.

    Viper: about 20x faster than the same loop in bytecode (bench/motion). It
    runs for microseconds per burst; scheduled callbacks (soft pin IRQs) wait
    meanwhile, which the 8-entry schedule queue absorbs.
    """
    sa = int(conf[18])
    sg = int(conf[19])
    ra = (1 << sa) >> 1
    rg = (1 << sg) >> 1
    end = n * 12
    p = 0
    q = 0
    while p < end:
        j = 0
        while j < 18:
            # conf holds int16; ptr16 reads them unsigned, (x ^ 0x8000) - 0x8000 signs them.
            k = int(conf[j + 2])
            k = (k ^ 0x8000) - 0x8000
            v = (int(buf[p + int(conf[j])]) << 8) | int(buf[p + int(conf[j + 1])])
            v = (v ^ 0x8000) - 0x8000
            if j < 9:
                out[q] = (v * k + ra) >> sa
            else:
                out[q] = (v * k + rg) >> sg
            q += 1
            j += 3
        p += 12
    return n


class FifoChip:
    """What every IMU driver shares: its bus and address, one-byte register writes, counters."""

    def __init__(self, i2c, addr, whoami, name):
        self.i2c = i2c
        self.addr = addr
        self.whoami = whoami
        self.name = name
        self._b1 = bytearray(1)
        self.overflows = 0  # FIFO overflows: samples the chip dropped, counted
        self.resyncs = 0  # FIFO restarts because its next word was not a record's first

    def _w(self, reg, value):
        b = self._b1
        b[0] = value
        self.i2c.writeto_mem(self.addr, reg, b)


def views(buf, unit, cap):
    """memoryviews of buf for 0..cap units of `unit` bytes (made once: slicing allocates)."""
    mv = memoryview(buf)
    return [mv[: k * unit] for k in range(cap + 1)]


def _who(i2c, addr, reg, buf):
    try:
        i2c.readfrom_mem_into(addr, reg, buf)
    except OSError:
        return -1
    return buf[0]


def probe(i2c, model="auto", bus="I2C"):
    """Find the IMU: (family, address, WHO_AM_I, name); raises ImuNotFound.

    `model` "auto" accepts only known WHO_AM_I values; naming a model tries
    only its family and takes any chip that answers there (for clones with odd
    IDs). `bus` is how the bus is named in the error message.
    """
    b = bytearray(1)
    family = MODEL_FAMILY.get(model)
    tried = []
    answers = []
    plan = (
        ("mpu", MPU_ADDRESSES, MPU_WHO_AM_I_REG, MPU_IDS, "MPU-6050/6500"),
        ("lsm", LSM_ADDRESSES, LSM_WHO_AM_I_REG, LSM_IDS, "LSM6DS3/LSM6DSO"),
    )
    for fam, addrs, reg, ids, label in plan:
        if family is not None and fam != family:
            continue
        listed = ", ".join("0x%02x" % a for a in addrs)
        tried.append("%s (%s, WHO_AM_I at 0x%02x)" % (listed, label, reg))
        for addr in addrs:
            who = _who(i2c, addr, reg, b)
            if who < 0:
                continue
            name = ids.get(who)
            if family is not None:
                # Forced: the family's driver for whatever answers; a known ID still names it.
                return fam, addr, who, name if name is not None else model
            if name is not None:
                return fam, addr, who, name
            answers.append("0x%02x answered WHO_AM_I 0x%02x" % (addr, who))
    msg = "no IMU found on %s: tried %s" % (bus, "; ".join(tried))
    if answers:
        msg += "; %s (unknown chip: set imu_model to force a driver)" % ", ".join(answers)
    else:
        msg += "; nothing answered (wiring, power, pull-ups?)"
    raise ImuNotFound(msg)


def open_imu(settings, i2c=None, cap=0):
    """Probe the bus from the settings (or `i2c`), build the driver and set it up."""
    if i2c is None:
        i2c = machine.I2C(
            settings["i2c_id"],
            scl=machine.Pin(settings["i2c_scl"]),
            sda=machine.Pin(settings["i2c_sda"]),
            freq=settings["i2c_freq"],
        )
    bus = "I2C%d (scl=%d, sda=%d)" % (settings["i2c_id"], settings["i2c_scl"], settings["i2c_sda"])
    fam, addr, who, name = probe(i2c, settings["imu_model"], bus)
    mount = parse_mount(settings["mount"])
    hz = settings["imu_hz"]
    if cap <= 0:
        # Room for two drain intervals: a late drain still reads in one burst.
        cap = max(8, 2 * hz * settings["imu_drain_ms"] // 1000 + 2)
    # Imported here: the family modules import this one for the decoder.
    if fam == "mpu":
        from roller.drivers.mpu6050 import Mpu6050

        mpu = Mpu6050(i2c, addr, who, name, mount, hz, cap)
        mpu.setup()
        return mpu
    from roller.drivers.lsm6ds import Lsm6ds

    lsm = Lsm6ds(i2c, addr, who, name, mount, hz, cap)
    lsm.setup()
    return lsm
