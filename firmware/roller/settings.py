"""Device settings: defaults, type and range checks, and the JSON file on flash.

A bad or missing file never stops the device: it falls back to the defaults
and records why in `errors`; keys it does not know are listed in `unknown`.
"""

import json
import math
import os

# Numeric settings, key: (default, low, high). The type of the default is the
# type of the setting (a float setting also takes an int).
NUMBERS = {
    # Drum and encoder (hardware/ documents the reference build).
    "counts_per_rev": (400, 4, 100000),
    "drum_diameter_mm": (18.0, 5.0, 60.0),
    "counts_per_mm": (0.0, 0.0, 200.0),  # 0: derive from the two above
    # Pass detection (DESIGN.md section 5).
    "min_pass_mm": (10.0, 1.0, 200.0),
    "reverse_mm": (1.5, 0.1, 50.0),
    "pause_ms": (400, 50, 10000),
    "vertical_max_deg": (30.0, 0.0, 90.0),
    "horizontal_min_deg": (60.0, 0.0, 90.0),
    "jitter_counts": (1, 0, 100),
    "gravity_tau_ms": (300, 200, 500),
    # Guidance targets per zone and direction.
    "target_min": (4, 1, 50),
    "target_max": (5, 1, 50),
    # Sampling.
    "sample_hz": (200, 50, 1000),
    "imu_hz": (100, 25, 1000),
    "imu_drain_ms": (80, 20, 250),
    # Pins of the reference ESP32 build (hardware/ has the pin map).
    "i2c_id": (0, 0, 1),
    "i2c_sda": (21, 0, 48),
    "i2c_scl": (22, 0, 48),
    "i2c_freq": (400000, 100000, 1000000),
    "enc_id": (0, 0, 7),
    "enc_a": (32, 0, 48),
    "enc_b": (33, 0, 48),
    "enc_filter_ns": (1000, 0, 12800),
    "button": (0, 0, 48),  # the zone button, active low (GPIO0 is the dev boards' BOOT button)
    # Feedback and power; a pin of -1 means the part is not fitted.
    "led": (2, -1, 48),
    "motor": (25, -1, 48),
    "battery_adc": (34, -1, 48),
    "battery_divider": (2.0, 1.0, 10.0),  # battery voltage / ADC pin voltage
    "idle_sleep_s": (300, 0, 3600),  # no movement this long: light sleep (0: never)
    "pairing_window_s": (60, 10, 600),  # how long a long press lets a new host bond
}

# Text settings, key: (default, choices); choices None means a check of its own.
TEXTS = {
    "imu_model": ("auto", ("auto", "mpu6050", "mpu6500", "lsm6ds3", "lsm6dso")),
    # Chip axes to roller frame: three signed chip axes giving roller x, y, z.
    "mount": ("x,y,z", None),
}

FILE = "settings.json"


def parse_mount(text):
    """'x,-z,y' -> ((0, 1), (2, -1), (1, 1)): chip axis index and sign per roller axis."""
    parts = text.split(",")
    if len(parts) != 3:
        raise ValueError("mount: want three comma-separated axes like 'x,-z,y', got %r" % text)
    out = []
    seen = 0
    for p in parts:
        p = p.strip()
        sign = 1
        if p[:1] in ("-", "+"):
            sign = -1 if p[0] == "-" else 1
            p = p[1:]
        if p not in ("x", "y", "z"):
            raise ValueError("mount: %r is not a chip axis (x, y or z, optionally signed)" % p)
        i = "xyz".index(p)
        if seen & (1 << i):
            raise ValueError("mount: chip axis %s used twice in %r" % (p, text))
        seen |= 1 << i
        out.append((i, sign))
    return tuple(out)


def check(key, value):
    """Return `value` as the setting's type, or raise ValueError saying what is wrong."""
    text = TEXTS.get(key)
    if text is not None:
        if not isinstance(value, str):
            raise ValueError("%s: want text, got %r" % (key, value))
        choices = text[1]
        if choices is None:
            parse_mount(value)
        elif value not in choices:
            raise ValueError("%s: %r is not one of %s" % (key, value, ", ".join(choices)))
        return value
    spec = NUMBERS.get(key)
    if spec is None:
        raise ValueError("unknown setting %r" % key)
    default = spec[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("%s: want a number, got %r" % (key, value))
    if isinstance(default, int) and not isinstance(value, int):
        if value != int(value):
            raise ValueError("%s: want a whole number, got %r" % (key, value))
        value = int(value)
    if isinstance(default, float):
        value = float(value)
        if value != value or value in (math.inf, -math.inf):
            raise ValueError("%s: want a finite number, got %r" % (key, value))
    if value < spec[1] or value > spec[2]:
        raise ValueError("%s: %r is outside %r..%r" % (key, value, spec[1], spec[2]))
    return value


def parse(key, text):
    """Convert a command-line string to the setting's type and check it."""
    if key in TEXTS or key not in NUMBERS:
        return check(key, text)
    try:
        return check(key, int(text))
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise ValueError("%s: %r is not a number" % (key, text)) from None
    return check(key, number)


class Settings:
    """The current settings, starting from the defaults."""

    def __init__(self):
        self.values = {}  # type: dict
        for table in (NUMBERS, TEXTS):
            for key in table:
                self.values[key] = table[key][0]
        self.errors = []
        self.unknown = []

    def __getitem__(self, key):
        return self.values[key]

    def set(self, key, value):
        """Check and store one setting; raises ValueError and keeps the old value if bad."""
        self.update({key: value})

    def update(self, changes):
        """Check and store several settings at once: all of them, or none and a ValueError.

        Limits that depend on each other (vertical/horizontal angles, targets)
        are checked after all the changes, so their order does not matter.
        """
        new = {}
        for key in changes:
            new[key] = check(key, changes[key])
        old = self.values
        self.values = dict(old)
        self.values.update(new)
        problem = self._cross_problem()
        if problem:
            self.values = old
            raise ValueError(problem)

    def _cross_problem(self):
        v = self.values
        if v["horizontal_min_deg"] < v["vertical_max_deg"]:
            return "horizontal_min_deg (%r) is below vertical_max_deg (%r)" % (
                v["horizontal_min_deg"],
                v["vertical_max_deg"],
            )
        if v["target_max"] < v["target_min"]:
            return "target_max (%r) is below target_min (%r)" % (v["target_max"], v["target_min"])
        return None

    @property
    def error(self):
        """True when the file or one of its values was rejected."""
        return bool(self.errors)

    def load(self, path=FILE):
        """Merge the JSON file at `path` over the defaults; never raises."""
        try:
            with open(path) as f:
                data = json.load(f)
        except OSError:
            return self  # no file yet: defaults, and that is not an error
        except ValueError as e:
            self.errors.append("%s: not valid JSON (%s)" % (path, e))
            return self
        if not isinstance(data, dict):
            self.errors.append("%s: want a JSON object" % path)
            return self
        for key in data:
            if key not in NUMBERS and key not in TEXTS:
                self.unknown.append(key)
                continue
            try:
                self.values[key] = check(key, data[key])
            except ValueError as e:
                self.errors.append("%s: %s" % (path, e))
        problem = self._cross_problem()
        if problem:
            self.errors.append("%s: %s; using the defaults for both" % (path, problem))
            for key in ("horizontal_min_deg", "vertical_max_deg", "target_min", "target_max"):
                self.values[key] = NUMBERS[key][0]
        return self

    def save(self, path=FILE):
        """Write all values atomically: a power cut leaves the old or the new file."""
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.values, f)
        os.rename(tmp, path)

    def counts_per_mm(self):
        """Encoder counts per millimetre of skin travel."""
        cpm = self.values["counts_per_mm"]
        if cpm > 0:
            return cpm
        return self.values["counts_per_rev"] / (math.pi * self.values["drum_diameter_mm"])
