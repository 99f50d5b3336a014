"""The site bridge of bridge mode: found, or made once from the LAN device, and left in place.

Making it moves everything the node had on the device onto the bridge (linkconfig.py: both
families' addresses, routes in every table, rules), the bridge taking the device's MAC and
MTU, so the host keeps its addresses (SLAAC ones too), its DHCP identity and its
neighbours' ARP and neighbour entries. The move is a journal of single changes: a failure
anywhere takes back every change made, and the node is as it was. Agents starting at once
serialise on a lock on the lock directory (no file is left for it), and the second finds the
bridge the first made.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
from pathlib import Path

import trio

from ... import testhooks
from ...errors import ConfigError, KernelError, ResourceError, map_errors
from ..netlink import NetlinkError, rtnl
from . import linkconfig
from .journal import Journal

log = logging.getLogger("lark.bridge")


def ensure_bridge(channel: rtnl.Channel, name: str, device: str | None, lock_dir: Path) -> int:
    """The bridge's index; made from ``device`` when it does not exist yet. A bridge an
    agent killed halfway left half made is taken back first (its journal)."""
    found = channel.link(name)
    notes = journal_path(lock_dir, name)
    if found is not None and found.kind == "bridge" and found.up and not notes.exists():
        return found.index  # the usual case, without the lock
    if found is None and device is None:
        raise _no_device(name)
    with map_errors(f"create lock directory {lock_dir}"):
        lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(lock_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _recover(channel, name, notes)
        found = channel.link(name)  # made by another agent while we waited (it is up now)
        if found is not None:
            return _usable(name, found)
        if device is None:
            raise _no_device(name)
        return _make(channel, name, device, notes)
    finally:
        os.close(fd)


def journal_path(lock_dir: Path, name: str) -> Path:
    """Where the agent making bridge ``name`` keeps its undo notes until it is done."""
    return lock_dir / f"bridge-{name}.journal"


def _recover(channel: rtnl.Channel, name: str, notes: Path) -> None:
    failed = Journal.recover(channel, notes)
    if failed is None:
        return
    log.warning(
        "an agent was killed while making bridge %s: its changes are taken back%s",
        name,
        f", but for {len(failed)}: {failed[0].what}: {failed[0].strerror}" if failed else "",
    )


def _no_device(name: str) -> ConfigError:
    return ConfigError(
        f"bridge {name} does not exist and no LARK_BRIDGE_DEVICE is set to make it from"
    )


def _usable(name: str, link: rtnl.Link) -> int:
    if link.kind != "bridge":
        raise ResourceError(f"{name} exists but is not a bridge ({link.kind or 'a device'})")
    if not link.up:
        raise ResourceError(f"bridge {name} is down")
    return link.index


def _make(channel: rtnl.Channel, name: str, device: str, notes: Path) -> int:
    dev = channel.link(device)
    if dev is None:
        raise ResourceError(f"bridge device {device} does not exist")
    if dev.kind == "bridge" or dev.master is not None:
        raise ResourceError(f"bridge device {device} is a bridge or already part of one")
    if not dev.up or not dev.running:
        raise ResourceError(f"bridge device {device} is down (no carrier or not up)")
    with map_errors(f"read the configuration of {device}"):
        nexthops = linkconfig.nexthop_objects_on(channel, dev.index)
        config = linkconfig.read_link_config(channel, dev.index, device)
    if nexthops:
        raise ResourceError(
            f"bridge device {device} has {nexthops} nexthop object(s) (ip nexthop), which "
            f"cannot move to a bridge: make bridge {name} from it yourself"
        )
    journal = Journal(channel, notes)
    try:
        index = _move(journal, name, dev, device, config)
        journal.close()
    except BaseException as exc:
        failed = journal.rollback()
        if isinstance(exc, OSError):
            what = getattr(exc, "what", None) or "move"
            left = f"; {device} is as it was"
            if failed:
                more = f" and {len(failed) - 1} more" if len(failed) > 1 else ""
                left = (
                    f"; the rollback failed to {failed[0].what} ({failed[0].strerror}){more}: "
                    "see the log"
                )
            raise KernelError(
                f"make bridge {name} from {device}: {what}: {exc.strerror}{left}"
            ) from exc
        raise
    log.info(
        "created bridge %s from %s (moved %s; %d route(s) learned from IPv6 routers, to be "
        "learned again)",
        name,
        device,
        config,
        len(config.learned_routes),
    )
    return index


def _move(
    journal: Journal, name: str, dev: rtnl.Link, device: str, config: linkconfig.LinkConfig
) -> int:
    """Everything the node had on ``device`` onto a new bridge ``name``, one change at a
    time, in an order where each finds what it needs: the bridge is made with the device's
    MAC, MTU and per-link settings; rules, routes needing a gateway, routes needing the
    link, static neighbours and addresses (secondaries first: removing an IPv4 primary
    removes its secondaries unless ``promote_secondaries``) leave the device; the device
    joins the bridge; addresses, neighbours, link routes, gateway routes and rules arrive
    on it."""
    channel, old = journal.channel, dev.index
    journal.apply(rtnl.new_bridge(name, dev.mac or None, dev.mtu or None), [rtnl.del_link(name)])
    new = channel.index(name)
    linkconfig.copy_link_sysctls(device, name)  # (they go with the bridge on a rollback)
    # no IPv6 link-local of its own when it comes up: the device's moves to it
    journal.apply(rtnl.set_addr_gen_mode(new, rtnl.IN6_ADDR_GEN_MODE_NONE, name))
    _checkpoint("bridge-create")
    routes = (*config.link_routes, *config.gateway_routes)
    for rule in reversed(config.rules):
        journal.apply(
            linkconfig.del_rule(rule, device, device, f"of {device}"),
            [linkconfig.add_rule(rule, device, device, f"of {device}")],
        )
    for r in reversed(routes):
        journal.apply(
            linkconfig.del_route(r, old, old, device), [linkconfig.add_route(r, old, old, device)]
        )
    for r in config.learned_routes:  # (learned again, after a rollback too: see linkconfig)
        journal.apply(linkconfig.del_route(r, old, old, device))
    for n in config.neighbours:  # (removing a link's last IPv4 address flushes its ARP)
        journal.apply(
            linkconfig.del_neighbour(n, old, device), [linkconfig.add_neighbour(n, old, device)]
        )
    for a in reversed(config.addresses):
        journal.apply(
            linkconfig.del_address(a, old, "", "", device),
            linkconfig.add_address(a, old, "", "", device),
        )
    _checkpoint("bridge-clear")
    journal.apply(rtnl.set_master(old, new, device), [rtnl.set_master(old, 0, device)])
    journal.apply(rtnl.set_up(new, name))
    for a in config.addresses:
        first, *then = linkconfig.add_address(a, new, device, name, name)
        journal.apply(first, [linkconfig.del_address(a, new, device, name, name)])
        for message in then:
            journal.apply(message)
    for n in config.neighbours:
        journal.apply(
            linkconfig.add_neighbour(n, new, name), [linkconfig.del_neighbour(n, new, name)]
        )
    _checkpoint("bridge-addresses")
    for r in routes:
        journal.apply(
            linkconfig.add_route(r, old, new, name), [linkconfig.del_route(r, old, new, name)]
        )
    _checkpoint("bridge-routes")
    for rule in config.rules:
        journal.apply(
            linkconfig.add_rule(rule, device, name, f"for {name}"),
            [linkconfig.del_rule(rule, device, name, f"for {name}")],
        )
    if dev.addr_gen_mode not in (None, rtnl.IN6_ADDR_GEN_MODE_NONE):
        # the bridge was made without a link-local of its own, the device's moved to it;
        # from now on it makes one as the device did (at its next up)
        journal.apply(rtnl.set_addr_gen_mode(new, dev.addr_gen_mode, name))
    _checkpoint("bridge-rules")
    return new


def _checkpoint(step: str) -> None:
    """Test hooks: fail here, or wait here to be killed."""
    testhooks.fail_after(step)
    testhooks.blocking_pause_after(step)


# A job's port: it learns nothing (the job's frames cannot move another host's MAC to it,
# even those the bridge hands to the host before any hook, such as STP's and LLDP's), is
# never sent frames for unknown MACs (no eavesdropping on floods), never gets its own frames
# back (hairpin off: what the bridge sends out of it really comes from elsewhere), and is
# shut if it sends STP BPDUs to a bridge running STP (BPDU guard).
PORT_OPTIONS = {
    rtnl.IFLA_BRPORT_LEARNING: 0,
    rtnl.IFLA_BRPORT_UNICAST_FLOOD: 0,
    rtnl.IFLA_BRPORT_MODE: 0,
    rtnl.IFLA_BRPORT_GUARD: 1,
}


def pin_port(channel: rtnl.Channel, port: str, bridge: str, mac: bytes) -> str:
    """Pin the job's MAC to its port before the job runs: the port options above, a static
    sticky forwarding entry for the job's MAC, and the port locked where the kernel has it
    (Linux 5.18: a frame whose source is not in the table for that port is dropped before
    learning, independently of Lark's firewall). Returns what took, for the log."""
    index = channel.index(port)
    options = {**PORT_OPTIONS, rtnl.IFLA_BRPORT_LOCKED: 1}
    with map_errors(f"set the bridge port options of {port}"):
        channel.request(rtnl.set_port_flags(index, options, port))
    br = channel.link(bridge)
    vid = None
    if br is not None and br.bridge_options.get(rtnl.IFLA_BR_VLAN_FILTERING, b"\0")[0]:
        # a VLAN-aware bridge looks MACs up in the port's VLAN: a new port's is the default
        pvid = br.bridge_options.get(rtnl.IFLA_BR_VLAN_DEFAULT_PVID, b"\0\0")
        vid = struct.unpack_from("=H", pvid.ljust(2, b"\0"))[0] or None
    sticky = True
    with map_errors(f"pin {mac.hex(':')} to {port}"):
        try:
            channel.request(rtnl.static_fdb(index, mac, vid, sticky, port))
        except NetlinkError as exc:
            if exc.errno != errno.EINVAL:  # a kernel without sticky entries (before 4.20)
                raise
            sticky = False
            channel.request(rtnl.static_fdb(index, mac, vid, sticky, port))
    link = channel.link(port)
    took = link.port_options if link is not None else {}
    missing = [k for k, v in PORT_OPTIONS.items() if took.get(k) != v]
    if missing:
        raise ResourceError(
            f"bridge port {port} did not take its options (IFLA_BRPORT {missing}): "
            f"it could learn other hosts' MACs"
        )
    locked = took.get(rtnl.IFLA_BRPORT_LOCKED) == 1
    return ", ".join(
        [
            "learning off",
            "locked" if locked else "not locked (kernel before 5.18)",
            "static sticky entry" if sticky else "static entry (no sticky)",
        ]
        + ([f"vlan {vid}"] if vid is not None else [])
    )


async def wait_forwarding(channel: rtnl.Channel, port: str, bridge: str, bound_s: float) -> None:
    """Until the bridge forwards on ``port`` (at once with forward delay 0; an STP bridge
    listens and learns first), within ``bound_s``."""
    deadline = trio.current_time() + bound_s
    while True:
        link = channel.link(port)
        if link is not None and link.forwarding:
            return
        if trio.current_time() >= deadline:
            raise ResourceError(
                f"bridge {bridge} did not start forwarding on {port} within {bound_s:g} s "
                "(STP with a long forward delay?)"
            )
        await trio.sleep(0.005)
