"""A bridged job's address for its whole life: static, or a DHCP lease kept by dhcp/.

Everything here works through sockets opened inside the job's namespace
(``JobSide``): the DHCP client's raw and ARP sockets and a netlink channel to
put the address on the job's interface. The firewall's set of the job's own
addresses follows the lease, so anti-spoofing lets through exactly what the
job may use.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from dhcp import arp
from dhcp import options as opt
from dhcp.client import Client, Config
from dhcp.events import Action, GaveUp, LeaseBound, LeaseLost, LeaseRenewed
from dhcp.lease import Lease
from dhcp.trio_driver import DhcpFailed, Driver, Sockets

from .backends import nft, rtnl
from .backends.lease_link import LeaseOnLink, OnLink
from .errors import LarkError, ResourceError, map_errors

if TYPE_CHECKING:  # plan loads classad2, which dhcp-test does without
    from .plan import JobNetwork

log = logging.getLogger("lark.bridged")
RETRY_AFTER_LOSS_S = 10.0  # a lease lost for good: ask again after this


@dataclass
class JobSide:
    """Opened inside the job's network namespace, used from the agent's."""

    channel: rtnl.Channel
    sockets: Sockets  # raw + ARP on the job's interface (static uses only the ARP socket)

    @classmethod
    def open(cls, internal: str) -> JobSide:
        channel = rtnl.Channel()
        try:
            return cls(channel, Sockets.open(internal, arp_probe=True))
        except BaseException:
            channel.close()
            raise

    def close(self) -> None:
        for close in self.closers():
            close()

    def closers(self) -> list[Callable[[], None]]:
        """One call per socket, to close them in parallel (see Supervisor.teardown)."""
        s = self.sockets
        found = [s.raw.close, s.close_udp, self.channel.close]
        if s.arp is not None:
            found.append(s.arp.close)
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
        rules: nft.BridgeRules,
        changed: Callable[[], None],
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
        return self.side.sockets.mac

    # -- static ---------------------------------------------------------------

    async def use_static(self) -> None:
        """Probe the LAN for the admin's address first: an address in use is refused."""
        iface = self.bridge.static
        assert iface is not None
        assert self.side.sockets.arp is not None
        holder = await arp.probe(self.side.sockets.arp, self.mac, iface.ip, arp.FAST)
        if holder is not None:
            raise ResourceError(
                f"static address {iface.ip} is already in use on the LAN "
                f"(answered by {holder.hex(':')})"
            )
        self.static = OnLink.static(iface, self.bridge.gateway)
        with map_errors(f"configure {iface} on {self.plan.internal_interface}"):
            self.on_link.apply_config(self.static)
        with map_errors(f"allow {iface.ip} in {self.rules.chain}"):
            nft.set_bridge_addresses(self.rules, [iface.ip])
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
                retransmit_initial_s=1.0,
            )
            client = Client(config, rng=random.Random(), remembered=remembered)
            self.driver = Driver(client, self.side.sockets, self._on_action, probe=arp.FAST)
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
                nft.set_bridge_addresses(self.rules, [lease.address] if lease else [])
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

    def addresses(self) -> list[ipaddress.IPv4Address]:
        """The source addresses the job may use now."""
        if self.static is not None:
            return [self.static.interface.ip]
        return [self.lease.address] if self.lease is not None else []

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
