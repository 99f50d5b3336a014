"""State records: created whole or not at all, and checked before undo reads them."""

from __future__ import annotations

import json

import pytest

from lark_async.backends.firewall import iptables, nft
from lark_async.errors import ResourceError
from lark_async.state.record import Record, UnreadableRecord, temp_owner

NAME = "s1-42_0"


def nat_record(state_dir):
    """A record as the supervisor writes one for a NAT job with a delete script."""
    record = Record.create(state_dir, NAME, {"mode": "nat"})
    record.note("address", lock_dir=str(state_dir.parent / "lock"))
    record.note("address", lock=str(state_dir.parent / "lock" / "addr-192.168.181.2.lock"))
    record.note("netns", netns=f"lark-{NAME}")
    record.note("veth", external=f"e_{NAME}")
    rules = nft.JobRules(
        f"LARK_{NAME}", f"e_{NAME}", nft.ipaddress.IPv4Address("192.168.181.3"), True
    )
    record.note("firewall", **rules.to_record())
    args = [f"LARK_{NAME}", f"e_{NAME}", "192.168.181.3"]
    stdin = "[]\n------\n[]\n"
    record.note("script", path="/sbin/del", timeout=30.0, args=args, stdin=stdin, env={}, job=NAME)
    return record


def test_a_record_appears_whole_and_a_second_one_of_that_name_is_refused(tmp_path):
    state = tmp_path / "state"
    record = Record.create(state, NAME, {"mode": "nat"})
    assert json.loads(record.path.read_text())["name"] == NAME  # its first content, at once
    with pytest.raises(ResourceError, match=f"job name {NAME} is in use"):
        Record.create(state, NAME, {"mode": "nat"})
    assert sorted(p.name for p in state.iterdir()) == [f"{NAME}.json"]  # no temporary left


def test_what_the_supervisor_writes_reads_back(tmp_path):
    record = nat_record(tmp_path / "state")
    assert Record.load(record.path).steps == record.steps
    ipt = iptables.IptablesRules("iptables-nft", f"LARK_{NAME}", f"e_{NAME}",
                                 nft.ipaddress.IPv4Address("192.168.181.3"))  # fmt: skip
    record.note("firewall", **ipt.to_record())
    assert Record.load(record.path).steps["firewall"]["family"] == "iptables"
    record.note("firewall", **nft.BridgeRules(f"LARK_{NAME}", f"e_{NAME}", "02:00:00:00:00:01")
                .to_record())  # fmt: skip
    record.note("dhcp", address="10.0.0.5", server="10.0.0.1", mac="02:00:00:00:00:01",
                client_id="ff00")  # fmt: skip
    assert Record.load(record.path).steps["dhcp"]["server"] == "10.0.0.1"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("  \n", "empty"),
        ('{"name": "s1-42_0", "pid": 1, "st', "not JSON"),
        ("\udcff".encode("utf-8", "surrogateescape").decode("latin-1"), "not JSON"),
        ("[" * 100_000, "unreadable"),
        ("[1, 2]", "not a JSON object"),
        ('{"name": "other", "pid": 1, "steps": {}}', "is not 's1-42_0'"),
        ('{"name": "s1-42_0", "pid": "1", "steps": {}}', "pid"),
        ('{"name": "s1-42_0", "pid": 1, "steps": []}', "steps"),
        ('{"name": "s1-42_0", "pid": 1, "steps": {"shell": {}}}', "unknown step"),
        ('{"name": "s1-42_0", "pid": 1, "steps": {"processes": {}}}', "unknown step"),
    ],
)
def test_an_unreadable_record_says_why(tmp_path, text, says):
    path = tmp_path / f"{NAME}.json"
    path.write_text(text)
    with pytest.raises(UnreadableRecord, match=says):
        Record.load(path)


HOSTILE = {  # what undo would act on, were it trusted: none of it is this job's
    "netns": ("netns", "netns", "../../proc/1/ns/net"),
    "netns of another job": ("netns", "netns", "lark-other"),
    "veth": ("veth", "external", "uplink"),
    "chain": ("firewall", "chain", "postrouting"),
    "chain's interface": ("firewall", "external_interface", "eth0"),
    "iptables command": ("firewall", "command", "/bin/sh"),
    "accepting build": ("firewall", "accept", ["/bin/sh"]),
    "accepting builds": ("firewall", "accept", "iptables-nft"),
    "address": ("firewall", "internal_address", "0.0.0.0/0"),
    "lock": ("address", "lock", "/etc/passwd"),
    "lock path": ("address", "lock", "/run/lark/lock/../../../etc/addr-1.2.3.4.lock"),
    "IPv4 lock as IPv6": ("address", "lock6", "/run/lark/lock/addr-1.2.3.4.lock"),
    "IPv6 lock as IPv4": ("address", "lock", "/run/lark/lock/addr-fd4c::2.lock"),
    "IPv6 lock not as the pool names it": (
        "address",
        "lock6",
        "/run/lark/lock/addr-fd4c:0::2.lock",
    ),
    "IPv6 lock path": ("address", "lock6", "/run/lark/lock/../../etc/addr-fd4c::2.lock"),
    "IPv6 lock relative": ("address", "lock6", "addr-fd4c::2.lock"),
    "IPv6 address": ("firewall", "internal_address6", "::/0"),
    "nat6": ("firewall", "nat6", "yes"),
    "iptables IPv6 address": ("iptables", "internal_address6", "::/0"),
    "iptables IPv6 address with a rule": ("iptables", "internal_address6", "fd4c::3 -j ACCEPT"),
    "iptables IPv6 address as IPv4": ("iptables", "internal_address6", "192.168.181.3"),
    "iptables nat6": ("iptables", "nat6", "yes"),
    "iptables command of IPv6": ("iptables", "command", "ip6tables-nft"),
    "iptables accepting build of IPv6": ("iptables", "accept", ["ip6tables"]),
    "iptables IPv6 DNS": ("iptables", "reach", {"ports": [], "dns": ["::/0"], "job_to_job": False}),
    "proxy link": ("address", "proxy6_link", "../../x"),
    "proxy link name": ("address", "proxy6_link", "eth0 up"),
    "proxy address": ("address", "proxy6", "fd4c::/64"),
    "script": ("script", "path", "rm"),
    "script args": ("script", "args", "-rf /"),
    "script job": ("script", "job", "other"),
    "dhcp server": ("dhcp", "server", "not an address"),
    "dhcp6 bridge": ("dhcp6", "bridge", "../br0"),
    "dhcp6 MAC": ("dhcp6", "mac", "02:00"),
    "dhcp6 link-local": ("dhcp6", "link_local", "fd77::1"),
    "dhcp6 DUID": ("dhcp6", "duid", "zz"),
    "dhcp6 server": ("dhcp6", "server", 7),
    "dhcp6 IAID": ("dhcp6", "iaid", "1"),
    "dhcp6 no addresses": ("dhcp6", "addresses", []),
    "dhcp6 address": ("dhcp6", "addresses", ["10.0.0.5"]),
}
DHCP6 = {"bridge": "lark", "mac": "02:00:00:00:00:01", "link_local": "fe80::1", "duid": "0003",
         "server": "0002", "iaid": 7, "addresses": ["fd77::100"]}  # fmt: skip


@pytest.mark.parametrize("what", list(HOSTILE))
def test_a_record_naming_what_is_not_its_jobs_is_unreadable(tmp_path, what):
    record = nat_record(tmp_path / "state")
    step, key, value = HOSTILE[what]
    if step == "firewall" and key == "command":
        record.steps["firewall"]["family"] = "iptables"
    if step == "iptables":  # a dual-stack job's step of the iptables backend
        record.steps["firewall"] |= IPTABLES6
        step = "firewall"
    if step == "dhcp":
        record.steps["dhcp"] = {"address": "10.0.0.5", "mac": "02:00:00:00:00:01",
                                "client_id": "ff"}  # fmt: skip
    if step == "dhcp6":
        record.steps["dhcp6"] = dict(DHCP6)
    if key == "proxy6":
        record.steps["address"]["proxy6_link"] = "uplink"
    if key == "proxy6_link":
        record.steps["address"]["proxy6"] = "fd4c::3"
    record.steps[step][key] = value
    record.save()
    with pytest.raises(UnreadableRecord):
        Record.load(record.path)


def test_a_dual_stack_records_ipv6_is_read_back(tmp_path):
    record = nat_record(tmp_path / "state")
    record.steps["dhcp6"] = dict(DHCP6)
    record.steps["address"] |= {"lock6": "/run/lark/lock/addr-fd4c:6172:6b00::2.lock",
                                "proxy6_link": "uplink", "proxy6": "fd4c:6172:6b00::3"}  # fmt: skip
    record.steps["firewall"] |= {"internal_address6": "fd4c:6172:6b00::3", "nat6": True}
    record.save()
    assert Record.load(record.path).steps == record.steps


IPTABLES6 = {"family": "iptables", "command": "iptables-nft", "accept": ["ip6tables-legacy"],
             "internal_address6": "fd4c:6172:6b00::3", "nat6": True}  # fmt: skip


def test_an_iptables_jobs_ipv6_is_read_back_and_an_ipv6_only_one_has_no_ipv4(tmp_path):
    record = nat_record(tmp_path / "state")
    record.steps["firewall"] |= IPTABLES6
    record.save()
    assert Record.load(record.path).steps == record.steps
    record.steps["firewall"]["internal_address"] = None  # (an IPv6-only node's job)
    record.save()
    assert Record.load(record.path).steps == record.steps
    del record.steps["firewall"]["internal_address6"]  # no address at all: not a job's
    record.save()
    with pytest.raises(UnreadableRecord, match="internal_address is not a string"):
        Record.load(record.path)


def test_temporary_files_name_their_job():
    assert temp_owner(f".{NAME}.json.abc123") == NAME
    assert temp_owner(f"{NAME}.json") is None
    assert temp_owner(".x y.json.abc") is None  # not a job name Lark makes
