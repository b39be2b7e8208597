"""Cost of the pass log in unix MicroPython: append per record, boot scan, flash work.

    python bench/passlog/bench_passlog.py [--quick]

Run with CPython it starts itself in the `micropython` interpreter (next to
this Python, or on PATH) with the firmware on MICROPYPATH; results are
recorded in bench/passlog/README.md.

What is timed (medians of repeated runs; ratios to an empty loop iteration
of the same run carry over between machines):

- pack + CRC of one record, heap locked (the allocation-free part);
- append with the file replaced by a Python stub, heap locked: its CPU cost;
- append on this machine's filesystem under /tmp (seek + write + flush, and
  flush is an fsync on the unix port);
- append on LittleFS: the unix port's VfsLfs2 (the littlefs the ESP32 runs)
  on a RAM block device that counts erases and programmed bytes; also a
  single ring file of the same size written the same way, to show why the
  ring is split into one-block segments;
- boot scan (`PassLog.open`) of the default ring (16 x 128 = 2048 records),
  full and empty, on both filesystems.

The RAM block device is Python code, so LittleFS times here are mostly its
overhead; on an ESP32 the flash itself dominates (see the README).
"""

import sys

if sys.implementation.name != "micropython":
    import os
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    exe = Path(sys.executable).with_name("micropython")
    exe = str(exe) if exe.exists() else shutil.which("micropython")
    if exe is None:
        sys.exit("bench_passlog: the `micropython` interpreter is not installed")
    env = dict(os.environ)
    paths = [root / "firmware", root / "protocol", root / "tests" / "mpy_lib"]
    env["MICROPYPATH"] = os.pathsep.join(str(p) for p in paths)
    # 3 MiB of RAM flash plus the log needs more than the default heap.
    cmd = [exe, "-X", "heapsize=16M", __file__] + sys.argv[1:]
    sys.exit(subprocess.call(cmd, env=env, cwd=str(root)))

import gc  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from array import array  # noqa: E402

import micropython  # noqa: E402
import vfs  # noqa: E402
from mpytest import rmtree  # noqa: E402

from roller import passlog  # noqa: E402
from roller.passlog import RECORD_SIZE, PassLog  # noqa: E402

QUICK = "--quick" in sys.argv
RUNS = 3 if QUICK else 9
APPENDS = 200 if QUICK else 2000  # records per timed append run
LFS_APPENDS = 100 if QUICK else 600
BLOCK = 4096
BLOCKS = 256  # 1 MiB of flash, about the ESP32's 2 MiB vfs partition scaled down
MNT = "/bench_flash"


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def empty_loop_us():
    n = 100000

    def run():
        for _ in range(n):
            pass

    out = []
    for _ in range(RUNS):
        t0 = time.ticks_us()
        run()
        out.append(time.ticks_diff(time.ticks_us(), t0) / n)
    return median(out)


class Flash:
    """RAM block device for VfsLfs2 counting erases and programmed bytes."""

    def __init__(self):
        self.data = bytearray(BLOCK * BLOCKS)
        self.erased = b"\xff" * BLOCK
        self.erases = 0
        self.programmed = 0

    def readblocks(self, block, buf, offset=0):
        a = block * BLOCK + offset
        buf[:] = self.data[a : a + len(buf)]

    def writeblocks(self, block, buf, offset=0):
        a = block * BLOCK + offset
        self.data[a : a + len(buf)] = buf
        self.programmed += len(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return BLOCKS
        if op == 5:
            return BLOCK
        if op == 6:
            self.erases += 1
            self.data[arg * BLOCK : (arg + 1) * BLOCK] = self.erased
            return 0
        return None


def bench_pack():
    rec = bytearray(RECORD_SIZE)
    p = array("i", [1, 3, 1, 100000, 100450, 321])
    n = APPENDS * 10

    def run():
        for _ in range(n):
            passlog._pack(rec, p, 7, 2, 0)

    out = []
    for _ in range(RUNS):
        gc.collect()
        micropython.heap_lock()
        try:
            t0 = time.ticks_us()
            run()
            dt = time.ticks_diff(time.ticks_us(), t0)
        finally:
            micropython.heap_unlock()
        out.append(dt / n)
    return median(out)


class NullFile:
    """Stands in for the segment file: what append costs besides the I/O."""

    def seek(self, pos):
        return pos

    def write(self, buf):
        return len(buf)

    def flush(self):
        pass


def bench_append_cpu(path):
    log = PassLog(path, 1, passlog.SEGMENTS * passlog.PER_SEGMENT).open()
    log._f = NullFile()
    log._seg = 0
    out = []
    p = array("i", [0, 3, 1, 100000, 100450, 321])
    for _ in range(RUNS):
        gc.collect()
        micropython.heap_lock()
        try:
            t0 = time.ticks_us()
            for _ in range(APPENDS):
                p[0] = log.last_seq + 1
                log.append(p, 7, 0)
            dt = time.ticks_diff(time.ticks_us(), t0)
        finally:
            micropython.heap_unlock()
        out.append(dt / APPENDS)
    log._f = None
    return median(out)


def timed_appends(log, n):
    """Median µs per append over RUNS runs of n appends each (seqs go on)."""
    p = array("i", [0, 3, 1, 100000, 100450, 321])
    out = []
    for _ in range(RUNS):
        gc.collect()
        t0 = time.ticks_us()
        for _ in range(n):
            p[0] = log.last_seq + 1
            log.append(p, 7, 0)
        out.append(time.ticks_diff(time.ticks_us(), t0) / n)
    return median(out)


def timed_open(path):
    out = []
    log = None
    for _ in range(RUNS):
        if log is not None:
            log.close()
        gc.collect()
        t0 = time.ticks_us()
        log = PassLog(path).open()
        out.append(time.ticks_diff(time.ticks_us(), t0))
    log.close()
    return median(out), log


def bench_posix():
    path = "/tmp/dermaroll-bench-passlog-%08x" % int.from_bytes(os.urandom(4), "little")
    empty_open, log = timed_open(path)
    append = timed_appends(PassLog(path).open(), APPENDS)
    log = PassLog(path).open()
    while log.count() < log.capacity:  # fill the ring for the full-boot scan
        timed_appends(log, log.capacity)
    log.close()
    full_open, log = timed_open(path)
    rmtree(path)
    return append, empty_open, full_open, log.capacity


def bench_littlefs():
    flash = Flash()
    vfs.VfsLfs2.mkfs(flash)
    vfs.mount(vfs.VfsLfs2(flash), MNT)
    empty_open, log = timed_open(MNT + "/passlog")
    log = PassLog(MNT + "/passlog").open()
    timed_appends(log, 10)  # segment file open
    e0, b0 = flash.erases, flash.programmed
    t = timed_appends(log, LFS_APPENDS)
    n = RUNS * LFS_APPENDS
    res = {
        "append": t,
        "erases": (flash.erases - e0) / n,
        "bytes": (flash.programmed - b0) / n,
        "empty_open": empty_open,
    }
    while log.count() < log.capacity:
        timed_appends(log, log.capacity)
    log.close()
    res["full_open"], log = timed_open(MNT + "/passlog")

    # The same ring as one preallocated file, each record written in place.
    size = log.capacity * RECORD_SIZE
    with open(MNT + "/ring", "wb") as f:
        f.write(bytes(size))
    rec = bytearray(RECORD_SIZE)
    worst = 0
    e0, b0 = flash.erases, flash.programmed
    k = 64
    with open(MNT + "/ring", "r+b") as f:
        for i in range(k):
            e = flash.erases
            f.seek((i * 97 % log.capacity) * RECORD_SIZE)  # slots all over the file
            f.write(rec)
            f.flush()
            worst = max(worst, flash.erases - e)
    res["one_file_erases"] = (flash.erases - e0) / k
    res["one_file_bytes"] = (flash.programmed - b0) / k
    res["one_file_worst"] = worst
    vfs.umount(MNT)
    return res


def main():
    loop = empty_loop_us()
    pack = bench_pack()
    append, empty_open, full_open, cap = bench_posix()
    cpu_path = "/tmp/dermaroll-bench-passlog-cpu-%08x" % int.from_bytes(os.urandom(4), "little")
    append_cpu = bench_append_cpu(cpu_path)
    rmtree(cpu_path)
    lfs = bench_littlefs()
    print("runs: %d (median), %s" % (RUNS, "quick" if QUICK else "full"))
    print("empty loop iteration      : %8.3f us" % loop)
    print("pack + CRC, heap locked   : %8.3f us  (%5.1f x loop)" % (pack, pack / loop))
    print(
        "append, I/O stubbed       : %8.3f us  (%5.1f x loop, heap locked)"
        % (append_cpu, append_cpu / loop)
    )
    print(
        "append, /tmp (fsync)      : %8.2f us  (%5.0f x loop, %d per run)"
        % (append, append / loop, APPENDS)
    )
    print(
        "append, LittleFS RAM      : %8.2f us  (%5.0f x loop; Python block device)"
        % (lfs["append"], lfs["append"] / loop)
    )
    print(
        "  flash work per append   : %8.3f erases of 4 KiB, %6.0f bytes programmed"
        % (lfs["erases"], lfs["bytes"])
    )
    one = (lfs["one_file_erases"], lfs["one_file_worst"], lfs["one_file_bytes"])
    print("  one ring file instead   : %8.3f erases (worst %d), %6.0f bytes programmed" % one)
    for name, empty, full in (
        ("/tmp", empty_open, full_open),
        ("LittleFS RAM", lfs["empty_open"], lfs["full_open"]),
    ):
        print(
            "boot scan %-13s : %8.0f us full (%5.2f us/slot, %5.0f x loop/slot), "
            "%8.0f us empty" % (name, full, full / cap, full / cap / loop, empty)
        )


main()
