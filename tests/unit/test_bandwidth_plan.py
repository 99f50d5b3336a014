"""Tables: (settings, the slot's share; under wrap the job's request and the per-slot cap)
-> the job's bandwidth limits, or the exact error."""

from __future__ import annotations

import ipaddress
import logging

import classad2
import pytest

from lark_async.decide import ads
from lark_async.decide.bandwidth import (
    Bandwidth,
    SlotCap,
    derive_bandwidth,
    request_attribute,
    requested_share,
    slot_cap,
)
from lark_async.decide.plan import derive_plan
from lark_async.decide.policy import decide
from lark_async.decide.request import JOB_ATTRIBUTES, JobRequest
from lark_async.decide.settings import Settings, config_snapshot, resolve_settings
from lark_async.errors import ConfigError, JobRequestError


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


def test_a_whole_limit_is_an_integer_in_the_update_ad():
    """The ad says 10, not 10.0 (a limit read from the config is a float)."""
    for found in (Bandwidth(10.0, 10.0), Bandwidth(10.0, 50.0)):
        assert all(type(v) is int for v in found.attributes.values())
    assert type(Bandwidth(2.5, 2.5).attributes["LarkBandwidthLimitMbit"]) is float


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


CAPPED = (  # an admin's own expression for wrap (the README's recipe before the slot cap)
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


# -- under wrap: the job's request within the per-slot cap -------------------------------------

FORGED = 5000  # the share the caller wrote in its machine-ad file: never read under wrap
CAP = {"LARK_BANDWIDTH_SLOT_CAP": "1000"}
NODE = {"MACHINE_RESOURCE_NetworkBandwidth": "10000"}  # the node's total, HTCondor's knob


def wrapped(config: dict, request: object, share: object = FORGED) -> Bandwidth | None:
    """What wrap decides: settings and cap from the HTCondor config alone."""
    settings = resolve(config=config)
    return derive_bandwidth(settings, share, False, request, slot_cap(settings, config))


@pytest.mark.parametrize(
    ("config", "request_", "expected", "source"),
    [
        (
            CAP,
            100,
            (100, 100),
            "the job's RequestNetworkBandwidth 100, under the per-slot cap 1000 "
            "(LARK_BANDWIDTH_SLOT_CAP)",
        ),
        (
            CAP,
            5000,
            (1000, 1000),
            "the per-slot cap 1000 (LARK_BANDWIDTH_SLOT_CAP), under the job's "
            "RequestNetworkBandwidth 5000",
        ),
        (
            CAP,
            1000,
            (1000, 1000),
            "the job's RequestNetworkBandwidth 1000, under the per-slot cap 1000 "
            "(LARK_BANDWIDTH_SLOT_CAP)",
        ),
        (
            {**CAP, "LARK_BANDWIDTH_LIMIT": "40"},  # a request wins over the limit, as a share
            2.5,
            (2.5, 2.5),
            "the job's RequestNetworkBandwidth 2.5, under the per-slot cap 1000 "
            "(LARK_BANDWIDTH_SLOT_CAP)",
        ),
        (
            NODE,
            100,
            (100, 100),
            "the job's RequestNetworkBandwidth 100, under the per-slot cap 10000 "
            "(the node's MACHINE_RESOURCE_NetworkBandwidth)",
        ),
        (
            {**NODE, **CAP},  # the admin's cap, not the node's total
            5000,
            (1000, 1000),
            "the per-slot cap 1000 (LARK_BANDWIDTH_SLOT_CAP), under the job's "
            "RequestNetworkBandwidth 5000",
        ),
        (
            {**CAP, "LARK_BANDWIDTH_LIMIT_EGRESS": "30"},
            100,
            (100, 30),
            "the job's RequestNetworkBandwidth 100, under the per-slot cap 1000 "
            "(LARK_BANDWIDTH_SLOT_CAP), LARK_BANDWIDTH_LIMIT_EGRESS",
        ),
        (
            {"LARK_BANDWIDTH_RESOURCE": "Uplink", "MACHINE_RESOURCE_Uplink": "500"},
            800,
            (500, 500),
            "the per-slot cap 500 (the node's MACHINE_RESOURCE_Uplink), under the job's "
            "RequestUplink 800",
        ),
        # asked for none (0) or nothing: no share, so the admin's limit, as for the slot's
        ({**CAP, "LARK_BANDWIDTH_LIMIT": "40"}, 0, (40, 40), "LARK_BANDWIDTH_LIMIT"),
        ({**CAP, "LARK_BANDWIDTH_LIMIT": "40"}, None, (40, 40), "LARK_BANDWIDTH_LIMIT"),
        (CAP, 0, None, None),
        (CAP, None, None, None),
    ],
)
def test_under_wrap_the_share_is_the_jobs_request_within_the_slot_cap(
    config, request_, expected, source
):
    found = wrapped(config, request_)
    assert (None if found is None else (found.ingress_mbit, found.egress_mbit)) == expected
    assert (None if found is None else found.source) == source


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ({}, "neither LARK_BANDWIDTH_SLOT_CAP nor MACHINE_RESOURCE_NetworkBandwidth is set"),
        (  # HTCondor's knob may list ids instead of a count: no cap, never an error
            {"MACHINE_RESOURCE_NetworkBandwidth": "nic0, nic1"},
            'LARK_BANDWIDTH_SLOT_CAP is not set and MACHINE_RESOURCE_NetworkBandwidth "nic0, '
            'nic1" is not a rate in Mbit/s',
        ),
        (
            {"MACHINE_RESOURCE_NetworkBandwidth": "0"},
            'LARK_BANDWIDTH_SLOT_CAP is not set and MACHINE_RESOURCE_NetworkBandwidth "0" is '
            "not a rate in Mbit/s",
        ),
        (  # a total in kbit/s is no cap in Mbit/s
            {"MACHINE_RESOURCE_NetworkBandwidth": "10000000"},
            "LARK_BANDWIDTH_SLOT_CAP is not set and MACHINE_RESOURCE_NetworkBandwidth "
            '"10000000" is not a rate in Mbit/s',
        ),
        (  # the total of another resource than LARK_BANDWIDTH_RESOURCE
            {"MACHINE_RESOURCE_Uplink": "500"},
            "neither LARK_BANDWIDTH_SLOT_CAP nor MACHINE_RESOURCE_NetworkBandwidth is set",
        ),
    ],
)
def test_without_a_cap_the_request_is_not_used_under_wrap(config, why, caplog):
    caplog.set_level(logging.INFO, "lark.bandwidth")
    assert slot_cap(resolve(config=config), config) == SlotCap(None, why)
    found = wrapped({**config, "LARK_BANDWIDTH_LIMIT": "40"}, 100)
    assert found == Bandwidth(40, 40, (), "LARK_BANDWIDTH_LIMIT")
    assert wrapped(config, 100) is None
    assert (
        f"the job's RequestNetworkBandwidth is not used under wrap: there is no per-slot cap "
        f"({why}); LARK_BANDWIDTH_LIMIT from the HTCondor config decides" in caplog.messages
    )
    assert (
        "the slot's NetworkBandwidth in the caller's machine ad is not a source under wrap"
        in caplog.messages
    )
    # unused, a hostile request refuses nothing
    assert wrapped(config, "lots") is None


def test_the_slot_cap_is_the_htcondor_configs_and_a_bad_one_is_one_line():
    settings = resolve(config=CAP)
    assert settings.bandwidth_slot_cap == 1000
    assert slot_cap(settings, {}) == SlotCap(1000, "LARK_BANDWIDTH_SLOT_CAP")
    # the job ad and the machine ad are no source of it
    job = machine = "[LARK_BANDWIDTH_SLOT_CAP = 1; BandwidthSlotCap = 1]"
    assert resolve(machine=machine, job=job).bandwidth_slot_cap is None
    for bad, message in (
        ("0", 'LARK_BANDWIDTH_SLOT_CAP "0" (HTCondor config) is not a rate above 0 Mbit/s'),
        ("lots", 'LARK_BANDWIDTH_SLOT_CAP "lots" (HTCondor config) is not a rate in Mbit/s'),
        ("2e6", 'LARK_BANDWIDTH_SLOT_CAP "2e6" (HTCondor config) is more than 1e+06 Mbit/s'),
    ):
        with pytest.raises(ConfigError) as info:
            resolve(config={"LARK_BANDWIDTH_SLOT_CAP": bad})
        assert str(info.value).startswith(message)


def test_wraps_config_snapshot_keeps_the_nodes_total_of_the_resource():
    config = {**NODE, "MACHINE_RESOURCE_Uplink": "500", "MACHINE_RESOURCE_GPUs": "2"}
    assert config_snapshot(config) == NODE
    renamed = {**config, "LARK_BANDWIDTH_RESOURCE": "Uplink"}
    assert config_snapshot(renamed) == {
        "LARK_BANDWIDTH_RESOURCE": "Uplink",
        "MACHINE_RESOURCE_Uplink": "500",
    }
    bad = {**config, "LARK_BANDWIDTH_RESOURCE": "a b"}  # refused later, with the log set up
    assert config_snapshot(bad) == {"LARK_BANDWIDTH_RESOURCE": "a b"}


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ("lots", 'RequestNetworkBandwidth "lots" (job ad) is not a rate in Mbit/s'),
        ("100", 'RequestNetworkBandwidth "100" (job ad) is not a rate in Mbit/s'),
        ("x\n\x1b[2J" * 20, 'RequestNetworkBandwidth "x??[2Jx??[2J'),  # shown short, printable
        (-5, "RequestNetworkBandwidth -5 (job ad) is not a rate above 0 Mbit/s"),
        (1e30, "RequestNetworkBandwidth 1e+30 (job ad) is more than 1e+06 Mbit/s"),
        (float("nan"), "RequestNetworkBandwidth nan (job ad) is not a rate above 0 Mbit/s"),
        (True, "RequestNetworkBandwidth True (job ad) is not a rate in Mbit/s"),
        (classad2.Value.Error, "RequestNetworkBandwidth (job ad) is not a rate"),
    ],
)
def test_a_hostile_request_is_one_line_naming_it(request_, message):
    with pytest.raises(JobRequestError) as info:
        wrapped(CAP, request_)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ('"a" + 1', "RequestNetworkBandwidth (job ad) is not a rate"),
        ("{1, 2}", "RequestNetworkBandwidth (job ad) is not a rate"),
        ("[a = 1]", "RequestNetworkBandwidth (job ad) is not a rate"),
        ("1/0", "RequestNetworkBandwidth (job ad) is not a rate"),
        ("RequestCpus * 1000000", "RequestNetworkBandwidth 2e+06 (job ad) is more than"),
        ("-RequestCpus", "RequestNetworkBandwidth -2 (job ad) is not a rate above 0"),
        ("1e30", "RequestNetworkBandwidth 1e+30 (job ad) is more than 1e+06 Mbit/s"),
        ("true", "RequestNetworkBandwidth True (job ad) is not a rate in Mbit/s"),
        ('strcat("1", "00")', 'RequestNetworkBandwidth "100" (job ad) is not a rate'),
    ],
)
def test_a_hostile_request_expression_as_the_agent_evaluates_it(expression, message):
    """Read as wrap reads it: evaluated in the bounded child, then taken as a share."""
    attribute = request_attribute("NetworkBandwidth")
    text = f"RequestCpus = 2\n{attribute} = {expression}\n"
    job = ads.parse_ad(text, "job ad")
    (view,) = ads.evaluate_bounded([ads.Evaluation(job, (*JOB_ATTRIBUTES, attribute))])
    with pytest.raises(JobRequestError) as info:
        wrapped(CAP, ads.evaluate(view, attribute))
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("100", 100),
        ("RequestCpus * 50", 100),  # the job's own attributes are its to use
        ("5000", 1000),
        ("0", None),
        ("undefined", None),
        ("TARGET.NetworkBandwidth", None),  # no machine here: undefined, no share
    ],
)
def test_a_request_expression_over_the_jobs_own_attributes(expression, expected):
    attribute = request_attribute("NetworkBandwidth")
    job = ads.parse_ad(f"RequestCpus = 2\n{attribute} = {expression}\n", "job ad")
    (view,) = ads.evaluate_bounded([ads.Evaluation(job, (attribute,))])
    found = wrapped(CAP, ads.evaluate(view, attribute))
    assert (None if found is None else found.ingress_mbit) == expected


def test_under_run_the_request_is_never_read_and_the_plan_carries_wraps_share():
    settings = resolve(config={**CAP, **NODE})
    # run: the slot's share, whatever the job asked and whatever the cap
    found = derive_bandwidth(settings, 25, True, 5000, SlotCap(1000, "LARK_BANDWIDTH_SLOT_CAP"))
    assert found == Bandwidth(25, 25, (), "the slot's NetworkBandwidth")
    plan = derive_plan(
        decide(settings, JobRequest()),
        "j1",
        FORGED,
        trusted_share=False,
        request=100,
        cap=slot_cap(settings, {}),
    )
    assert plan.bandwidth == Bandwidth(
        100,
        100,
        (),
        "the job's RequestNetworkBandwidth 100, under the per-slot cap 1000 "
        "(LARK_BANDWIDTH_SLOT_CAP)",
    )


@pytest.mark.parametrize(
    ("config", "trusted", "source"),
    [
        ({"LARK_BANDWIDTH_LIMIT_INGRESS": "30"}, True, "LARK_BANDWIDTH_LIMIT_INGRESS"),
        ({"LARK_BANDWIDTH_LIMIT_EGRESS": "30"}, True, "LARK_BANDWIDTH_LIMIT_EGRESS"),
        # under wrap, with no cap or no request: the override alone
        ({"LARK_BANDWIDTH_LIMIT_INGRESS": "30"}, False, "LARK_BANDWIDTH_LIMIT_INGRESS"),
        ({**CAP, "LARK_BANDWIDTH_LIMIT_EGRESS": "30"}, False, "LARK_BANDWIDTH_LIMIT_EGRESS"),
        (
            {"LARK_BANDWIDTH_LIMIT_INGRESS": "30", "LARK_BANDWIDTH_LIMIT_EGRESS": "40"},
            True,
            "LARK_BANDWIDTH_LIMIT_INGRESS, LARK_BANDWIDTH_LIMIT_EGRESS",
        ),
    ],
)
def test_with_no_share_the_source_names_only_the_overrides(config, trusted, source):
    settings = resolve(config=config)
    found = derive_bandwidth(settings, None, trusted, None, slot_cap(settings, config))
    assert found is not None
    assert found.source == source


def test_with_no_cap_given_the_unused_request_is_logged_as_such(caplog):
    caplog.set_level(logging.INFO, "lark.bandwidth")
    assert requested_share("NetworkBandwidth", 100, None) == (None, "")
    assert (
        "the job's RequestNetworkBandwidth is not used under wrap: there is no per-slot cap "
        "(none given); LARK_BANDWIDTH_LIMIT from the HTCondor config decides" in caplog.messages
    )
