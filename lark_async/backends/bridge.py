"""The site bridge of bridge mode: found, or made once from the LAN device, and left in place.

Making it moves the device's addresses and routes onto the bridge in one netlink batch, the
bridge taking the device's MAC, so the host keeps its address, its DHCP identity and its
neighbours' ARP entries. Agents starting at once serialise on a lock on the lock directory
(no file is left for it), and the second finds the bridge the first made.
"""

from __future__ import annotations

import fcntl
import logging
import os
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
