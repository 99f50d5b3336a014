"""Undo a job's resources from its state record alone.

The supervisor's teardown, ``lark-agent cleanup`` and the sweeper share this one
path: the steps (steps.py) undo themselves idempotently (absent means done), in
UNDO_ORDER, and a failing step does not stop the others: errors are collected
and returned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .. import testhooks
from ..backends import netns
from ..errors import KernelError, LarkError
from .record import Record
from .steps import NetnsStep, Step, VethStep, from_record

log = logging.getLogger("lark.cleanup")


def undo_record(
    record: Record,
    release_address: Callable[[], None] | None = None,
    lingering: list[str] | None = None,
) -> list[LarkError]:
    """Undo every recorded step in the fixed order; remove the record only if all succeeded.

    ``release_address`` lets the live agent drop the lock it holds itself
    (its own open lock would otherwise look like someone else's).
    """
    steps = from_record(record.steps, release_address)
    errors = undo_steps(steps, str(record.data.get("name")), lingering)
    if not errors:
        record.discard()
    return errors


def undo_steps(steps: list[Step], job: str, lingering: list[str] | None = None) -> list[LarkError]:
    """Undo ``steps`` (in UNDO_ORDER) one by one; a failing one does not stop the others.

    A veth whose peer is in the job's namespace is not deleted link by link:
    deleting the namespace makes the kernel delete it, in the background and
    in batches, instead of making us wait ~20 ms per veth for the device to
    unregister. Callers that pass ``lingering`` get those veth names and
    may move on (the address pool skips a pair while its veth lingers);
    otherwise this waits for them to go, deleting any that stay.
    """
    spaces = {s.netns for s in steps if isinstance(s, NetnsStep)}
    errors: list[LarkError] = []
    deferred: list[str] = []
    for step in steps:
        try:
            if isinstance(step, VethStep) and any(netns.netns_exists(ns) for ns in spaces):
                deferred.append(step.external)
            else:
                step.undo()
        except LarkError as exc:
            log.error("cleanup of %s: %s", job, exc)
            errors.append(exc)
        except OSError as exc:
            err = KernelError(f"undo {step.name} of {job}: {exc.strerror or exc}")
            log.error("%s", err)
            errors.append(err)
        testhooks.blocking_pause_after(f"undo-{step.name}")
    if lingering is not None:
        lingering.extend(deferred)
    elif deferred:
        errors += settle_links(deferred)
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
