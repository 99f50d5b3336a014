"""NAT mode: an address pair from LARK_LOCAL_NETWORK and, where the node has IPv6, one from
LARK_LOCAL_NETWORK6 (NAT66) or LARK_ROUTED_PREFIX6; the job's namespace and veth (MTU from
the uplink), forwarding, and the job's rules behind NAT on the node. IPv4 and IPv6 are
independent: an IPv6-only node's jobs get IPv6 only."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable

import trio

from ...backends import address, firewall, mtu, netns, proxyndp
from ...backends.netlink import rtnl
from ...backends.netlink.watch import open_link_watch
from ...decide.modes import IPv6Mode, IPv6Use, NetworkType
from ...decide.plan import JobNetwork
from ...decide.reach import NodeReach
from ...errors import ConfigError, map_errors
from ...state.record import Record
from ...state.steps import StepName
from .base import ConnectedDriver, Setup, Watch, log, node_ipv6, note_links


class NatDriver(ConnectedDriver):
    mode = NetworkType.NAT
    lease: address.AddressLease[netns.Addresses] | None = None  # the job's IPv4 pair, locked
    lease6: address.AddressLease[netns.Addresses6] | None = None  # its IPv6 pair, locked
    ipv4 = True  # which families the job gets (``validate`` decides, from the node's)
    ipv6 = False

    def __init__(self, plan: JobNetwork) -> None:
        super().__init__(plan)
        # what of the node the job's firewall opens (LARK_NODE_PORTS, LARK_JOB_TO_JOB, and the
        # node addresses serving the job's DNS: ``allow_dns``, before setup)
        self.reach = NodeReach(plan.node_ports, (), plan.job_to_job)

    def validate(self) -> None:
        super().validate()
        self._families()

    def _families(self) -> None:
        """IPv6 when LARK_IPV6 allows it and the node has it; IPv4 when the node has it, or
        when the job would have nothing else (today's behaviour on a node with neither)."""
        plan = self.plan
        node = node_ipv6(plan)
        if node is None or not node.ipv6:
            return
        missing = self.firewall.ipv6_unavailable()
        if missing is not None:
            if plan.ipv6 is IPv6Use.ON:
                raise ConfigError(f"LARK_IPV6 is on, but {missing}")
            log.info("%s: no IPv6 for the job: %s", plan.name, missing)
            return
        self.ipv6, self.ipv4 = True, node.ipv4
        log.info(
            "%s: IPv6 %s from %s%s",
            plan.name,
            plan.ipv6_mode,
            plan.network6,
            "" if node.ipv4 else " (IPv6 only: the node has no IPv4 default route)",
        )

    def allow_dns(self, servers: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]) -> None:
        self.reach = dataclasses.replace(self.reach, dns=servers)

    async def _setup(self, ctx: Setup) -> None:
        plan, record = self.plan, ctx.record
        noted = {"lock_dir": str(plan.lock_dir)}  # (a note replaces the step's details)
        record.note(StepName.ADDRESS, **noted)
        if self.ipv4:
            self.lease = address.allocate(
                plan.local_network, plan.lock_dir, plan.name, plan.state_dir
            )
            noted["lock"] = str(self.lease.path)
            record.note(StepName.ADDRESS, **noted)
        uplink = None  # routed IPv6 on-link there: proxied
        if self.ipv6:
            routed = plan.ipv6_mode is IPv6Mode.ROUTED
            setting = "LARK_ROUTED_PREFIX6" if routed else "LARK_LOCAL_NETWORK6"
            self.lease6 = address.allocate(
                plan.network6, plan.lock_dir, plan.name, plan.state_dir, setting
            )
            noted["lock6"] = str(self.lease6.path)
            record.note(StepName.ADDRESS, **noted)
            if routed:  # (asked before the job's veth holds the address)
                internal6 = self.lease6.addresses.internal
                uplink = await trio.to_thread.run_sync(proxyndp.on_link_uplink, internal6)
                if uplink is not None:
                    noted |= {"proxy6_link": uplink, "proxy6": str(internal6)}
                    record.note(StepName.ADDRESS, **noted)
        await ctx.done("address")
        addresses = self.lease.addresses if self.lease is not None else None
        addresses6 = self.lease6.addresses if self.lease6 is not None else None
        for pair in (addresses, addresses6):
            if pair is not None:
                log.info(
                    "%s: addresses %s (host) / %s (job)", plan.name, pair.external, pair.internal
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
                addresses6=addresses6,
            ),
        )
        assert watch is not None
        lost = (
            f"the veth pair {plan.external_interface}/{plan.internal_interface} was deleted "
            "while the job ran"
        )
        self.watches.append(Watch(watch, plan.internal_interface, lost))
        await self._shape()
        await ctx.done("netns")
        if addresses is not None:
            netns.enable_forwarding()
        if addresses6 is not None:
            for link in netns.enable_forwarding6():
                log.info(
                    "%s: IPv6 forwarding on: %s now takes router advertisements with "
                    "accept_ra 2 (1 ignores them on a forwarding node)",
                    plan.name,
                    link,
                )
        if uplink is not None and addresses6 is not None:
            if await trio.to_thread.run_sync(proxyndp.add, uplink, addresses6.internal):
                log.info("%s: proxy NDP turned on for %s", plan.name, uplink)
            log.info(
                "%s: %s is on-link on %s: the node answers neighbour discovery for it there",
                plan.name,
                addresses6.internal,
                uplink,
            )
        await self._apply_rules(record, addresses, addresses6)
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

    async def _apply_rules(
        self,
        record: Record,
        addresses: netns.Addresses | None,
        addresses6: netns.Addresses6 | None,
    ) -> None:
        """The job's rules, and its way through the node's own FORWARD where that would drop
        it (the backend's survey): noted in the record before any of it is added."""
        plan, backend = self.plan, self.firewall
        has4, has6 = addresses is not None, addresses6 is not None
        node = await trio.to_thread.run_sync(backend.survey, str(plan.local_network), has4, has6)
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
            addresses.internal if addresses is not None else None,
            accept=sorted(node.accept),
            reach=self.reach,
            internal_address6=addresses6.internal if addresses6 is not None else None,
            nat6=plan.ipv6_mode is IPv6Mode.NAT66,
        )
        record.note(StepName.FIREWALL, **job.to_record())
        if job.quick:  # (one netlink transaction: a thread hop would cost more)
            job.apply()
        else:
            await trio.to_thread.run_sync(job.apply)
        self._rules = job

    def attributes(self) -> dict[str, object]:
        found: dict[str, object] = self._bandwidth_attributes()
        if self.lease is not None:
            pair = self.lease.addresses
            found |= {
                "LarkInnerAddressIPv4": str(pair.internal),
                "LarkExternalAddressIPv4": str(pair.external),
                "LarkGateway": str(pair.external),
            }
        if self.lease6 is not None:
            pair6 = self.lease6.addresses
            found |= {
                "LarkInnerAddressIPv6": str(pair6.internal),
                "LarkExternalAddressIPv6": str(pair6.external),
                "LarkGatewayIPv6": str(pair6.external),
            }
        return found

    def script_addresses(self) -> tuple[str, str]:
        if self.lease is None:
            return "", ""
        return str(self.lease.addresses.external), str(self.lease.addresses.internal)

    def script_env(self) -> dict[str, str]:
        if self.lease6 is None:
            return {}
        pair6 = self.lease6.addresses
        return {
            "LARK_INNER_ADDRESS_IPV6": str(pair6.internal),
            "LARK_EXTERNAL_ADDRESS_IPV6": str(pair6.external),
        }

    def address_release(self) -> Callable[[], None] | None:
        leases = [lease for lease in (self.lease, self.lease6) if lease is not None]
        if not leases:
            return None

        def release() -> None:
            for lease in leases:
                lease.release()

        return release
