"""Tables: (settings, the slot's share) -> the job's bandwidth limits, or the exact error."""

from __future__ import annotations

import ipaddress
import logging

import classad2
import pytest

from lark_async.decide.bandwidth import Bandwidth, derive_bandwidth
from lark_async.decide.plan import derive_plan
from lark_async.decide.policy import decide
from lark_async.decide.request import JobRequest
from lark_async.decide.settings import Settings, resolve_settings
from lark_async.errors import ConfigError


def ad(text: str = "") -> classad2.ClassAd:
    return classad2.parseOne(text) if text else classad2.ClassAd()


def resolve(cli=None, machine: str = "", job: str = "", config=None) -> Settings:
    return resolve_settings(cli or {}, ad(machine), ad(job), config or {})


def limits(settings: Settings, share: object = None, trusted: bool = True):
    found = derive_bandwidth(settings, share, trusted)
    return None if found is None else (found.ingress_mbit, found.egress_mbit)


def test_no_value_anywhere_is_no_shaping():
    assert derive_bandwidth(Settings()) is None
    assert derive_plan(decide(Settings(), JobRequest()), "j1").bandwidth is None


@pytest.mark.parametrize(
    ("cli", "machine", "config", "share", "expected"),
    [
        ({}, "", {}, 100, (100, 100)),
        ({}, "", {}, 2.5, (2.5, 2.5)),
        ({}, "", {"LARK_BANDWIDTH_LIMIT": "50"}, None, (50, 50)),
        ({}, "", {"LARK_BANDWIDTH_LIMIT": "50"}, 0, (50, 50)),  # asked for none: the limit
        ({}, "", {}, 0, None),
        ({}, "", {"LARK_BANDWIDTH_LIMIT": "50"}, 100, (100, 100)),  # the share wins
        ({}, "[LarkBandwidthLimit = 20]", {"LARK_BANDWIDTH_LIMIT": "50"}, None, (20, 20)),
        ({"bandwidth_limit": 10.0}, "[LarkBandwidthLimit = 20]", {}, None, (10, 10)),
        ({}, "", {"LARK_BANDWIDTH_LIMIT_INGRESS": "30"}, None, (30, None)),
        ({}, "", {"LARK_BANDWIDTH_LIMIT_EGRESS": "30"}, 100, (100, 30)),
        (
            {"bandwidth_limit_ingress": 5.0},
            "[LarkBandwidthLimitEgress = 7]",
            {"LARK_BANDWIDTH_LIMIT": "50"},
            None,
            (5, 7),
        ),
    ],
)
def test_the_share_else_the_limit_and_each_direction_apart(cli, machine, config, share, expected):
    assert limits(resolve(cli, machine, config=config), share) == expected


def test_another_resource_is_named_by_lark_bandwidth_resource():
    settings = resolve(config={"LARK_BANDWIDTH_RESOURCE": "Uplink"})
    assert settings.bandwidth_resource == "Uplink"
    with pytest.raises(ConfigError, match=r'^LARK_BANDWIDTH_RESOURCE "a b" \(HTCondor'):
        resolve(config={"LARK_BANDWIDTH_RESOURCE": "a b"})


def test_a_machine_ad_limit_may_depend_on_the_job_through_target():
    machine = "[LarkBandwidthLimit = ifThenElse(TARGET.Big is true, 200, 20)]"
    assert resolve(machine=machine, job="[Big = true]").bandwidth_limit == 200
    assert resolve(machine=machine).bandwidth_limit == 20


def test_the_job_ad_is_never_a_source():
    job = "[LarkBandwidthLimit = 1000; NetworkBandwidth = 1000; LarkBandwidthLimitEgress = 9]"
    assert derive_bandwidth(resolve(job=job)) is None


def test_under_wrap_the_callers_share_is_not_read(caplog):
    caplog.set_level(logging.INFO, "lark.bandwidth")
    settings = resolve(config={"LARK_BANDWIDTH_LIMIT": "40"})
    assert limits(settings, 1000, trusted=False) == (40, 40)
    assert limits(resolve(), 1000, trusted=False) is None
    assert "not a source under wrap" in caplog.text
    # nor can a forged share that is garbage refuse the job
    assert limits(resolve(), "lots", trusted=False) is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("0", 'LARK_BANDWIDTH_LIMIT "0" (HTCondor config) is not a rate above 0 Mbit/s'),
        ("-5", 'LARK_BANDWIDTH_LIMIT "-5" (HTCondor config) is not a rate above 0 Mbit/s'),
        ("fast", 'LARK_BANDWIDTH_LIMIT "fast" (HTCondor config) is not a rate in Mbit/s'),
        ("nan", 'LARK_BANDWIDTH_LIMIT "nan" (HTCondor config) is not a rate above 0 Mbit/s'),
        ("2e6", 'LARK_BANDWIDTH_LIMIT "2e6" (HTCondor config) is more than 1e+06 Mbit/s'),
    ],
)
def test_a_bad_limit_is_one_line_naming_it(config, message):
    with pytest.raises(ConfigError) as info:
        resolve(config={"LARK_BANDWIDTH_LIMIT": config})
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("machine", "message"),
    [
        ("[LarkBandwidthLimitIngress = 0]", "LarkBandwidthLimitIngress 0 (machine ad) is not"),
        ('[LarkBandwidthLimitEgress = "x"]', 'LarkBandwidthLimitEgress "x" (machine ad) is not'),
        ("[LarkBandwidthLimit = true]", "LarkBandwidthLimit True (machine ad) is not a rate"),
        ("[LarkBandwidthLimit = 1/0]", "LarkBandwidthLimit (machine ad) evaluates to an error"),
    ],
)
def test_a_bad_machine_ad_limit_is_one_line_naming_it(machine, message):
    with pytest.raises(ConfigError) as info:
        resolve(machine=machine)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("share", "message"),
    [
        (-5, "NetworkBandwidth -5 (machine ad, LARK_BANDWIDTH_RESOURCE) is not a rate above 0"),
        ("fast", 'NetworkBandwidth "fast" (machine ad, LARK_BANDWIDTH_RESOURCE) is not a rate'),
        (True, "NetworkBandwidth True (machine ad, LARK_BANDWIDTH_RESOURCE) is not a rate"),
        (5e6, "NetworkBandwidth 5e+06 (machine ad, LARK_BANDWIDTH_RESOURCE) is more than"),
        (classad2.Value.Error, "NetworkBandwidth (machine ad, LARK_BANDWIDTH_RESOURCE) is not a"),
    ],
)
def test_a_bad_share_is_one_line_naming_the_attribute(share, message):
    with pytest.raises(ConfigError) as info:
        derive_bandwidth(Settings(), share)
    assert str(info.value).startswith(message)


def test_exempt_networks_both_families():
    settings = resolve(
        config={"LARK_BANDWIDTH_EXEMPT": "10.1.0.0/16, 2001:db8::/48", "LARK_BANDWIDTH_LIMIT": "5"}
    )
    found = derive_bandwidth(settings)
    assert found is not None
    assert found.exempt == (
        ipaddress.IPv4Network("10.1.0.0/16"),
        ipaddress.IPv6Network("2001:db8::/48"),
    )
    with pytest.raises(ConfigError, match=r"names '10.1.0.1/16', which is not a network"):
        resolve(config={"LARK_BANDWIDTH_EXEMPT": "10.1.0.1/16"})


def test_the_plan_carries_limits_in_nat_and_bridge_and_none_elsewhere():
    settings = resolve(config={"LARK_BANDWIDTH_LIMIT": "10"})
    for mode, shaped in (("nat", True), ("bridge", True), ("none", False)):
        grant = decide(
            resolve(cli={"network_type": mode}, config={"LARK_BANDWIDTH_LIMIT": "10"}), JobRequest()
        )
        plan = derive_plan(grant, "j1")
        assert (plan.bandwidth is not None) is shaped, mode
    plan = derive_plan(decide(settings, JobRequest()), "j1", share=25)
    assert plan.bandwidth == Bandwidth(25, 25, (), "the slot's NetworkBandwidth")


def test_the_update_ad_says_the_limit_and_each_direction_when_they_differ():
    assert Bandwidth(10, 10).attributes == {"LarkBandwidthLimitMbit": 10}
    assert Bandwidth(2.5, 2.5).attributes == {"LarkBandwidthLimitMbit": 2.5}
    assert Bandwidth(10, 50).attributes == {
        "LarkBandwidthLimitIngressMbit": 10,
        "LarkBandwidthLimitEgressMbit": 50,
        "LarkBandwidthLimitMbit": 10,
    }
    assert Bandwidth(None, 50).attributes == {
        "LarkBandwidthLimitEgressMbit": 50,
        "LarkBandwidthLimitMbit": 50,
    }


CAPPED = (  # the README's recipe for wrap: the job's request, within the admin's cap
    "ifThenElse(TARGET.RequestNetworkBandwidth =?= undefined, 100, "
    "ifThenElse(TARGET.RequestNetworkBandwidth > 0 && TARGET.RequestNetworkBandwidth < 100, "
    "TARGET.RequestNetworkBandwidth, 100))"
)


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ("[]", 100),
        ("[RequestNetworkBandwidth = 30]", 30),
        ("[RequestNetworkBandwidth = 5000]", 100),
    ],
)
def test_under_wrap_the_config_may_take_the_jobs_request_within_a_cap(job, expected):
    from lark_async.decide.settings import config_machine_ad

    config = {"LarkBandwidthLimit": CAPPED}
    settings = resolve_settings({}, config_machine_ad(config), ad(job), config, "HTCondor config")
    assert limits(settings, 5000, trusted=False) == (expected, expected)
