"""The firewall chosen once: from the plan, and from a state record's firewall step (what
records of every backend and version say, read back; anything else is one clear error)."""

from __future__ import annotations

import ipaddress

import pytest

from lark_async.backends import firewall
from lark_async.backends.firewall import iptables_jobs, nft_jobs
from lark_async.decide.plan import derive_plan
from lark_async.decide.policy import Grant
from lark_async.decide.reach import CLOSED, NodePort, NodeReach, Proto
from lark_async.decide.settings import Settings

ADDR = ipaddress.IPv4Address("192.168.181.3")
NAT = {  # as the supervisor writes them: these strings are the record format, kept as they are
    "chain": "LARK_x",
    "external_interface": "e_x",
    "internal_address": "192.168.181.3",
    "nat": True,
    "reach": {"ports": ["tcp 3128"], "dns": ["192.168.181.2"], "job_to_job": False},
    "accept": ["iptables-legacy"],
}
IPTABLES = {
    "family": "iptables",
    "command": "iptables-nft",
    "chain": "LARK_x",
    "external_interface": "e_x",
    "internal_address": "192.168.181.3",
    "reach": {"ports": [], "dns": [], "job_to_job": True},
    "accept": [],
}
REACH = NodeReach((NodePort(Proto.TCP, 3128, 3128),), (ipaddress.IPv4Address("192.168.181.2"),))
BRIDGE = {"family": "bridge", "chain": "LARK_x", "external_interface": "e_x",
          "mac": "02:00:00:00:00:01"}  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "chosen"),
    [
        (Settings(), nft_jobs.NatDriver),
        (Settings(firewall_backend="iptables"), iptables_jobs.Driver),
        (Settings(network_type="bridge"), nft_jobs.BridgeDriver),
        (Settings(network_type="none"), type(None)),
        (Settings(use_network_namespaces=False), type(None)),
    ],
)
def test_the_plan_chooses_the_backend_once(settings, chosen):
    assert type(firewall.driver_for(derive_plan(Grant(settings, None), "x"))) is chosen


def test_the_iptables_backend_uses_the_configured_build():
    settings = Settings(firewall_backend="iptables", iptables_command="iptables-legacy")
    plan = derive_plan(Grant(settings, None), "x")
    driver = firewall.driver_for(plan)
    assert isinstance(driver, iptables_jobs.Driver)
    assert driver.command == "iptables-legacy"
    assert driver.kernel_features == ()
    assert nft_jobs.NatDriver().kernel_features == ("nftables",)


@pytest.mark.parametrize("step", [NAT, IPTABLES, BRIDGE], ids=["inet", "iptables", "bridge"])
def test_a_record_reads_back_as_it_was_written(step):
    job = firewall.from_record(step)
    assert job.to_record() == step
    assert job.chain == "LARK_x"
    assert firewall.from_record(job.to_record()) == job


def test_what_the_drivers_make_is_what_the_record_says():
    nat = nft_jobs.NatDriver().job("LARK_x", "e_x", ADDR, accept=["iptables-legacy"], reach=REACH)
    assert nat.to_record() == NAT
    ipt = iptables_jobs.Driver("iptables-nft").job(
        "LARK_x", "e_x", ADDR, reach=NodeReach(job_to_job=True)
    )
    assert ipt.to_record() == IPTABLES
    bridged = nft_jobs.BridgeDriver().job("LARK_x", "e_x", mac="02:00:00:00:00:01")
    assert bridged.to_record() == BRIDGE


def test_an_old_record_without_accept_or_address_still_loads():
    job = firewall.from_record({"chain": "LARK_x", "external_interface": "e_x"})
    assert isinstance(job, nft_jobs.NatJob)
    assert job.rules.internal_address is None and not job.rules.nat and job.accept == ()
    assert isinstance(firewall.from_record({**NAT, "family": "inet"}), nft_jobs.NatJob)


@pytest.mark.parametrize("step", [NAT, IPTABLES], ids=["inet", "iptables"])
def test_a_record_from_before_reach_loads_with_the_node_closed(step):
    job = firewall.from_record({k: v for k, v in step.items() if k != "reach"})
    assert job.rules.reach == CLOSED  # type: ignore[attr-defined]
    assert job.to_record()["reach"] == {"ports": [], "dns": [], "job_to_job": False}


def test_a_swept_job_whose_address_is_taken_keeps_the_nat_source():
    assert firewall.from_record(NAT).without_nat_source().to_record() == {**NAT, "nat": False}
    ipt = firewall.from_record(IPTABLES)
    assert ipt.without_nat_source() is ipt  # (its MASQUERADE rule is named for its chain)


@pytest.mark.parametrize(
    ("step", "says"),
    [
        ({**NAT, "family": "ebtables"}, "family 'ebtables' is not one of inet, bridge, iptables"),
        ({**NAT, "family": None}, "family None is not one of"),
        ({**NAT, "family": ["inet"]}, "family ['inet'] is not one of"),
        ({**NAT, "family": {"inet": 1}}, "family {'inet': 1} is not one of"),
        ({**NAT, "family": 7}, "family 7 is not one of"),
        ("inet", "not an object"),
        ([NAT], "not an object"),
        ({**NAT, "chain": None}, "chain is not a string"),
        ({k: v for k, v in NAT.items() if k != "external_interface"}, "external_interface is not"),
        ({**NAT, "internal_address": "0.0.0.0/0"}, "'0.0.0.0/0' is not an IPv4 address"),
        ({**NAT, "internal_address": 3}, "internal_address is not a string"),
        ({**NAT, "nat": "yes"}, "nat is not true or false"),
        ({**NAT, "accept": "iptables-nft"}, "accepting iptables builds 'iptables-nft'"),
        ({**NAT, "accept": ["/bin/sh"]}, "accepting iptables builds ['/bin/sh']"),
        ({**NAT, "accept": [["iptables"]]}, "accepting iptables builds"),
        ({**IPTABLES, "command": "/bin/sh"}, "iptables command '/bin/sh'"),
        ({**IPTABLES, "command": ["iptables"]}, "iptables command ['iptables']"),
        ({**IPTABLES, "internal_address": None}, "internal_address is not a string"),
        ({**BRIDGE, "mac": "02:00:00:00:00:01; drop"}, "is not a MAC address"),
        ({**BRIDGE, "accept": ["/bin/sh"]}, "accepting iptables builds"),
        ({**BRIDGE, "ipv6": "yes"}, "ipv6 is not true or false"),
        ({**NAT, "internal_address6": "::/0"}, "internal_address6 '::/0' is not an IPv6"),
        ({**NAT, "internal_address6": "fd00::3", "nat6": 1}, "nat6 is not true or false"),
        ({**NAT, "reach": "all"}, "reach is not an object"),
        (
            {**NAT, "reach": {**NAT["reach"], "ports": ["tcp 0"]}},
            "reach entry 'tcp 0' has port 0, not between 1 and 65535",
        ),
        ({**NAT, "reach": {**NAT["reach"], "ports": "tcp 22"}}, "reach ports 'tcp 22' is not"),
        ({**NAT, "reach": {**NAT["reach"], "ports": ["icmp 1"]}}, "reach entry 'icmp 1'"),
        (
            {**IPTABLES, "reach": {**NAT["reach"], "dns": ["::1/128"]}},
            "reach dns ['::1/128'] is not",
        ),
        ({**IPTABLES, "reach": {**NAT["reach"], "dns": ["::/0"]}}, "reach dns ['::/0'] is not"),
        (
            {**IPTABLES, "reach": {**NAT["reach"], "dns": ["10.0.0.1 -j ACCEPT"]}},
            "reach dns ['10.0.0.1 -j ACCEPT'] is not",
        ),
        ({**IPTABLES, "reach": {**NAT["reach"], "dns": [1]}}, "reach dns [1] is not"),
        ({**NAT, "reach": {**NAT["reach"], "job_to_job": 1}}, "reach job_to_job 1 is not"),
        ({**NAT, "reach": {"ports": []}}, "reach dns None is not"),
    ],
)
def test_a_hostile_or_unknown_firewall_step_is_one_clear_error(step, says):
    with pytest.raises(firewall.FirewallRecordError, match=r"^firewall step: ") as info:
        firewall.from_record(step)
    assert says in str(info.value)


def test_each_poll_looks_at_what_the_job_has():
    nat = firewall.from_record(NAT)
    looks = [c.unreadable for c in nat.checks(counting=True)]
    assert looks == ["counters unavailable, keeping the last values", "cannot check the NAT source",
                     "cannot read the firewall, keeping the last values"]  # fmt: skip
    assert [c.unreadable for c in nat.checks(counting=False)] == looks[1:]
    assert nat.quick is False  # (a build's accept rules: a process, not inline)
    assert firewall.from_record({**NAT, "accept": []}).quick is True
    assert len(firewall.from_record(BRIDGE).checks(counting=False)) == 0
    ipt = iptables_jobs.IptablesJob(
        firewall.from_record(IPTABLES).rules,  # type: ignore[attr-defined]
        accept=("iptables-nft", "iptables-legacy"),
        build="iptables-nft",
    )
    assert len(ipt.checks(counting=False)) == 2  # its own build (with accept), the other
