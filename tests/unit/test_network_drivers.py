"""The network driver chosen once from the plan, for every mode; what each asks of the kernel
before anything exists; and setup refused before validation (netavark's rule)."""

from __future__ import annotations

import pytest

from lark_async.backends.firewall import iptables_jobs, nft_jobs
from lark_async.decide.connpolicy import ConnectionPolicy, parse_rules
from lark_async.decide.plan import derive_plan
from lark_async.decide.policy import Grant
from lark_async.decide.settings import Settings
from lark_async.job import network
from lark_async.job.network import BridgeDriver, LoopbackDriver, NatDriver

POLICY = ConnectionPolicy((), True, parse_rules("udp 10.0.0.53:53", job=True))


def plan(connections: ConnectionPolicy | None = None, **settings: object):
    return derive_plan(Grant(Settings(**settings), connections), "x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "chosen", "firewall"),
    [
        ({}, NatDriver, nft_jobs.NatDriver),
        ({"firewall_backend": "iptables"}, NatDriver, iptables_jobs.Driver),
        ({"network_type": "bridge"}, BridgeDriver, nft_jobs.BridgeDriver),
        ({"network_type": "none"}, LoopbackDriver, None),
        ({"use_network_namespaces": False}, type(None), None),
        ({"use_network_namespaces": False, "network_type": "bridge"}, type(None), None),
    ],
    ids=["nat", "nat-iptables", "bridge", "none", "off", "off-over-bridge"],
)
def test_the_plan_chooses_the_driver_once(settings, chosen, firewall):
    driver = network.driver_for(plan(**settings))
    assert type(driver) is chosen
    if driver is not None:
        assert driver.mode is driver.plan.mode
        assert type(getattr(driver, "firewall", None)) is (firewall or type(None))
        assert driver.rules is None  # (nothing applied yet)


@pytest.mark.parametrize(
    ("settings", "connections", "features"),
    [
        ({}, None, ["netns", "veth", "nftables"]),
        ({"firewall_backend": "iptables"}, None, ["netns", "veth"]),
        ({"firewall_backend": "iptables"}, POLICY, ["netns", "veth", "nftables", "nfqueue"]),
        ({}, POLICY, ["netns", "veth", "nftables", "nfqueue"]),
        ({"network_type": "bridge"}, None, ["netns", "veth", "bridge", "nftables"]),
        ({"network_type": "none"}, POLICY, ["netns"]),  # (mode none has no queue)
    ],
    ids=["nat", "nat-iptables", "iptables-policy", "nat-policy", "bridge", "none"],
)
def test_each_driver_asks_the_kernel_for_what_it_uses(settings, connections, features):
    driver = network.driver_for(plan(connections, **settings))
    assert driver is not None
    assert driver.kernel_features() == features


@pytest.mark.parametrize("mode", ["nat", "bridge", "none"])
async def test_setup_refuses_to_run_before_validate(mode, tmp_path):
    driver = network.driver_for(plan(network_type=mode))
    assert driver is not None
    done: list[str] = []

    async def step(name: str) -> None:
        done.append(name)

    with pytest.raises(network.NotValidated, match="before validation"):
        await driver.setup(network.Setup(record=None, done=step))  # type: ignore[arg-type]
    assert done == []


def test_nothing_found_before_setup():
    """What the rest of the job asks of a driver whose setup never ran (teardown after a
    failure at validation): no addresses, no lock to release, no watches."""
    for mode in ("nat", "bridge", "none"):
        driver = network.driver_for(plan(network_type=mode))
        assert driver is not None
        assert driver.attributes() == {}
        assert driver.script_addresses() == ("", "")
        assert driver.address_release() is None
        assert driver.take_watches() == []


@pytest.mark.parametrize("ipv6", ["auto", "on"])
def test_a_node_whose_ip6tables_is_missing_gives_no_ipv6_with_iptables(ipv6, monkeypatch):
    """LARK_IPV6 auto: the job gets IPv4 alone (and the log says why); on: refused, one line
    naming the missing program. (The nftables backend needs nothing more.)"""
    import contextlib

    from lark_async.backends import nodeip
    from lark_async.backends.firewall import iptables
    from lark_async.errors import ConfigError
    from lark_async.job.network import nat

    monkeypatch.setattr(nat.rtnl, "Channel", contextlib.nullcontext)
    monkeypatch.setattr(nodeip, "node_families", lambda _: nodeip.NodeFamilies(True, True))
    monkeypatch.setattr(iptables.shutil, "which", lambda p: None if p.startswith("ip6") else p)
    nftables = network.driver_for(plan(ipv6=ipv6))
    assert isinstance(nftables, NatDriver)
    nftables._families()
    assert nftables.ipv6 and nftables.ipv4
    driver = network.driver_for(plan(ipv6=ipv6, firewall_backend="iptables"))
    assert isinstance(driver, NatDriver)
    if ipv6 == "on":
        with pytest.raises(ConfigError) as info:
            driver._families()
        assert str(info.value) == (
            "LARK_IPV6 is on, but LARK_FIREWALL_BACKEND iptables (LARK_IPTABLES iptables) needs "
            "ip6tables for the job's IPv6, which is not installed"
        )
    else:
        driver._families()
        assert not driver.ipv6 and driver.ipv4
