"""What of Lark's is in the node's firewall, whichever backend put it there: for a person
(``dump-firewall``) and for the sweeper (what is named for a job, with its removal)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

from . import iptables, iptables_jobs, nft, nft_jobs
from .base import Leftover


def leftovers() -> list[Leftover]:
    """Every job chain in both nft tables and the iptables and ip6tables builds (try every
    backend, as CNI's ipmasq does: a job's agent may have used either)."""
    return nft_jobs.leftovers() + iptables_jobs.leftovers()


def dump(iptables_command: str) -> Iterator[str]:
    """Lark's nftables tables, then Lark's chains and rules in ``iptables_command`` and its
    ip6tables build, with counters; each block titled, none for what is absent."""
    for family in (nft.FAMILY, nft.BRIDGE_FAMILY):
        text = nft.dump_table(family)
        if text:
            yield f"# nftables: table {family} {nft.TABLE}\n{text.rstrip()}\n"
    for command in (iptables_command, iptables.command6(iptables_command)):
        if shutil.which(command):
            text = iptables.dump(command)
            if text.strip():
                yield f"# {command.split('-')[0]} ({command}): Lark's chains and rules\n{text}\n"
