"""The job's books without a kernel: step times, what is published, where a signal goes,
and whether a lost network stops the job."""

from __future__ import annotations

import pytest

from lark_async.decide.plan import derive_plan
from lark_async.decide.policy import Grant
from lark_async.decide.settings import Settings
from lark_async.job.books import Books, Route


def books(**settings: object) -> Books:
    return Books(derive_plan(Grant(Settings(**settings), None), "x"))  # type: ignore[arg-type]


def test_step_times_are_the_time_since_the_step_before():
    b = books()
    b.start_steps(10.0)
    b.step_done("address", 10.001)
    b.step_done("netns", 10.004)
    b.step_done("firewall", 10.0045)
    assert b.step_times == pytest.approx({"address": 0.001, "netns": 0.003, "firewall": 0.0005})
    assert b.steps_summary() == "address 1.0, netns 3.0, firewall 0.5"


def test_a_nat_job_publishes_the_plan_then_what_was_found_then_its_counts():
    b = books()
    found = {"LarkInnerAddressIPv4": "192.168.181.3", "LarkExternalAddressIPv4": "192.168.181.2"}
    before = b.publication(found, counted=True, now=5.0)  # (before the job: nothing yet)
    assert list(before.values)[:7] == [
        "LarkNetworkType",
        "LarkAddressType",
        "LarkIptableName",
        "LarkExternalInterface",
        "LarkInternalInterface",
        "LarkInnerAddressIPv4",
        "LarkExternalAddressIPv4",
    ]
    assert before.values["NetworkIncoming"] == 0
    assert before.values["AverageBandwidthUsageIncoming"] == 0.0
    assert before.status == {k: v for k, v in before.values.items() if k.startswith("Lark")}
    assert "NetworkIncoming" not in before.status

    b.spawned(100.0)
    b.observe({"Incoming": (4_000_000, 10), "Outgoing": (1000, 2)})
    after = b.publication(found, counted=True, now=104.0)
    assert after.values["NetworkIncoming"] == 4_000_000
    assert after.values["NetworkInputMb"] == 4.0
    assert after.values["AverageBandwidthUsageIncoming"] == 1_000_000  # (over 4 s)
    assert after.values["NetworkOutgoing"] == 1000


def test_counts_go_on_from_the_published_values_when_the_rules_are_made_anew():
    b = books()
    b.observe({"Incoming": (500, 5)})
    b.counts_restart()
    b.observe({"Incoming": (20, 1)})  # (fresh rules: from zero, so all of it is new)
    assert b.publication({}, counted=True, now=0.0).values["NetworkIncoming"] == 520


def test_no_counts_without_rules_or_without_accounting():
    assert "NetworkIncoming" not in books().publication({}, counted=False, now=1.0).values
    off = books(accounting=False).publication({}, counted=True, now=1.0)
    assert "NetworkIncoming" not in off.values


def test_mode_none_publishes_no_interfaces_and_bridge_its_bridge():
    assert books(network_type="none").publication({}, False, 0.0).values == {
        "LarkNetworkType": "none",
        "LarkAddressType": "none",
    }
    bridged = books(network_type="bridge").publication({}, False, 0.0).values
    assert bridged["LarkBridgeName"] == "lark"
    assert bridged["LarkAddressType"] == "dhcp"


def test_signals_during_setup_interrupt_once():
    b = books()
    assert b.route_signal(15) is Route.INTERRUPT
    assert b.interrupted == 15
    assert b.route_signal(2) is Route.IGNORE
    assert b.interrupted == 15


def test_signals_while_the_job_is_spawned_are_held_for_it():
    b = books()
    b.spawning()
    assert b.route_signal(10) is Route.HOLD
    assert b.route_signal(15) is Route.HOLD
    assert b.interrupted is None
    assert b.spawned(3.0) == [10, 15]
    assert b.spawned(4.0) == []  # (delivered once)
    assert b.job_started == 4.0


def test_a_running_job_gets_every_signal_and_a_stop_schedules_one_kill():
    b = books()
    b.spawning()
    b.spawned(1.0)
    assert b.route_signal(10) is Route.FORWARD  # (not supervised yet: nowhere to wait)
    assert b.supervised() is False  # (no stop signal came: no KILL)
    assert b.route_signal(10) is Route.FORWARD
    assert b.route_signal(2) is Route.FORWARD_AND_STOP
    assert b.route_signal(15) is Route.FORWARD  # (the KILL is already scheduled)
    assert b.stopping


@pytest.mark.parametrize("phase", ["spawning", "started"])
def test_a_stop_before_supervision_schedules_the_kill_once_supervised(phase):
    """A TERM while the job is being started reaches it (held, or forwarded) and its KILL is
    scheduled as soon as there is somewhere to wait out the grace period: a job that ignores
    TERM must not outlive it."""
    b = books()
    b.spawning()
    if phase == "spawning":
        assert b.route_signal(15) is Route.HOLD
        assert b.spawned(1.0) == [15]
    else:
        b.spawned(1.0)
        assert b.route_signal(15) is Route.FORWARD
    assert b.supervised() is True and b.stopping
    assert b.route_signal(15) is Route.FORWARD  # (the KILL is already scheduled)


def test_a_lost_network_stops_the_job_once():
    b = books()
    assert b.network_lost() is True
    assert b.network_lost() is False
    assert b.lost
