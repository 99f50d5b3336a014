"""What every network driver offers the supervisor, in netavark's shape (src/network/driver.rs).

* ``validate``: before anything exists: the admin's scripts, the kernel's features
  (backends/netlink/probe.py), the firewall backend's programs. Blocking, quick.
* ``setup``: each resource noted in the state record before it is made, the kernel work
  done, the setup steps timed (their names are ``_LARK_TEST_PAUSE_AFTER``'s); refuses to
  run before ``validate``.
* ``teardown``: only what must happen before the record is undone (the DHCP RELEASE while
  the link is there, say). The record's undo itself is state/undo.py's, shared with the
  sweeper, so that a dead agent's job goes the same way.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ...backends import firewall, nodeip, shaping
from ...backends.netlink import probe, rtnl
from ...decide.modes import IPv6Use, NetworkType
from ...decide.plan import JobNetwork
from ...decide.resolver import Lan
from ...errors import ConfigError, map_errors
from ...state.record import Record
from ...state.steps import StepName

log = logging.getLogger("lark.supervisor")


class NotValidated(RuntimeError):
    """``setup`` called before ``validate``: a bug in the caller, said plainly."""


@dataclass
class Setup:
    """What a driver's setup is handed: the record to note in, the step clock, and for the
    drivers with a long task of their own (bridge: the DHCP lease) a nursery to run it in
    and a way to have the update ad published again."""

    record: Record
    done: Callable[[str], Awaitable[None]]  # after each named step (timed; a test may pause)
    nursery: trio.Nursery | None = None
    changed: Callable[[], object] = lambda: None


@dataclass
class Watch:
    """A link the job's network depends on, watched for its deletion while the job runs."""

    socket: socket.socket
    name: str  # as watch_link logs it
    lost: str  # why the job is stopped when it goes


class NetworkDriver(ABC):
    """One job's network. The base is the part all modes share: validation of the scripts
    and the kernel, and the watches the setup opened."""

    mode: NetworkType

    def __init__(self, plan: JobNetwork) -> None:
        self.plan = plan
        self.watches: list[Watch] = []  # handed to the supervisor's watch tasks
        self._validated = False

    def kernel_features(self) -> list[str]:
        """What the kernel must offer (probe.py's names), asked before anything is made."""
        return ["netns"]

    def validate(self) -> None:
        for script in (self.plan.create_script, self.plan.delete_script):
            if script is not None:
                script.check()
        probe.require(*self.kernel_features())
        self._check_programs()
        self._validated = True

    def _check_programs(self) -> None:
        """The programs or libraries the driver's backends need are installed."""
        return None

    @property
    def validated(self) -> bool:
        return self._validated

    async def setup(self, ctx: Setup) -> None:
        if not self._validated:
            raise NotValidated(f"{self.plan.name}: network setup before validation")
        await self._setup(ctx)

    @abstractmethod
    async def _setup(self, ctx: Setup) -> None: ...

    async def teardown(self) -> list[threading.Thread]:
        """Before the record's undo; returns the threads still closing the driver's sockets,
        for the caller to join after the undo (they overlap it)."""
        return []

    # -- what the rest of the job's life asks of the network ------------------------------

    @property
    def rules(self) -> firewall.JobFirewall | None:
        """The job's firewall, once applied (it counts the job's traffic)."""
        return None

    def attributes(self) -> dict[str, object]:
        """What the update ad says of the job's addresses, beyond the plan's."""
        return {}

    def script_addresses(self) -> tuple[str, str]:
        """(external, internal) IPv4 for the admin's scripts."""
        return "", ""

    def script_env(self) -> dict[str, str]:
        """What else the admin's scripts get in their environment (the job's IPv6)."""
        return {}

    def lan(self) -> Lan | None:
        """A bridged job's address, DNS servers and names on its LAN now (its view follows)."""
        return None

    def allow_dns(self, servers: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]) -> None:
        """Before setup: the node's own addresses that serve the job's DNS (NAT opens them)."""
        return None

    def address_release(self) -> Callable[[], None] | None:
        """For the record's undo: how to drop the address lock this agent holds itself."""
        return None

    async def rules_restored(self) -> None:
        """After the job's rules were put back anew: what else they must hold again."""
        return None

    def take_watches(self) -> list[Watch]:
        watches, self.watches = self.watches, []
        return watches

    def close_watches(self) -> None:
        """Setup stopped before the watch tasks took them."""
        for watch in self.take_watches():
            watch.socket.close()


class ConnectedDriver(NetworkDriver):
    """The modes with a veth: a firewall backend (chosen once, from the plan), the job's
    rules once applied, and the connection policy's kernel needs."""

    link_features: tuple[str, ...] = ("veth",)

    def __init__(self, plan: JobNetwork) -> None:
        super().__init__(plan)
        found = firewall.driver_for(plan)
        assert found is not None  # (a connected mode always has one)
        self.firewall: firewall.FirewallDriver = found
        self._rules: firewall.JobFirewall | None = None

    def kernel_features(self) -> list[str]:
        wanted = list(self.firewall.kernel_features)
        if self.plan.connections is not None and "nftables" not in wanted:
            wanted.append("nftables")  # (the connection policy's flow set is nft's)
        if self.plan.connections is not None:
            wanted.append("nfqueue")
        return [*super().kernel_features(), *self.link_features, *wanted]

    def _check_programs(self) -> None:
        self.firewall.check_available()

    async def _shape(self) -> None:
        """The job's bandwidth limits on both ends of its veth, once the pair exists
        (backends/shaping.py); they go with it, so nothing is recorded."""
        plan = self.plan
        if plan.bandwidth is not None:
            await trio.to_thread.run_sync(
                shaping.apply,
                plan.bandwidth,
                plan.name,
                plan.external_interface,
                plan.internal_interface,
                plan.netns,
            )

    def _bandwidth_attributes(self) -> dict[str, object]:
        """``LarkBandwidthLimitMbit`` (and each direction when they differ), when shaped."""
        return self.plan.bandwidth.attributes if self.plan.bandwidth is not None else {}

    @property
    def rules(self) -> firewall.JobFirewall | None:
        return self._rules


def node_ipv6(plan: JobNetwork) -> nodeip.NodeFamilies | None:
    """The node's families when LARK_IPV6 may give the job IPv6 (None: it is off), logged
    when the node lacks IPv6; LARK_IPV6 = on refuses the job then."""
    if plan.ipv6 is IPv6Use.OFF:
        return None
    with rtnl.Channel() as host, map_errors("read the node's addresses and routes"):
        node = nodeip.node_families(host)
    if not node.ipv6:
        if plan.ipv6 is IPv6Use.ON:
            raise ConfigError(f"LARK_IPV6 is on, but this node has {node.why_not6}")
        log.info("%s: no IPv6 for the job: the node has %s", plan.name, node.why_not6)
    return node


def note_links(record: Record, plan: JobNetwork) -> tuple[Callable[[str], None], ...]:
    """netns.setup_job_netns's ``before`` and ``not_ours``: the namespace and the veth noted
    before each is made, and forgotten when it turned out to be someone else's."""

    def before(step: str) -> None:
        if StepName(step) is StepName.NETNS:
            record.note(StepName.NETNS, netns=plan.netns)
        else:
            record.note(StepName.VETH, external=plan.external_interface)

    def not_ours(step: str) -> None:
        record.forget(StepName(step))

    return before, not_ours
