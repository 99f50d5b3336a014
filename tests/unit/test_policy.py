"""Job requests within the admin's limits, and the policy script's output (pure)."""

from __future__ import annotations

import logging
from ipaddress import ip_address

import pytest

from lark_async.backends import scripts
from lark_async.decide import ads
from lark_async.decide.connpolicy import parse_rules
from lark_async.decide.modes import NetworkType
from lark_async.decide.policy import Grant, apply_policy_output, parse_policy_output
from lark_async.decide.policy import decide as grant_of
from lark_async.decide.request import read_request
from lark_async.decide.settings import Settings
from lark_async.errors import ConfigError, JobRequestError

BRIDGING = Settings(allowed_network_types=("nat", "bridge", "none"))


def job(text: str):
    return ads.parse_ad(text, "job ad")


def decide(settings: Settings, job_ad) -> Settings:
    """The settings the job gets, its ad read as the agent reads it."""
    return grant_of(settings, read_request(job_ad)).settings


@pytest.mark.parametrize(
    ("settings", "ad", "mode"),
    [
        (Settings(), "", "nat"),
        (Settings(), "WantJobNetworking = false", "none"),
        (Settings(), 'LarkNetworkType = "none"', "none"),
        (Settings(), "OutboundConnectivity = false", "none"),
        (Settings(), "InboundConnectivity = true", "nat"),  # a wish: no bridging here
        (BRIDGING, "InboundConnectivity = true", "bridge"),
        (BRIDGING, 'LarkNetworkType = "BRIDGE"', "bridge"),
        (BRIDGING, "InboundConnectivity = true\nWantJobNetworking = false", "none"),
        (Settings(network_type="bridge"), "", "bridge"),  # the admin's default is not limited
    ],
)
def test_the_job_gets_what_it_asks_for_within_the_limits(settings, ad, mode):
    assert decide(settings, job(ad)).network_type == mode


def test_a_request_the_node_does_not_allow_is_refused_with_the_reason():
    with pytest.raises(JobRequestError) as info:
        decide(Settings(), job('LarkNetworkType = "bridge"'))
    assert str(info.value) == (
        'the job asks for network type "bridge", which this node does not allow '
        "(allowed: nat, none)"
    )
    with pytest.raises(JobRequestError) as info:
        decide(Settings(allowed_address_types=("dhcp",)), job('LarkAddressType = "static"'))
    assert 'address type "static"' in str(info.value)
    with pytest.raises(JobRequestError) as info:
        decide(Settings(allowed_address_types=("local", "dhcp")), job('LarkAddressType = "static"'))
    assert str(info.value) == (
        'the job asks for address type "static", which this node does not allow '
        "(allowed: local, dhcp)"
    )


def test_the_job_gets_the_address_type_it_asks_for_else_the_admins():
    both = Settings(allowed_address_types=("dhcp", "static"))
    assert decide(both, job('LarkAddressType = "static"')).address_type == "static"
    assert decide(both, job("")).address_type is None  # the mode's default
    admins = Settings(address_type="dhcp", allowed_address_types=("dhcp", "static"))
    assert decide(admins, job("")).address_type == "dhcp"


@pytest.mark.parametrize(
    ("ad", "message"),
    [
        ('WantJobNetworking = "no"', 'job ad WantJobNetworking must be true or false, not "no"'),
        ("InboundConnectivity = 1", "job ad InboundConnectivity must be true or false, not 1"),
        (
            'LarkNetworkType = "host; rm -rf /"',
            'job ad LarkNetworkType must be one of nat, bridge, none, not "host; rm -rf /"',
        ),
        ("NetworkAccounting = 1/0", "job ad NetworkAccounting must be true or false, not an error"),
    ],
)
def test_malformed_requests_name_the_attribute(ad, message):
    with pytest.raises(JobRequestError) as info:
        decide(Settings(), job(ad))
    assert str(info.value) == message


def test_accounting_off_on_request_unless_forced():
    assert decide(Settings(), job("NetworkAccounting = false")).accounting is False
    forced = Settings(force_accounting=True)
    assert decide(forced, job("NetworkAccounting = false")).accounting is True


def test_the_job_ad_cannot_set_anything_else():
    settings = decide(
        BRIDGING,
        job(
            'LarkBridgeDevice = "eth0"\nLarkBridgeName = "x"\nLARK_LOCAL_NETWORK = "10.0.0.0/8"\n'
            'LarkStartupScript = "/tmp/x"\nLarkAllowedNetworkTypes = "bridge"'
        ),
    )
    assert settings == BRIDGING


def test_policy_output_overrides_the_decision():
    assert parse_policy_output(
        'LarkNetworkType = "none"\nLarkNetworkAccounting = false\n', "p"
    ) == {
        "network_type": "none",
        "accounting": False,
    }
    assert parse_policy_output("", "p") == {}
    assert parse_policy_output('LarkAddressType = "STATIC"\n', "p") == {"address_type": "static"}
    with pytest.raises(ConfigError) as info:
        parse_policy_output('LarkAddressType = "bridge"\n', "/p")
    assert str(info.value) == (
        'policy script /p printed LarkAddressType = "bridge", not a valid value'
    )
    with pytest.raises(ConfigError) as info:
        parse_policy_output('LarkBridgeDevice = "eth0"\n', "/p")
    assert str(info.value) == (
        "policy script /p printed LarkBridgeDevice; it may set only LarkNetworkType, "
        "LarkAddressType, LarkNetworkAccounting"
    )


def test_what_the_policy_script_decided_and_a_bridging_wish_not_granted_are_logged(caplog):
    caplog.set_level(logging.INFO, "lark")
    granted = grant_of(Settings(), read_request(job("InboundConnectivity = true")))
    assert granted.settings.network_type is NetworkType.NAT
    after = apply_policy_output(granted, "LarkNetworkAccounting = false\n", "/p")
    assert after.settings.accounting is False
    assert caplog.messages == [
        "the job asks for inbound connectivity; this node does not bridge: NAT",
        "policy script /p decided {'accounting': False}",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("this is not an ad", "output of policy script /p"),
        ('LarkBridgeDevice = "eth0"', "policy script /p printed LarkBridgeDevice; it may set only"),
        (
            'LarkNetworkType = "wifi"',
            'policy script /p printed LarkNetworkType = "wifi", not a valid',
        ),
        ("LarkNetworkAccounting = 3", "policy script /p printed LarkNetworkAccounting = 3, not a"),
    ],
)
def test_garbage_from_the_policy_script_is_a_clear_error(text, message):
    with pytest.raises(ConfigError) as info:
        parse_policy_output(text, "/p")
    assert message in str(info.value)


# -- the connection policy: granted once, narrowed by the job --------------------------------

ADMIN_POLICY = Settings(
    connection_rules=parse_rules("allow tcp 10.0.0.0/8:443, deny any 0.0.0.0/0"),
    allowed_network_types=("nat", "bridge", "none"),
)


def grant(settings: Settings, text: str) -> Grant:
    return grant_of(settings, read_request(job(text)))


def test_the_grant_carries_the_admins_policy_narrowed_by_the_job():
    granted = grant(ADMIN_POLICY, 'LarkAllowedConnections = "tcp 10.1.2.3:443"')
    policy = granted.connections
    assert policy is not None
    assert policy.rules == ADMIN_POLICY.connection_rules and not policy.default_allow
    assert policy.job_rules == parse_rules("tcp 10.1.2.3:443", job=True)
    assert policy.decide(6, ip_address("10.1.2.3"), 443).rule == "job: tcp 10.1.2.3:443"
    assert not policy.decide(6, ip_address("10.1.2.4"), 443).allow  # the admin allows it


@pytest.mark.parametrize(
    ("settings", "ad", "rules", "job_rules", "default_allow"),
    [
        (Settings(), "", None, None, None),  # neither asks: no queue
        (ADMIN_POLICY, "", ADMIN_POLICY.connection_rules, None, False),
        # no admin policy: an open one, which the job's own list narrows
        (Settings(), 'LarkAllowedConnections = "udp 8.8.8.8:53"', (), "udp 8.8.8.8:53", True),
    ],
)
def test_the_grant_has_a_policy_when_either_side_asks(
    settings, ad, rules, job_rules, default_allow
):
    policy = grant(settings, ad).connections
    if rules is None:
        assert policy is None
        return
    assert policy is not None and policy.rules == rules
    assert policy.default_allow is default_allow
    assert policy.job_rules == (None if job_rules is None else parse_rules(job_rules, job=True))


def test_the_admins_default_verdict_reaches_the_grant():
    """LARK_CONNECTION_DEFAULT = allow: a connection no entry matches is let through."""
    settings = Settings(
        connection_rules=parse_rules("deny tcp 10.0.0.0/8:25"), connection_default="allow"
    )
    policy = grant(settings, "").connections
    assert policy is not None and policy.default_allow is True
    assert policy.decide(6, ip_address("192.0.2.1"), 443).allow
    assert not policy.decide(6, ip_address("10.1.2.3"), 25).allow


@pytest.mark.parametrize(
    "ad",
    [
        'LarkAllowedConnections = "udp 8.8.8.8:53"',
        # refused whatever the mode: a policy script may still change it
        'LarkAllowedConnections = "udp 8.8.8.8:53"\nWantJobNetworking = false',
    ],
)
def test_a_job_asking_for_more_than_the_admin_allows_is_refused(ad):
    with pytest.raises(JobRequestError) as info:
        grant(ADMIN_POLICY, ad)
    assert str(info.value) == (
        "job ad LarkAllowedConnections entry 1 'udp 8.8.8.8:53' asks for more than this "
        "node's connection policy allows"
    )


def test_garbage_from_the_policy_script_names_the_script_when_applied():
    granted = grant(Settings(), "")
    with pytest.raises(ConfigError) as info:
        apply_policy_output(granted, 'LarkNetworkType = "wifi"\n', "/etc/lark/policy.sh")
    assert str(info.value) == (
        'policy script /etc/lark/policy.sh printed LarkNetworkType = "wifi", not a valid value'
    )


def test_the_policy_scripts_word_keeps_the_granted_connection_policy(monkeypatch, tmp_path):
    granted = grant(ADMIN_POLICY, 'LarkAllowedConnections = "tcp 10.1.2.3:443"')
    monkeypatch.setattr(scripts.Script, "check", lambda self: None)
    monkeypatch.setattr(scripts, "run_script", lambda *args: 'LarkNetworkType = "none"\n')
    out = scripts.run_policy_script(scripts.Script("policy", "/p", 1.0), "", "", None)
    after = apply_policy_output(granted, out, "/p")
    assert after.settings.network_type is NetworkType.NONE
    assert after.connections is granted.connections
