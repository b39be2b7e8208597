"""The ESP32 port's `esp32` module on the virtual board: the external wake sources.

`wake_on_ext0(pin, level)` and `wake_on_ext1(pins, level)` as the port's
modesp32.c has them (positional or keyword, each argument keeping its current
value when left out; `pin=None` turns EXT0 off; `pins=None` keeps the EXT1
pins, an empty list turns EXT1 off; only RTC GPIOs, else ValueError("invalid
pin")), and the levels WAKEUP_ALL_LOW (False) and WAKEUP_ANY_HIGH (True). The
configuration goes to `machine.board`, where `machine.lightsleep` looks at it.
Nothing else of the module (NVS, Partition, RMT, ULP, ...) is simulated.
"""

import machine

WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True

# ESP32 pins that can wake the chip (RTC GPIOs): modesp32.h RTC_VALID_EXT_PINS.
_RTC_PINS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)
_KEEP = object()


def _rtc_gpio(pin):
    gpio = pin if isinstance(pin, int) else pin.id
    if gpio not in _RTC_PINS:
        raise ValueError("invalid pin")
    return gpio


def wake_on_ext0(pin=_KEEP, level=_KEEP):
    """Wake from sleep when `pin` is at `level` (one pin; None: EXT0 off)."""
    b = machine.board
    if pin is None:
        b.ext0_pin = -1
    elif pin is not _KEEP:
        b.ext0_pin = _rtc_gpio(pin)
    if level is not _KEEP:
        b.ext0_level = bool(level)


def wake_on_ext1(pins=None, level=_KEEP):
    """Wake when ANY of `pins` is high (WAKEUP_ANY_HIGH) or ALL are low (WAKEUP_ALL_LOW)."""
    b = machine.board
    if pins is not None:
        b.ext1_pins = tuple(_rtc_gpio(p) for p in pins)
    if level is not _KEEP:
        b.ext1_level = bool(level)
