"""decide/plan.py: what each mode's plan carries of the admin's settings (callouts, the
job's view of the node, IPv6), the errors that refuse a plan word for word, and a name
for each job."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import classad2
import pytest

from lark_async.decide.modes import (
    AddressType,
    FirewallBackend,
    IPv6Mode,
    IPv6Use,
    NetworkType,
)
from lark_async.decide.names import derive_agent_name
from lark_async.decide.plan import JobNetwork, derive_job_name, derive_plan
from lark_async.decide.policy import Grant
from lark_async.decide.reach import NodePort, Proto, Service
from lark_async.decide.request import JobRequest
from lark_async.decide.scripts import Script
from lark_async.decide.settings import Settings
from lark_async.errors import ConfigError

MODES = {
    "nat": {},
    "bridge": {"network_type": "bridge"},
    "none": {"network_type": "none"},
    "off": {"use_network_namespaces": False},
}

# what an admin may set for every job, each different from its default
ADMIN = {
    "create_script": "/usr/local/libexec/lark/create",
    "delete_script": "/usr/local/libexec/lark/delete",
    "script_timeout_s": 7.5,
    "iptables_command": "iptables-legacy",
    "job_dns": (ipaddress.IPv4Address("192.0.2.53"),),
    "job_resolv_conf": Path("/etc/lark/resolv.conf"),
    "loopback_services": (Service(Proto.TCP, ipaddress.IPv4Address("127.0.0.1"), 9618),),
    "node_ports": (NodePort(Proto.UDP, 5000, 5010),),
    "job_to_job": True,
    "kill_grace_s": 12.0,
    "local_network6": ipaddress.IPv6Network("fd00:1:2::/64"),
}


def plan(**settings: object) -> JobNetwork:
    return derive_plan(Grant(Settings(**settings), None), "j1")  # type: ignore[arg-type]


def error(**settings: object) -> str:
    with pytest.raises(ConfigError) as info:
        plan(**settings)
    return str(info.value)


@pytest.mark.parametrize("mode", MODES)
def test_callout_scripts_are_for_the_jobs_chain_and_veth_nat_and_bridge_only(mode):
    got = plan(**MODES[mode], **ADMIN)
    if mode in ("nat", "bridge"):
        assert got.create_script == Script("create", "/usr/local/libexec/lark/create", 7.5)
        assert got.delete_script == Script("delete", "/usr/local/libexec/lark/delete", 7.5)
    else:
        assert got.create_script is None and got.delete_script is None


@pytest.mark.parametrize("mode", MODES)
def test_the_admins_settings_for_every_job_reach_the_plan(mode):
    got = plan(**MODES[mode], **ADMIN)
    assert got.iptables_command == "iptables-legacy"
    assert got.job_dns == (ipaddress.IPv4Address("192.0.2.53"),)
    assert got.job_resolv_conf == Path("/etc/lark/resolv.conf")
    assert got.node_ports == (NodePort(Proto.UDP, 5000, 5010),)
    assert got.job_to_job is True
    assert got.kill_grace_s == 12.0
    assert got.local_network6 == ipaddress.IPv6Network("fd00:1:2::/64")
    # the node's loopback services are relayed into a namespace: mode off has none
    services = () if mode == "off" else ADMIN["loopback_services"]
    assert got.loopback_services == services


def test_the_plan_keeps_the_firewall_backend_chosen():
    assert plan(firewall_backend="iptables").firewall_backend is FirewallBackend.IPTABLES
    assert plan().firewall_backend is FirewallBackend.NFTABLES


def test_the_bridge_wait_reaches_the_bridge_plan():
    got = plan(network_type="bridge", bridge_wait_s=42.0, dhcp_timeout_s=9.0)
    assert got.bridge is not None
    assert (got.bridge.wait_s, got.bridge.dhcp_timeout_s) == (42.0, 9.0)


def test_bridge_mode_with_iptables_is_refused_word_for_word():
    assert error(network_type="bridge", firewall_backend="iptables") == (
        'bridge mode needs LARK_FIREWALL_BACKEND "nftables": bridged frames do not pass iptables'
    )


@pytest.mark.parametrize("mode", ["nat", "bridge"])
def test_routed_ipv6_without_a_prefix_is_refused_word_for_word(mode):
    assert error(**MODES[mode], ipv6="on", ipv6_mode="routed") == (
        'LARK_IPV6_MODE "routed" needs LARK_ROUTED_PREFIX6, the prefix the site routes to this'
        ' node (or LARK_IPV6 "off")'
    )


def test_under_wrap_the_name_is_the_job_id_and_the_agents_pid_never_the_slot():
    request = JobRequest(job_id="123.0")
    slot = classad2.parseOne('[Name = "slot1_2@node"]')
    name = derive_job_name(None, request, slot, 4242, unique=True)
    assert name == derive_agent_name("123.0", 4242) == "123_0-w39u"
    assert derive_job_name(None, request, slot, 4243, unique=True) != name
    assert derive_job_name("mine", request, slot, 4242, unique=True) == "mine"


def test_a_plan_built_from_words_holds_enum_members():
    """As a caller may build one (tests, a record read back): ``mode is NetworkType.NAT``
    holds, as it does for a plan derived from settings."""
    got = JobNetwork(
        name="j1",
        mode="bridge",  # type: ignore[arg-type]
        address_type="static",  # type: ignore[arg-type]
        netns="lark-j1",
        external_interface="e_j1",
        internal_interface="i_j1",
        chain="LARK_j1",
        local_network=ipaddress.IPv4Network("192.168.181.0/24"),
        accounting=True,
        accounting_interval_s=5.0,
        state_dir=Path("/s"),
        lock_dir=Path("/l"),
        firewall_backend="iptables",  # type: ignore[arg-type]
        ipv6="on",  # type: ignore[arg-type]
        ipv6_mode="routed",  # type: ignore[arg-type]
    )
    assert got.mode is NetworkType.BRIDGE
    assert got.address_type is AddressType.STATIC
    assert got.firewall_backend is FirewallBackend.IPTABLES
    assert got.ipv6 is IPv6Use.ON
    assert got.ipv6_mode is IPv6Mode.ROUTED
