"""The job's counters and the firewall that holds them, looked after while the job runs.

Each poll reads the counters into the books' tally and puts back whatever a site tool
flushed, reloaded or reordered (each look is the backend's); at teardown the final
interval is read before the chain goes. What the tally makes of a reading is the books'
(decide/tally.py); the reading and the repair are done here, on threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from ..backends import firewall
from ..errors import LarkError
from .books import Books
from .network import NetworkDriver

log = logging.getLogger("lark.supervisor")


class Counting:
    def __init__(self, books: Books, network: NetworkDriver) -> None:
        self.plan = books.plan
        self.books = books
        self.network = network

    @property
    def rules(self) -> firewall.JobFirewall:
        rules = self.network.rules
        assert rules is not None  # (only a job whose rules were applied is counted)
        return rules

    async def check(self) -> None:
        """One poll: the counters, and every part of the job's firewall where a site tool
        may have damaged it, put back as it was."""
        rules = self.rules
        for check in rules.checks(counting=self.plan.accounting):
            try:
                found = await trio.to_thread.run_sync(check.look)
            except LarkError as exc:
                log.warning("%s: %s: %s", self.plan.name, check.unreadable, exc)
                continue
            if found.counters is not None:
                self._observe(found.counters, rules.chain)  # (a chain gone reads empty)
            damage = found.damage
            if damage is None or self.books.tearing_down:
                continue
            if damage.resets_counters:  # rules made anew: their counters start from zero
                await self._restore(damage.why, damage.repair)
                continue
            log.warning("%s: %s: restoring its place", self.plan.name, damage.why)
            try:  # (the same rules, moved: their counters go on)
                await trio.to_thread.run_sync(damage.repair)
            except LarkError as exc:
                log.error("%s: could not restore the firewall: %s", self.plan.name, exc)

    async def final_read(self) -> None:
        """The final interval, folded into the tally, which publishes what crossed since the
        job started and never less than before: a chain that is gone leaves the last values."""
        if self.network.rules is None or not self.plan.accounting:
            return
        rules = self.rules
        try:
            now = await trio.to_thread.run_sync(rules.read_counters)
        except LarkError as exc:
            log.warning(
                "%s: counters unavailable, keeping the last values: %s", self.plan.name, exc
            )
            return
        self._observe(now, rules.chain)

    def _observe(self, reading: dict[str, tuple[int, int]], chain: str) -> None:
        replaced = self.books.observe(reading)
        if replaced:
            log.warning(
                "%s: counter(s) %s of %s read lower than before: the rules were replaced from "
                "outside; counting on from the published values (traffic since the last poll "
                "is not counted)",
                self.plan.name,
                ", ".join(replaced),
                chain,
            )

    async def _restore(self, why: str, repair: Callable[[], object]) -> None:
        """Someone flushed the firewall (``nft flush ruleset``, ``iptables -F``) or took part
        of the job's rules: put them all back and count on from the last values read; what
        crossed while the rules were gone is not counted."""
        log.warning(
            "%s: %s: restoring it (traffic since the last poll is not counted)",
            self.plan.name,
            why,
        )
        try:
            await trio.to_thread.run_sync(repair)
            self.books.counts_restart()
            await self.network.rules_restored()
        except LarkError as exc:
            log.error("%s: could not restore the firewall: %s", self.plan.name, exc)
