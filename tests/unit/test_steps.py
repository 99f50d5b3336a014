"""The record's steps: a closed set of names, one undo order for every caller, and a failing
step that does not stop the others."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from lark_async.errors import KernelError
from lark_async.state import steps
from lark_async.state import undo as cleanup
from lark_async.state.steps import StepName

RECORD = {
    "address": {"lock": "/run/lark/lock/addr-192.168.181.2.lock"},
    "netns": {"netns": "lark-j"},
    "veth": {"external": "e_j"},
    "firewall": {"family": "inet", "chain": "LARK_j", "external_interface": "e_j"},
    "script": {"path": "/usr/sbin/del", "timeout": 5, "args": [], "job": "j"},
    "dhcp": {"address": "10.0.0.5"},
    "dhcp6": {"addresses": ["2001:db8::5", "2001:db8::6"]},
    "cgroup": {"path": "/sys/fs/cgroup/lark/lark-j"},
    "view": {"dir": "/run/lark/state/j.view"},
}


def test_design_md_order_dhcp_releases_before_the_delete_script_then_firewall_then_links():
    assert steps.UNDO_ORDER == (
        "cgroup", "dhcp", "dhcp6", "script", "firewall", "processes", "veth", "netns", "address",
        "view",
    )  # fmt: skip


def test_a_record_becomes_step_objects_in_undo_order_whatever_its_key_order():
    built = steps.from_record(dict(reversed(RECORD.items())))
    assert [s.name for s in built] == list(steps.UNDO_ORDER)
    assert built[5] == steps.ProcessesStep("lark-j")  # the namespace's processes, derived
    assert built[0] == steps.CgroupStep(Path("/sys/fs/cgroup/lark/lark-j"))


def test_every_recorded_name_has_a_step_and_processes_is_never_recorded():
    assert frozenset(StepName) - steps.RECORDED == {StepName.PROCESSES}
    for name in steps.RECORDED:
        assert name in [s.name for s in steps.from_record({name: RECORD[name]})]


def test_the_live_agent_releases_its_own_address_lock():
    released = []
    (step,) = steps.from_record({"address": RECORD["address"]}, lambda: released.append(1))
    step.undo()
    assert released == [1]


def test_descriptions_name_the_thing_as_cleanup_prints_it():
    assert [s.describe() for s in steps.from_record(RECORD)] == [
        "cgroup /sys/fs/cgroup/lark/lark-j",
        "DHCP lease 10.0.0.5",
        "DHCPv6 lease 2001:db8::5, 2001:db8::6",
        "delete script /usr/sbin/del",
        "firewall chain LARK_j",
        "processes in netns lark-j",
        "veth e_j",
        "netns lark-j",
        "address lock /run/lark/lock/addr-192.168.181.2.lock",
        "job files /run/lark/state/j.view",
    ]
    found = steps.FirewallStep("iptables-nft", "LARK_k", lambda: None)  # (the sweeper's)
    assert found.describe() == "iptables-nft chain LARK_k"


def test_sorting_found_steps_gives_the_record_order():
    found = [steps.NetnsStep("lark-j"), steps.VethStep("e_j"), steps.CgroupStep(Path("/c"))]
    assert [s.name for s in steps.in_order(found)] == ["cgroup", "veth", "netns"]


@dataclass(frozen=True)
class Fake(steps.Step):
    name: ClassVar[StepName] = StepName.SCRIPT
    log: list[str] = field(compare=False)
    label: str = ""
    fails: bool = False

    def undo(self) -> None:
        self.log.append(self.label)
        if self.fails:
            raise KernelError(f"{self.label} failed")

    def describe(self) -> str:
        return self.label


def test_a_failing_step_is_reported_and_the_others_still_run():
    log: list[str] = []
    todo = [Fake(log, "a"), Fake(log, "b", fails=True), Fake(log, "c")]
    errors = cleanup.undo_steps(todo, "j")
    assert log == ["a", "b", "c"]
    assert [str(e) for e in errors] == ["b failed"]


def test_a_veth_whose_namespace_is_gone_is_deleted_not_left_to_the_kernel(monkeypatch):
    deleted: list[str] = []
    monkeypatch.setattr(steps.netns, "discard_link", deleted.append)
    monkeypatch.setattr(steps.netns, "discard_netns", lambda name: None)
    monkeypatch.setattr(cleanup.netns, "netns_exists", lambda name: False)
    lingering: list[str] = []
    cleanup.undo_steps([steps.VethStep("e_j"), steps.NetnsStep("lark-j")], "j", lingering)
    assert deleted == ["e_j"] and lingering == []


def test_a_veth_in_a_live_namespace_goes_with_it(monkeypatch):
    deleted: list[str] = []
    monkeypatch.setattr(steps.netns, "discard_link", deleted.append)
    monkeypatch.setattr(steps.netns, "discard_netns", lambda name: None)
    monkeypatch.setattr(cleanup.netns, "netns_exists", lambda name: True)
    lingering: list[str] = []
    cleanup.undo_steps([steps.VethStep("e_j"), steps.NetnsStep("lark-j")], "j", lingering)
    assert deleted == [] and lingering == ["e_j"]


@pytest.mark.parametrize("name", ["shell", "../x", "Firewall"])
def test_a_name_outside_the_set_is_no_step(name):
    with pytest.raises(ValueError):
        StepName(name)


def test_a_dual_stack_address_step_frees_both_locks_and_the_proxy_first(tmp_path, monkeypatch):
    """A dead agent's pairs: both lock files go (nobody holds them), after the proxy entry."""
    import ipaddress

    done = []
    monkeypatch.setattr(steps.proxyndp, "discard", lambda *a: done.append(("proxy", *a)))
    locks = [tmp_path / "addr-192.168.181.2.lock", tmp_path / "addr-fd4c:6172:6b00::2.lock"]
    for lock in locks:
        lock.write_text("1 j\n")
    details = {"lock": str(locks[0]), "lock6": str(locks[1]),
               "proxy6_link": "uplink", "proxy6": "fd4c:6172:6b00::3"}  # fmt: skip
    (step,) = steps.from_record({"address": details})
    assert step.describe() == f"address lock {locks[0]} and {locks[1]}"
    step.undo()
    assert done == [("proxy", "uplink", ipaddress.IPv6Address("fd4c:6172:6b00::3"))]
    assert not any(lock.exists() for lock in locks)
