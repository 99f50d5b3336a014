"""NAT mode: an address pair from LARK_LOCAL_NETWORK, the job's namespace and veth (MTU from
the uplink), forwarding, and the job's rules behind NAT on the node."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable

import trio

from ...backends import address, firewall, mtu, netns
from ...backends.netlink import rtnl
from ...backends.netlink.watch import open_link_watch
from ...decide.modes import NetworkType
from ...decide.plan import JobNetwork
from ...decide.reach import NodeReach
from ...errors import map_errors
from ...state.record import Record
from ...state.steps import StepName
from .base import ConnectedDriver, Setup, Watch, log, note_links


class NatDriver(ConnectedDriver):
    mode = NetworkType.NAT
    lease: address.AddressLease | None = None  # the job's address pair, locked

    def __init__(self, plan: JobNetwork) -> None:
        super().__init__(plan)
        # what of the node the job's firewall opens (LARK_NODE_PORTS, LARK_JOB_TO_JOB, and the
        # node addresses serving the job's DNS: ``allow_dns``, before setup)
        self.reach = NodeReach(plan.node_ports, (), plan.job_to_job)

    def allow_dns(self, servers: tuple[ipaddress.IPv4Address, ...]) -> None:
        self.reach = dataclasses.replace(self.reach, dns=servers)

    async def _setup(self, ctx: Setup) -> None:
        plan, record = self.plan, ctx.record
        record.note(StepName.ADDRESS, lock_dir=str(plan.lock_dir))
        self.lease = address.allocate(plan.local_network, plan.lock_dir, plan.name, plan.state_dir)
        record.note(StepName.ADDRESS, lock=str(self.lease.path))
        await ctx.done("address")
        addresses = self.lease.addresses
        log.info(
            "%s: addresses %s (host) / %s (job)", plan.name, addresses.external, addresses.internal
        )
        before, not_ours = note_links(record, plan)
        job_mtu = await trio.to_thread.run_sync(self._mtu)
        watch = netns.in_fresh_thread(
            lambda: netns.setup_job_netns(
                plan.netns,
                plan.external_interface,
                plan.internal_interface,
                addresses,
                before,
                not_ours,
                open_link_watch,
                mtu=job_mtu,
            ),
        )
        assert watch is not None
        lost = (
            f"the veth pair {plan.external_interface}/{plan.internal_interface} was deleted "
            "while the job ran"
        )
        self.watches.append(Watch(watch, plan.internal_interface, lost))
        await ctx.done("netns")
        netns.enable_forwarding()
        await self._apply_rules(record, addresses.internal)
        await ctx.done("firewall")

    def _mtu(self) -> int | None:
        """The uplink's MTU within LARK_JOB_MTU (backends/mtu.py)."""
        with rtnl.Channel() as host, map_errors("read the node's default route"):
            uplink = mtu.uplink_mtu(host)
        chosen = mtu.derive_nat_mtu(uplink, self.plan.job_mtu)
        log.info(
            "%s: MTU %s (uplink %s, LARK_JOB_MTU %s)",
            self.plan.name,
            chosen or mtu.DEFAULT_MTU,
            uplink or "unknown: no default route",
            self.plan.job_mtu or "unset",
        )
        return chosen

    async def _apply_rules(self, record: Record, internal: ipaddress.IPv4Address) -> None:
        """The job's rules, and its way through the node's own FORWARD where that would drop
        it (the backend's survey): noted in the record before any of it is added."""
        plan, backend = self.plan, self.firewall
        node = await trio.to_thread.run_sync(backend.survey, str(plan.local_network))
        for warning in node.warnings:
            log.warning("%s: %s", plan.name, warning)
        for build, why in sorted(node.accept.items()):
            log.info(
                "%s: %s on this node (%s): accepting the job's traffic in filter FORWARD via %s",
                plan.name,
                why,
                build,
                firewall.ACCEPT_CHAIN,
            )
        log.info("%s: of the node the job reaches %s", plan.name, self.reach)
        job = backend.job(
            plan.chain,
            plan.external_interface,
            internal,
            accept=sorted(node.accept),
            reach=self.reach,
        )
        record.note(StepName.FIREWALL, **job.to_record())
        if job.quick:  # (one netlink transaction: a thread hop would cost more)
            job.apply()
        else:
            await trio.to_thread.run_sync(job.apply)
        self._rules = job

    def attributes(self) -> dict[str, object]:
        if self.lease is None:
            return {}
        pair = self.lease.addresses
        return {
            "LarkInnerAddressIPv4": str(pair.internal),
            "LarkExternalAddressIPv4": str(pair.external),
            "LarkGateway": str(pair.external),
        }

    def script_addresses(self) -> tuple[str, str]:
        if self.lease is None:
            return "", ""
        return str(self.lease.addresses.external), str(self.lease.addresses.internal)

    def address_release(self) -> Callable[[], None] | None:
        return self.lease.release if self.lease is not None else None
