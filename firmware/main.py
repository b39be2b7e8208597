"""dermaroll application: wiring only, one job per module.

Settings from settings.json (errors printed), safe mode (roller.supervisor:
main.py returns at once, leaving the REPL), the drum encoder and the IMU
through roller.drivers, the Sampler feeding the Detector and the Session,
the pass log (roller.passlog) and the session put back from it
(roller.recovery), the control point (roller.control, roller.records) on BLE
(roller.ble, skipped with a console line when the radio cannot start) and on
the serial link (roller.serial_link), feedback patterns and the battery.

Two asyncio tasks under roller.supervisor (crash file, restart with backoff,
the watchdog fed while both tick): `sample` ticks the sampler on time and
applies zone presses (it never touches flash); `serve` is the app loop: each pass popped
from the session queue is appended to the pass log first, then printed,
announced as a PassRecord on BLE and on the serial link, and given its
feedback pattern; it also runs the control point, BLE, the serial link, the
long presses (pairing window, forget bonds), the battery and Status (error
bits of SPEC 5.3, with the ERROR pattern while the IMU is missing), and idle
(App.rest): advertising slows down once the drum is still (roller.power), and
after idle_sleep_s without movement the chip light-sleeps until the drum turns
or the button is pressed -- but never while a central is connected (light
sleep stops the BLE controller: the link would time out), a pass waits to be
logged or announced, a feedback pattern plays, the button is held or the
pairing window is open. Bytes on the console count as movement. After a
sleep the sampler's clock starts again with a new SESSION line, so the time
asleep is neither missed ticks nor a stroke.

Console lines (host tools parse them; keep them exactly):

    dermaroll fw VERSION imu NAME|none encoder KIND button GPIO
    SESSION ticks_ms          the ticks_ms value the pass times count from
    PASS seq zone direction t_start_ms t_end_ms length_mm
    ZONE name                 when the zone changes
    STAT key=value ...        every 60 s: the sampler's counters, log_errors, unannounced
    PAIRING open SECONDS      a long press (3-9.9 s) opened the pairing window
    PAIRING closed            it closed (timed out, or a host bonded)
    BONDS forgotten           a very long press (10 s or more) dropped every bond
    MEM free N alloc N        the heap once everything is set up (gc.mem_free/mem_alloc)
    SLEEP seconds             light sleep after that many seconds without movement
    WAKE button|encoder|timer what woke it (a SESSION line follows)

(pass times in ms since the SESSION line, zone and direction by name, length
with one decimal). A short press of the button (active low, 30..999 ms)
selects the next zone of the default order; the first press selects the
forehead.
"""

import asyncio
import gc
import time
from array import array

import machine
from micropython import const

import dermaroll_protocol as proto
from roller import supervisor, zones
from roller.detector import DIRECTIONS, Detector
from roller.drivers.encoder import open_encoder
from roller.drivers.imu import ImuNotFound, open_imu
from roller.feedback import ERROR as FB_ERROR
from roller.feedback import LOW_BATTERY as FB_LOW_BATTERY
from roller.feedback import NONE as FB_NONE
from roller.feedback import PAIRING as FB_PAIRING
from roller.feedback import Feedback
from roller.power import ADV_LINK_MS, Idle, adv_idle, light_sleep
from roller.recent import Recent
from roller.sampler import Sampler
from roller.session import Session
from roller.settings import Settings

VERSION = "0.1.0"
MODEL = "DR-1"
_SHORT_MIN_MS = const(30)
_SHORT_MAX_MS = const(1000)
_LONG_MS = const(3000)
_VERY_LONG_MS = const(10000)
_STAT_MS = const(60000)
_LOOP_MS = const(5)
# Resets the chip when a task stops ticking; after Ctrl-C the supervisor keeps it
# fed from a timer so the REPL stays (roller.supervisor).
_WDT_MS = const(8000)
_BATTERY_MS = const(30000)
_SLEEP_SLICE_MS = const(4000)  # light sleep slices: well within _WDT_MS
_RECENT_MS = const(60000)  # Status overrun/encoder bits: a counter that grew this recently
_RECORD_SIZE = const(19)  # dermaroll_protocol.PASS_RECORD_SIZE
_COUNTS_SIZE = const(10)  # dermaroll_protocol.ZONE_COUNTS_SIZE
_WAKE_NAMES = {
    machine.EXT0_WAKE: "button",
    machine.EXT1_WAKE: "encoder",
    machine.TIMER_WAKE: "timer",
}


class Button:
    """Presses of an active-low button by length, counted in a soft IRQ handler.

    Short (30..999 ms): next zone. Long (3..9.9 s): the pairing window.
    Very long (10 s or more): forget every bond. Decided at release.
    """

    def __init__(self, gpio):
        self.pin = machine.Pin(gpio, machine.Pin.IN, machine.Pin.PULL_UP)
        self.down = False
        self.down_at = time.ticks_ms()
        self.presses = 0
        self.longs = 0
        self.very_longs = 0
        self.pin.irq(self._edge, machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING)

    def _edge(self, pin):
        now = time.ticks_ms()
        if pin.value() == 0:
            if not self.down:
                self.down = True
                self.down_at = now
        elif self.down:
            held = time.ticks_diff(now, self.down_at)
            self.down = False
            if _SHORT_MIN_MS <= held < _SHORT_MAX_MS:
                self.presses += 1
            elif _LONG_MS <= held < _VERY_LONG_MS:
                self.longs += 1
            elif held >= _VERY_LONG_MS:
                self.very_longs += 1

    def woke(self, now):
        """The press that woke the chip: its edge came in light sleep (no IRQ); count from now."""
        if self.pin.value() == 0 and not self.down:
            self.down = True
            self.down_at = now


class App:
    """The app loop's state: the pass path (log, console, links, feedback) and the links."""

    def __init__(self, settings, ses, det, sampler, log, feedback):
        self.settings = settings
        self.ses = ses
        self.det = det
        self.sampler = sampler
        self.log = log
        self.feedback = feedback
        self.control = None
        self.ble = None
        self.serial = None
        self.battery = None
        self.start = time.ticks_ms()  # the SESSION line's ticks (sample() sets it)
        self.out = array("i", (0, 0, 0, 0, 0, 0))
        self.rec = bytearray(_RECORD_SIZE)
        self.counts = bytearray(_COUNTS_SIZE)
        self.owed = False  # a PassRecord BLE refused (queue full): offered again first
        self.log_errors = 0
        self.unannounced = 0
        self.dirty = True  # Status to send again (a pass, a zone, the battery)
        self.changes = 0  # control.changes when Status was last sent
        self.sent = -1  # state << 16 | errors of the Status last sent
        self.errors = 0
        self.overruns = Recent(_RECENT_MS)  # sampler.missed
        self.enc_errors = Recent(_RECENT_MS)  # encoder.errors
        self.pairing = False  # the PAIRING pattern is on
        self.longs = 0  # button.longs and .very_longs already acted on
        self.very_longs = 0
        self.idle = Idle(settings, self.start, sampler.encoder.read())
        self.links = 0  # BLE connections, and when that number last changed
        self.link_at = time.ticks_add(self.start, -ADV_LINK_MS)  # none yet
        self.sup = None  # the Supervisor: its WDT fed while asleep, its Beats ticked on waking
        self.wakes = 0  # light sleeps so far: sample() restarts its clock after each

    def drain(self):
        """Control's `drain`: every queued pass logged now, even if BLE must skip some."""
        self.flush(True)

    def flush(self, force=False):
        """Every pass queued so far: log, print, announce.

        A PassRecord BLE refuses (a link's queue full) is offered again on the next
        loop; it is given up (counted in `unannounced`; the host gets it from the
        pass log by REPORT_RECORDS) rather than let the session queue fill up,
        because logging must never wait for a link.
        """
        ses = self.ses
        out = self.out
        while True:
            if self.owed and not self._announce():
                if not force and ses.pending < ses.queue_len // 2:
                    return
                self.owed = False
                self.unannounced += 1
            if not ses.pop(out):
                return
            # The console counts from the SESSION line; the log and the PassRecord keep
            # device times (ticks_ms of this boot, SPEC 5.1), so a record sent again by
            # REPORT_RECORDS is the one announced live.
            t_start = out[3]
            t_end = out[4]
            out[3] = time.ticks_add(self.start, t_start)  # type: ignore[call-overload]
            out[4] = time.ticks_add(self.start, t_end)  # type: ignore[call-overload]
            log = self.log
            if not log.append(out, ses.current(), 0):
                self.log_errors += 1
                print("passlog: append of", out[0], "failed")
            zone = out[1]
            length = out[5]
            print(
                "PASS %d %s %s %d %d %d.%d"
                % (
                    out[0],
                    zones.NAMES[zone] if zone < len(zones.NAMES) else str(zone),
                    DIRECTIONS[out[2]],
                    t_start,
                    t_end,
                    length // 10,
                    length % 10,
                )
            )
            self.feedback.on_pass(ses, zone, out[2])
            self.dirty = True
            proto.encode_pass_record(
                self.rec,
                0,
                out[0],
                log.boot,
                out[4],
                ses.current(),
                zone,
                out[2],
                length,
                t_end - t_start,
                0,
            )
            if self.serial is not None:
                self.serial.send_record(self.rec, _RECORD_SIZE)
            self._counts(zone)
            self.owed = True

    def _announce(self):
        if self.ble is not None and not self.ble.announce_pass(self.rec, _RECORD_SIZE):
            return False
        self.owed = False
        return True

    def _counts(self, zone):
        ses = self.ses
        if self.ble is None or zone >= zones.MAX_ZONES:
            return
        proto.encode_zone_counts(
            self.counts,
            0,
            ses.current(),
            zone,
            proto.COUNTS_ORDER if ses.order(zone) else 0,
            ses.count(zone, 0),
            ses.count(zone, 1),
            ses.count(zone, 2),
        )
        self.ble.update_counts(self.counts, _COUNTS_SIZE)

    def error_bits(self, now):
        """Status.errors now (SPEC 5.3): overruns and encoder errors of the last minute."""
        sampler = self.sampler
        e = 0
        if not sampler.imu_present():
            e |= proto.ERROR_IMU_MISSING
        if self.settings.error:
            e |= proto.ERROR_SETTINGS_INVALID
        if self.overruns.grew(sampler.missed, now):
            e |= proto.ERROR_SAMPLER_OVERRUN
        if self.enc_errors.grew(sampler.encoder.errors, now):
            e |= proto.ERROR_ENCODER
        if self.log.overflow:
            e |= proto.ERROR_LOG_OVERFLOW
        return e

    def update_status(self, now):
        """Status on BLE (read value, notified on change) and the ERROR pattern, on change."""
        errors = self.error_bits(now)
        # A missing IMU is the one error the user can fix (its cable): show it.
        if (errors ^ self.errors) & proto.ERROR_IMU_MISSING:
            if errors & proto.ERROR_IMU_MISSING:
                self.feedback.show(FB_ERROR, now)
            else:
                self.feedback.clear(FB_ERROR, now)
        self.errors = errors
        ble = self.ble
        control = self.control
        if ble is None or control is None:
            return
        ses = self.ses
        # Counting never stops on its own (STATE_ERROR is not used): a missing IMU
        # or a failing log is an error bit, the encoder goes on.
        if self.det.dir != 0:
            state = proto.STATE_ROLLING
        else:
            state = proto.STATE_SESSION if ses.active else proto.STATE_IDLE
        now_sent = state << 16 | errors
        if not self.dirty and control.changes == self.changes and now_sent == self.sent:
            return
        self.dirty = False
        self.changes = control.changes
        self.sent = now_sent
        log = self.log
        pct = self.battery.pct if self.battery is not None else -1
        ble.update_status(
            state,
            ses.zone,
            pct if pct >= 0 else proto.BATTERY_UNKNOWN,
            errors,
            log.oldest,
            log.last_seq,  # Status.newest: the last seq assigned, stored or deleted (SPEC 5.3)
            log.boot,
            ses.current(),
            sum(ses.counts) if ses.active else 0,
        )

    def buttons(self, button, now):
        """Long press: the pairing window (PAIRING pattern while open); very long: forget bonds."""
        ble = self.ble
        if button.longs != self.longs:
            self.longs = button.longs
            if ble is not None:
                ble.open_pairing_window(self.settings["pairing_window_s"] * 1000)
                print("PAIRING open", self.settings["pairing_window_s"])
        if button.very_longs != self.very_longs:
            self.very_longs = button.very_longs
            if ble is not None:
                ble.close_pairing_window()
                ble.forget_bonds()
                print("BONDS forgotten")
        pairing = ble is not None and ble.pairing_window_open()
        if pairing != self.pairing:
            self.pairing = pairing
            if pairing:
                self.feedback.show(FB_PAIRING, now)
            else:
                self.feedback.clear(FB_PAIRING, now)
                print("PAIRING closed")

    def rest(self, button, now):
        """Idle: slow advertising once still; light sleep after idle_sleep_s (module docstring)."""
        idle = self.idle
        if button.down:
            idle.poke(now)
        due = idle.update(now, self.sampler.encoder.read())
        ble = self.ble
        if ble is not None:
            n = ble.connections()
            if n != self.links:
                self.links = n
                self.link_at = now
            ble.set_idle(adv_idle(idle.idle_ms(now), time.ticks_diff(now, self.link_at)))
            if n or ble.pairing_window_open():
                return
        if not due or self.owed or self.ses.pending or self.feedback.playing != FB_NONE:
            return
        print("SLEEP", idle.idle_ms(now) // 1000)
        # In slices shorter than the watchdog's timeout, fed in between: whether the
        # task watchdog stands still in light sleep is not something to bet a reset on.
        sup = self.sup
        count = self.sampler.encoder.read()
        while True:
            reason = light_sleep(self.settings, _SLEEP_SLICE_MS)
            if reason != machine.TIMER_WAKE or self.sampler.encoder.read() != count:
                break
            if sup is not None and sup.wdt is not None:
                sup.wdt.feed()
        now = time.ticks_ms()
        if reason == machine.EXT0_WAKE:
            button.woke(now)
        idle.poke(now)
        for beat in sup.beats if sup is not None else ():
            beat.tick()
        self.wakes += 1
        print("WAKE", _WAKE_NAMES.get(reason, reason))


async def sample(sampler, ses, button, app, beat):
    """The device loop: tick the sampler on time, apply button presses. No flash here.

    The sampler's clock (a SESSION line) starts here and again after each light
    sleep, the detector then starting afresh at rest.
    """
    wakes = -1
    seen = 0
    stat_at = _STAT_MS
    while True:
        if wakes != app.wakes:
            wakes = app.wakes
            start = time.ticks_ms()
            app.start = start
            app.det.reset()
            sampler.start(start)
            print("SESSION", start)
            stat_at = _STAT_MS
        wait = sampler.tick(time.ticks_ms())
        beat.tick()
        if button.presses != seen:
            seen = button.presses
            ses.next_zone()
            print("ZONE", zones.NAMES[ses.zone])
            app.dirty = True
        if sampler.t >= stat_at:
            stat_at += _STAT_MS
            st = sampler.stats()
            st["log_errors"] = app.log_errors  # appends that failed (the pass was still sent)
            st["unannounced"] = app.unannounced  # live PassRecords BLE had no room for
            print("STAT " + " ".join("%s=%s" % (k, st[k]) for k in sorted(st)))
        await asyncio.sleep_ms(wait if wait > 0 else 0)


async def serve(app, button, beat):
    """The app loop: passes out, control point, BLE, serial link, buttons, feedback, battery."""
    battery_at = time.ticks_ms()
    while True:
        now = time.ticks_ms()
        beat.tick()
        app.flush()
        if app.control is not None:
            app.control.pump()
        if app.ble is not None:
            app.ble.service()
        if app.serial is not None and app.serial.poll():
            app.idle.poke(now)
        app.buttons(button, now)
        battery = app.battery
        if battery is not None and time.ticks_diff(now, battery_at) >= 0:
            battery_at = time.ticks_add(now, _BATTERY_MS)
            if battery.update():
                app.feedback.show(FB_LOW_BATTERY, now)
            app.dirty = True
        app.update_status(now)
        app.feedback.step(now)
        app.rest(button, now)
        await asyncio.sleep_ms(_LOOP_MS)


def open_ble(control):
    """roller.ble on the radio, or None (said on the console) when it cannot start."""
    try:
        from roller.ble import Ble

        ble = Ble(control.handle, model=MODEL, version=VERSION, on_closed=control.link_closed)
        ble.start()
        return ble
    except (ImportError, OSError) as e:
        print("ble: off:", e)
        return None


def main():
    settings = Settings().load()
    for e in settings.errors:
        print("settings:", e)
    # The button first: a zone press must count from the earliest moment on.
    button = Button(settings["button"])
    if supervisor.safe_mode(settings["button"]):
        print("safe mode: app not started")
        return
    # Imported here, after the button, so a press during the boot is not lost.
    from roller import recovery
    from roller.control import Control
    from roller.passlog import PassLog
    from roller.power import Battery
    from roller.records import Records
    from roller.serial_link import SerialLink

    encoder = open_encoder(settings)
    try:
        imu = open_imu(settings)
        imu_name = imu.name
    except (ImuNotFound, OSError) as e:
        print("imu:", e)
        imu = None
        imu_name = "none"
    ses = Session(settings)
    det = Detector(settings, ses)
    sampler = Sampler(settings, det, encoder, imu, ses)
    print(
        "dermaroll fw %s imu %s encoder %s button %d"
        % (VERSION, imu_name, encoder.kind, settings["button"])
    )
    log = PassLog()
    log.open()
    snap = recovery.Snapshot()
    recovery.restore(log, ses, snap)
    ses.seq = log.last_seq
    if not ses.active:
        ses.start()
        snap.save(ses, ses.seq)
    app = App(settings, ses, det, sampler, log, Feedback(settings))
    revision = proto.firmware_revision(VERSION).encode()
    control = Control(
        settings,
        ses,
        log,
        info=(b"dermaroll", MODEL.encode(), b"", revision),
        snapshot=snap,
        drain=app.drain,
        records=Records(log),
    )
    app.control = control
    app.ble = open_ble(control)
    if app.ble is not None:  # GET_INFO answers the DIS strings (SPEC 3.3), BLE address included
        control.info = (b"dermaroll", MODEL.encode(), app.ble.serial.encode(), revision)
    app.serial = SerialLink(lambda link, d, n: control.handle(link, d, n, link.out))
    try:
        app.battery = Battery(settings)
    except (OSError, ValueError) as e:
        print("battery:", e)
    gc.collect()
    print("MEM free %d alloc %d" % (gc.mem_free(), gc.mem_alloc()))
    sup = supervisor.Supervisor(wdt_ms=_WDT_MS)
    app.sup = sup
    sup.add("sampler", lambda beat: sample(sampler, ses, button, app, beat), stall_ms=2000)
    sup.add("app", lambda beat: serve(app, button, beat), stall_ms=5000)
    asyncio.run(sup.run())


main()
