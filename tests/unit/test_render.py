"""Golden nftables text: what is applied as text, through libnftables (the shared tables, a
bridged job's chain and addresses). An inet job's rules and every removal are nfnetlink
batches, golden-tested as sent in test_nft_batch.py."""

from __future__ import annotations

import dataclasses
import ipaddress
import json

import pytest

from lark_async.backends.firewall.nft import (
    BridgeRules,
    JobRules,
    render_base,
    render_bridge_add,
    render_bridge_addresses,
    render_bridge_addresses6,
    render_bridge_base,
)
from lark_async.decide.reach import CLOSED, NodeReach, parse_node_ports

BASE = """\
add table inet lark
add map inet lark jobs { type ifname : verdict ; }
add set inet lark nat_sources { type ipv4_addr ; }
add set inet lark nat_sources6 { type ipv6_addr ; }
add chain inet lark forward { type filter hook forward priority filter ; policy accept ; }
add chain inet lark input { type filter hook input priority filter ; policy accept ; }
add chain inet lark output { type filter hook output priority filter ; policy accept ; }
add chain inet lark postrouting { type nat hook postrouting priority srcnat ; policy accept ; }
flush chain inet lark forward
add rule inet lark forward iifname vmap @jobs
add rule inet lark forward oifname vmap @jobs
flush chain inet lark input
add rule inet lark input iifname vmap @jobs
flush chain inet lark output
add rule inet lark output oifname vmap @jobs
flush chain inet lark postrouting
add rule inet lark postrouting ip saddr @nat_sources oifname != "e_*" masquerade
add rule inet lark postrouting ip6 saddr @nat_sources6 oifname != "e_*" masquerade"""

NAT_JOB = JobRules(
    chain="LARK_s1-123_0",
    external_interface="e_s1-123_0",
    internal_address=ipaddress.IPv4Address("192.168.181.3"),
    nat=True,
)
NO_ADDRESS_JOB = JobRules(
    chain="LARK_p42", external_interface="e_p42", internal_address=None, nat=True
)


def test_base_ruleset():
    assert render_base() == BASE


@pytest.mark.parametrize("job", [NAT_JOB, NO_ADDRESS_JOB])
def test_job_rules_record_round_trip(job):
    record = job.to_record()
    assert json.loads(json.dumps(record)) == record
    assert JobRules.from_record(json.loads(json.dumps(record))) == job


def test_job_rules_record_is_plain_json():
    assert NAT_JOB.to_record() == {
        "chain": "LARK_s1-123_0",
        "external_interface": "e_s1-123_0",
        "internal_address": "192.168.181.3",
        "nat": True,
        "reach": {"ports": [], "dns": [], "job_to_job": False},
    }
    assert NO_ADDRESS_JOB.to_record()["internal_address"] is None


def test_what_the_job_reaches_of_the_node_is_in_its_record():
    reach = NodeReach(parse_node_ports("tcp 3128, udp 8000-8010"),
                      (ipaddress.IPv4Address("10.77.0.11"),), job_to_job=True)  # fmt: skip
    job = JobRules("LARK_x", "e_x", ipaddress.IPv4Address("192.168.181.3"), True, reach)
    record = json.loads(json.dumps(job.to_record()))
    assert record["reach"] == {"ports": ["tcp 3128", "udp 8000-8010"], "dns": ["10.77.0.11"],
                               "job_to_job": True}  # fmt: skip
    assert JobRules.from_record(record) == job


def test_job_rules_from_an_older_record_without_optional_fields():
    assert JobRules.from_record({"chain": "LARK_x", "external_interface": "e_x"}) == JobRules(
        "LARK_x", "e_x", None, nat=False, reach=CLOSED
    )


def test_a_missing_libnftables_is_a_clear_error(monkeypatch):
    import ctypes.util

    import pytest

    from lark_async.backends.firewall import nft
    from lark_async.errors import KernelError

    nft.check_available()  # installed here
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(KernelError) as info:
        nft.check_available(dirs=("/nonexistent",))
    assert str(info.value) == (
        "the nftables firewall backend needs libnftables.so.1, which is not installed "
        "(Debian: apt install nftables)"
    )


# -- bridge mode -------------------------------------------------------------------------

BRIDGE_BASE = """\
add table bridge lark
add map bridge lark ports { type ifname : verdict ; }
add chain bridge lark prerouting { type filter hook prerouting priority filter ; policy accept ; }
flush chain bridge lark prerouting
add rule bridge lark prerouting iifname vmap @ports
add chain bridge lark forward { type filter hook forward priority filter ; policy accept ; }
flush chain bridge lark forward
add rule bridge lark forward oifname vmap @ports
add chain bridge lark input { type filter hook input priority filter ; policy accept ; }
flush chain bridge lark input
add rule bridge lark input iifname "e_*" ether daddr & ff:ff:ff:ff:ff:f0 == 01:80:c2:00:00:00 drop
add chain bridge lark output { type filter hook output priority filter ; policy accept ; }
flush chain bridge lark output
add rule bridge lark output oifname vmap @ports"""

BRIDGE_JOB = BridgeRules("LARK_b7", "e_b7", "02:aa:bb:cc:dd:ee")


def test_bridge_base_checks_job_ports_at_prerouting_before_the_bridge_learns():
    assert render_bridge_base() == BRIDGE_BASE


def test_a_bridged_job_sends_only_its_own_mac_and_bound_address_and_no_dhcp():
    c = "add rule bridge lark LARK_b7"
    guard = " ; ".join(
        [
            "ether saddr != 02:aa:bb:cc:dd:ee drop",
            "arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether 02:aa:bb:cc:dd:ee "
            "arp saddr ip @LARK_b7_ip return",
            "ether type != ip drop",
            "ip saddr != @LARK_b7_ip drop",
            "udp sport { 67, 68 } drop",
            "udp dport { 67, 68 } drop",
            "meta l4proto 0-255 return",
            "drop",
        ]
    )
    assert render_bridge_add(BRIDGE_JOB) == "\n".join(
        [
            "add chain bridge lark LARK_b7",
            "add set bridge lark LARK_b7_ip { type ipv4_addr ; flags timeout ; }",
            f'{c} iifname "e_b7" jump {{ {guard} ; }}',
            f'{c} iifname "e_b7" ether type ip counter comment "Outgoing"',
            f'{c} oifname "e_b7" ether type ip counter comment "Incoming"',
            'add element bridge lark ports { "e_b7" : jump LARK_b7 }',
        ]
    )


def test_a_bridged_jobs_chain_ends_open_for_the_admins_rules():
    """A create script appends counting and dropping rules to the job's chain: no verdict
    of Lark's may end the chain before them."""
    chain = [ln for ln in render_bridge_add(BRIDGE_JOB).splitlines() if " LARK_b7 " in ln]
    outside_the_guard = [ln.split(" jump {")[0] for ln in chain]
    assert not any(v in ln for ln in outside_the_guard for v in (" accept", " drop", "return"))


def test_quotes_in_a_port_name_cannot_break_out_of_the_nft_string():
    job = BridgeRules("LARK_x", 'e_x" drop', "02:aa:bb:cc:dd:ee")
    assert 'iifname "e_x drop" ether type ip counter' in render_bridge_add(job)


def test_a_lease_binding_expires_with_the_lease_and_a_static_one_never():
    lease, static = ipaddress.IPv4Address("10.77.0.100"), ipaddress.IPv4Address("10.77.0.60")
    assert render_bridge_addresses(BRIDGE_JOB, [(lease, 3.5)]) == (
        "flush set bridge lark LARK_b7_ip\n"
        "add element bridge lark LARK_b7_ip { 10.77.0.100 timeout 3500ms }"
    )
    assert render_bridge_addresses(BRIDGE_JOB, [(static, None)]).endswith("{ 10.77.0.60 }")
    # a lease already over, or none at all: the job may use no address
    for bindings in ([(lease, 0.0)], [(lease, -2.0)], []):
        assert render_bridge_addresses(BRIDGE_JOB, bindings) == "flush set bridge lark LARK_b7_ip"


def test_bridge_rules_record_round_trip():
    record = json.loads(json.dumps(BRIDGE_JOB.to_record()))
    assert record["family"] == "bridge" and BridgeRules.from_record(record) == BRIDGE_JOB


def test_a_bridged_job_with_ipv6_is_guarded_before_ipv4_and_counted_in_both():
    """RA guard, DHCPv6 shield, :: only for DAD/RS/MLD, its own sources and neighbour
    advertisement targets (one set of 128-bit keys), then the IPv4 guard as before."""
    job = dataclasses.replace(BRIDGE_JOB, ipv6=True)
    text = render_bridge_add(job)
    v6 = "ether type ip6"
    guard = text.split(" jump { ", 1)[1].split(" ; }", 1)[0].split(" ; ")
    assert guard[2:10] == [
        f"{v6} icmpv6 type {{ nd-router-advert, nd-redirect, 138 }} drop",
        f"{v6} udp sport {{ 546, 547 }} drop",
        f"{v6} udp dport {{ 546, 547 }} drop",
        f"{v6} ip6 saddr :: icmpv6 type {{ nd-neighbor-solicit, nd-router-solicit, "
        "mld-listener-report, mld2-listener-report } return",
        f"{v6} @nh,64,128 != @LARK_b7_ip6 drop",
        f"{v6} icmpv6 type nd-neighbor-advert @th,64,128 != @LARK_b7_ip6 drop",
        f"{v6} meta l4proto 0-255 return",
        "ether type != ip drop",
    ]
    assert "add set bridge lark LARK_b7_ip6 { typeof @nh,64,128 ; flags timeout ; }" in text
    c = "add rule bridge lark LARK_b7"
    for line in (
        f'{c} iifname "e_b7" ether type {{ ip, ip6 }} counter comment "Outgoing"',
        f'{c} oifname "e_b7" ether type {{ ip, ip6 }} counter comment "Incoming"',
        f'{c} iifname "e_b7" ether type ip6 counter comment "OutgoingIPv6"',
        f'{c} oifname "e_b7" ether type ip6 counter comment "IncomingIPv6"',
    ):
        assert line in text.splitlines()
    assert "ip6" not in render_bridge_add(BRIDGE_JOB)  # (without: IPv6 dropped at the guard)
    assert BridgeRules.from_record(json.loads(json.dumps(job.to_record()))) == job


def test_the_jobs_ipv6_addresses_are_128_bit_keys_expiring_with_their_lifetime():
    ll, slaac = ipaddress.IPv6Address("fe80::1"), ipaddress.IPv6Address("fd77::1:2")
    job = dataclasses.replace(BRIDGE_JOB, ipv6=True)
    assert render_bridge_addresses6(job, [(ll, None), (slaac, 86405.0), (slaac, 0.0)]) == (
        "flush set bridge lark LARK_b7_ip6\n"
        "add element bridge lark LARK_b7_ip6 { 0xfe800000000000000000000000000001, "
        "0xfd770000000000000000000000010002 timeout 86405s }"
    )
    assert render_bridge_addresses6(job, []) == "flush set bridge lark LARK_b7_ip6"
