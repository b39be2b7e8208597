"""MPU-6050 / MPU-6500 family: init, FIFO, burst read, decode (interface: roller.drivers.imu).

Register map RM-MPU-6000A (6050) and RM-MPU-6500A. The FIFO gets accel and
gyro (FIFO_EN 0x78): 12-byte records, big-endian, in register order
ACCEL_X/Y/Z then GYRO_X/Y/Z. FIFO 1024 bytes (6050; when full it overwrites
its oldest bytes, so records lose their alignment) or 512 bytes (6500, set
to keep old data when full: CONFIG.FIFO_MODE). A drain costs three I2C
transactions: INT_STATUS (overflow flag, cleared by reading), FIFO_COUNT and
one burst of FIFO_R_W.
"""

import time
from array import array

from micropython import const

from roller.drivers.imu import RECORD, SAMPLE_INTS, FifoChip, decode, decode_conf, views

_SMPLRT_DIV = const(0x19)
_CONFIG = const(0x1A)
_GYRO_CONFIG = const(0x1B)
_ACCEL_CONFIG = const(0x1C)
_ACCEL_CONFIG2 = const(0x1D)  # MPU-6500 family only
_FIFO_EN = const(0x23)
_INT_ENABLE = const(0x38)
_INT_STATUS = const(0x3A)
_USER_CTRL = const(0x6A)
_PWR_MGMT_1 = const(0x6B)
_FIFO_COUNTH = const(0x72)
_FIFO_R_W = const(0x74)

_DEVICE_RESET = const(0x80)
_CLKSEL_PLL_X = const(0x01)  # awake, clocked from the X gyro PLL
_FIFO_MODE_KEEP = const(0x40)  # CONFIG bit 6 (MPU-6500): a full FIFO keeps its data
_FS_SEL_500DPS = const(0x08)  # GYRO_CONFIG FS_SEL = 1
_AFS_SEL_4G = const(0x08)  # ACCEL_CONFIG AFS_SEL = 1
_FIFO_ACCEL_GYRO = const(0x78)  # XG, YG, ZG, ACCEL
_FIFO_OFLOW = const(0x10)  # INT_ENABLE / INT_STATUS bit 4
_USER_FIFO_EN = const(0x40)
_USER_FIFO_RESET = const(0x04)

# +-4 g: 8192 LSB/g, so mg = raw * 1000 / 8192 = raw * 125 / 2**10 (exact).
_ACCEL_K = const(125)
_ACCEL_S = const(10)
# +-500 dps: 65.5 LSB/dps, so mdps = raw * 15.2672; 15634 / 2**10 = 15.2676.
_GYRO_K = const(15634)
_GYRO_S = const(10)

# Digital low-pass filter: (bandwidth Hz, DLPF_CFG); the widest below half the rate.
_DLPF = ((184, 1), (94, 2), (44, 3), (21, 4), (10, 5), (5, 6))


class Mpu6050(FifoChip):
    """One MPU-6050/6500-family chip on an I2C bus."""

    def __init__(self, i2c, addr, whoami, name, mount, hz, cap):
        FifoChip.__init__(self, i2c, addr, whoami, name)
        self.is_6050 = name == "mpu6050"
        self.fifo_bytes = 1024 if self.is_6050 else 512
        # Sample rate = 1 kHz / (1 + SMPLRT_DIV) with the DLPF on: at least imu_hz.
        self.div = max(0, min(255, 1000 // hz - 1))
        self.period_us = 1000 * (1 + self.div)
        rate = 1000 // (1 + self.div)
        self.dlpf = 6
        for bw, cfg in _DLPF:
            if 2 * bw <= rate:
                self.dlpf = cfg
                break
        self.cap = cap
        self.raw = bytearray(cap * RECORD)
        self._views = views(self.raw, RECORD, cap)
        self.out = array("i", bytes(4 * SAMPLE_INTS * cap))
        self.conf = decode_conf(mount, 0, 6, True, _ACCEL_K, _ACCEL_S, _GYRO_K, _GYRO_S)
        self._b2 = bytearray(2)

    def setup(self):
        """Reset the chip, set +-4 g, +-500 dps, the rate and the FIFO (blocks ~100 ms)."""
        self._w(_PWR_MGMT_1, _DEVICE_RESET)
        time.sleep_ms(100)  # the register map asks for 100 ms after DEVICE_RESET
        self._w(_PWR_MGMT_1, _CLKSEL_PLL_X)
        self._w(_SMPLRT_DIV, self.div)
        self._w(_CONFIG, self.dlpf if self.is_6050 else self.dlpf | _FIFO_MODE_KEEP)
        if not self.is_6050:
            self._w(_ACCEL_CONFIG2, self.dlpf)
        self._w(_GYRO_CONFIG, _FS_SEL_500DPS)
        self._w(_ACCEL_CONFIG, _AFS_SEL_4G)
        self._w(_INT_ENABLE, _FIFO_OFLOW)
        self._w(_FIFO_EN, _FIFO_ACCEL_GYRO)
        self.reset_fifo()

    def reset_fifo(self):
        """Empty the FIFO and start filling it again; clears the overflow flag."""
        self._w(_USER_CTRL, 0)
        self._w(_USER_CTRL, _USER_FIFO_RESET)
        self._w(_USER_CTRL, _USER_FIFO_EN)
        self.i2c.readfrom_mem_into(self.addr, _INT_STATUS, self._b1)

    def pending(self):
        """Whole samples in the FIFO; after an overflow: 0, the FIFO reset, the overflow counted."""
        i2c = self.i2c
        b1 = self._b1
        i2c.readfrom_mem_into(self.addr, _INT_STATUS, b1)
        if b1[0] & _FIFO_OFLOW:
            # The 6050 overwrote its oldest bytes: records are no longer aligned.
            self.overflows += 1
            self.reset_fifo()
            return 0
        b = self._b2
        i2c.readfrom_mem_into(self.addr, _FIFO_COUNTH, b)
        return ((b[0] << 8) | b[1]) // RECORD

    def read(self, n):
        """Read n samples (at most cap) in one burst and decode them into out; returns the count."""
        if n > self.cap:
            n = self.cap
        if n <= 0:
            return 0
        self.i2c.readfrom_mem_into(self.addr, _FIFO_R_W, self._views[n])
        # (Viper pointer parameters take any buffer; the stubs' ptr8/ptr32 types do not say so.)
        return decode(self.raw, n, self.conf, self.out)  # type: ignore[arg-type]
