"""Undo a job's resources from its state record alone.

The supervisor's teardown and ``lark-agent cleanup`` share this one path.
Every undo is idempotent (absent means done), runs in a fixed order, and a
failing step does not stop the others: errors are collected and returned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from . import testhooks
from .backends import address, cgroup, firewall, netns
from .callouts import Script, run_script
from .errors import KernelError, LarkError
from .jobproc import kill_netns_processes
from .record import Record

log = logging.getLogger("lark.cleanup")

# One place fixes the order: the job's cgroup first (a dead agent's job stops before anything
# else goes, as a live agent stops its job before its teardown), the admin's delete script
# (while the job's chain and veth are still there for it), firewall, processes left in the
# namespace, veth, netns, address lock.
UNDO_ORDER = ("cgroup", "script", "dhcp", "firewall", "processes", "veth", "netns", "address")


def _undo_dhcp(details: dict) -> None:
    """A dead bridged job's lease, released so the LAN gets the address back now."""
    from .release import send_release

    send_release(details)
    log.info("released DHCP lease %s of a job whose agent died", details.get("address"))


def _undo_script(details: dict) -> None:
    script = Script("delete", details["path"], float(details["timeout"]))
    stdin = str(details.get("stdin", "")).encode()
    workdir = Path(details["state_dir"]) if details.get("state_dir") else None
    job = str(details.get("job"))
    run_script(script, details["args"], stdin, job, details.get("env", {}), workdir)


def _undo_firewall(details: dict) -> None:
    """The job's rules, then its accept rules in each iptables build whose FORWARD needed
    them, whichever backend the record names; every part is tried, the first failure is
    reported."""
    firewall.from_record(details).discard()


def _undo_cgroup(details: dict) -> None:
    path = Path(details["path"])
    killed = cgroup.discard(path)
    if killed:
        log.info("killed %d process(es) left in cgroup %s (SIGKILL)", killed, path)


def _undo_processes(details: dict) -> None:
    killed = kill_netns_processes(details["netns"])
    if killed:
        log.info("killed %d process(es) left in %s (TERM, then KILL)", killed, details["netns"])


def _undo_netns(details: dict) -> None:
    netns.discard_netns(details["netns"])


def _undo_address(details: dict) -> None:
    path = Path(details["lock"]) if details.get("lock") else None
    if path is None:
        return
    if address.is_locked(path):
        raise KernelError(f"address lock {path} is still held by a running agent")
    address.release_lock(path, None)


_UNDO: dict[str, Callable[[dict], None]] = {
    "cgroup": _undo_cgroup,
    "script": _undo_script,
    "dhcp": _undo_dhcp,
    "firewall": _undo_firewall,
    "processes": _undo_processes,
    "veth": lambda details: netns.discard_link(details["external"]),
    "netns": _undo_netns,
    "address": _undo_address,
}


def undo_record(
    record: Record,
    release_address: Callable[[], None] | None = None,
    lingering: list[str] | None = None,
) -> list[LarkError]:
    """Undo every recorded step in the fixed order; remove the record only if all succeeded.

    ``release_address`` lets the live agent drop the lock it holds itself
    (its own open lock would otherwise look like someone else's).

    A veth whose peer is in the job's namespace is not deleted link by link:
    deleting the namespace makes the kernel delete it, in the background and
    in batches, instead of making us wait ~20 ms per veth for the device to
    unregister. Callers that pass ``lingering`` get those veth names and
    may move on (the address pool skips a pair while its veth lingers);
    otherwise this waits for them to go, deleting any that stay.
    """
    steps = dict(record.steps)
    if "netns" in steps:
        steps["processes"] = steps["netns"]
    errors: list[LarkError] = []
    deferred: list[str] = []
    for step in UNDO_ORDER:
        if step not in steps:
            continue
        try:
            if step == "veth" and "netns" in steps and netns.netns_exists(steps["netns"]["netns"]):
                deferred.append(steps["veth"]["external"])
            elif step == "address" and release_address is not None:
                release_address()
            else:
                _UNDO[step](steps[step])
        except LarkError as exc:
            log.error("cleanup of %s: %s", record.data.get("name"), exc)
            errors.append(exc)
        except OSError as exc:
            err = KernelError(f"undo {step} of {record.data.get('name')}: {exc.strerror or exc}")
            log.error("%s", err)
            errors.append(err)
        testhooks.blocking_pause_after(f"undo-{step}")
    if lingering is not None:
        lingering.extend(deferred)
    elif deferred:
        errors += settle_links(deferred)
    if not errors:
        record.discard()
    return errors


def settle_links(names: list[str], timeout_s: float = 2.0) -> list[LarkError]:
    """Wait for veths left to the kernel to go; delete whichever is still there after
    ``timeout_s`` (its namespace was held by something else)."""
    try:
        netns.await_links_gone(names, timeout_s)
    except OSError as exc:
        return [KernelError(f"list links: {exc.strerror or exc}")]
    errors: list[LarkError] = []
    for name in names:
        try:
            netns.discard_link(name)
        except LarkError as exc:
            errors.append(exc)
    return errors
