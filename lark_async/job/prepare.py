"""The setup steps around the network, whatever the mode: the job-name lock before it; the
connection policy's queue, the admin's create script (its delete script noted first) and
the job's own cgroup after it."""

from __future__ import annotations

import logging

import classad2
import trio

from ..backends import cgroup, locks, netns, placement, scripts
from ..backends.connguard import ConnectionGuard
from ..decide import ads
from ..decide.plan import JobNetwork
from ..errors import LarkError, ResourceError
from ..state.record import Record
from ..state.steps import StepName

log = logging.getLogger("lark.supervisor")


async def take_job_lock(plan: JobNetwork, wait_s: float) -> int:
    """Before the record and every resource: whoever holds the job's name may remove what
    is named for it, and the sweeper never takes it from a live agent. A sweeper holding
    it lets go within its removal; another agent holding it has the name in use."""
    with trio.move_on_after(wait_s):
        while (fd := locks.take_job_lock(plan.lock_dir, plan.name)) is None:
            await trio.sleep(0.02)
        return fd
    raise ResourceError(
        f"job name {plan.name}: `lark-agent cleanup` held its lock for over {wait_s:g} s"
    )


async def open_guard(plan: JobNetwork) -> ConnectionGuard:
    """The connection policy's queue, opened inside the job's namespace."""
    connections = plan.connections
    assert connections is not None
    audit = plan.audit_dir / f"{plan.name}.jsonl" if plan.audit_dir is not None else None
    guard = await trio.to_thread.run_sync(
        lambda: netns.inside(
            plan.netns,
            lambda: ConnectionGuard.open(
                connections,
                plan.name,
                audit,
                plan.iptables_command,  # type: ignore[arg-type]
                plan.audit_max_bytes,
            ),
        )
    )
    log.info("%s: connection policy on (%s); audit log %s", plan.name, guard.how, audit)
    return guard


async def run_create_script(
    plan: JobNetwork,
    record: Record,
    addresses: tuple[str, str],
    job_ad: classad2.ClassAd,
    machine_ad: classad2.ClassAd,
    extra_env: dict[str, str] | None = None,
) -> None:
    """The delete script is noted first: it runs at cleanup even if create fails.
    ``addresses``: (external, internal) IPv4, as the network driver gives them (the
    positional arguments stay the original Lark's); ``extra_env``: the driver's
    ``script_env`` (the job's IPv6)."""
    external, internal = addresses
    stdin = scripts.ads_stdin(ads.format_for_script(job_ad), ads.format_for_script(machine_ad))
    env = {
        "LARK_JOB_NAME": plan.name,
        "LARK_NETWORK_TYPE": plan.mode,
        "LARK_FIREWALL_BACKEND": plan.firewall_backend,
        "LARK_IPTABLES": plan.iptables_command,
        **(extra_env or {}),
    }
    if plan.delete_script is not None:
        record.note(
            StepName.SCRIPT,
            path=plan.delete_script.path,
            timeout=plan.delete_script.timeout_s,
            args=[plan.chain, plan.external_interface, internal],
            stdin=stdin.decode(),
            env=env,
            job=plan.name,
            state_dir=str(plan.state_dir),
        )
    if plan.create_script is not None:
        args = [external, internal, plan.chain, plan.external_interface]
        await trio.to_thread.run_sync(
            scripts.run_script, plan.create_script, args, stdin, plan.name, env, plan.state_dir
        )


def open_cgroup(
    plan: JobNetwork, record: Record, seats: placement.Placement
) -> cgroup.JobCgroup | None:
    """The job's own cgroup, below the cgroup v2 the agent was started in (the starter's
    job cgroup), noted before it is made, so that teardown can kill all the job forked at
    once. Without a usable cgroup v2 the job's processes are found through its network
    namespace (backends/procs.py)."""
    made: cgroup.JobCgroup | None = None
    seat, why = seats.v2, seats.why_no_v2
    if seat is not None:
        record.note(StepName.CGROUP, path=str(cgroup.job_dir(seat.start, plan.name)))
        try:
            made = cgroup.JobCgroup.create(plan.name, seat.start)
        except LarkError as exc:
            why = str(exc)
    if made is not None:
        log.info(
            "%s: the job runs in cgroup %s; teardown kills it with %s",
            plan.name,
            made.path,
            made.method,
        )
    else:
        log.info(
            "%s: no cgroup for the job (%s); its processes are found through its network namespace",
            plan.name,
            why,
        )
    return made
