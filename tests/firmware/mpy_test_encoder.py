"""Drum encoder drivers: the PCNT path (machine.Encoder) and the pin-IRQ quadrature decoder."""

import vboard
from mpytest import no_alloc

from roller.drivers.encoder import IrqEncoder, PcntEncoder, open_encoder
from roller.settings import Settings

# A walk forward and back with turns at odd phases of the A/B cycle.
WALK = (1, 2, 3, 4, 5, 17, 16, 15, -3, -4, 250, -1000, 7, 0)


def _settings(**kw):
    s = Settings()
    s.update(kw)
    return s


def test_open_encoder_prefers_the_pulse_counter():
    vboard.reset()
    e = open_encoder(_settings(counts_per_mm=5.0))
    assert isinstance(e, PcntEncoder) and e.kind == "pcnt" and e.counts_per_mm == 5.0
    assert e.hw.filter_ticks == 80  # enc_filter_ns 1000 -> 80 APB ticks
    vboard.reset()
    e = open_encoder(_settings(), pcnt=False)
    assert isinstance(e, IrqEncoder) and e.kind == "irq"
    assert 7.0 < e.counts_per_mm < 7.1  # 400 counts per rev on an 18 mm drum


def test_both_paths_count_forward_and_backward():
    for pcnt in (True, False):
        vboard.reset()
        e = open_encoder(_settings(), pcnt=pcnt)
        for pos in WALK:
            vboard.set_drum(pos)
            assert e.read() == pos, (pcnt, pos, e.read())
        assert e.errors == 0


def test_pins_from_the_settings():
    vboard.reset(enc_a=4, enc_b=5)
    for pcnt in (True, False):
        e = open_encoder(_settings(enc_a=5, enc_b=4, enc_id=int(pcnt)), pcnt=pcnt)  # A/B swapped
        base = vboard.drum()
        vboard.set_drum(base + 12)
        assert e.read() == -12, (pcnt, e.read())
        e.deinit()


def test_irq_decoder_counts_a_late_handler_as_an_illegal_transition():
    vboard.reset()
    e = open_encoder(_settings(), pcnt=False)
    vboard.defer_irqs(True)
    vboard.set_drum(1)
    vboard.run_irqs()  # on time: one edge, one step
    assert (e.read(), e.errors) == (1, 0)
    vboard.set_drum(3)  # two edges before the first handler runs
    vboard.run_irqs()
    # The first handler sees A and B both changed: counted as an error, not guessed;
    # the second sees no change.
    assert (e.read(), e.errors) == (1, 1), (e.read(), e.errors)
    vboard.set_drum(4)
    vboard.run_irqs()
    assert (e.read(), e.errors) == (2, 1)  # back in step from the new state
    vboard.defer_irqs(False)


def test_irq_decoder_every_double_step_is_illegal():
    # All four "both lines changed" transitions, both ways round.
    vboard.reset()
    e = open_encoder(_settings(), pcnt=False)
    errors = 0
    for start in range(4):
        for jump in (2, -2):
            vboard.set_drum(start)  # IRQs run at once here: in step
            count = e.read()
            vboard.defer_irqs(True)
            vboard.set_drum(start + jump)
            vboard.run_irqs()
            vboard.defer_irqs(False)
            errors += 1
            assert (e.read(), e.errors) == (count, errors), (start, jump, e.read(), e.errors)


def test_irq_decoder_limit_a_whole_missed_cycle_is_invisible():
    # Why the pulse counter is preferred: with the schedule queue full, edges are
    # dropped, and four missed edges look like none at all.
    vboard.reset()
    e = open_encoder(_settings(), pcnt=False)
    vboard.defer_irqs(True)
    vboard.set_drum(9)  # 9 edges, the queue holds 8
    vboard.run_irqs()
    assert vboard.dropped_irqs() == 1
    assert e.read() == 1 and e.errors == 0, (e.read(), e.errors)
    vboard.defer_irqs(False)


def test_irq_handler_and_reads_are_allocation_free():
    vboard.reset()
    e = open_encoder(_settings(), pcnt=False)

    def roll():
        for pos in range(0, 400, 3):
            vboard.set_drum(pos)
            e.read()
        vboard.set_drum(-50)
        return e.read()

    assert no_alloc(roll) == -50 and e.errors == 0
