"""Register-level models of the IMUs the firmware supports, for the virtual board.

Each model is an I2C device with an 8-bit register file: `read(reg, buf)`
and `write(reg, buf)` are what `machine.I2C` calls for a transaction (with the
chip's own auto-increment and FIFO read-window rules), and `push(ax, ay, az,
gx, gy, gz)` is one sample of the physical world in the chip's own frame
(milli-g, milli-degrees per second). A sample is converted to raw counts with
the full scale the firmware configured, written to the output registers and,
if the FIFO is set up, appended in the chip's FIFO format and byte order.

Modelled from the datasheets / register maps:
- MPU-6050 (RM-MPU-6000A rev 4.2) and MPU-6500 (RM-MPU-6500A): WHO_AM_I 0x68 /
  0x70, PWR_MGMT_1 reset and sleep, SMPLRT_DIV + DLPF rate, FS_SEL/AFS_SEL,
  FIFO_EN sources in register order (accel, temp, gyro; big-endian), USER_CTRL
  FIFO_EN/FIFO_RESET, FIFO_COUNTH/L, FIFO_R_W (reading an empty FIFO repeats
  the last byte), INT_STATUS cleared on read with FIFO_OFLOW_INT. FIFO 1024
  bytes (6050, oldest bytes overwritten when full) or 512 bytes (6500, which
  also honours CONFIG.FIFO_MODE: keep old data when full).
- LSM6DS3 (DocID026899): WHO_AM_I 0x69, CTRL1_XL/CTRL2_G ODR and full scale,
  CTRL3_C SW_RESET/IF_INC/BDU, untagged FIFO of 16-bit little-endian words in
  data sets (gyro set first, then accel), FIFO_CTRL3 decimation (only "none"
  and "not in FIFO" modelled), FIFO_CTRL5 ODR and mode (bypass, FIFO,
  continuous), FIFO_STATUS1..4 (DIFF_FIFO, OVER_RUN, FULL, EMPTY,
  FIFO_PATTERN), FIFO_DATA_OUT_L/H with the read window rolling back. FIFO of
  8 KB = 4096 words.
- LSM6DSO (DS12140): WHO_AM_I 0x6C, tagged FIFO of 7-byte words (TAG: sensor
  in bits 7:3, TAG_CNT in 2:1, parity in 0; then X/Y/Z little-endian),
  FIFO_CTRL3 batch rates, FIFO_CTRL4 mode, FIFO_STATUS1/2 (DIFF_FIFO[9:0],
  FIFO_OVR_IA, FIFO_FULL_IA, FIFO_OVR_LATCHED cleared on read), the
  FIFO_DATA_OUT_TAG..Z_H read window rolling back. FIFO of 512 words (3 KB of
  data; the "9 kbyte" of the datasheet's front page needs the compression we
  do not enable).

Not modelled: self-test, offsets, interrupts pins, embedded functions, the
LSM decimation factors above 1, the MPU's I2C master / DMP, noise. push() is
allocation-free so the board can run inside `micropython.heap_lock()`.
"""

from micropython import const

# MPU-6050 / MPU-6500 registers.
MPU_SMPLRT_DIV = const(0x19)
MPU_CONFIG = const(0x1A)
MPU_GYRO_CONFIG = const(0x1B)
MPU_ACCEL_CONFIG = const(0x1C)
MPU_ACCEL_CONFIG2 = const(0x1D)  # MPU-6500 only
MPU_FIFO_EN = const(0x23)
MPU_INT_ENABLE = const(0x38)
MPU_INT_STATUS = const(0x3A)
MPU_ACCEL_XOUT_H = const(0x3B)
MPU_TEMP_OUT_H = const(0x41)
MPU_GYRO_XOUT_H = const(0x43)
MPU_SIGNAL_PATH_RESET = const(0x68)
MPU_USER_CTRL = const(0x6A)
MPU_PWR_MGMT_1 = const(0x6B)
MPU_PWR_MGMT_2 = const(0x6C)
MPU_FIFO_COUNTH = const(0x72)
MPU_FIFO_COUNTL = const(0x73)
MPU_FIFO_R_W = const(0x74)
MPU_WHO_AM_I = const(0x75)
# Bits.
_MPU_DEVICE_RESET = const(0x80)
_MPU_SLEEP = const(0x40)
_MPU_FIFO_MODE = const(0x40)  # CONFIG, MPU-6500
_MPU_TEMP_FIFO = const(0x80)
_MPU_XG_FIFO = const(0x40)
_MPU_YG_FIFO = const(0x20)
_MPU_ZG_FIFO = const(0x10)
_MPU_ACCEL_FIFO = const(0x08)
_MPU_FIFO_OFLOW = const(0x10)
_MPU_DATA_RDY = const(0x01)
_MPU_USER_FIFO_EN = const(0x40)
_MPU_USER_FIFO_RESET = const(0x04)

# LSM6DS3 / LSM6DSO registers (shared addresses first).
LSM_WHO_AM_I = const(0x0F)
LSM_CTRL1_XL = const(0x10)
LSM_CTRL2_G = const(0x11)
LSM_CTRL3_C = const(0x12)
LSM_CTRL9_XL = const(0x18)
LSM_STATUS_REG = const(0x1E)
LSM_OUT_TEMP_L = const(0x20)
LSM_OUTX_L_G = const(0x22)
LSM_OUTX_L_XL = const(0x28)
LSM_FIFO_STATUS1 = const(0x3A)
LSM_FIFO_STATUS2 = const(0x3B)
DS3_FIFO_CTRL1 = const(0x06)
DS3_FIFO_CTRL2 = const(0x07)
DS3_FIFO_CTRL3 = const(0x08)
DS3_FIFO_CTRL4 = const(0x09)
DS3_FIFO_CTRL5 = const(0x0A)
DS3_FIFO_STATUS3 = const(0x3C)
DS3_FIFO_STATUS4 = const(0x3D)
DS3_FIFO_DATA_OUT_L = const(0x3E)
DS3_FIFO_DATA_OUT_H = const(0x3F)
DSO_FIFO_CTRL1 = const(0x07)
DSO_FIFO_CTRL2 = const(0x08)
DSO_FIFO_CTRL3 = const(0x09)
DSO_FIFO_CTRL4 = const(0x0A)
DSO_FIFO_DATA_OUT_TAG = const(0x78)
DSO_FIFO_DATA_OUT_Z_H = const(0x7E)
# Bits.
_LSM_SW_RESET = const(0x01)
_LSM_IF_INC = const(0x04)
_LSM_FS_125 = const(0x02)
_LSM_XLDA = const(0x01)
_LSM_GDA = const(0x02)
_FIFO_BYPASS = const(0)
_FIFO_FIFO = const(1)
_FIFO_CONTINUOUS = const(6)
DSO_TAG_GYRO = const(0x01)
DSO_TAG_ACCEL = const(0x02)


def div_round(n, d):
    """n / d rounded half away from zero (d > 0), in integers."""
    if n >= 0:
        return (2 * n + d) // (2 * d)
    return -((-2 * n + d) // (2 * d))


def _clip16(v):
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return v


class RegisterDevice:
    """An I2C slave with 8-bit register addresses (the part machine.I2C talks to)."""

    pointer = 0

    def read(self, reg, buf):
        for i in range(len(buf)):
            buf[i] = self.read_reg(reg)
            reg = self.next_reg(reg)
        self.pointer = reg

    def write(self, reg, buf):
        for i in range(len(buf)):
            self.write_reg(reg, buf[i])
            reg = self.next_reg(reg)
        self.pointer = reg

    def next_reg(self, reg):
        return (reg + 1) & 0x7F

    def read_reg(self, reg):
        return self.regs[reg]

    def write_reg(self, reg, value):
        self.regs[reg] = value


class _ByteFifo:
    """A fixed-size byte ring with drop-oldest or drop-newest overflow."""

    def __init__(self, size):
        self.buf = bytearray(size)
        self.size = size
        self.clear()

    def clear(self):
        self.head = 0
        self.n = 0
        self.seq = 0  # bytes ever removed from the head since the last clear

    def room(self):
        return self.size - self.n

    def drop(self, k):
        if k > self.n:
            k = self.n
        self.head = (self.head + k) % self.size
        self.n -= k
        self.seq += k

    def put(self, b):
        self.buf[(self.head + self.n) % self.size] = b
        self.n += 1

    def get(self):
        b = self.buf[self.head]
        self.head = (self.head + 1) % self.size
        self.n -= 1
        self.seq += 1
        return b

    def peek(self, k):
        return self.buf[(self.head + k) % self.size]


class Mpu6050(RegisterDevice):
    """InvenSense MPU-6050: accel + gyro, 1 KB FIFO of big-endian sensor registers."""

    NAME = "mpu6050"
    WHO_AM_I_VALUE = 0x68
    FIFO_BYTES = 1024
    ADDRESSES = (0x68, 0x69)

    def __init__(self):
        self.regs = bytearray(128)
        self.fifo = _ByteFifo(self.FIFO_BYTES)
        self.temp_c = 25
        self.pushed = 0  # samples the chip took (not asleep)
        self.lost = 0  # FIFO bytes lost to overflow
        self.empty_reads = 0  # FIFO_R_W reads with nothing in the FIFO
        self.reset()

    def reset(self):
        """Power-on / DEVICE_RESET state: asleep, FIFO off and empty."""
        r = self.regs
        for i in range(len(r)):
            r[i] = 0
        r[MPU_PWR_MGMT_1] = _MPU_SLEEP
        r[MPU_WHO_AM_I] = self.WHO_AM_I_VALUE
        self.fifo.clear()
        self._last = 0
        self._count_latch = 0

    # --- register file ---

    def next_reg(self, reg):
        if reg == MPU_FIFO_R_W:
            return reg  # burst reads of FIFO_R_W keep reading the FIFO
        return (reg + 1) & 0x7F

    def read_reg(self, reg):
        r = self.regs
        if reg == MPU_FIFO_R_W:
            f = self.fifo
            if f.n:
                self._last = f.get()
            else:
                self.empty_reads += 1  # the chip repeats the last byte read
            return self._last
        if reg == MPU_INT_STATUS:
            v = r[reg]
            r[reg] = 0  # cleared by reading
            return v
        if reg == MPU_FIFO_COUNTH:
            self._count_latch = self.fifo.n
            return (self._count_latch >> 8) & self._count_mask_h()
        if reg == MPU_FIFO_COUNTL:
            return self._count_latch & 0xFF
        return r[reg]

    def _count_mask_h(self):
        return 0xFF

    def write_reg(self, reg, value):
        r = self.regs
        if reg in (MPU_WHO_AM_I, MPU_INT_STATUS) or MPU_ACCEL_XOUT_H <= reg <= 0x48:
            return  # read-only
        if reg == MPU_FIFO_R_W:
            return  # writing the FIFO is not modelled
        if reg == MPU_PWR_MGMT_1 and value & _MPU_DEVICE_RESET:
            self.reset()
            return
        if reg == MPU_USER_CTRL:
            if value & _MPU_USER_FIFO_RESET:
                self.fifo.clear()
            value &= ~0x07  # reset bits clear themselves
        if reg in (MPU_FIFO_COUNTH, MPU_FIFO_COUNTL):
            return
        r[reg] = value

    # --- the physical side ---

    def accel_lsb_per_g(self):
        return 16384 >> ((self.regs[MPU_ACCEL_CONFIG] >> 3) & 3)

    def gyro_fs_dps(self):
        return 250 << ((self.regs[MPU_GYRO_CONFIG] >> 3) & 3)

    def period_us(self):
        """Sample period from SMPLRT_DIV and the DLPF (8 kHz base with the DLPF off)."""
        cfg = self.regs[MPU_CONFIG] & 7
        base = 8000 if cfg in (0, 7) else 1000
        return 1000000 * (1 + self.regs[MPU_SMPLRT_DIV]) // base

    def _temp_raw(self):
        # MPU-6050: T = raw / 340 + 36.53 degrees C.
        return div_round((self.temp_c * 100 - 3653) * 340, 100)

    def _put16(self, reg, v):
        self.regs[reg] = (v >> 8) & 0xFF
        self.regs[reg + 1] = v & 0xFF

    def push(self, ax, ay, az, gx, gy, gz):
        """One sample in the chip frame (milli-g, milli-dps); False while the chip sleeps."""
        r = self.regs
        if r[MPU_PWR_MGMT_1] & _MPU_SLEEP:
            return False
        self.pushed += 1
        lsb = self.accel_lsb_per_g()
        self._put16(MPU_ACCEL_XOUT_H, _clip16(div_round(ax * lsb, 1000)))
        self._put16(MPU_ACCEL_XOUT_H + 2, _clip16(div_round(ay * lsb, 1000)))
        self._put16(MPU_ACCEL_XOUT_H + 4, _clip16(div_round(az * lsb, 1000)))
        self._put16(MPU_TEMP_OUT_H, self._temp_raw())
        # 131 LSB per dps at +-250 dps, halving with each FS_SEL step.
        d = 1000 << ((r[MPU_GYRO_CONFIG] >> 3) & 3)
        self._put16(MPU_GYRO_XOUT_H, _clip16(div_round(gx * 131, d)))
        self._put16(MPU_GYRO_XOUT_H + 2, _clip16(div_round(gy * 131, d)))
        self._put16(MPU_GYRO_XOUT_H + 4, _clip16(div_round(gz * 131, d)))
        r[MPU_INT_STATUS] |= _MPU_DATA_RDY
        if r[MPU_USER_CTRL] & _MPU_USER_FIFO_EN:
            self._to_fifo(r[MPU_FIFO_EN])
        return True

    def _frame_bytes(self, en):
        n = 0
        if en & _MPU_ACCEL_FIFO:
            n += 6
        if en & _MPU_TEMP_FIFO:
            n += 2
        for bit in (_MPU_XG_FIFO, _MPU_YG_FIFO, _MPU_ZG_FIFO):
            if en & bit:
                n += 2
        return n

    def _keep_old_when_full(self):
        return False  # the MPU-6050 overwrites its oldest bytes

    def _to_fifo(self, en):
        n = self._frame_bytes(en)
        if not n:
            return
        f = self.fifo
        if f.room() < n:
            self.regs[MPU_INT_STATUS] |= _MPU_FIFO_OFLOW
            if self._keep_old_when_full():
                self.lost += n
                return
            self.lost += n - f.room()
            f.drop(n - f.room())
        r = self.regs
        # FIFO order is register order: ACCEL_XOUT_H..ACCEL_ZOUT_L, TEMP, GYRO X, Y, Z.
        if en & _MPU_ACCEL_FIFO:
            for i in range(6):
                f.put(r[MPU_ACCEL_XOUT_H + i])
        if en & _MPU_TEMP_FIFO:
            f.put(r[MPU_TEMP_OUT_H])
            f.put(r[MPU_TEMP_OUT_H + 1])
        if en & _MPU_XG_FIFO:
            f.put(r[MPU_GYRO_XOUT_H])
            f.put(r[MPU_GYRO_XOUT_H + 1])
        if en & _MPU_YG_FIFO:
            f.put(r[MPU_GYRO_XOUT_H + 2])
            f.put(r[MPU_GYRO_XOUT_H + 3])
        if en & _MPU_ZG_FIFO:
            f.put(r[MPU_GYRO_XOUT_H + 4])
            f.put(r[MPU_GYRO_XOUT_H + 5])


class Mpu6500(Mpu6050):
    """InvenSense MPU-6500: the 6050's registers, ACCEL_CONFIG2, CONFIG.FIFO_MODE; 512 B FIFO."""

    NAME = "mpu6500"
    WHO_AM_I_VALUE = 0x70
    FIFO_BYTES = 512

    def _count_mask_h(self):
        return 0x1F  # FIFO_COUNT is 13 bits

    def _keep_old_when_full(self):
        return bool(self.regs[MPU_CONFIG] & _MPU_FIFO_MODE)

    def _temp_raw(self):
        # MPU-6500: T = raw / 333.87 + 21 degrees C.
        return div_round((self.temp_c - 21) * 33387, 100)


# LSM6DS accelerometer sensitivity in micro-g per LSB by FS_XL code (00 2g, 01 16g, 10 4g, 11 8g).
_LSM_XL_UG = (61, 488, 122, 244)
# Gyro sensitivity in micro-dps per LSB by FS_G code (00 245/250, 01 500, 10 1000, 11 2000).
_LSM_G_UDPS = (8750, 17500, 35000, 70000)
# ODR codes 1..10 in milli-Hz.
_LSM_ODR_MHZ = (0, 12500, 26000, 52000, 104000, 208000, 416000, 833000, 1666000, 3333000, 6666000)


class _LsmBase(RegisterDevice):
    """What the ST LSM6DS3 and LSM6DSO share: control registers and output conversion."""

    ADDRESSES = (0x6A, 0x6B)

    def __init__(self):
        self.regs = bytearray(128)
        self.pushed = 0
        self.lost = 0
        self.empty_reads = 0
        self.reset()

    def reset(self):
        r = self.regs
        for i in range(len(r)):
            r[i] = 0
        r[LSM_WHO_AM_I] = self.WHO_AM_I_VALUE
        r[LSM_CTRL3_C] = _LSM_IF_INC
        self._reset_extra()

    def _reset_extra(self):
        pass

    def next_reg(self, reg):
        if not self.regs[LSM_CTRL3_C] & _LSM_IF_INC:
            return reg
        return (reg + 1) & 0x7F

    def write_reg(self, reg, value):
        if reg == LSM_WHO_AM_I or LSM_STATUS_REG <= reg <= 0x2D:
            return  # read-only
        if reg == LSM_CTRL3_C and value & _LSM_SW_RESET:
            self.reset()  # SW_RESET completes at once here; it reads back as 0
            return
        self.regs[reg] = value
        self._wrote(reg, value)

    def _wrote(self, reg, value):
        pass

    def accel_ug_per_lsb(self):
        return _LSM_XL_UG[(self.regs[LSM_CTRL1_XL] >> 2) & 3]

    def gyro_udps_per_lsb(self):
        g = self.regs[LSM_CTRL2_G]
        if g & _LSM_FS_125:
            return 4375
        return _LSM_G_UDPS[(g >> 2) & 3]

    def accel_odr_mhz(self):
        return _LSM_ODR_MHZ[min(self.regs[LSM_CTRL1_XL] >> 4, 10)]

    def gyro_odr_mhz(self):
        return _LSM_ODR_MHZ[min(self.regs[LSM_CTRL2_G] >> 4, 10)]

    def period_us(self):
        """Sample period of the accelerometer's ODR (0 while powered down)."""
        odr = self.accel_odr_mhz()
        return 1000000000 // odr if odr else 0

    def _put16(self, reg, v):
        self.regs[reg] = v & 0xFF
        self.regs[reg + 1] = (v >> 8) & 0xFF

    def push(self, ax, ay, az, gx, gy, gz):
        """One sample in the chip frame (milli-g, milli-dps); False when both sensors are off."""
        r = self.regs
        xl = self.accel_odr_mhz() != 0
        gy_on = self.gyro_odr_mhz() != 0
        if not (xl or gy_on):
            return False
        self.pushed += 1
        if xl:
            s = self.accel_ug_per_lsb()
            self._put16(LSM_OUTX_L_XL, _clip16(div_round(ax * 1000, s)))
            self._put16(LSM_OUTX_L_XL + 2, _clip16(div_round(ay * 1000, s)))
            self._put16(LSM_OUTX_L_XL + 4, _clip16(div_round(az * 1000, s)))
            r[LSM_STATUS_REG] |= _LSM_XLDA
        if gy_on:
            s = self.gyro_udps_per_lsb()
            self._put16(LSM_OUTX_L_G, _clip16(div_round(gx * 1000, s)))
            self._put16(LSM_OUTX_L_G + 2, _clip16(div_round(gy * 1000, s)))
            self._put16(LSM_OUTX_L_G + 4, _clip16(div_round(gz * 1000, s)))
            r[LSM_STATUS_REG] |= _LSM_GDA
        self._to_fifo(xl, gy_on)
        return True


class Lsm6ds3(_LsmBase):
    """ST LSM6DS3: untagged FIFO of 16-bit words in data sets (gyro XYZ, then accel XYZ)."""

    NAME = "lsm6ds3"
    WHO_AM_I_VALUE = 0x69
    FIFO_WORDS = 4096  # 8 KB

    def __init__(self):
        self.fifo = _ByteFifo(2 * self.FIFO_WORDS)
        self.overrun = False
        super().__init__()

    def _reset_extra(self):
        self.fifo.clear()
        self.overrun = False

    def _mode(self):
        return self.regs[DS3_FIFO_CTRL5] & 7

    def _wrote(self, reg, value):
        if reg == DS3_FIFO_CTRL5 and value & 7 == _FIFO_BYPASS:
            self.fifo.clear()  # bypass mode empties the FIFO
            self.overrun = False

    # Which data sets go to the FIFO (FIFO_CTRL3); decimation other than 1 is not modelled.
    def _gyro_set(self):
        return (self.regs[DS3_FIFO_CTRL3] >> 3) & 7 != 0

    def _accel_set(self):
        return self.regs[DS3_FIFO_CTRL3] & 7 != 0

    def _pattern_words(self):
        return 3 * (int(self._gyro_set()) + int(self._accel_set()))

    def next_reg(self, reg):
        if reg == DS3_FIFO_DATA_OUT_H and self.regs[LSM_CTRL3_C] & _LSM_IF_INC:
            return DS3_FIFO_DATA_OUT_L  # the FIFO read window rolls back
        return super().next_reg(reg)

    def read_reg(self, reg):
        f = self.fifo
        r = self.regs
        if reg == LSM_FIFO_STATUS1:
            return self._diff() & 0xFF
        if reg == LSM_FIFO_STATUS2:
            words = f.n >> 1
            v = (self._diff() >> 8) & 0x0F
            if self.overrun:
                v |= 0x40
            if words >= self.FIFO_WORDS - self._pattern_words():
                v |= 0x20  # FIFO_FULL_SMART: full at the next ODR
            if words == 0:
                v |= 0x10
            fth = r[DS3_FIFO_CTRL1] | ((r[DS3_FIFO_CTRL2] & 0x0F) << 8)
            if fth and words >= fth:
                v |= 0x80
            return v
        if reg in (DS3_FIFO_STATUS3, DS3_FIFO_STATUS4):
            pw = self._pattern_words()
            pattern = (f.seq >> 1) % pw if pw else 0
            return pattern & 0xFF if reg == DS3_FIFO_STATUS3 else (pattern >> 8) & 3
        if reg in (DS3_FIFO_DATA_OUT_L, DS3_FIFO_DATA_OUT_H):
            if f.n < 2:
                self.empty_reads += 1
                return 0
            if reg == DS3_FIFO_DATA_OUT_L:
                return f.peek(0)
            f.get()  # reading the high byte pops the word
            hi = f.get()
            if self.overrun and f.room() >= 2:
                self.overrun = False
            return hi
        return r[reg]

    def _diff(self):
        # DIFF_FIFO is 12 bits; a completely full FIFO (4096 words) shows 4095.
        words = self.fifo.n >> 1
        return words if words < 4096 else 4095

    def _to_fifo(self, xl, gy_on):
        mode = self._mode()
        if (
            mode not in (_FIFO_FIFO, _FIFO_CONTINUOUS)
            or not (self.regs[DS3_FIFO_CTRL5] >> 3) & 0x0F
        ):
            return  # bypass (or a mode not modelled), or FIFO ODR 0
        g_set = self._gyro_set()
        a_set = self._accel_set()
        need = 2 * self._pattern_words()
        if not need:
            return
        f = self.fifo
        if f.room() < need:
            self.overrun = True
            if mode == _FIFO_FIFO:
                self.lost += need
                return  # FIFO mode stops collecting when full
            self.lost += need - f.room()
            f.drop(need - f.room())  # continuous: the oldest words are overwritten
        r = self.regs
        if g_set:
            for i in range(6):
                f.put(r[LSM_OUTX_L_G + i])
        if a_set:
            for i in range(6):
                f.put(r[LSM_OUTX_L_XL + i])


class Lsm6dso(_LsmBase):
    """ST LSM6DSO: tagged FIFO, 512 words of TAG + 6 data bytes."""

    NAME = "lsm6dso"
    WHO_AM_I_VALUE = 0x6C
    FIFO_WORDS = 512
    WORD = 7

    def __init__(self):
        self.fifo = _ByteFifo(self.WORD * self.FIFO_WORDS)
        self.gyro_first = True  # order of the two words of one time slot
        super().__init__()

    def _reset_extra(self):
        self.fifo.clear()
        self.ovr = False
        self.ovr_latched = False
        self.tag_cnt = 0
        self.regs[LSM_CTRL9_XL] = 0xE0  # DEN_X/Y/Z reset value

    def _mode(self):
        return self.regs[DSO_FIFO_CTRL4] & 7

    def _wrote(self, reg, value):
        if reg == DSO_FIFO_CTRL4 and value & 7 == _FIFO_BYPASS:
            self.fifo.clear()
            self.ovr = False
            self.ovr_latched = False

    def next_reg(self, reg):
        if reg == DSO_FIFO_DATA_OUT_Z_H and self.regs[LSM_CTRL3_C] & _LSM_IF_INC:
            return DSO_FIFO_DATA_OUT_TAG  # the FIFO read window rolls back
        return super().next_reg(reg)

    def words(self):
        return self.fifo.n // self.WORD

    def read_reg(self, reg):
        f = self.fifo
        if reg == LSM_FIFO_STATUS1:
            return self.words() & 0xFF
        if reg == LSM_FIFO_STATUS2:
            r = self.regs
            v = (self.words() >> 8) & 0x03
            if self.ovr:
                v |= 0x40
            if self.words() >= self.FIFO_WORDS - 2:
                v |= 0x20  # FIFO_FULL_IA: full at the next batch
            if self.ovr_latched:
                v |= 0x08
                self.ovr_latched = False  # FIFO_OVR_LATCHED clears when read
            wtm = r[DSO_FIFO_CTRL1] | ((r[DSO_FIFO_CTRL2] & 1) << 8)
            if wtm and self.words() >= wtm:
                v |= 0x80
            return v
        if DSO_FIFO_DATA_OUT_TAG <= reg <= DSO_FIFO_DATA_OUT_Z_H:
            if f.n < self.WORD:
                self.empty_reads += 1
                return 0
            k = reg - DSO_FIFO_DATA_OUT_TAG
            if reg != DSO_FIFO_DATA_OUT_Z_H:
                return f.peek(k)
            b = f.peek(k)
            f.drop(self.WORD)  # reading the last byte pops the word
            if self.ovr and f.room() >= 2 * self.WORD:
                self.ovr = False
            return b
        return self.regs[reg]

    def _tag(self, sensor):
        t = (sensor << 3) | (self.tag_cnt << 1)
        # TAG_PARITY: makes the number of ones in the tag byte even (the driver does not check it).
        p = t ^ (t >> 4)
        p ^= p >> 2
        p ^= p >> 1
        return t | (p & 1)

    def _put_word(self, tag, base):
        f = self.fifo
        r = self.regs
        f.put(tag)
        for i in range(6):
            f.put(r[base + i])

    def _to_fifo(self, xl, gy_on):
        mode = self._mode()
        if mode not in (_FIFO_FIFO, _FIFO_CONTINUOUS):
            return
        c3 = self.regs[DSO_FIFO_CTRL3]  # BDR_GY in bits 7:4, BDR_XL in 3:0
        g = gy_on and c3 & 0xF0 != 0
        a = xl and c3 & 0x0F != 0
        nw = int(g) + int(a)
        if not nw:
            return
        f = self.fifo
        need = nw * self.WORD
        if f.room() < need:
            self.ovr = True
            self.ovr_latched = True
            if mode == _FIFO_FIFO:
                self.lost += nw
                return
            drop = (need - f.room() + self.WORD - 1) // self.WORD
            self.lost += drop
            f.drop(drop * self.WORD)
        gtag = self._tag(DSO_TAG_GYRO)
        atag = self._tag(DSO_TAG_ACCEL)
        if self.gyro_first:
            if g:
                self._put_word(gtag, LSM_OUTX_L_G)
            if a:
                self._put_word(atag, LSM_OUTX_L_XL)
        else:
            if a:
                self._put_word(atag, LSM_OUTX_L_XL)
            if g:
                self._put_word(gtag, LSM_OUTX_L_G)
        self.tag_cnt = (self.tag_cnt + 1) & 3


MODELS = {"mpu6050": Mpu6050, "mpu6500": Mpu6500, "lsm6ds3": Lsm6ds3, "lsm6dso": Lsm6dso}
