"""Counter samples -> the Network* attributes of the update ad."""

from __future__ import annotations

import pytest

from lark_async.decide import ads
from lark_async.decide.accounting import BYTES_PER_MB, derive_accounting

MB = 1000 * 1000  # HTCondor's unit (docker_proc.cpp), not MiB
BASE_KEYS = {
    "NetworkIncoming",
    "NetworkOutgoing",
    "NetworkInputMb",
    "NetworkOutputMb",
    "AverageBandwidthUsageIncoming",
    "AverageBandwidthUsageOutgoing",
}


def test_bytes_mib_and_averages_from_the_two_lark_counters():
    values = derive_accounting({"Incoming": (3 * MB, 10), "Outgoing": (MB // 2, 7)}, 4.0)
    assert values == {
        "NetworkIncoming": 3 * MB,
        "NetworkOutgoing": MB // 2,
        "NetworkInputMb": 3.0,
        "NetworkOutputMb": 0.5,
        "AverageBandwidthUsageIncoming": 3 * MB / 4.0,
        "AverageBandwidthUsageOutgoing": MB / 8.0,
    }


def test_mb_means_a_million_bytes_as_htcondors_docker_universe_publishes_it():
    assert BYTES_PER_MB == 1_000_000
    assert derive_accounting({"Incoming": (10_010_826, 1)}, 1.0)["NetworkInputMb"] == 10.010826
    assert derive_accounting({"Outgoing": (1_048_576, 1)}, 1.0)["NetworkOutputMb"] == 1.048576


def test_no_counters_yet_gives_zeros():
    values = derive_accounting({}, 0.0)
    assert set(values) == BASE_KEYS
    assert all(value == 0 for value in values.values())


def test_packets_are_not_reported():
    values = derive_accounting({"Incoming": (100, 99), "Outgoing": (50, 98)}, 10.0)
    assert values["NetworkIncoming"] == 100
    assert values["NetworkOutgoing"] == 50
    assert 99 not in values.values()


def test_zero_elapsed_time_does_not_divide_by_zero():
    values = derive_accounting({"Incoming": (0, 0), "Outgoing": (0, 0)}, 0.0)
    assert values["AverageBandwidthUsageIncoming"] == 0.0
    assert values["AverageBandwidthUsageOutgoing"] == 0.0


@pytest.mark.parametrize("elapsed", [0.0, -0.0, -1.0, -1e-9])
def test_averages_are_zero_when_no_time_has_elapsed(elapsed):
    values = derive_accounting({"Incoming": (3 * MB, 1), "Outgoing": (MB, 1)}, elapsed)
    assert values["AverageBandwidthUsageIncoming"] == 0.0
    assert values["AverageBandwidthUsageOutgoing"] == 0.0
    assert values["NetworkIncoming"] == 3 * MB  # the byte counts are still reported
    assert values["NetworkOutputMb"] == 1.0


def test_a_tiny_elapsed_time_is_a_real_average():
    values = derive_accounting({"Incoming": (1, 1), "Outgoing": (2, 1)}, 1e-6)
    assert values["AverageBandwidthUsageIncoming"] == 1 / 1e-6
    assert values["AverageBandwidthUsageOutgoing"] == 2 / 1e-6


def test_admin_comment_counters_become_network_attributes():
    values = derive_accounting(
        {"Incoming": (10, 1), "Outgoing": (20, 2), "ssh": (300, 3), "Dns_53": (40, 4)}, 1.0
    )
    assert values["Networkssh"] == 300
    assert values["NetworkDns_53"] == 40
    assert set(values) == BASE_KEYS | {"Networkssh", "NetworkDns_53"}


def test_incoming_and_outgoing_comments_are_not_duplicated():
    values = derive_accounting({"Incoming": (10, 1), "Outgoing": (20, 2)}, 1.0)
    assert set(values) == BASE_KEYS
    assert values["NetworkIncoming"] == 10
    assert values["NetworkOutgoing"] == 20


def test_an_admin_comment_cannot_override_a_lark_attribute():
    values = derive_accounting({"Incoming": (MB, 1), "InputMb": (7, 1)}, 1.0)
    assert values["NetworkInputMb"] == 1.0


@pytest.mark.parametrize(
    "comment", ["a b", "9lives", "x-y", "", "é", "_x", "a" * 65, 'x"', "x\n", "Net.work"]
)
def test_invalid_comment_names_are_skipped(comment):
    values = derive_accounting({"Incoming": (1, 1), comment: (5, 1)}, 1.0)
    assert set(values) == BASE_KEYS


def test_a_64_character_comment_is_accepted():
    values = derive_accounting({"a" * 64: (5, 1)}, 1.0)
    assert values["Network" + "a" * 64] == 5


def test_accounting_values_make_a_valid_update_ad():
    values = derive_accounting({"Incoming": (MB, 1), "Outgoing": (2, 1), "ssh": (3, 1)}, 2.0)
    parsed = ads.parse_ad(ads.format_old(values), "update ad")
    assert {key: parsed.eval(key) for key in parsed} == values


@pytest.mark.parametrize("comment", ["incoming", "outgoing", "inputmb", "outputMB", "INCOMING"])
def test_a_comment_differing_only_in_case_cannot_override_a_lark_attribute(comment):
    values = derive_accounting({"Incoming": (1000, 1), "Outgoing": (2000, 1), comment: (7, 1)}, 1)
    assert set(values) == BASE_KEYS
    parsed = ads.parse_ad(ads.format_old(values), "update ad")
    assert len(parsed) == len(BASE_KEYS)
    assert parsed.eval("NetworkIncoming") == 1000
    assert parsed.eval("NetworkOutgoing") == 2000
    assert parsed.eval("NetworkInputMb") == 1000 / MB
    assert parsed.eval("NetworkOutputMb") == 2000 / MB


def test_comments_differing_only_in_case_give_one_attribute():
    values = derive_accounting({"ssh": (1, 1), "SSH": (2, 1), "Ssh": (3, 1)}, 1.0)
    assert set(values) == BASE_KEYS | {"NetworkSSH"}  # the first in sorted order
    assert values["NetworkSSH"] == 2
    parsed = ads.parse_ad(ads.format_old(values), "update ad")
    assert len(parsed) == len(BASE_KEYS) + 1
    assert parsed.eval("Networkssh") == 2
