"""Readings of the job's counters -> published counts that never go backwards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lark_async.decide.tally import Tally


def tally_of(*readings: dict[str, tuple[int, int]]) -> Tally:
    tally = Tally()
    for reading in readings:
        tally.observe(reading)
    return tally


def test_nothing_read_yet_publishes_nothing():
    assert Tally().published == {}


def test_a_first_reading_counts_whole_bytes_and_packets_apart():
    assert tally_of({"Incoming": (1000, 7), "Outgoing": (40, 3)}).published == {
        "Incoming": (1000, 7),
        "Outgoing": (40, 3),
    }


def test_growth_is_added():
    tally = tally_of({"Incoming": (1000, 7)}, {"Incoming": (1500, 9)})
    assert tally.published == {"Incoming": (1500, 9)}


def test_the_same_reading_again_is_no_replacement():
    tally = tally_of({"Incoming": (1000, 7)})
    assert tally.observe({"Incoming": (1000, 7)}) == []
    assert tally.published == {"Incoming": (1000, 7)}


def test_a_lower_reading_is_reported_and_keeps_the_published_value():
    tally = tally_of({"Incoming": (8000, 80), "Outgoing": (500, 50)})
    assert tally.observe({"Incoming": (3000, 30), "Outgoing": (600, 60)}) == ["Incoming"]
    assert tally.published == {"Incoming": (8000, 80), "Outgoing": (600, 60)}


def test_fewer_bytes_with_more_packets_is_a_replacement():
    tally = tally_of({"Incoming": (8000, 80)})
    assert tally.observe({"Incoming": (7999, 81)}) == ["Incoming"]
    assert tally.published == {"Incoming": (8000, 80)}


def test_fewer_packets_with_more_bytes_is_a_replacement():
    tally = tally_of({"Incoming": (8000, 80)})
    assert tally.observe({"Incoming": (8001, 79)}) == ["Incoming"]
    assert tally.published == {"Incoming": (8000, 80)}


def test_after_a_replacement_the_new_rules_growth_is_added():
    """A ruleset saved at 3000 bytes and reloaded after 8000: the saved 3000 were counted
    once already and are not charged again; what the reloaded rule counts on is."""
    tally = tally_of({"Incoming": (8000, 80)}, {"Incoming": (3000, 30)})
    assert tally.observe({"Incoming": (3500, 34)}) == []
    assert tally.published == {"Incoming": (8500, 84)}


def test_a_second_replacement_keeps_what_the_first_one_left():
    tally = tally_of(
        {"Incoming": (8000, 80)},
        {"Incoming": (3000, 30)},
        {"Incoming": (4000, 40)},
        {"Incoming": (100, 1)},
        {"Incoming": (150, 2)},
    )
    assert tally.published == {"Incoming": (9050, 91)}


def test_replacements_are_reported_sorted():
    tally = tally_of({"b": (10, 1), "a": (10, 1), "c": (10, 1)})
    assert tally.observe({"c": (0, 0), "b": (20, 2), "a": (0, 0)}) == ["a", "c"]


def test_a_counter_missing_from_a_reading_keeps_its_value():
    tally = tally_of({"Incoming": (1000, 7), "Outgoing": (40, 3)})
    assert tally.observe({"Outgoing": (90, 5)}) == []
    assert tally.published == {"Incoming": (1000, 7), "Outgoing": (90, 5)}
    assert tally.observe({}) == []
    assert tally.published == {"Incoming": (1000, 7), "Outgoing": (90, 5)}


def test_a_counter_back_after_missing_is_compared_with_its_last_reading():
    tally = tally_of({"Incoming": (1000, 7)}, {}, {"Incoming": (1200, 8)})
    assert tally.published == {"Incoming": (1200, 8)}
    assert tally.observe({}) == []
    assert tally.observe({"Incoming": (300, 3)}) == ["Incoming"]
    assert tally.published == {"Incoming": (1200, 8)}


def test_a_counter_added_later_is_counted_whole():
    tally = tally_of({"Incoming": (1000, 7)}, {"Incoming": (1000, 7), "Site": (60, 2)})
    assert tally.published == {"Incoming": (1000, 7), "Site": (60, 2)}


def test_after_a_restart_fresh_rules_are_counted_from_zero():
    """The agent put its flushed rules back: they start at zero, so all they count is new."""
    tally = tally_of({"Incoming": (8000, 80)})
    tally.restart()
    assert tally.published == {"Incoming": (8000, 80)}
    assert tally.observe({"Incoming": (500, 5)}) == []
    assert tally.published == {"Incoming": (8500, 85)}
    assert tally.observe({"Incoming": (700, 6)}) == []
    assert tally.published == {"Incoming": (8700, 86)}


def test_after_a_restart_even_the_old_value_again_is_growth():
    tally = tally_of({"Incoming": (8000, 80)})
    tally.restart()
    assert tally.observe({"Incoming": (8000, 80)}) == []
    assert tally.published == {"Incoming": (16000, 160)}


def test_a_restart_with_nothing_read_is_harmless():
    tally = Tally()
    tally.restart()
    assert tally.observe({"Incoming": (5, 1)}) == []
    assert tally.published == {"Incoming": (5, 1)}


def test_published_is_a_copy():
    tally = tally_of({"Incoming": (1000, 7)})
    tally.published["Incoming"] = (0, 0)
    tally.published.clear()
    assert tally.published == {"Incoming": (1000, 7)}


def test_the_reading_passed_in_is_not_changed():
    reading = {"Incoming": (3000, 30)}
    tally = tally_of({"Incoming": (8000, 80)})
    tally.observe(reading)
    assert reading == {"Incoming": (3000, 30)}


SAMPLES = st.tuples(st.integers(0, 10**12), st.integers(0, 10**9))
STEPS = st.lists(
    st.one_of(
        st.dictionaries(st.sampled_from(["Incoming", "Outgoing", "Site"]), SAMPLES, max_size=3),
        st.just("restart"),
    ),
    max_size=30,
)


@pytest.mark.slow
@given(STEPS)
def test_published_counts_never_go_backwards(steps):
    tally = Tally()
    before: dict[str, tuple[int, int]] = {}
    for step in steps:
        if step == "restart":
            tally.restart()
        else:
            tally.observe(step)
        now = tally.published
        assert set(before) <= set(now)
        for name, (nbytes, packets) in before.items():
            assert now[name][0] >= nbytes and now[name][1] >= packets
        before = now


@pytest.mark.slow
@given(st.lists(SAMPLES, min_size=1, max_size=20))
def test_a_rule_nobody_touches_is_published_as_read(samples):
    """Monotonic readings of one rule: the published value is the last reading, exactly."""
    nbytes = sorted(b for b, _ in samples)
    packets = sorted(p for _, p in samples)
    readings = list(zip(nbytes, packets, strict=True))
    tally = Tally()
    for reading in readings:
        assert tally.observe({"Incoming": reading}) == []
    assert tally.published == {"Incoming": readings[-1]}
