"""The site bridge of bridge mode: found, or made once from the LAN device, and left in place.

Making it moves the device's addresses and routes onto the bridge in one netlink batch, the
bridge taking the device's MAC, so the host keeps its address, its DHCP identity and its
neighbours' ARP entries. Agents starting at once serialise on a lock on the lock directory
(no file is left for it), and the second finds the bridge the first made.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
from pathlib import Path

import trio

from ..errors import ConfigError, ResourceError, map_errors
from . import rtnl

log = logging.getLogger("lark.bridge")


def ensure_bridge(channel: rtnl.Channel, name: str, device: str | None, lock_dir: Path) -> int:
    """The bridge's index; made from ``device`` when it does not exist yet."""
    found = channel.link(name)
    if found is not None and found.kind == "bridge" and found.up:
        return found.index  # the usual case, without the lock
    if found is None and device is None:
        raise _no_device(name)
    with map_errors(f"create lock directory {lock_dir}"):
        lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(lock_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        found = channel.link(name)  # made by another agent while we waited (it is up now)
        if found is not None:
            return _usable(name, found)
        if device is None:
            raise _no_device(name)
        return _make(channel, name, device)
    finally:
        os.close(fd)


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


def _make(channel: rtnl.Channel, name: str, device: str) -> int:
    dev = channel.link(device)
    if dev is None:
        raise ResourceError(f"bridge device {device} does not exist")
    if dev.kind == "bridge" or dev.master is not None:
        raise ResourceError(f"bridge device {device} is a bridge or already part of one")
    if not dev.up or not dev.running:
        raise ResourceError(f"bridge device {device} is down (no carrier or not up)")
    addresses, routes = channel.addresses(dev.index), channel.routes(dev.index)
    with map_errors(f"create bridge {name}"):
        channel.request(rtnl.new_bridge(name, dev.mac or None))
    off_device = [rtnl.address(rtnl.RTM_DELADDR, dev.index, a.interface, device) for a in addresses]
    try:
        index = channel.index(name)
        with map_errors(f"move {device} and its addresses onto bridge {name}"):
            channel.request(
                *(rtnl.moved_route(r, rtnl.RTM_DELROUTE, dev.index) for r in routes),
                *off_device,
                rtnl.set_master(dev.index, index, device),
                rtnl.set_up(index, name),
                *(rtnl.readd_address(a, index, name) for a in addresses),
                *(rtnl.moved_route(r, rtnl.RTM_NEWROUTE, index) for r in routes),
            )
    except BaseException:
        _restore(channel, name, dev, addresses, routes)
        raise
    log.info(
        "created bridge %s on %s (moved %s; %d route(s))",
        name,
        device,
        ", ".join(str(a.interface) for a in addresses) or "no addresses",
        len(routes),
    )
    return index


def _restore(
    channel: rtnl.Channel,
    name: str,
    dev: rtnl.Link,
    addresses: list[rtnl.Address],
    routes: list[rtnl.Route],
) -> None:
    """Undo a half-made bridge: the device gets back what it had."""
    for batch in (
        [rtnl.del_link(name)],
        [rtnl.readd_address(a, dev.index, "device") for a in addresses],
        [rtnl.moved_route(r, rtnl.RTM_NEWROUTE, dev.index) for r in routes],
    ):
        try:
            channel.request(*batch, absent_ok=True)
        except OSError as exc:
            log.error("restoring the bridge device after a failure: %s", exc)


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
        except rtnl.RequestError as exc:
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
