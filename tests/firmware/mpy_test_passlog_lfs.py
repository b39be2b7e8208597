"""Pass log on real LittleFS (the ESP32's filesystem) in RAM, with power cuts.

The unix MicroPython has VfsLfs2, the same littlefs the ESP32 port mounts.
The block device here counts erases and programs and can lose power at any
operation: that operation lands half-done (a torn program or erase), and
the exception stops the code the way a reset would. The next "boot" mounts
a copy of what the flash then holds.
"""

from array import array

import micropython
import vfs
from mpy_test_passlog import check_record, make_pass
from mpytest import HeapWatch

from roller.passlog import FIELDS, PassLog

BLOCK = 4096
BLOCKS = 40
MNT = "/flash"
ERASED = b"\xff" * BLOCK


class PowerCut(Exception):
    pass


class Flash:
    """A RAM block device for vfs.VfsLfs2 (ioctl 4: count, 5: size, 6: erase)."""

    def __init__(self, data=None):
        self.data = bytearray(data) if data is not None else bytearray(BLOCK * BLOCKS)
        self.erases = 0
        self.cut_at = -1  # mutating operations left before the power goes
        self.dead = False

    def readblocks(self, block, buf, offset=0):
        a = block * BLOCK + offset
        try:
            buf[:] = self.data[a : a + len(buf)]
        except MemoryError:  # in a GC finalizer closing a file of an old mount
            for i in range(len(buf)):
                buf[i] = self.data[a + i]

    def _mutate(self, a, data):
        if self.dead:
            return  # after the cut nothing reaches the flash
        if self.cut_at == 0:
            self.dead = True
            half = len(data) // 2
            self.data[a : a + half] = data[:half]
            raise PowerCut()
        self.cut_at -= 1
        try:
            self.data[a : a + len(data)] = data
        except MemoryError:  # in a GC finalizer closing a file of an old mount
            for i in range(len(data)):
                self.data[a + i] = data[i]

    def writeblocks(self, block, buf, offset=0):
        self._mutate(block * BLOCK + offset, buf)

    def ioctl(self, op, arg):
        if op == 4:
            return BLOCKS
        if op == 5:
            return BLOCK
        if op == 6:
            self.erases += 1
            self._mutate(arg * BLOCK, ERASED)
            return 0
        return None


def mount(flash):
    try:
        vfs.umount(MNT)
    except OSError:
        pass
    vfs.mount(vfs.VfsLfs2(flash), MNT)


def formatted():
    flash = Flash()
    vfs.VfsLfs2.mkfs(flash)
    return flash


def test_one_block_erase_per_append_on_littlefs():
    # A single 48 KiB ring file would rewrite every block after the one
    # written (up to 13 erases per record); one block per segment costs one.
    flash = formatted()
    mount(flash)
    log = PassLog(MNT + "/passlog").open()
    worst = 0
    total = 0
    for seq in range(1, 301):
        before = flash.erases
        assert log.append(make_pass(seq), 1, 0)
        worst = max(worst, flash.erases - before)
        total += flash.erases - before
    assert total <= 330 and worst <= 3, (total, worst)
    log = PassLog(MNT + "/passlog").open()
    assert log.last_seq == 300 and log.count() == 300 and not log.error
    vfs.umount(MNT)


_opened = []


def _boot():
    log = PassLog(MNT + "/passlog", 2, 8).open()
    _opened.append(log)
    return log


def _cut_every_operation(image, action, check):
    """For k = 0, 1, ...: from flash `image`, cut the power at operation k of
    `action()` (a boot and what follows), reboot and `check(log, done)`;
    until `action` completes. Returns the number of operations it took."""
    k = 0
    while True:
        flash = Flash(image)
        mount(flash)
        flash.cut_at = k
        try:
            action()
            done = True
        except PowerCut:
            done = False
        while _opened:  # close on the dead flash now, not later in a GC finalizer
            _opened.pop().close()
        mount(Flash(flash.data))
        check(_boot(), done)
        if done:
            return k
        k += 1


def _image_with(n):
    flash = formatted()
    mount(flash)
    log = _boot()
    for seq in range(1, n + 1):
        assert log.append(make_pass(seq), 1 + seq // 10, seq & 3)
    log.close()
    vfs.umount(MNT)
    return bytes(flash.data)


def test_power_cut_at_every_flash_operation_of_a_boot_and_an_append():
    n = 21  # the ring (16) has wrapped: the append overwrites the oldest

    def action():
        log = _boot()
        assert log.boot == 2
        assert log.append(make_pass(n + 1), 1 + (n + 1) // 10, (n + 1) & 3)

    def check(log, done):
        assert log.boot >= 2 and not log.error, (log.boot, log.errors)
        for seq in range(n - 14, n + 1):  # announced and still in the window
            check_record(log, seq)
        assert log.last_seq >= n
        if done or log.present(n + 1):
            check_record(log, n + 1)
        nxt = log.last_seq + 1
        assert log.append(make_pass(nxt), 1, 0)
        out = array("i", bytes(4 * FIELDS))
        assert log.read(nxt, out) and out[0] == nxt

    ops = _cut_every_operation(_image_with(n), action, check)
    assert ops >= 5, ops  # boot and append reach the flash in several steps


def test_power_cut_at_every_flash_operation_of_a_delete():
    n = 12

    def action():
        assert _boot().delete(7) == 7

    def check(log, done):
        assert log.watermark in (0, 7) and (log.watermark == 7 or not done)
        assert list(log.seqs()) == list(range(log.watermark + 1, n + 1))
        assert log.last_seq == n and not log.error

    ops = _cut_every_operation(_image_with(n), action, check)
    assert ops >= 5, ops


def test_append_allocates_nothing_on_littlefs():
    # Only with a block device that allocates nothing itself (the ESP32's
    # esp32.Partition is C); this one copies byte by byte, in native code so
    # that its own frames do not come from the heap.
    class QuietFlash(Flash):
        @micropython.native
        def readblocks(self, block, buf, offset=0):
            a = block * BLOCK + offset
            d = self.data
            for i in range(len(buf)):
                buf[i] = d[a + i]

        @micropython.native
        def writeblocks(self, block, buf, offset=0):
            a = block * BLOCK + offset
            d = self.data
            for i in range(len(buf)):
                d[a + i] = buf[i]

        @micropython.native
        def ioctl(self, op, arg):
            if op == 6:
                d = self.data
                for i in range(arg * BLOCK, (arg + 1) * BLOCK):
                    d[i] = 0xFF
                return 0
            return BLOCKS if op == 4 else BLOCK if op == 5 else None

    flash = QuietFlash()
    vfs.VfsLfs2.mkfs(flash)
    mount(flash)
    log = PassLog(MNT + "/passlog").open()
    p = make_pass(1)
    assert log.append(p, 1, 0)  # opens the segment file
    watch = HeapWatch()
    for seq in range(2, 6):
        p[0] = seq
        watch.start()
        ok = log.append(p, 1, 0)
        watch.stop()
        assert ok
    assert watch.used() == 0, watch.used()
    vfs.umount(MNT)
