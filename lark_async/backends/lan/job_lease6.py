"""A bridged job's DHCPv6 lease (dhcp6/), kept for its whole life beside SLAAC.

As for DHCPv4 (job_address.py), nothing in the job's namespace is trusted for its lease:
the client speaks from the bridge's side of the job's port as the job (its MAC, its
link-local address) and hears only what the bridge sends out of that port; the job's own
DHCPv6 is dropped by its firewall. The leased addresses go on the job's interface as /128s
with the lease's lifetimes (the kernel drops them when the lease runs out, even with the
agent gone) and optimistic DAD, whose failure the client DECLINEs. The firewall's set of
the job's IPv6 addresses follows the interface (slaac.keep), so it follows the lease.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import trio

from dhcp6 import Client, Config, Lease, build, derive_iaid, duid_ll, frame
from dhcp6.errors import Dhcp6Error
from dhcp6.events import Action, GaveUp, LeaseBound, LeaseLost, LeaseRenewed
from dhcp6.message import encode
from dhcp6.trio_driver import Driver, Sockets

from ...errors import LarkError, map_errors
from ..netlink import rtnl

log = logging.getLogger("lark.bridged")
RETRY_AFTER_LOSS_S = 10.0  # a lease lost for good, or none came: ask again after this


def lease6_attributes(lease: Lease, duid: bytes, now_monotonic: float) -> dict[str, object]:
    """A DHCPv6 lease as ClassAd attributes, named after the DHCPv4 ones."""
    start_epoch = time.time() - (now_monotonic - lease.start)

    def seconds(s: float) -> int:
        return -1 if s == float("inf") else int(s)

    values: dict[str, object] = {
        "LarkInnerAddressIPv6": str(lease.address),
        "LarkDHCPv6Server": lease.server_duid.hex(":"),
        "LarkDHCPv6LeaseLifetime": seconds(lease.valid_s),
        "LarkDHCPv6LeaseStart": int(start_epoch),
        "LarkDHCPv6RenewTime": seconds(lease.t1_s),
        "LarkDHCPv6RebindTime": seconds(lease.t2_s),
        "LarkDHCPv6DUID": duid.hex(":"),
    }
    if len(lease.addresses) > 1:
        values["LarkDHCPv6Addresses"] = ",".join(str(a.address) for a in lease.addresses)
    if lease.dns_servers:
        values["LarkDHCPv6DNSServers"] = ",".join(str(a) for a in lease.dns_servers)
    if lease.domains:
        values["LarkDHCPv6Domains"] = ",".join(lease.domains)
    return values


class JobLease6:
    """One bridged job's DHCPv6 client and what its lease puts on the job's interface.

    ``sockets``: the rtnetlink watch opened in the job's namespace, with the port's sockets
    (``Sockets.watch`` then ``PortSockets.open`` in the bridge's namespace). ``channel``: a
    netlink channel in the job's namespace. ``changed()``: the update ad; ``remember``: the
    lease in the state record, for a sweeper to release."""

    def __init__(
        self,
        name: str,
        sockets: Sockets,
        channel: rtnl.Channel,
        timeout_s: float,
        changed: Callable[[], object],
        remember: Callable[[dict[str, object] | None], None] = lambda lease: None,
        allow: Callable[[list[tuple[ipaddress.IPv6Address, float | None]]], None] = (
            lambda bindings: None
        ),
    ) -> None:
        assert sockets.port is not None
        self.name = name
        self.sockets = sockets
        self.channel = channel
        self.timeout_s = timeout_s
        self.changed = changed
        self.remember = remember
        self.allow = allow  # the firewall lets the job use these before they are its
        self.mac = sockets.port.mac
        # RFC 8415 section 11.4's DUID-LL of the job's own MAC, as its DHCPv4 client id: a
        # veth's MAC is new for every job, so two jobs never share one
        self.duid = duid_ll(self.mac)
        self.lease: Lease | None = None
        self.on_link: tuple[ipaddress.IPv6Address, ...] = ()
        self.state = "searching"
        self.renewals = 0
        self.driver: Driver | None = None

    async def keep(
        self,
        required: bool = True,
        *,
        task_status: trio.TaskStatus[Lease] = trio.TASK_STATUS_IGNORED,
    ):
        """Get a lease (reported through ``task_status``; a caller that must have one,
        ``required``, sees Dhcp6Error when none comes), then keep one for the job's life:
        renew, rebind, and after a loss, or no lease at all, ask again until the job ends."""
        first = required
        while True:
            config = Config(
                duid=self.duid,
                iaid=derive_iaid(self.duid),
                solicit_delay_max_s=0.0,  # (one host, alone: see Config)
                timeout_s=self.timeout_s,
            )
            self.driver = Driver(Client(config, rng=random.Random()), self.sockets, self._on_action)
            try:
                if first:
                    await self.driver.run(task_status=task_status)
                else:
                    await self.driver.run()
            except Dhcp6Error as exc:
                if first:
                    raise
                log.warning("%s: still no DHCPv6 lease: %s", self.name, exc)
            first = False
            if self.state == "released":
                return
            self._set_state("searching")
            await trio.sleep(RETRY_AFTER_LOSS_S)

    def _on_action(self, action: Action) -> None:
        if isinstance(action, LeaseBound | LeaseRenewed):
            lease = action.lease
            if isinstance(action, LeaseRenewed):
                self.renewals += 1
                log.info("%s: DHCPv6 lease on %s renewed", self.name, lease.address)
            else:
                log.info(
                    "%s: DHCPv6 lease %s from %s for %g s",
                    self.name,
                    ", ".join(str(a.address) for a in lease.addresses),
                    lease.server_duid.hex(":"),
                    lease.valid_s,
                )
            self._configure(lease)
            self._set_state("bound")
        elif isinstance(action, LeaseLost):
            self._configure(None)
            if action.reason == "released":
                self.state = "released"
                return
            log.warning(
                "%s: DHCPv6 lease on %s lost (%s)", self.name, action.lease.address, action.reason
            )
            self._set_state(f"lost ({action.reason})")
        elif isinstance(action, GaveUp):
            log.info("%s: DHCPv6: %s", self.name, action.reason)

    def _configure(self, lease: Lease | None) -> None:
        """The lease's addresses on the job's interface, each with its lifetimes; those it
        no longer holds off."""
        if _binding(lease) != _binding(self.lease):
            self._remember(lease)
        self.lease = lease
        index, ifname = self.sockets.index, self.sockets.ifname
        held = {a.address: a for a in lease.addresses} if lease is not None else {}
        elapsed = trio.current_time() - lease.start if lease is not None else 0.0
        messages = [
            rtnl.leased_address6(rtnl.RTM_DELADDR, index, a, 0, 0, ifname)
            for a in self.on_link
            if a not in held
        ]
        messages += [
            rtnl.leased_address6(
                rtnl.RTM_NEWADDR,
                index,
                a.address,
                a.preferred_s - elapsed,
                a.valid_s - elapsed,
                ifname,
            )
            for a in held.values()
        ]
        self.on_link = tuple(held)
        if not messages:
            return
        try:
            # (in the job's set first: a job that sends the moment its address appears is
            # not taken for a spoofer)
            self.allow([(a.address, a.valid_s - elapsed) for a in held.values()])
            with map_errors(f"configure the DHCPv6 lease on {ifname}"):
                self.channel.request(*messages, absent_ok=True)
        except LarkError as exc:
            log.error("%s: %s", self.name, exc)

    def _remember(self, lease: Lease | None) -> None:
        if lease is None:
            self.remember(None)
            return
        assert self.driver is not None and self.driver.source is not None
        port = self.sockets.port
        assert port is not None
        self.remember(
            {
                "bridge": port.bridge,
                "mac": self.mac.hex(":"),
                "link_local": str(self.driver.source),
                "duid": self.duid.hex(),
                "iaid": derive_iaid(self.duid),
                "server": lease.server_duid.hex(),
                "addresses": [str(a.address) for a in lease.addresses],
            }
        )

    def _set_state(self, state: str) -> None:
        self.state = state
        self.changed()

    async def release(self) -> None:
        """RELEASE before the link goes (the caller shields this)."""
        if self.driver is not None and self.lease is not None:
            with trio.move_on_after(1.0):
                await self.driver.release()
            log.info("%s: DHCPv6 lease released", self.name)
            self.remember(None)

    def dns(self) -> tuple[tuple[ipaddress.IPv6Address, ...], tuple[str, ...]]:
        """The lease's DNS servers and search domains (options 23 and 24)."""
        if self.lease is None:
            return (), ()
        return self.lease.dns_servers, self.lease.domains

    def attributes(self) -> dict[str, object]:
        values: dict[str, object] = {"LarkDHCPv6State": self.state}
        if self.lease is not None:
            values.update(lease6_attributes(self.lease, self.duid, trio.current_time()))
            values["LarkDHCPv6Renewals"] = self.renewals
        return values


def _binding(lease: Lease | None) -> tuple[object, ...] | None:
    """What the record keeps of a lease: its server and addresses (not its times)."""
    if lease is None:
        return None
    return lease.server_duid, tuple(a.address for a in lease.addresses)


def release_frame(details: dict[str, Any]) -> tuple[bytes, str]:
    """(Ethernet frame, bridge) RELEASEing the lease a record's ``dhcp6`` step describes, as
    the job would send it: the job's MAC and link-local address, to ff02::1:2."""
    message = build.release(
        bytes.fromhex(str(details["duid"])),
        int(details["iaid"]),
        random.getrandbits(24),
        bytes.fromhex(str(details["server"])),
        [ipaddress.IPv6Address(a) for a in details["addresses"]],
    )
    mac = bytes.fromhex(str(details["mac"]).replace(":", ""))
    source = ipaddress.IPv6Address(details["link_local"])
    group = ipaddress.IPv6Address("ff02::1:2")
    return frame.build_udp(encode(message), mac, source, group), str(details["bridge"])


def send_release(details: dict[str, Any]) -> None:
    """Into the job's bridge from the node (the job's namespace may be gone)."""
    from dhcp.bpf import send_socket

    data, bridge = release_frame(details)
    with send_socket() as tx:
        tx.sendto(data, (bridge, frame.ETH_P_IPV6))
