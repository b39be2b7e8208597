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

import imu_models
import machine

from roller.settings import parse_mount

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
    board.drum = d


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
