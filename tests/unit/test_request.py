"""The job ad read once into a JobRequest: hostile values give one short line naming the
attribute; the agent's path (bounded evaluation, then the reader) reads the same."""

from __future__ import annotations

import pytest

from lark_async.decide import ads
from lark_async.decide.connpolicy import parse_rules
from lark_async.decide.modes import AddressType, NetworkType
from lark_async.decide.request import (
    JOB_ATTRIBUTES,
    MESSAGE_MAX,
    SHOWN_MAX,
    JobRequest,
    clipped,
    read_request,
    shown,
)
from lark_async.errors import JobRequestError


def job(text: str):
    return ads.parse_ad(text, "job ad")


def as_the_agent_reads(text: str) -> JobRequest:
    """Evaluated in the bounded child first, as ``run`` and ``wrap`` do."""
    (view,) = ads.evaluate_bounded([ads.Evaluation(job(text), JOB_ATTRIBUTES)])
    return read_request(view)


@pytest.mark.parametrize(
    ("ad", "expected"),
    [
        ("", JobRequest()),
        ("WantJobNetworking = false", JobRequest(want_networking=False)),
        ('LarkNetworkType = "bridge"', JobRequest(network_type=NetworkType.BRIDGE)),
        # words and attribute names in any case
        ('LarkNetworkType = "BRIDGE"', JobRequest(network_type=NetworkType.BRIDGE)),
        ('larknetworktype = "Nat"', JobRequest(network_type=NetworkType.NAT)),
        ("WANTJOBNETWORKING = FALSE", JobRequest(want_networking=False)),
        ('LarkAddressType = "Static"', JobRequest(address_type=AddressType.STATIC)),
        # expressions over the job's own attributes are the job's to write
        ('LarkNetworkType = Wanted\nWanted = "none"', JobRequest(network_type=NetworkType.NONE)),
        (
            'LarkNetworkType = ifThenElse(RequestCpus > 1, "bridge", "nat")\nRequestCpus = 2',
            JobRequest(network_type=NetworkType.BRIDGE),
        ),
        ("InboundConnectivity = !false", JobRequest(inbound=True)),
        ("OutboundConnectivity = 1 > 2", JobRequest(outbound=False)),
        # undefined is "not asked": absent, a missing attribute, the machine's (no TARGET here)
        ("LarkNetworkType = undefined", JobRequest()),
        ("LarkNetworkType = NoSuchAttribute", JobRequest()),
        ("WantJobNetworking = TARGET.HasNetwork", JobRequest()),
        ("NetworkAccounting = false", JobRequest(accounting=False)),
        ("ClusterId = 12\nProcId = 3", JobRequest(job_id="12.3")),
        ("ClusterId = 12\nProcId = -3", JobRequest()),  # not an id: no name from it, no error
        ("ClusterId = 0\nProcId = 0", JobRequest(job_id="0.0")),
        ("ClusterId = -1\nProcId = 0", JobRequest()),
        ('ClusterId = "12"\nProcId = 3', JobRequest()),
        ("ClusterId = 12\nProcId = true", JobRequest()),
        (
            'LarkAllowedConnections = "tcp 10.0.0.5:443, udp 10.0.0.53:53"',
            JobRequest(
                allowed_connections=parse_rules("tcp 10.0.0.5:443, udp 10.0.0.53:53", job=True)
            ),
        ),
        # what the job ad cannot set is not even read
        ('LarkStartupScript = "/tmp/x"\nLarkBridgeDevice = "eth0"', JobRequest()),
    ],
)
def test_the_job_ad_is_read_into_typed_requests(ad, expected):
    assert read_request(job(ad)) == expected
    assert as_the_agent_reads(ad) == expected


def test_the_requests_are_enum_members():
    request = read_request(job('LarkNetworkType = "BRIDGE"\nLarkAddressType = "DHCP"'))
    assert request.network_type is NetworkType.BRIDGE
    assert request.address_type is AddressType.DHCP


HUGE = "x" * 1_000_000


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ad", "message"),
    [
        ('WantJobNetworking = "no"', 'job ad WantJobNetworking must be true or false, not "no"'),
        ("WantJobNetworking = 1", "job ad WantJobNetworking must be true or false, not 1"),
        (
            "OutboundConnectivity = 0.5",
            "job ad OutboundConnectivity must be true or false, not 0.5",
        ),
        (
            "InboundConnectivity = error",
            "job ad InboundConnectivity must be true or false, not an error",
        ),
        ("NetworkAccounting = 1/0", "job ad NetworkAccounting must be true or false, not an error"),
        (
            'NetworkAccounting = "a" + 1',
            "job ad NetworkAccounting must be true or false, not an error",
        ),
        (
            'LarkNetworkType = "host; rm -rf /"',
            'job ad LarkNetworkType must be one of nat, bridge, none, not "host; rm -rf /"',
        ),
        # "off" is USE_NETWORK_NAMESPACES, the admin's; a job cannot turn Lark off
        (
            'LarkNetworkType = "off"',
            'job ad LarkNetworkType must be one of nat, bridge, none, not "off"',
        ),
        (
            'LarkNetworkType = " nat"',
            'job ad LarkNetworkType must be one of nat, bridge, none, not " nat"',
        ),
        (
            "LarkNetworkType = true",
            "job ad LarkNetworkType must be one of nat, bridge, none, not True",
        ),
        (
            'LarkAddressType = "wifi"',
            'job ad LarkAddressType must be one of local, dhcp, static, not "wifi"',
        ),
        (
            f'LarkNetworkType = "{HUGE}"',
            f'job ad LarkNetworkType must be one of nat, bridge, none, not "{"x" * 60}..."',
        ),
        (
            '[ LarkNetworkType = "a\\nb\\tc" ]',  # one line, whatever the value holds
            'job ad LarkNetworkType must be one of nat, bridge, none, not "a?b?c"',
        ),
        (
            "LarkAllowedConnections = 5",
            "job ad LarkAllowedConnections must be a string of entries, not 5",
        ),
        (
            'LarkAllowedConnections = "deny tcp 10.0.0.1:22"',
            "job ad LarkAllowedConnections entry 1 'deny tcp 10.0.0.1:22': a job may only list "
            "what it wants allowed",
        ),
        ('LarkAllowedConnections = ", ,"', "job ad LarkAllowedConnections has no entries"),
        (
            'LarkAllowedConnections = "tcp 10.0.0.1:99999"',
            "job ad LarkAllowedConnections entry 1 'tcp 10.0.0.1:99999': port range 99999 is not "
            "within 1-65535, low to high",
        ),
    ],
)
def test_a_bad_request_is_one_line_naming_the_attribute(ad, message):
    for read in (lambda text: read_request(job(text)), as_the_agent_reads):
        with pytest.raises(JobRequestError) as info:
            read(ad)
        assert str(info.value) == message


@pytest.mark.parametrize(
    "ad",
    [
        "WantJobNetworking = { true }",  # a list
        "WantJobNetworking = [ A = true ]",  # an ad
        'LarkNetworkType = { "nat" }',
        'LarkAllowedConnections = [ X = "tcp 10.0.0.1:22" ]',
    ],
)
def test_values_that_are_not_plain_are_refused(ad):
    attr = ad.split(" ")[0]
    with pytest.raises(JobRequestError, match=f"^job ad {attr} must be "):
        read_request(job(ad))
    with pytest.raises(JobRequestError, match=f"^job ad {attr} must be .* not an error$"):
        as_the_agent_reads(ad)


def test_a_huge_connection_list_gives_a_short_message():
    entry = "tcp " + "1" * 100_000
    with pytest.raises(JobRequestError) as info:
        read_request(job(f'LarkAllowedConnections = "{entry}"'))
    message = str(info.value)
    assert message.startswith("job ad LarkAllowedConnections entry 1 ")
    assert len(message) <= MESSAGE_MAX
    assert message.endswith("...': is longer than 100 characters")


def test_the_first_bad_request_is_the_one_named():
    with pytest.raises(JobRequestError, match=r"^job ad WantJobNetworking "):
        read_request(job('WantJobNetworking = "yes"\nLarkNetworkType = "wifi"'))


def test_a_message_is_clipped_at_message_max_and_a_value_shown_to_shown_max():
    assert clipped("x" * MESSAGE_MAX) == "x" * MESSAGE_MAX
    assert clipped("x" * (MESSAGE_MAX + 1)) == "x" * (MESSAGE_MAX - 3) + "..."
    assert shown("a" * SHOWN_MAX) == '"' + "a" * SHOWN_MAX + '"'
    assert shown("a" * (SHOWN_MAX + 1)) == '"' + "a" * SHOWN_MAX + '..."'
    assert shown(int("1" * SHOWN_MAX)) == "1" * SHOWN_MAX
    assert shown(int("1" * (SHOWN_MAX + 1))) == "1" * SHOWN_MAX + "..."
