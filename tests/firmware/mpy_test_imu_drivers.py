"""IMU drivers (MPU-6050/6500, LSM6DS3/LSM6DSO) against the register models of the virtual board."""

import errno

import vboard
from mpytest import no_alloc, raises

from roller.drivers import imu as imu_mod
from roller.settings import Settings

KINDS = ("mpu6050", "mpu6500", "lsm6ds3", "lsm6dso")
MOUNTS = ("x,y,z", "-y,x,z", "z,-x,-y", "y,z,x", "-x,-z,-y")
# One raw LSB in output units, plus rounding: the decode tolerance per family.
ACCEL_TOL = 1
GYRO_TOL = {"mpu6050": 25, "mpu6500": 25, "lsm6ds3": 20, "lsm6dso": 20}


def _setup(kind, addr=None, **overrides):
    vboard.reset()
    model = vboard.attach_imu(kind, addr=addr)
    s = Settings()
    s.update(overrides)
    return model, imu_mod.open_imu(s)


def _drain(imu):
    n = imu.pending()
    got = imu.read(n)
    return [tuple(imu.out[6 * i : 6 * i + 6]) for i in range(got)]


def _drain_count(imu):
    return imu.read(imu.pending())


def _close(got, want, gyro_tol):
    for i in range(6):
        tol = ACCEL_TOL if i < 3 else gyro_tol
        if abs(got[i] - want[i]) > tol:
            return False
    return True


def test_each_family_decodes_in_the_roller_frame_for_several_mounts():
    samples = (
        (0, 0, 1000, 0, 0, 0),
        (-350, 620, 710, 123456, -45000, 7000),
        (3990, -3990, 17, -499000, 250000, -1),  # +-4 g at 0.122 mg/LSB ends at 3997 mg on an LSM
    )
    for kind in KINDS:
        for mount in MOUNTS:
            model, imu = _setup(kind, mount=mount)
            frame = vboard.ChipFrame(mount)
            for s in samples:
                assert frame.push(model, *s)
            got = _drain(imu)
            assert len(got) == len(samples), (kind, mount, got)
            for g, want in zip(got, samples):
                assert _close(g, want, GYRO_TOL[kind]), (kind, mount, g, want)


def test_mount_really_maps_chip_axes():
    # Same chip sample, two mounts: the roller frame values move and flip as the setting says.
    for kind in KINDS:
        model, imu = _setup(kind, mount="-z,x,y")
        model.push(100, 200, 300, 0, 0, 0)  # chip frame
        (ax, ay, az, _, _, _) = _drain(imu)[0]
        assert (ax, ay, az) == (-300, 100, 200), (kind, ax, ay, az)


def test_scales_one_g_and_gyro_full_scale():
    for kind in KINDS:
        model, imu = _setup(kind)
        model.push(0, 0, 1000, 500000, -500000, 0)
        model.push(0, 0, -4000, 600000, 0, 0)  # past the gyro range: the chip saturates
        a, b = _drain(imu)
        assert a[2] == 1000 and abs(a[3] - 500000) <= 30 and abs(a[4] + 500000) <= 30, (kind, a)
        # The MPU's +-4 g is 32768 LSB exactly; an LSM's 0.122 mg/LSB saturates at 3998 mg.
        if kind.startswith("mpu"):
            assert b[2] == -4000, (kind, b)
        else:
            assert -3998 <= b[2] <= -3996, (kind, b)
        top = 500278 if kind.startswith("mpu") else 573422  # 32767 LSB
        assert abs(b[3] - top) <= 30, (kind, b)
        r = model.regs
        if kind.startswith("mpu"):
            assert r[0x1C] == 0x08 and r[0x1B] == 0x08  # AFS_SEL=1 (+-4 g), FS_SEL=1 (500 dps)
            assert model.accel_lsb_per_g() == 8192 and model.gyro_fs_dps() == 500
        else:
            assert r[0x10] & 0x0C == 0x08 and r[0x11] & 0x0E == 0x04  # FS_XL=10, FS_G=01
            assert model.accel_ug_per_lsb() == 122 and model.gyro_udps_per_lsb() == 17500


def test_rates_match_what_the_chip_was_told():
    for kind, hz, want in (
        ("mpu6050", 100, 10000),
        ("mpu6500", 200, 5000),
        ("lsm6ds3", 100, 9615),
        ("lsm6dso", 200, 4807),
    ):
        model, imu = _setup(kind, imu_hz=hz)
        assert imu.period_us == want == model.period_us(), (kind, imu.period_us, model.period_us())


def test_probe_finds_each_chip_at_both_addresses():
    for kind in KINDS:
        for addr in vboard.imu_models.MODELS[kind].ADDRESSES:
            model, imu = _setup(kind, addr=addr)
            assert imu.name == kind and imu.addr == addr, (kind, hex(addr), imu.name)
            assert imu.whoami == model.WHO_AM_I_VALUE


def test_no_imu_names_bus_and_addresses():
    vboard.reset()
    e = raises(imu_mod.ImuNotFound, imu_mod.open_imu, Settings())
    msg = str(e)
    for part in ("I2C0", "scl=22", "sda=21", "0x68", "0x69", "0x6a", "0x6b", "nothing answered"):
        assert part in msg, msg


def test_unknown_chip_is_reported_and_can_be_forced():
    vboard.reset()
    model = vboard.attach_imu("mpu6050")
    model.WHO_AM_I_VALUE = 0x72  # a clone with its own ID
    model.reset()
    e = raises(imu_mod.ImuNotFound, imu_mod.open_imu, Settings())
    assert "0x68 answered WHO_AM_I 0x72" in str(e), str(e)
    s = Settings()
    s.set("imu_model", "mpu6050")
    imu = imu_mod.open_imu(s)
    model.push(0, 0, 1000, 0, 0, 0)
    assert imu.name == "mpu6050" and _drain(imu)[0][2] == 1000


def test_probe_with_forced_model_looks_only_in_its_family():
    vboard.reset()
    vboard.attach_imu("lsm6ds3")
    s = Settings()
    s.set("imu_model", "mpu6500")
    e = raises(imu_mod.ImuNotFound, imu_mod.open_imu, s)
    assert "0x6a" not in str(e) and "0x68" in str(e), str(e)


def test_one_burst_per_drain_whatever_the_sample_count():
    for kind, per_drain in (("mpu6050", 3), ("mpu6500", 3), ("lsm6ds3", 2), ("lsm6dso", 2)):
        for n in (2, 16):
            model, imu = _setup(kind)
            for _ in range(n):
                model.push(0, 0, 1000, 0, 0, 0)
            before = vboard.bus_stats(0)[0]
            assert len(_drain(imu)) == n
            assert vboard.bus_stats(0)[0] - before == per_drain, (kind, n)


def test_fifo_overflow_is_counted_and_the_data_stays_aligned():
    for kind, too_many in (("mpu6050", 90), ("mpu6500", 50), ("lsm6ds3", 700), ("lsm6dso", 260)):
        model, imu = _setup(kind)
        for i in range(too_many):
            model.push(i, 0, 1000, 0, 0, 0)
        assert imu.pending() == 0 and imu.overflows == 1, (kind, imu.overflows)
        model.push(111, 222, 333, 0, 0, 0)
        model.push(-111, -222, -333, 0, 0, 0)
        got = _drain(imu)
        assert [g[:3] for g in got] == [(111, 222, 333), (-111, -222, -333)], (kind, got)
        assert imu.overflows == 1


def test_lsm6dso_pairs_words_by_slot_in_either_order_and_across_bursts():
    model, imu = _setup("lsm6dso")
    model.gyro_first = False
    model.push(1, 2, 3, 17500, 35000, 52500)
    # A stray word (tag 0x04, timestamp) shifts the pairs: the next slot straddles two bursts.
    f = model.fifo
    for b in (0x04 << 3, 1, 2, 3, 4, 0, 0):
        f.put(b)
    model.push(4, 5, 6, 0, 0, 0)
    model.push(7, 8, 9, 0, 0, 0)
    got = []
    while imu.pending():
        got += _drain(imu)
    got += [tuple(imu.out[6 * i : 6 * i + 6]) for i in range(imu.read(1))]
    want = [(1, 2, 3, 17500, 35000, 52500), (4, 5, 6, 0, 0, 0), (7, 8, 9, 0, 0, 0)]
    assert got == want, got
    assert imu.unpaired == 0


def test_drain_is_allocation_free():
    for kind in KINDS:
        model, imu = _setup(kind)
        for _ in range(8):
            model.push(0, 0, 1000, 0, 0, 0)

        assert no_alloc(_drain_count, imu) == 8, kind


def test_unplugged_imu_raises_enodev():
    model, imu = _setup("mpu6050")
    vboard.unplug(0, 0x68)
    e = raises(OSError, imu.pending)
    assert e.errno == errno.ENODEV  # as the ESP32 port reports a NACK
