"""A NAT job's iptables side, whichever backend counts it: its way through each build's
FORWARD that would drop it (LARK-FORWARD, iptables.py; ip6tables builds for its IPv6),
and a poll's look at one build.

Both backends need this: the node's filter is not Lark's (nodefilter.py), and a
drop in any base chain is final. One read per build per poll gives the counters
(of the iptables backend's chain) and what a site tool took away or put above.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from ...errors import LarkError
from . import iptables
from .base import Check, Damage, Finding

UNREADABLE = "cannot read the firewall, keeping the last values"


def check_build(want: iptables.Wanted, counting: bool) -> Check:
    """One read of the build: its counters (of the counting chain) and what is missing or
    has someone else's rule above it, with the batch that puts that back first again."""

    def look() -> Finding:
        now, fix = iptables.inspect(want)
        damage = None
        if fix.problems:
            why = "; ".join(fix.problems) + f" ({want.job.command})"
            damage = Damage(why, fix.resets_counters, functools.partial(iptables.ensure, want))
        return Finding(now if want.counting and counting else None, damage)

    return Check(UNREADABLE, look)


def accept_only(
    chain: str,
    external_interface: str,
    builds: Sequence[str],
    ipv4: bool = True,
    ipv6: bool = False,
) -> list[iptables.Wanted]:
    """The builds where only the job's accept rules are Lark's (not its counting chain):
    an iptables build where the job has IPv4 (``ipv4``), an ip6tables one where it has IPv6."""
    return [
        iptables.Wanted(
            iptables.IptablesRules(build, chain, external_interface, None),
            counting=False,
            accept=True,
        )
        for build in builds
        if (ipv6 if iptables.is_ipv6(build) else ipv4)
    ]


def discard_with_accept(
    rules: Sequence[Callable[[], None]], builds: Sequence[str], chain: str
) -> None:
    """The job's own rules (``rules`` discard them, a build each), then its accept rules in
    each build (LARK-FORWARD with the last of them): every part is tried, the first failure
    raised."""
    parts: list[Callable[[], None]] = list(rules)
    parts += [functools.partial(iptables.discard, build, chain) for build in builds]
    failed: list[LarkError] = []
    for discard in parts:
        try:
            discard()
        except LarkError as exc:
            failed.append(exc)
    if failed:
        raise failed[0]
