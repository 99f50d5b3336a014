"""Job requests within the admin's limits, and the policy script's output (pure)."""

from __future__ import annotations

import pytest

from lark_async import ads
from lark_async.errors import ConfigError, JobRequestError
from lark_async.policy import decide, parse_policy_output
from lark_async.settings import Settings

BRIDGING = Settings(allowed_network_types=("nat", "bridge", "none"))


def job(text: str):
    return ads.parse_ad(text, "job ad")


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
