"""LSM6DS3 / LSM6DSO family: init, FIFO, burst read, decode (interface: roller.drivers.imu).

LSM6DS3 (DocID026899): an untagged FIFO of 16-bit little-endian words in
data sets, gyro X/Y/Z first, then accel X/Y/Z (12-byte records), 8 KB.
FIFO_STATUS1..4 give the unread words, OVER_RUN and FIFO_PATTERN (which word
comes next: 0 when aligned on a record). The LSM6DSL / LSM6DS3TR-C (WHO_AM_I
0x6A) take the same path: the same FIFO registers, 4 KB (no model of them on
the virtual board yet).

LSM6DSO (DS12140): a tagged FIFO of 7-byte words (TAG, then X/Y/Z
little-endian); the tag names the sensor (bits 7:3) and the time slot
(TAG_CNT, bits 2:1); 512 words (3 KB of data). Gyro and accel words of one
slot are paired by TAG_CNT, in either order; other tags are skipped.

Both: continuous mode (a full FIFO overwrites its oldest data), accel ODR and
batch rate = gyro's = the first rate >= imu_hz (12.5, 26, 52, 104, 208, 416,
833 or 1666 Hz). A drain costs two I2C transactions: status, one FIFO burst.
"""

import time
from array import array

import micropython
from micropython import const

from roller.drivers.imu import RECORD, SAMPLE_INTS, FifoChip, decode, decode_conf, views

_FIFO_CTRL3_DS3 = const(0x08)
_FIFO_CTRL5_DS3 = const(0x0A)
_FIFO_CTRL3_DSO = const(0x09)
_FIFO_CTRL4_DSO = const(0x0A)
_CTRL1_XL = const(0x10)
_CTRL2_G = const(0x11)
_CTRL3_C = const(0x12)
_CTRL9_XL = const(0x18)
_FIFO_STATUS1 = const(0x3A)
_FIFO_DATA_OUT_L_DS3 = const(0x3E)
_FIFO_DATA_OUT_TAG_DSO = const(0x78)

_SW_RESET = const(0x01)
_BDU_IF_INC = const(0x44)
_I3C_DISABLE = const(0xE2)  # CTRL9_XL: DEN_X/Y/Z at reset value, I3C off (the bus is I2C)
_FS_XL_4G = const(0x08)  # FS_XL = 10
_FS_G_500DPS = const(0x04)  # FS_G = 01
_DEC_NONE_BOTH = const(0x09)  # FIFO_CTRL3 (DS3): gyro and accel in the FIFO, no decimation
_BYPASS = const(0)
_CONTINUOUS = const(6)
_DS3_OVER_RUN = const(0x40)  # FIFO_STATUS2
_DSO_OVR = const(0x48)  # FIFO_STATUS2: FIFO_OVR_IA | FIFO_OVR_LATCHED
_TAG_GYRO = const(0x01)
_TAG_ACCEL = const(0x02)
_WORD = const(7)

# +-4 g: 0.122 mg/LSB; 7995 / 2**16 = 0.121994.
_ACCEL_K = const(7995)
_ACCEL_S = const(16)
# +-500 dps: 17.5 mdps/LSB = 35 / 2.
_GYRO_K = const(35)
_GYRO_S = const(1)

# ODR codes 1..8 in milli-Hz (CTRL1_XL/CTRL2_G bits 7:4, FIFO batch rates likewise).
_ODR_MHZ = (12500, 26000, 52000, 104000, 208000, 416000, 833000, 1666000)


class Lsm6ds(FifoChip):
    """One LSM6DS3 or LSM6DSO chip on an I2C bus."""

    def __init__(self, i2c, addr, whoami, name, mount, hz, cap):
        FifoChip.__init__(self, i2c, addr, whoami, name)
        self.tagged = name == "lsm6dso"
        code = len(_ODR_MHZ)
        for i in range(len(_ODR_MHZ)):
            if _ODR_MHZ[i] >= hz * 1000:
                code = i + 1
                break
        self.odr = code
        self.period_us = 1000000000 // _ODR_MHZ[code - 1]
        self.cap = cap
        if self.tagged:
            # Two words per sample; both kinds of word carry X/Y/Z at offset 1.
            self.raw = bytearray(cap * 2 * _WORD)
            self._views = views(self.raw, 2 * _WORD, cap)
            self.conf = decode_conf(mount, 1, 1, False, _ACCEL_K, _ACCEL_S, _GYRO_K, _GYRO_S)
        else:
            self.raw = bytearray(cap * RECORD)
            self._views = views(self.raw, RECORD, cap)
            self.conf = decode_conf(mount, 6, 0, False, _ACCEL_K, _ACCEL_S, _GYRO_K, _GYRO_S)
        # One spare sample: a slot whose second word comes in the next burst.
        self.out = array("i", bytes(4 * SAMPLE_INTS * (cap + 1)))
        self._part = array("i", bytes(4 * SAMPLE_INTS))
        # Tagged decoding state: held halves of a slot (1 accel, 2 gyro), their slot, unpaired.
        self._state = array("i", bytes(4 * 3))
        self._st = bytearray(4)
        self._st2 = memoryview(self._st)[:2]

    def setup(self):
        """Reset the chip, set +-4 g, +-500 dps, the rate and the FIFO in continuous mode."""
        self._w(_CTRL3_C, _SW_RESET)
        for _ in range(20):
            time.sleep_ms(1)  # SW_RESET takes about 50 us and clears itself
            self.i2c.readfrom_mem_into(self.addr, _CTRL3_C, self._b1)
            if not self._b1[0] & _SW_RESET:
                break
        self._w(_CTRL3_C, _BDU_IF_INC)
        if self.tagged:
            self._w(_CTRL9_XL, _I3C_DISABLE)
        odr = self.odr << 4
        self._w(_CTRL1_XL, odr | _FS_XL_4G)
        self._w(_CTRL2_G, odr | _FS_G_500DPS)
        if self.tagged:
            self._w(_FIFO_CTRL3_DSO, odr | self.odr)  # BDR_GY | BDR_XL
        else:
            self._w(_FIFO_CTRL3_DS3, _DEC_NONE_BOTH)
        self.reset_fifo()

    def reset_fifo(self):
        """Empty the FIFO (bypass mode) and start it again in continuous mode."""
        if self.tagged:
            self._w(_FIFO_CTRL4_DSO, _BYPASS)
            self._w(_FIFO_CTRL4_DSO, _CONTINUOUS)
        else:
            self._w(_FIFO_CTRL5_DS3, _BYPASS)
            self._w(_FIFO_CTRL5_DS3, (self.odr << 3) | _CONTINUOUS)
        self._state[0] = 0

    def pending(self):
        """Whole samples in the FIFO; after an overrun: 0, the FIFO reset, the overflow counted."""
        st = self._st
        if self.tagged:
            self.i2c.readfrom_mem_into(self.addr, _FIFO_STATUS1, self._st2)
            if st[1] & _DSO_OVR:
                self.overflows += 1
                self.reset_fifo()
                return 0
            return (st[0] | ((st[1] & 0x03) << 8)) >> 1
        self.i2c.readfrom_mem_into(self.addr, _FIFO_STATUS1, st)
        if st[1] & _DS3_OVER_RUN:
            self.overflows += 1
            self.reset_fifo()
            return 0
        words = st[0] | ((st[1] & 0x0F) << 8)
        if words and (st[2] | ((st[3] & 0x03) << 8)):
            # The next word is not a record's first: realign by starting over.
            self.resyncs += 1
            self.reset_fifo()
            return 0
        return words // 6

    def read(self, n):
        """Read n samples (at most cap) in one burst and decode them into out; returns the count."""
        if n > self.cap:
            n = self.cap
        if n <= 0:
            return 0
        if self.tagged:
            self.i2c.readfrom_mem_into(self.addr, _FIFO_DATA_OUT_TAG_DSO, self._views[n])
            return self._decode_tagged(2 * n)
        self.i2c.readfrom_mem_into(self.addr, _FIFO_DATA_OUT_L_DS3, self._views[n])
        # (Viper pointer parameters take any buffer; the stubs' ptr8/ptr32 types do not say so.)
        return decode(self.raw, n, self.conf, self.out)  # type: ignore[arg-type]

    @micropython.native  # a bytecode frame this wide would come from the heap
    def _decode_tagged(self, words):
        out = self.out
        part = self._part
        st = self._state
        if st[0]:
            for i in range(SAMPLE_INTS):
                out[i] = part[i]  # the first half of a slot, from the previous burst
        n = _tagged(self.raw, words, self.conf, out, st)  # type: ignore[arg-type]
        if st[0]:
            q = n * SAMPLE_INTS
            for i in range(SAMPLE_INTS):
                part[i] = out[q + i]
        return n

    @property
    def unpaired(self):
        """LSM6DSO words whose time-slot partner never came (dropped, not guessed)."""
        return self._state[2]


@micropython.viper
def _tagged(buf: ptr8, words: int, conf: ptr16, out: ptr32, state: ptr32) -> int:  # noqa: F821
    """Decode tagged words into samples, pairing gyro and accel by TAG_CNT; returns samples.

    state: [held halves (1 accel, 2 gyro), their TAG_CNT, unpaired words].
    Viper for the same reason as imu.decode.
    """
    have = int(state[0])
    slot = int(state[1])
    unpaired = int(state[2])
    sa = int(conf[18])
    sg = int(conf[19])
    ra = (1 << sa) >> 1
    rg = (1 << sg) >> 1
    end = words * _WORD
    p = 0
    q = 0
    while p < end:
        tag = int(buf[p])
        sensor = tag >> 3
        # Two comparisons, not `in (...)`: a tuple would be an object in viper.
        if sensor == _TAG_ACCEL or sensor == _TAG_GYRO:  # noqa: SIM109
            s = (tag >> 1) & 3
            if have != 0 and s != slot:
                unpaired += 1
                have = 0
            slot = s
            if sensor == _TAG_ACCEL:
                j = 0
                o = q
                sh = sa
                r = ra
                have |= 1
            else:
                j = 9
                o = q + 3
                sh = sg
                r = rg
                have |= 2
            stop = j + 9
            while j < stop:
                k = int(conf[j + 2])
                k = (k ^ 0x8000) - 0x8000
                v = (int(buf[p + int(conf[j])]) << 8) | int(buf[p + int(conf[j + 1])])
                v = (v ^ 0x8000) - 0x8000
                out[o] = (v * k + r) >> sh
                o += 1
                j += 3
            if have == 3:
                q += 6
                have = 0
        p += _WORD
    state[0] = have
    state[1] = slot
    state[2] = unpaired
    return q // 6
