"""roller.recent: a counter's growth holds a Status bit for hold_ms, then lets it go."""

from roller.recent import Recent


def test_a_bit_holds_for_hold_ms_after_the_last_growth():
    r = Recent(60000)
    assert not r.grew(0, 1000)  # nothing yet
    assert r.grew(3, 2000)
    assert r.grew(3, 61999)  # still within the minute
    assert not r.grew(3, 62000)
    assert r.grew(4, 70000) and r.grew(4, 129999) and not r.grew(4, 130000)


def test_a_restarted_counter_is_no_news_until_it_grows_again():
    r = Recent(1000)
    assert r.grew(5, 0)
    assert not r.grew(0, 5000)  # the sampler restarted after a light sleep
    assert not r.grew(0, 6000)
    assert r.grew(1, 7000)


def test_ticks_wrap_around():
    r = Recent(1000)
    near = (1 << 29) - 300  # ticks_ms wraps at 2**30 on the ESP32 (at 2**62 here)
    assert r.grew(1, near)
    assert r.grew(1, near + 900)
