"""The virtual board's control surface: how tests (and later the board runner) play the world.

The firmware never imports this module; it only sees the simulated
`machine`. Here the outside world is set up and moved:

    import vboard
    vboard.reset()                              # fresh board; drum on GPIO 32/33 at 0
    imu = vboard.attach_imu("lsm6dso", bus=0)   # register model at its first address
    frame = vboard.ChipFrame("x,-z,y")          # the mounting the firmware is told about
    frame.push(imu, 0, 0, 1000, 0, 0, 0)        # one roller-frame sample, into the chip
    vboard.set_drum(120)                        # roll: A/B edges, PCNT counts, pin IRQs
    vboard.unplug(0, 0x6A)                      # the IMU stops answering (OSError ENODEV)

Everything called per sample (set_drum, ChipFrame.push, the models' push)
is allocation-free, so a whole simulated session can run under
`micropython.heap_lock()` together with the firmware.
"""

import time
from array import array

import imu_models
import machine

board = machine.board

# (A << 1) | B at drum positions 0, 1, 2, 3 (mod 4): A leads B when rolling forward,
# which is the direction the ESP32 port's 4x PCNT Encoder counts up.
GRAY = (0, 2, 3, 1)


def reset(enc_a=32, enc_b=33):
    """A fresh board: no devices, IRQs run at once, drum at 0 driving GPIO enc_a/enc_b."""
    board.reset()
    board.drum = 0
    board.enc_a = enc_a
    board.enc_b = enc_b
    board.pin(enc_a)._drive(0)
    board.pin(enc_b)._drive(0)


def attach(bus, addr, model):
    """Connect a register model (anything with read(reg, buf)/write(reg, buf)) at addr."""
    b = board.bus(bus)
    b.devices[addr] = model
    b.unplugged.discard(addr)
    return model


def attach_imu(kind, bus=0, addr=None):
    """Attach a new IMU model ("mpu6050", "mpu6500", "lsm6ds3", "lsm6dso"); returns it."""
    cls = imu_models.MODELS[kind]
    return attach(bus, cls.ADDRESSES[0] if addr is None else addr, cls())


def detach(bus, addr):
    board.bus(bus).devices.pop(addr, None)


def unplug(bus, addr):
    """The device at addr stops acknowledging (a loose wire); its state is kept."""
    board.bus(bus).unplugged.add(addr)


def plug(bus, addr, power_cycle=True):
    """The device answers again; with power_cycle it comes back in its reset state."""
    b = board.bus(bus)
    b.unplugged.discard(addr)
    dev = b.devices.get(addr)
    if power_cycle and dev is not None and hasattr(dev, "reset"):
        dev.reset()


def set_adc(gpio, uv):
    """Put `uv` microvolts on an ADC pad (the battery divider's output, say)."""
    board.adc_uv[gpio] = uv


def glitch(gpio, width_ns):
    """A noise pulse on a pad; returns the edges a pulse counter counted (0 if filtered)."""
    return board.pin(gpio)._glitch(width_ns)


def bus_stats(bus):
    """(transactions, bytes on the wire) so far on an I2C bus."""
    b = board.bus(bus)
    return b.transactions, b.bytes


def set_drum(count):
    """Roll the drum to `count` quadrature counts, one A/B step (one edge) at a time."""
    d = board.drum
    a = board.pin(board.enc_a)
    b = board.pin(board.enc_b)
    while d != count:
        d += 1 if count > d else -1
        s = GRAY[d & 3]
        a._drive(s >> 1)  # only one of the two changes per step
        b._drive(s & 1)
        board.drum = d  # per step: a KeyboardInterrupt (console Ctrl-C) leaves it consistent


def drum():
    """The drum's position in quadrature counts."""
    return board.drum


def drive(gpio, level):
    """Drive an input pad from outside: 0, 1, or -1 to leave it floating."""
    board.pin(gpio)._drive(level)


def defer_irqs(on=True):
    """Hold soft IRQ handlers in the 8-entry queue until run_irqs() (a busy VM)."""
    board.defer = on
    if not on:
        board.run_scheduled()


def run_irqs():
    """Run the queued IRQ handlers; each reads the pins as they are now."""
    board.run_scheduled()


def dropped_irqs():
    """Edges whose handler was dropped because the schedule queue was full."""
    return board.dropped_irqs


def parse_mount(text):
    """'x,-z,y' -> ((0, 1), (2, -1), (1, 1)), as roller.settings.parse_mount (checked in tests).

    The board's own copy: the world's mounting is physics, and the flash
    directory need not hold the firmware's `roller` package.
    """
    out = []
    for p in text.split(","):
        p = p.strip()
        sign = -1 if p[:1] == "-" else 1
        out.append(("xyz".index(p.lstrip("+-")), sign))
    if len(out) != 3 or len({a for a, _ in out}) != 3:
        raise ValueError("mount: want three different chip axes like 'x,-z,y', got %r" % text)
    return tuple(out)


def _pick(k, x, y, z):
    if k == 0:
        return x
    if k == 1:
        return y
    return z


class ChipFrame:
    """Turns roller-frame samples into the chip frame of a mounting setting, and pushes them."""

    def __init__(self, mount):
        axes = parse_mount(mount)  # roller axis k = sign * chip axis i
        k = [0, 0, 0]
        s = [1, 1, 1]
        for roller_axis in range(3):
            chip_axis, sign = axes[roller_axis]
            k[chip_axis] = roller_axis
            s[chip_axis] = sign
        self.k0, self.k1, self.k2 = k
        self.s0, self.s1, self.s2 = s

    def to_chip(self, x, y, z):
        """One roller-frame vector in chip axes, as a tuple (allocates; for tests)."""
        return (
            self.s0 * _pick(self.k0, x, y, z),
            self.s1 * _pick(self.k1, x, y, z),
            self.s2 * _pick(self.k2, x, y, z),
        )

    def push(self, model, ax, ay, az, gx=0, gy=0, gz=0):
        """Push one roller-frame sample (milli-g, milli-dps) into `model`; what push() returns."""
        k0 = self.k0
        k1 = self.k1
        k2 = self.k2
        s0 = self.s0
        s1 = self.s1
        s2 = self.s2
        return model.push(
            s0 * _pick(k0, ax, ay, az),
            s1 * _pick(k1, ax, ay, az),
            s2 * _pick(k2, ax, ay, az),
            s0 * _pick(k0, gx, gy, gz),
            s1 * _pick(k1, gx, gy, gz),
            s2 * _pick(k2, gx, gy, gz),
        )


if not hasattr(board, "drum"):
    reset()


# One row of a world file: t_ms, enc, ax, ay, az, gx, gy, gz, button (int32 little-endian).
ROW = 9
_CHUNK = 256  # rows read at a time
_IMU_CATCH_UP = 700  # most samples pushed at once after a long gap (more than any FIFO holds)


class World:
    """The motion model's script played on the board, following the virtual clock lazily.

    `cfg` is the board runner's configuration (a dict from JSON):

    - trace: path of the rendered session (rows of ROW int32: t_ms, drum counts,
      roller-frame accel mg, gyro mdps, zone presses); start_ms: the world time
      of the trace's t = 0; the drum and the IMU hold the first row before it
      and the last row after it;
    - imu: {kind, bus, addr, mount}: the chip attached, and how it is mounted;
    - button: {gpio, presses: [[down_ms, up_ms], ...]} in world time; the pad
      has a pull-up and is pulled low while pressed;
    - faults: [[t_ms, kind, args...], ...] in world time (see `_event`; a
      `tear` fault also wraps the files opened for writing: device/torn.py);
    - battery: {gpio, uv} a constant pad voltage;
    - heartbeat_ms: how often the world time is reported on `ctl`.

    World time (us) = virtual time (time.ticks_us) - `off`: it goes on across
    resets, which each start a new interpreter (t0_us: world time at boot).

    advance(now) runs on every encoder or I2C read (machine.board.sync) and
    pushes the IMU samples that fell due at the chip's own rate, then rolls
    the drum to the row current at `now`; on_time(now) runs at the world's
    events (button edges, faults, heartbeat, trace rows).
    """

    def __init__(self, cfg, t0_us, ctl=None):
        self.ctl = ctl
        off = time.boot_us() - t0_us
        self.off = off
        board.world_off = off
        board.world = self
        imu = cfg.get("imu")
        self.model = None
        if imu:
            self.model = attach_imu(imu["kind"], imu.get("bus", 0), imu.get("addr"))
            self.frame = ChipFrame(imu.get("mount", "x,y,z"))
            self.bus = imu.get("bus", 0)
            self.addr = self.model.ADDRESSES[0] if imu.get("addr") is None else imu["addr"]
        bat = cfg.get("battery")
        if bat:
            set_adc(bat["gpio"], bat["uv"])
        # Events in virtual us, in time order: (time, kind, args).
        ev = []
        btn = cfg.get("button")
        self.button = -1
        if btn:
            self.button = btn["gpio"]
            drive(self.button, 1)
            for down, up in btn.get("presses", ()):
                ev.append((down * 1000 + off, "btn", 0))
                ev.append((up * 1000 + off, "btn", 1))
        for f in cfg.get("faults", ()):
            ev.append((f[0] * 1000 + off, f[1], f[2:]))
        now = time.ticks_us()
        ev = [e for e in ev if e[0] >= now]
        ev.sort(key=lambda e: e[0])
        if any(e[1] == "tear" for e in ev):
            import torn  # only then: it wraps every file opened for writing

            torn.install()
        self.events = ev
        self.ev_i = 0
        self.beat_us = cfg.get("heartbeat_ms", 250) * 1000
        self.next_beat = now + self.beat_us
        self.noise_end = -1
        self.noise = None
        self.log = []
        # The trace.
        self.f = None
        self.rows = 0
        tr = cfg.get("trace")
        self.cur = array("i", bytes(4 * ROW))
        self.start_us = cfg.get("start_ms", 0) * 1000 + off
        self.row_next = -1  # virtual us when the next row starts (-1: no more rows)
        if tr:
            self.f = open(tr, "rb")  # noqa: SIM115 - read as virtual time goes on
            self.f.seek(0, 2)
            self.rows = self.f.tell() // (4 * ROW)
            self.f.seek(0)
            self.buf = array("i", bytes(4 * ROW * _CHUNK))
            self.base = 0  # row index of buf[0]
            self.have = 0  # rows in buf
            self.i = -1  # current row
            self._load(0)
            self._next_row()
        self.enc0 = self.cur[1]
        self.imu_next = now
        self.pushed = 0
        self.due_us = -1
        self._set_due()
        self.advance(now)
        board.reschedule()

    # --- the trace ---

    def _load(self, first):
        self.f.seek(4 * ROW * first)
        n = self.f.readinto(self.buf)
        self.base = first
        self.have = (n or 0) // (4 * ROW)

    def _next_row(self):
        """Make the next row current; set row_next to when the one after it starts."""
        i = self.i + 1
        if i >= self.rows:
            self.row_next = -1
            return
        k = i - self.base
        if k >= self.have:
            self._load(i)
            k = 0
        b = self.buf
        j = k * ROW
        c = self.cur
        for q in range(ROW):
            c[q] = b[j + q]
        self.i = i
        if i + 1 >= self.rows:
            self.row_next = -1
            return
        k += 1
        if k >= self.have:
            self._load(i)  # the current row goes to buf[0], the next one after it
            k = 1
            if k >= self.have:
                self.row_next = -1
                return
        self.row_next = self.start_us + b[k * ROW] * 1000

    def _seek(self, v):
        while self.row_next >= 0 and self.row_next <= v:
            self._next_row()

    # --- the clock ---

    def advance(self, v):
        """The world at virtual time v (us): IMU samples due so far, then the drum."""
        m = self.model
        if m is not None:
            p = m.period_us()
            if p <= 0:
                self.imu_next = v + 1000
            else:
                if v - self.imu_next > p * _IMU_CATCH_UP:
                    self.imu_next = v - p * _IMU_CATCH_UP
                c = self.cur
                fr = self.frame
                while self.imu_next <= v:
                    self._seek(self.imu_next)
                    fr.push(m, c[2], c[3], c[4], c[5], c[6], c[7])
                    self.pushed += 1
                    self.imu_next += p
        self._seek(v)
        d = self.cur[1] - self.enc0
        if d != board.drum:
            set_drum(d)

    def _set_due(self):
        d = self.next_beat
        if self.ev_i < len(self.events):
            e = self.events[self.ev_i][0]
            if e < d:
                d = e
        if self.noise_end >= 0 and self.noise_next < d:
            d = self.noise_next
        r = self.row_next
        if r >= 0 and r < d:
            d = r
        self.due_us = d

    def on_time(self, v):
        self.advance(v)
        ev = self.events
        while self.ev_i < len(ev) and ev[self.ev_i][0] <= v:
            e = ev[self.ev_i]
            self.ev_i += 1
            self._event(e[0], e[1], e[2])
        if self.noise_end >= 0:
            self._noise(v)
        if v >= self.next_beat:
            self.next_beat = v + self.beat_us
            if self.ctl is not None:
                self.ctl.write("T %d\n" % (v - self.off))
        self._set_due()

    def report(self, text):
        """A line for the board runner's fault log ("F <world_ms> text")."""
        line = "F %d %s\n" % ((time.ticks_us() - self.off) // 1000, text)
        self.log.append(line)
        if self.ctl is not None:
            self.ctl.write(line)

    def _event(self, t, kind, args):
        if kind == "btn":
            drive(self.button, args)
        elif kind == "cut":
            # Power cut: the world stops here; the runner kills the interpreter.
            machine.request("C", "cut")
        elif kind == "tear":
            # Power cut in the middle of the next flash write: args[0] bytes of it land.
            import torn

            torn.arm(args[0], self.report)
        elif kind == "unplug":
            unplug(self.bus, self.addr)
            self.report("unplug imu 0x%02x" % self.addr)
            if args and args[0] > 0:
                self._insert(t + args[0] * 1000, "plug", ())
        elif kind == "plug":
            plug(self.bus, self.addr)
            self.report("plug imu 0x%02x" % self.addr)
        elif kind == "noise":
            # args: duration ms, glitches per ms, shortest and longest pulse ns
            self.noise_end = t + args[0] * 1000
            self.noise_next = t
            self.noise = [args[1], args[2], args[3], 0, 0, 0, 12345]
            self.report("noise start %d ms" % args[0])

    def _insert(self, t, kind, args):
        ev = self.events
        i = self.ev_i
        while i < len(ev) and ev[i][0] <= t:
            i += 1
        ev.insert(i, (t, kind, args))

    def _noise(self, v):
        n = self.noise
        a = board.enc_a
        b = board.enc_b
        while self.noise_next <= v and self.noise_next < self.noise_end:
            for _ in range(n[0]):
                n[6] = (n[6] * 1103515245 + 12345) & 0x7FFFFFFF
                r = n[6]
                width = n[1] + (r >> 8) % (n[2] - n[1] + 1)
                counted = glitch(a if r & 1 else b, width)
                n[3] += 1
                if counted:
                    n[4] += 1
                else:
                    n[5] += 1
            self.noise_next += 1000
        if v >= self.noise_end:
            self.noise_end = -1
            self.report("noise end glitches %d counted %d filtered %d" % (n[3], n[4], n[5]))
