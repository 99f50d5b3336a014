"""Bridge mode: the job on the site LAN with an address of its own.

The site bridge (made if it is missing), the job's namespace and veth as its port, the
job's MAC pinned to that port, the job's rules, a wait for the port to forward, then the
address: the admin's static one, or a DHCP lease kept for the job's life as a long task in
the job's nursery (backends/lan/job_address.py). Teardown releases the lease while the link
is still there.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable

import trio

from ...backends import netns
from ...backends.firewall.nft_jobs import BridgeJob
from ...backends.lan import slaac
from ...backends.lan.bridge import ensure_bridge, pin_port, wait_forwarding
from ...backends.lan.job_address import BridgeAddress, JobSide
from ...backends.netlink import rtnl
from ...backends.netlink.watch import open_link_watch
from ...decide.modes import NetworkType
from ...decide.plan import JobNetwork
from ...decide.resolver import Lan
from ...errors import LarkError, ResourceError
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

    def __init__(self, plan: JobNetwork) -> None:
        super().__init__(plan)
        self.addresses6: list[slaac.Binding6] = []  # as the firewall's set has them

    def validate(self) -> None:
        super().validate()
        node = node_ipv6(self.plan)
        if node is not None and node.ipv6:
            self.ipv6 = True
            log.info("%s: IPv6 on the LAN: SLAAC from its router advertisements", self.plan.name)

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

        def inside(ifindex: int) -> tuple[socket.socket, JobSide]:
            watch = open_link_watch(ifindex)
            try:
                return watch, JobSide.open(plan.internal_interface)
            except BaseException:
                watch.close()
                raise

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
        veth_watch, self.side = opened
        lost = (
            f"the veth pair {plan.external_interface}/{plan.internal_interface} was deleted "
            "while the job ran"
        )
        self.watches.insert(0, Watch(veth_watch, plan.internal_interface, lost))
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
        if self.ipv6:  # (the job's addresses, as its kernel forms them, for its life)
            assert ctx.nursery is not None and isinstance(job, BridgeJob)
            sock6, channel6, ifindex = await trio.to_thread.run_sync(
                netns.inside, plan.netns, functools.partial(_open_watch6, plan.internal_interface)
            )
            await ctx.nursery.start(
                slaac.keep, sock6, channel6, ifindex, self._addresses6(job), ctx.changed
            )
        self.address = BridgeAddress(plan, self.side, job, ctx.changed, self._lease_noter(record))
        if bridge.static is not None:
            await self.address.use_static()
        else:
            assert ctx.nursery is not None  # (the lease is kept for the job's life)
            await ctx.nursery.start(self.address.keep_lease)
        await ctx.done("address")

    def _addresses6(self, job: BridgeJob) -> Callable[[list[slaac.Binding6]], None]:
        def apply(bindings: list[slaac.Binding6]) -> None:
            job.set_addresses6(bindings)
            self.addresses6 = bindings

        return apply

    def _lease_noter(self, record: Record) -> Callable[[dict[str, object] | None], None]:
        """The lease in the record as it changes, for a sweeper to release after a crash."""

        def note(lease: dict[str, object] | None) -> None:
            if not record.path.exists():
                return
            try:
                if lease is None:
                    record.forget(StepName.DHCP)
                else:
                    record.note(StepName.DHCP, **lease)
            except LarkError as exc:
                log.warning("%s", exc)

        return note

    async def teardown(self) -> list[threading.Thread]:
        """RELEASE while the link is still there; then the job side's sockets start closing:
        closing a packet socket waits out an RCU grace period (~10 ms each), which overlaps
        the record's undo instead of adding to it."""
        if self.address is not None:
            await self.address.release()
        if self.side is None:
            return []
        closing = [threading.Thread(target=c, daemon=True) for c in self.side.closers()]
        for thread in closing:
            thread.start()
        self.side = None
        return closing

    def attributes(self) -> dict[str, object]:
        found = self.address.attributes() if self.address is not None else {}
        usable = [a for a, _ in self.addresses6 if not a.is_link_local]
        if usable:  # (the first: SLAAC's, stable, from the job's MAC)
            found["LarkInnerAddressIPv6"] = str(usable[0])
        return found

    def script_env(self) -> dict[str, str]:
        usable = [str(a) for a, _ in self.addresses6 if not a.is_link_local]
        return {"LARK_INNER_ADDRESS_IPV6": usable[0]} if usable else {}

    def lan(self) -> Lan | None:
        return self.address.lan() if self.address is not None else None

    def script_addresses(self) -> tuple[str, str]:
        """A bridged job has no external address."""
        return "", str(self.attributes().get("LarkInnerAddressIPv4", ""))

    async def rules_restored(self) -> None:
        """The lease's and the kernel's IPv6 addresses are kept apart from the rules: set
        them again."""
        if self.address is not None and self._rules is not None:
            await trio.to_thread.run_sync(self._rules.set_addresses, self.address.bindings())
        if self.ipv6 and isinstance(self._rules, BridgeJob):
            await trio.to_thread.run_sync(self._rules.set_addresses6, self.addresses6)
