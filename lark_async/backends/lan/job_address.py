"""A bridged job's address for its whole life: static, or a DHCP lease kept by dhcp/.

The job may be root in its namespace, so nothing there is trusted for its address: the
DHCP client and the conflict probe run from the bridge's side of the job's port (``JobSide``:
they hear only what the bridge sends out of the port, and speak into the bridge as the
job), the way a switch's DHCP snooping builds its bindings from what the uplink answers.
The job itself sends no DHCP (its firewall drops it). A netlink channel inside the job's
namespace puts the address on the job's interface. The firewall's set of the job's own
addresses follows the lease and expires with it, so anti-spoofing lets through exactly
what the job may use.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from dhcp import arp
from dhcp import options as opt
from dhcp.bpf import send_socket
from dhcp.client import Client, Config
from dhcp.errors import DhcpFailed
from dhcp.events import Action, GaveUp, LeaseBound, LeaseLost, LeaseRenewed
from dhcp.lease import Lease
from dhcp.trio_driver import Driver, Sockets, probe_address

from ...decide.resolver import Lan
from ...errors import KernelError, LarkError, ResourceError, map_errors
from .. import firewall
from ..netlink import rtnl
from .lease_link import LeaseOnLink, OnLink

if TYPE_CHECKING:  # plan loads classad2, which dhcp-test does without
    from ...decide.plan import JobNetwork

log = logging.getLogger("lark.bridged")
RETRY_AFTER_LOSS_S = 10.0  # a lease lost for good: ask again after this


@dataclass
class JobSide:
    """The job's interface as the agent reaches it: a netlink channel opened inside the job's
    namespace, the job's MAC as setup found it (before the job ran), and, for DHCP, the
    client's sockets on the job's bridge port, opened in the bridge's namespace
    (``open_port``)."""

    channel: rtnl.Channel
    mac: bytes
    sockets: Sockets | None = None

    @classmethod
    def open(cls, internal: str) -> JobSide:
        """Inside the job's namespace."""
        channel = rtnl.Channel()
        try:
            link = channel.link(internal)
            if link is None or len(link.mac) != 6:
                raise KernelError(f"{internal} has no Ethernet address")
            return cls(channel, link.mac)
        except BaseException:
            channel.close()
            raise

    def open_port(self, port: str, bridge: str) -> None:
        """In the bridge's namespace, once ``port`` is a port of ``bridge``."""
        with map_errors(f"open the DHCP client's sockets on {port}"):
            self.sockets = Sockets.open_port(port, bridge, self.mac, arp_probe=True)

    def close(self) -> None:
        for close in self.closers():
            close()

    def closers(self) -> list[Callable[[], None]]:
        """One call per socket, to close them in parallel (see Supervisor.teardown)."""
        found = [self.channel.close]
        if self.sockets is not None:
            found += self.sockets.closers()
        return found


def lease_attributes(lease: Lease, mac: bytes, now_monotonic: float) -> dict[str, object]:
    """A lease in the names Lark publishes (DESIGN.md section 3)."""
    start_epoch = time.time() - (now_monotonic - lease.start)
    values: dict[str, object] = {
        "LarkInnerAddressIPv4": str(lease.address),
        "LarkSubnetMask": str(lease.network.netmask),
        "LarkDHCPServer": str(lease.server_id),
        "LarkDHCPLeaseLifetime": -1 if lease.lifetime_s == float("inf") else int(lease.lifetime_s),
        "LarkDHCPLeaseStart": int(start_epoch),
        "LarkDHCPMacAddress": mac.hex(":"),
    }
    gateway = next((g for n, g in OnLink.from_lease(lease).routes if n.prefixlen == 0), None)
    if gateway is not None:
        values["LarkGateway"] = str(gateway)
    if lease.hostname:
        values["LarkHostname"] = lease.hostname
    return values


def node_has(address: ipaddress.IPv4Address) -> bool:
    """Whether ``address`` is one of the node's own (the bridge's, say): the job's probe goes
    out through the bridge, so the node itself never hears it to answer."""
    with rtnl.Channel() as host:
        return host.is_local(address)


def client_identity(name: str, mac: bytes) -> bytes:
    """RFC 4361 client id: the job's own MAC (DUID-LL) and an IAID from its name, so two jobs
    on a node never share an identity, and a job keeps its own across renewals."""
    iaid = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    return opt.client_id(iaid, opt.duid_ll(mac))


class BridgeAddress:
    def __init__(
        self,
        plan: JobNetwork,
        side: JobSide,
        rules: firewall.JobFirewall,
        changed: Callable[[], object],
        remember: Callable[[dict[str, object] | None], None] = lambda lease: None,
    ) -> None:
        assert plan.bridge is not None
        self.plan = plan
        self.bridge = plan.bridge
        self.side = side
        self.rules = rules
        self.changed = changed  # publish the update ad
        self.remember = remember  # the lease in the state record, for a sweeper to release
        self.on_link = LeaseOnLink(side.channel, plan.internal_interface)
        self.lease: Lease | None = None
        self.state = "none"
        self.renewals = 0
        self.driver: Driver | None = None
        self.static: OnLink | None = None

    @property
    def mac(self) -> bytes:
        return self.side.mac

    @property
    def sockets(self) -> Sockets:
        assert self.side.sockets is not None
        return self.side.sockets

    # -- static ---------------------------------------------------------------

    async def use_static(self) -> None:
        """Probe the LAN for the admin's address first: an address in use is refused."""
        iface = self.bridge.static
        assert iface is not None
        if node_has(iface.ip):
            raise ResourceError(f"static address {iface.ip} is already in use by this node itself")
        port, bridge = self.plan.external_interface, self.bridge.name
        with map_errors(f"open an ARP socket on {port}"):
            hear = arp.open_port_socket(port)
        say = send_socket()
        try:
            holder = await probe_address(hear, self.mac, iface.ip, arp.FAST, via=(say, bridge))
        finally:  # nothing listens on the port for the job's life (closing one waits ~10 ms)
            say.close()
            threading.Thread(target=hear.close, daemon=True).start()
        if holder is not None:
            raise ResourceError(
                f"static address {iface.ip} is already in use on the LAN "
                f"(answered by {holder.hex(':')})"
            )
        self.static = OnLink.static(iface, self.bridge.gateway)
        with map_errors(f"configure {iface} on {self.plan.internal_interface}"):
            self.on_link.apply_config(self.static)
        with map_errors(f"allow {iface.ip} in {self.rules.chain}"):
            self.rules.set_addresses(self.bindings())
        self.state = "static"
        log.info("%s: static address %s on the LAN", self.plan.name, iface)

    # -- DHCP -------------------------------------------------------------------

    async def keep_lease(self, *, task_status: trio.TaskStatus[Lease] = trio.TASK_STATUS_IGNORED):
        """Get a lease (reported through ``task_status``), then keep one for the job's life:
        renew, rebind, and after a loss ask again until the job ends."""
        remembered: Lease | None = None
        first = True
        while True:
            config = Config(
                chaddr=self.mac,
                client_id=client_identity(self.plan.name, self.mac),
                hostname=None,
                timeout_s=self.bridge.dhcp_timeout_s,
                probe=arp.FAST,
            )
            client = Client(config, rng=random.Random(), remembered=remembered)
            self.driver = Driver(client, self.sockets, self._on_action, taken=node_has)
            if first:
                try:
                    await self.driver.run(task_status=task_status)
                except DhcpFailed as exc:
                    raise ResourceError(
                        f"no DHCP lease for {self.plan.internal_interface} on bridge "
                        f"{self.bridge.name}: {exc}"
                    ) from exc
                first = False
            else:
                try:
                    await self.driver.run()
                except DhcpFailed as exc:
                    log.warning("%s: still no DHCP lease: %s", self.plan.name, exc)
            if self.state == "released":
                return
            remembered = client.remembered
            self._set_state("searching")
            await trio.sleep(RETRY_AFTER_LOSS_S)

    def _on_action(self, action: Action) -> None:
        name = self.plan.name
        if isinstance(action, LeaseBound | LeaseRenewed):
            lease = action.lease
            self._configure(lease)
            if isinstance(action, LeaseRenewed):
                self.renewals += 1
                log.info("%s: DHCP lease on %s renewed (%s)", name, lease.address, lease.server_id)
            else:
                log.info(
                    "%s: DHCP lease %s/%d from %s for %g s",
                    name,
                    lease.address,
                    lease.prefixlen,
                    lease.server_id,
                    lease.lifetime_s,
                )
            self._set_state("bound")
        elif isinstance(action, LeaseLost):
            self._configure(None)
            if action.reason == "released":
                self.state = "released"
                return
            log.warning(
                "%s: DHCP lease on %s lost (%s); the job has no address until a new one comes",
                name,
                action.lease.address,
                action.reason,
            )
            self._set_state(f"lost ({action.reason})")
        elif isinstance(action, GaveUp):
            log.info("%s: DHCP: %s", name, action.reason)

    def _configure(self, lease: Lease | None) -> None:
        """Address and routes on the job's interface, and the firewall's allowed source."""
        if lease != self.lease:
            self.remember(
                None
                if lease is None
                else {
                    "address": str(lease.address),
                    "server": str(lease.server_id),
                    "mac": self.mac.hex(":"),
                    "client_id": client_identity(self.plan.name, self.mac).hex(),
                }
            )
        self.lease = lease
        try:
            with map_errors(f"configure the DHCP lease on {self.plan.internal_interface}"):
                self.on_link.apply(lease)
            with map_errors(f"allow the leased address in {self.rules.chain}"):
                self.rules.set_addresses(self.bindings())
        except LarkError as exc:
            log.error("%s: %s", self.plan.name, exc)

    def _set_state(self, state: str) -> None:
        self.state = state
        self.changed()

    async def release(self) -> None:
        """RELEASE before the link goes (the caller shields this)."""
        if self.driver is not None and self.lease is not None:
            with trio.move_on_after(1.0):
                await self.driver.release()
            log.info("%s: DHCP lease released", self.plan.name)
            self.remember(None)

    def bindings(self) -> list[firewall.Binding]:
        """The source addresses the job may use now, and for how long: the static one for
        good, a lease's until it expires."""
        if self.static is not None:
            return [(self.static.interface.ip, None)]
        lease = self.lease
        if lease is None:
            return []
        left = lease.expires_at - trio.current_time()
        return [(lease.address, None if left == float("inf") else left)]

    def lan(self) -> Lan:
        """What the job's view of its LAN says (decide/resolver.py): the lease's servers and
        names, or the static address (whose DNS is the admin's)."""
        if self.static is not None:
            return Lan(self.static.interface.ip)
        lease = self.lease
        if lease is None:
            return Lan(None)
        return Lan(lease.address, lease.dns_servers, lease.domain, lease.hostname)

    # -- what the update ad says -------------------------------------------------

    def attributes(self) -> dict[str, object]:
        values: dict[str, object] = {}
        if self.static is not None:
            iface = self.static.interface
            values.update(
                LarkInnerAddressIPv4=str(iface.ip), LarkSubnetMask=str(iface.network.netmask)
            )
            if self.bridge.gateway is not None:
                values["LarkGateway"] = str(self.bridge.gateway)
            return values
        values.update(LarkDHCPState=self.state, LarkDHCPMacAddress=self.mac.hex(":"))
        if self.lease is not None:
            values.update(lease_attributes(self.lease, self.mac, trio.current_time()))
            values["LarkDHCPRenewals"] = self.renewals
        return values
