"""Bridge mode: the job on the site LAN with an address of its own.

The site bridge (made if it is missing), the job's namespace and veth as its port, the
job's MAC pinned to that port, the job's rules, a wait for the port to forward, then the
address: the admin's static one, or a DHCP lease kept for the job's life as a long task in
the job's nursery (backends/lan/job_address.py). With IPv6 on the LAN, the job's kernel
forms SLAAC addresses from the routers' advertisements (backends/lan/slaac.py keeps the
firewall's set to them), and a DHCPv6 lease is kept beside them once an advertisement sets
the managed flag, or from the start with ``LARK_DHCP6 = on`` (backends/lan/job_lease6.py).
On a node without IPv4 the job gets no DHCPv4 at all, and its setup waits for its first
global IPv6 address instead. Teardown releases the leases while the link is still there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import ipaddress
import socket
import threading
from collections.abc import Callable
from typing import Any

import trio

from dhcp6.errors import Dhcp6Error
from dhcp6.trio_driver import PortSockets
from dhcp6.trio_driver import Sockets as Sockets6

from ...backends import netns
from ...backends.firewall.nft_jobs import BridgeJob
from ...backends.lan import slaac
from ...backends.lan.bridge import ensure_bridge, pin_port, wait_forwarding
from ...backends.lan.job_address import BridgeAddress, JobSide
from ...backends.lan.job_lease6 import JobLease6
from ...backends.netlink import rtnl
from ...backends.netlink.watch import open_link_watch
from ...decide.modes import Dhcp6Use, NetworkType
from ...decide.plan import JobNetwork
from ...decide.resolver import Lan
from ...errors import LarkError, ResourceError, map_errors
from ...state.record import Record
from ...state.steps import StepName
from .base import ConnectedDriver, Setup, Watch, log, node_ipv6, note_links


def _open_watch6(internal: str) -> tuple[socket.socket, rtnl.Channel, int]:
    """Inside the job's namespace: the IPv6 address watch, a channel to dump them, and the
    index of the job's interface (slaac.keep owns and closes the first two)."""
    index = socket.if_nametoindex(internal)
    sock = slaac.open_watch()
    try:
        return sock, rtnl.Channel(), index
    except BaseException:
        sock.close()
        raise


class BridgeDriver(ConnectedDriver):
    mode = NetworkType.BRIDGE
    link_features = ("veth", "bridge")
    address: BridgeAddress | None = None  # the job's LAN address, static or leased
    side: JobSide | None = None  # the job's interface as the agent reaches it
    ipv6 = False  # IPv6 on the LAN (SLAAC): where LARK_IPV6 allows it and the node has it
    ipv4 = True  # False on a node without IPv4: no DHCPv4, the job has IPv6 only
    lease6: JobLease6 | None = None  # the DHCPv6 lease, once its client started

    def __init__(self, plan: JobNetwork) -> None:
        super().__init__(plan)
        self.addresses6: list[slaac.Binding6] = []  # the job's kernel's, as last written
        self._leased6: list[slaac.Binding6] = []  # the DHCPv6 lease's, in the set before
        self._global6 = trio.Event()  # the job has a global IPv6 address (IPv6-only setup)
        self._nursery: trio.Nursery | None = None
        self._dhcp6_started = False
        # what the LAN's routers advertise for DNS (RDNSS, DNSSL): servers, domains
        self.ra_dns: tuple[tuple[ipaddress.IPv6Address, ...], tuple[str, ...]] = ((), ())
        self._record: Record | None = None
        self._changed: Callable[[], object] = lambda: None

    def validate(self) -> None:
        super().validate()
        node = node_ipv6(self.plan)
        if node is not None and node.ipv6:
            self.ipv6 = True
            assert self.plan.bridge is not None
            self.ipv4 = node.ipv4 or self.plan.bridge.static is not None
            dhcp6 = {
                Dhcp6Use.AUTO: "DHCPv6 when they set the managed flag",
                Dhcp6Use.ON: "and DHCPv6",
                Dhcp6Use.OFF: "no DHCPv6",
            }[self.plan.bridge.dhcp6]
            log.info(
                "%s: IPv6 on the LAN: SLAAC from its router advertisements, %s%s",
                self.plan.name,
                dhcp6,
                "" if self.ipv4 else "; no IPv4 (the node has none)",
            )

    async def _setup(self, ctx: Setup) -> None:
        plan, bridge, record = self.plan, self.plan.bridge, ctx.record
        assert bridge is not None
        with rtnl.Channel() as host:
            index = await trio.to_thread.run_sync(
                ensure_bridge, host, bridge.name, bridge.device, plan.lock_dir
            )
            # watched from now on: a bridge deleted before the job runs is seen when it does
            bridge_watch = Watch(
                open_link_watch(index),
                "bridge",
                f"bridge {bridge.name} was deleted while the job ran (the job is off the LAN)",
            )
            self.watches.append(bridge_watch)
            found = host.link_by_index(index)
        if found is None:
            raise ResourceError(f"bridge {bridge.name} was deleted while the job was set up")
        await ctx.done("bridge")

        def inside(ifindex: int) -> tuple[socket.socket, JobSide, tuple[socket.socket, int] | None]:
            with contextlib.ExitStack() as opened:
                watch = opened.enter_context(open_link_watch(ifindex))
                # (before the port forwards: no router advertisement can come before it)
                ra_dns = opened.enter_context(slaac.open_ra_dns_watch()) if self.ipv6 else None
                side = JobSide.open(plan.internal_interface)
                opened.pop_all()
                return watch, side, (ra_dns, ifindex) if ra_dns is not None else None

        before, not_ours = note_links(record, plan)
        opened = netns.in_fresh_thread(
            lambda: netns.setup_job_netns(
                plan.netns,
                plan.external_interface,
                plan.internal_interface,
                None,
                before,
                not_ours,
                inside,
                bridge=index,
                mtu=found.mtu or None,  # the LAN's: the bridge (and node) keep theirs
                slaac=self.ipv6,
            ),
        )
        assert opened is not None
        veth_watch, self.side, ra_dns = opened
        if ra_dns is not None:  # (the task owns the socket from here, whatever comes)
            assert ctx.nursery is not None
            ctx.nursery.start_soon(slaac.keep_ra_dns, *ra_dns, self._ra_dns_changed)
        lost = (
            f"the veth pair {plan.external_interface}/{plan.internal_interface} was deleted "
            "while the job ran"
        )
        self.watches.insert(0, Watch(veth_watch, plan.internal_interface, lost))
        await self._shape()
        await ctx.done("netns")
        mac = self.side.mac  # read before the job runs: from now on the job's is pinned
        with rtnl.Channel() as host:  # (goes with the port: nothing to record)
            pinned = await trio.to_thread.run_sync(
                pin_port, host, plan.external_interface, bridge.name, mac
            )
        log.info(
            "%s: %s pinned to %s (%s)", plan.name, mac.hex(":"), plan.external_interface, pinned
        )
        if bridge.static is None:
            self.side.open_port(plan.external_interface, bridge.name)
        await ctx.done("port")
        job = self.firewall.job(
            plan.chain, plan.external_interface, mac=mac.hex(":"), ipv6=self.ipv6
        )
        self._rules = job
        record.note(StepName.FIREWALL, **job.to_record())
        await trio.to_thread.run_sync(job.apply)
        await ctx.done("firewall")
        with rtnl.Channel() as host:
            await wait_forwarding(host, plan.external_interface, bridge.name, bridge.wait_s)
        await ctx.done("forwarding")
        self._nursery, self._record, self._changed = ctx.nursery, record, ctx.changed
        if self.ipv6:  # (the job's addresses, as its kernel forms them, for its life)
            assert ctx.nursery is not None and isinstance(job, BridgeJob)
            sock6, channel6, ifindex = await trio.to_thread.run_sync(
                netns.inside, plan.netns, functools.partial(_open_watch6, plan.internal_interface)
            )
            auto = bridge.dhcp6 is Dhcp6Use.AUTO
            await ctx.nursery.start(
                slaac.keep,
                sock6,
                channel6,
                ifindex,
                self._addresses6(job),
                self._changed6,
                self._managed if auto else (lambda: None),
            )
            if bridge.dhcp6 is Dhcp6Use.ON:
                await ctx.nursery.start(self._keep_lease6, True)
        self.address = BridgeAddress(
            plan, self.side, job, ctx.changed, self._lease_noter(record, StepName.DHCP)
        )
        if bridge.static is not None:
            await self.address.use_static()
        elif self.ipv4:
            assert ctx.nursery is not None  # (the lease is kept for the job's life)
            await ctx.nursery.start(self.address.keep_lease)
        else:
            await self._wait_global6(bridge.dhcp_timeout_s)
        await ctx.done("address")

    async def _wait_global6(self, timeout_s: float) -> None:
        """IPv6 only: the job runs once it has an address it can reach the LAN's routers
        from (SLAAC or a lease), or is refused."""
        if self._has_global6():
            return
        with trio.move_on_after(timeout_s):
            await self._global6.wait()
            return
        assert self.plan.bridge is not None
        raise ResourceError(
            f"no IPv6 address for {self.plan.internal_interface} on bridge "
            f"{self.plan.bridge.name} within {timeout_s:g} s (no router advertisement with "
            "a prefix, and no DHCPv6 lease), and the node has no IPv4"
        )

    def _ra_dns_changed(
        self, servers: tuple[ipaddress.IPv6Address, ...], domains: tuple[str, ...]
    ) -> None:
        self.ra_dns = servers, domains
        self._changed()

    def _has_global6(self) -> bool:
        return any(not a.is_link_local for a, _ in self.addresses6)

    def _changed6(self) -> None:
        if self._has_global6():
            self._global6.set()
        self._changed()

    def _managed(self) -> None:
        """A router advertisement set the managed flag: start the DHCPv6 client, once."""
        if not self._dhcp6_started and self._nursery is not None:
            self._dhcp6_started = True
            self._nursery.start_soon(self._keep_lease6, False)

    async def _keep_lease6(
        self, required: bool, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The job's DHCPv6 client, from its port's side, for the job's life; ``required``
        (``LARK_DHCP6 = on``): setup waits for the first lease, and none refuses the job.
        Otherwise (an advertisement asked for it) the job goes on with SLAAC while the
        client keeps asking."""
        self._dhcp6_started = True
        try:
            await self._run_lease6(required, task_status)
        except (Dhcp6Error, LarkError) as exc:
            assert self.plan.bridge is not None
            what = f"{self.plan.internal_interface} on bridge {self.plan.bridge.name}"
            if required:
                raise ResourceError(f"no DHCPv6 lease for {what}: {exc}") from exc
            log.warning("%s: no DHCPv6 lease for %s: %s", self.plan.name, what, exc)

    async def _run_lease6(self, required: bool, task_status: trio.TaskStatus[Any]) -> None:
        plan, bridge, record = self.plan, self.plan.bridge, self._record
        assert bridge is not None and record is not None and self.side is not None
        sockets = await trio.to_thread.run_sync(
            netns.inside, plan.netns, functools.partial(Sockets6.watch, plan.internal_interface)
        )
        try:
            with map_errors(f"open the DHCPv6 client's sockets on {plan.external_interface}"):
                sockets.port = PortSockets.open(plan.external_interface, bridge.name, self.side.mac)
        except BaseException:
            sockets.close()
            raise
        self.lease6 = JobLease6(
            plan.name,
            sockets,
            self.side.channel,
            bridge.dhcp_timeout_s,
            self._changed6,
            self._lease_noter(record, StepName.DHCP6),
            self._allow6,
        )
        log.info("%s: DHCPv6 client started on %s", plan.name, plan.external_interface)
        await self.lease6.keep(required, task_status=task_status)

    def _addresses6(self, job: BridgeJob) -> Callable[[list[slaac.Binding6]], None]:
        def apply(bindings: list[slaac.Binding6]) -> None:
            job.set_addresses6(self._with_leased(bindings))
            self.addresses6 = bindings

        return apply

    def _with_leased(self, bindings: list[slaac.Binding6]) -> list[slaac.Binding6]:
        found = {a for a, _ in bindings}
        return [*bindings, *(b for b in self._leased6 if b[0] not in found)]

    def _allow6(self, bindings: list[slaac.Binding6]) -> None:
        """The DHCPv6 lease's addresses, about to go on the job's interface: in the set
        now, before the job can use them (the kernel's notice, and the set written from
        it, would come a few milliseconds after)."""
        self._leased6 = bindings
        if isinstance(self._rules, BridgeJob):
            self._rules.set_addresses6(self._with_leased(self.addresses6))

    def _lease_noter(
        self, record: Record, step: StepName
    ) -> Callable[[dict[str, object] | None], None]:
        """A lease in the record as it changes, for a sweeper to release after a crash."""

        def note(lease: dict[str, object] | None) -> None:
            if not record.path.exists():
                return
            try:
                if lease is None:
                    record.forget(step)
                else:
                    record.note(step, **lease)
            except LarkError as exc:
                log.warning("%s", exc)

        return note

    async def teardown(self) -> list[threading.Thread]:
        """RELEASE while the link is still there; then the job side's sockets start closing:
        closing a packet socket waits out an RCU grace period (~10 ms each), which overlaps
        the record's undo instead of adding to it."""
        if self.address is not None:
            await self.address.release()
        if self.lease6 is not None:
            await self.lease6.release()
        if self.side is None:
            return []
        closers = self.side.closers()
        if self.lease6 is not None:
            closers += self.lease6.sockets.closers()
        closing = [threading.Thread(target=c, daemon=True) for c in closers]
        for thread in closing:
            thread.start()
        self.side = None
        return closing

    def attributes(self) -> dict[str, object]:
        found = self.address.attributes() if self.ipv4 and self.address is not None else {}
        if self.lease6 is not None:
            found.update(self.lease6.attributes())
        address6 = self._address6()
        if address6 is not None:
            found["LarkInnerAddressIPv6"] = str(address6)
        return found | self._bandwidth_attributes()

    def script_env(self) -> dict[str, str]:
        address = self.attributes().get("LarkInnerAddressIPv6")
        return {"LARK_INNER_ADDRESS_IPV6": str(address)} if address else {}

    def lan(self) -> Lan | None:
        """The job's LAN for its resolver: the DHCPv4 lease's (or the static address), the
        DHCPv6 lease's DNS and the routers' advertised DNS beside them."""
        if self.address is None:
            return None
        dhcp6_dns, dhcp6_domains = self.lease6.dns() if self.lease6 is not None else ((), ())
        return dataclasses.replace(
            self.address.lan(),
            dhcp6_dns=dhcp6_dns,
            dhcp6_domains=dhcp6_domains,
            ra_dns=self.ra_dns[0],
            ra_domains=self.ra_dns[1],
            link=self.plan.internal_interface,
            address6=self._address6(),
        )

    def _address6(self) -> ipaddress.IPv6Address | None:
        """The job's own IPv6 on the LAN: its DHCPv6 lease's where the site manages
        addresses, else its first SLAAC one (stable, from its MAC)."""
        if self.lease6 is not None and self.lease6.lease is not None:
            return self.lease6.lease.address
        return next((a for a, _ in self.addresses6 if not a.is_link_local), None)

    def script_addresses(self) -> tuple[str, str]:
        """A bridged job has no external address."""
        return "", str(self.attributes().get("LarkInnerAddressIPv4", ""))

    async def rules_restored(self) -> None:
        """The lease's and the kernel's IPv6 addresses are kept apart from the rules: set
        them again."""
        if self.address is not None and self._rules is not None:
            await trio.to_thread.run_sync(self._rules.set_addresses, self.address.bindings())
        if self.ipv6 and isinstance(self._rules, BridgeJob):
            both = self._with_leased(self.addresses6)
            await trio.to_thread.run_sync(self._rules.set_addresses6, both)
