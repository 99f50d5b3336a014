"""What the job sees of the node beyond its network: its resolv.conf and hosts, decided
(decide/resolver.py), written and bound over the node's (backends/view.py), and the node
loopback resolvers its DNS needs relayed (job/relay.py); kept current for a bridged job as
its lease changes."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from pathlib import Path

from .. import trust
from ..backends import view
from ..backends.netlink import rtnl
from ..decide import resolver
from ..decide.modes import NetworkType
from ..decide.plan import JobNetwork
from ..decide.reach import Service
from ..errors import ConfigError, LarkError
from ..state.record import Record
from ..state.steps import StepName

log = logging.getLogger("lark.supervisor")
NETNS_ETC = Path("/etc/netns")  # iproute2's per-namespace files (ip netns exec binds them)


def _admin_file(path: Path, what: str) -> str:
    """A file an admin names for every job: root's, through root's directories (a file a
    user could write would let that user steer other jobs' DNS), bounded."""
    fd = trust.open_root_file(str(path), what)
    with os.fdopen(fd, "rb") as f:
        data = f.read(resolver.MAX_FILE_BYTES + 1)
    if len(data) > resolver.MAX_FILE_BYTES:
        raise ConfigError(f"{what} {path} is over {resolver.MAX_FILE_BYTES} bytes")
    return data.decode("utf-8", "replace")


def _netns_file(netns: str, name: str) -> str | None:
    path = NETNS_ETC / netns / name
    if not os.path.lexists(path):
        return None
    return _admin_file(path, f"/etc/netns file {name}")


def read_sources(plan: JobNetwork) -> resolver.Sources:
    """Blocking: the node's files and the admin's, for the decision."""
    bridged = plan.mode is NetworkType.BRIDGE
    return resolver.Sources(
        node_resolv_conf=view.read_node_file(Path("/etc/resolv.conf")),
        node_hosts=view.read_node_file(Path("/etc/hosts")) if bridged else None,
        admin_resolv_conf=(
            _admin_file(plan.job_resolv_conf, "LARK_JOB_RESOLV_CONF")
            if plan.job_resolv_conf is not None
            else None
        ),
        netns_resolv_conf=_netns_file(plan.netns, "resolv.conf"),
        netns_hosts=_netns_file(plan.netns, "hosts"),
        bridged=bridged,
        networked=plan.mode is not NetworkType.NONE,
        job_dns=plan.job_dns,
        static=plan.bridge is not None and plan.bridge.static is not None,
        node_hostname=socket.gethostname(),
    )


class JobWorld:
    """One job's view: decided before its network (a NAT job's firewall opens port 53 to
    the node's own resolvers), settled once the network is up (a bridged job's lease), and
    followed afterwards."""

    def __init__(self, plan: JobNetwork, sources: resolver.Sources) -> None:
        self.plan = plan
        self.sources = sources
        self.view = resolver.decide(sources)
        self.files = view.ViewFiles(view.view_dir(plan.state_dir, plan.name))
        self.lan: resolver.Lan | None = None
        self.settled = False

    @classmethod
    def read(cls, plan: JobNetwork) -> JobWorld:
        return cls(plan, read_sources(plan))

    @property
    def relayed(self) -> tuple[Service, ...]:
        """The node's loopback resolvers the job's DNS uses, for the relay (decided once:
        the relay listens before the job starts)."""
        return self.view.relayed

    def node_dns(self) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
        """The job's servers that are the node's own (non-loopback) addresses."""
        if not any(not a.is_loopback for a in self.view.servers):
            return ()
        with rtnl.Channel() as host:
            return self.view.node_dns(host.is_local)

    def settle(self, record: Record, lan: resolver.Lan | None) -> None:
        """Blocking, before the job starts: the view with the job's LAN, written (the
        directory noted in the record first)."""
        record.note(StepName.VIEW, dir=str(self.files.dir))
        self.settled = True
        self.update(lan)
        log.info("%s: DNS %s", self.plan.name, self.view.dns_path)

    def update(self, lan: resolver.Lan | None) -> None:
        """The view again when the job's LAN changed (a lease with other DNS servers)."""
        if not self.settled or (lan == self.lan and self.lan is not None):
            return
        self.lan = lan
        before = self.view.dns_path
        self.view = resolver.decide(self.sources, lan)
        changed = False
        if self.view.resolv_conf is not None:
            changed |= self.files.write("resolv.conf", self.view.resolv_conf)
        if self.view.hosts is not None:
            changed |= self.files.write("hosts", self.view.hosts)
        if changed and self.view.dns_path != before and before:
            log.info("%s: DNS now %s", self.plan.name, self.view.dns_path)

    def safe_update(self, lan: resolver.Lan | None) -> None:
        try:
            self.update(lan)
        except LarkError as exc:
            log.error("%s: %s", self.plan.name, exc)

    def mounts(self) -> list[tuple[Path, Path]]:
        """What to bind over the node's files in the job's own mount namespace."""
        return self.files.binds()

    def attributes(self) -> dict[str, object]:
        return {"LarkJobDNS": self.view.dns_path}
