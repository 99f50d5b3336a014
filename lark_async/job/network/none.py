"""Mode none (HTCondor's ``WantJobNetworking = false``): a namespace of the job's own with
loopback only; no veth, address, firewall or watch."""

from __future__ import annotations

from ...backends import netns
from ...decide.modes import NetworkType
from .base import NetworkDriver, Setup, note_links


class LoopbackDriver(NetworkDriver):
    mode = NetworkType.NONE

    async def _setup(self, ctx: Setup) -> None:
        plan = self.plan
        before, not_ours = note_links(ctx.record, plan)
        netns.in_fresh_thread(
            lambda: netns.setup_job_netns(
                plan.netns, None, plan.internal_interface, None, before, not_ours
            )
        )
        await ctx.done("netns")
