"""Battery, idle light sleep and the BLE advertising interval.

Battery: the cell's voltage through a resistor divider on an ADC pad
(`battery_adc`, `battery_divider` = cell voltage / pad voltage), read with
`ADC.read_uv()` (the ESP32 port's calibrated reading) at 11 dB attenuation,
averaged over a few samples. Integer arithmetic only: nothing allocates.

State of charge: a piecewise-linear table for one LiPo cell at rest,
3.30 V = 0 % to 4.20 V = 100 %. The points are the widely used single-cell
LiPo resting-voltage chart (RC hobby / battery vendor charts, room
temperature, about 0.2 C or less); assumptions: the cell is at rest or
lightly loaded (the roller draws tens of mA), the divider is exact, and the
curve is the same for every cell, so the figure is good to about +-10 %.
Readings while the motor runs sag; callers read between patterns.

Low battery: LOW_PCT (10 %, about 3.69 V) turns `low` on, it turns off again
only above LOW_CLEAR_PCT (15 %), so a reading that hovers does not flicker.

Idle: `Idle.update(now_ms, enc_count)` tracks the last encoder movement (or
`poke()`, e.g. a button press or console traffic); `due(now_ms)` says when the
app should light-sleep (idle_sleep_s without movement, 0 = never);
`adv_idle()` says when advertising may slow down (roller.ble.set_idle).
`light_sleep(settings, max_ms)` sets the wake sources (button: EXT0 on low;
encoder: EXT1, see `encoder_wake`), calls `machine.lightsleep` and takes the
pads back from the RTC IO mux afterwards.

What light sleep costs on the ESP32 (the app decides when it is worth it,
main.py): the pulse counter does not count while the APB clock is off, so the
one or two encoder counts whose edges wake the chip are lost (the pass that
follows is that much short: 0.3 mm at the reference 7 counts/mm); a pin
IRQ sees no edge either, so the press that woke the chip is not seen by the
button's handler (the app counts it from the wake). The BLE controller stops
too (MicroPython's ESP32 BLE build keeps IDF's default low-power clock, the
main crystal, which ESP-IDF says cannot serve Bluetooth through light sleep):
nothing is advertised while asleep, the advertising set resumes on waking,
and a connection would end by its supervision timeout -- so the app does not
sleep while a central is connected. The UART stops as well: bytes sent to
the console while asleep are lost.
"""

import time

import machine
from micropython import const

# (millivolts, percent), ascending: a single LiPo cell at rest (module docstring).
CURVE = (
    (3300, 0),
    (3610, 5),
    (3690, 10),
    (3710, 15),
    (3730, 20),
    (3750, 25),
    (3770, 30),
    (3790, 35),
    (3800, 40),
    (3820, 45),
    (3840, 50),
    (3850, 55),
    (3870, 60),
    (3910, 65),
    (3950, 70),
    (3980, 75),
    (4020, 80),
    (4080, 85),
    (4110, 90),
    (4150, 95),
    (4200, 100),
)
LOW_PCT = const(10)
LOW_CLEAR_PCT = const(15)
_SAMPLES = const(8)

# Advertising may slow down (roller.ble's idle interval) once the drum has been
# still this long, unless a central connected or disconnected this recently (a
# host that just lost the link reconnects faster at the fast interval).
ADV_ROLLING_MS = const(10000)
ADV_LINK_MS = const(30000)


_MV = tuple(p[0] for p in CURVE)
_PCT = tuple(p[1] for p in CURVE)


def percent(mv):
    """State of charge (0..100) of one LiPo cell at `mv` millivolts, from CURVE."""
    mvs = _MV
    if mv <= mvs[0]:
        return 0
    i = 1
    n = len(mvs)
    while i < n and mv > mvs[i]:
        i += 1
    if i == n:
        return 100
    p = _PCT
    return p[i - 1] + (mv - mvs[i - 1]) * (p[i] - p[i - 1]) // (mvs[i] - mvs[i - 1])


class Battery:
    """The cell voltage through machine.ADC; `mv` -1 and `pct` -1 when not fitted."""

    def __init__(self, settings):
        gpio = settings["battery_adc"]
        # Divider in thousandths: cell mV = (pad uV / 100) * div / 10000, every
        # intermediate below 2**30 (3.1 V full scale, divider up to 10).
        self.div = int(settings["battery_divider"] * 1000 + 0.5)
        self.adc = None
        if gpio >= 0:
            self.adc = machine.ADC(machine.Pin(gpio), atten=machine.ADC.ATTN_11DB)
        self.mv = -1
        self.pct = -1
        self.low = False

    def read_mv(self):
        """The cell voltage in mV now (mean of 8 readings), or -1 without a battery ADC."""
        adc = self.adc
        if adc is None:
            return -1
        total = 0
        for _ in range(_SAMPLES):
            total += adc.read_uv()
        return total // _SAMPLES // 100 * self.div // 10000

    def update(self):
        """Read the cell; sets mv, pct and low (with hysteresis); returns True when low."""
        mv = self.read_mv()
        self.mv = mv
        if mv < 0:
            self.pct = -1
            self.low = False
            return False
        pct = percent(mv)
        self.pct = pct
        if pct <= LOW_PCT:
            self.low = True
        elif pct >= LOW_CLEAR_PCT:
            self.low = False
        return self.low


class Idle:
    """When the roller last moved, and whether it is time for light sleep.

    Movement is the count leaving `jitter_counts` of where it last stopped: a
    drum resting on a quadrature edge flickers one count and is still at rest.
    """

    def __init__(self, settings, now_ms, count=0):
        self.limit_ms = settings["idle_sleep_s"] * 1000
        self.jitter = settings["jitter_counts"]
        self.count = count
        self.moved_at = now_ms

    def poke(self, now_ms):
        """Something happened (button, BLE): counts as movement."""
        self.moved_at = now_ms

    def update(self, now_ms, count):
        """Note the encoder count at now_ms; returns True when light sleep is due."""
        d = count - self.count
        if d > self.jitter or -d > self.jitter:
            self.count = count
            self.moved_at = now_ms
        return self.due(now_ms)

    def idle_ms(self, now_ms):
        return time.ticks_diff(now_ms, self.moved_at)

    def due(self, now_ms):
        """True when nothing moved for idle_sleep_s (never when that setting is 0)."""
        return self.limit_ms > 0 and time.ticks_diff(now_ms, self.moved_at) >= self.limit_ms


def adv_idle(since_move_ms, since_link_ms):
    """True when advertising may go slow: no movement and no (dis)connection lately.

    Arguments are ms since the last encoder movement and since the last
    connection or disconnection (a negative value: never).
    """
    return not (0 <= since_move_ms < ADV_ROLLING_MS or 0 <= since_link_ms < ADV_LINK_MS)


def encoder_wake(a, b):
    """The EXT1 wake for encoder pins now at levels a, b: (pins, wake when any high).

    EXT1 wakes when ANY of its pins is high or when ALL are low. Quadrature
    changes one pin per count, so: both low -> any high (1 count away);
    both high -> all low (2 counts away, either direction); one high ->
    the low one going high (1 count one way, 2 the other). Returns a tuple of
    0/1 flags for (a, b) and True for WAKEUP_ANY_HIGH, False for WAKEUP_ALL_LOW.
    """
    if a and b:
        return (1, 1), False
    if not a and not b:
        return (1, 1), True
    return (0 if a else 1, 0 if b else 1), True


def light_sleep(settings, max_ms=0):
    """Light sleep until the encoder moves, the button is pressed or max_ms (0: no limit).

    Returns machine.wake_reason() (EXT0_WAKE: the button, EXT1_WAKE: the
    encoder, TIMER_WAKE: max_ms). Without the `esp32` module no wake pin can be
    set: give max_ms there, or it sleeps for good.
    """
    wake_sources(settings)
    if max_ms > 0:
        machine.lightsleep(max_ms)
    else:
        machine.lightsleep()
    # EXT0/EXT1 moved the pads to the RTC IO mux; a mode-setting Pin init gives
    # them back to the GPIO matrix (the PCNT and the IRQs read them there).
    for key in ("button", "enc_a", "enc_b"):
        gpio = settings[key]
        if gpio >= 0:
            machine.Pin(gpio, machine.Pin.IN, machine.Pin.PULL_UP)
    return machine.wake_reason()


def wake_sources(settings):
    """Set the light-sleep wake sources; False where there is no `esp32` module.

    Button (active low): EXT0 on low. Encoder A/B: EXT1 as `encoder_wake`
    says for their levels now. ESP32 pins 0, 2, 4, 12-15, 25-27 and 32-39
    can wake the chip (RTC GPIOs); the defaults (0, 32, 33) are among them.
    """
    try:
        import esp32
    except ImportError:
        return False
    btn = settings["button"]
    if btn >= 0:
        esp32.wake_on_ext0(machine.Pin(btn), esp32.WAKEUP_ALL_LOW)
    # Pin(n) alone leaves the pad as it is (the PCNT keeps its inputs).
    pa = machine.Pin(settings["enc_a"])
    pb = machine.Pin(settings["enc_b"])
    use, any_high = encoder_wake(pa.value(), pb.value())
    pins = []
    if use[0]:
        pins.append(pa)
    if use[1]:
        pins.append(pb)
    esp32.wake_on_ext1(pins, esp32.WAKEUP_ANY_HIGH if any_high else esp32.WAKEUP_ALL_LOW)
    return True
