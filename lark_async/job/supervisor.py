"""One job, one nursery: set up, run and watch the job, and always tear down.

The supervisor only sequences: the kernel detail is the network driver's (job/network/)
and the backends', what is known and decided is the books' (job/books.py), and the
supervisor does the I/O the books call for. Each resource is noted in the state record
before it is created, and teardown (shielded, time-bounded) undoes exactly what the
record lists, on every path: normal exit, job failure, setup failure, signals and
cancellation.
"""

from __future__ import annotations

import functools
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import classad2
import trio

from .. import testhooks, userfiles
from ..backends import cgroup, locks, netns, placement
from ..backends.connguard import ConnectionGuard
from ..backends.netlink.watch import watch_link
from ..decide import ads
from ..decide.modes import NetworkType
from ..decide.plan import JobNetwork
from ..decide.reach import Proto, Service
from ..errors import Interrupted, LarkError, map_errors
from ..state.record import Record
from ..state.undo import undo_record
from . import network, prepare
from .books import Books, Route
from .chirp import FINAL_PUSH_TIMEOUT_S, ChirpPublisher
from .counting import Counting
from .process import FORWARDED_SIGNALS, Job, JobUser
from .relay import Relay, decided_by
from .world import JobWorld

CLEANUP_BUDGET_S = 30.0
JOB_LOCK_WAIT_S = 60.0  # a sweeper holds a dead job's name through its delete script
JOB_TERM_GRACE_S = 5.0  # teardown's, for a job still running then (within CLEANUP_BUDGET_S)

log = logging.getLogger("lark.supervisor")


@dataclass
class RunRequest:
    plan: JobNetwork
    argv: Sequence[str]
    user: JobUser
    env: Mapping[str, str]
    cwd: Path | None
    update_ad: Path | None
    job_ad: classad2.ClassAd = field(default_factory=classad2.ClassAd)
    machine_ad: classad2.ClassAd = field(default_factory=classad2.ClassAd)
    placement: placement.Placement | None = None  # None: where the agent is, unmoved
    wrapped: bool = False  # under the starter (wrap), which gives the hard kill


@dataclass
class Outcome:
    status: int
    cleanup_errors: list[LarkError]


class Supervisor:
    """Sequences one job over its network driver (job/network/), its books (books.py) and
    its long tasks; the books decide, the supervisor does the I/O they call for."""

    def __init__(self, request: RunRequest) -> None:
        self.req = request
        self.plan = request.plan
        self.books = Books(self.plan)
        self.network = network.driver_for(self.plan)  # chosen once: nothing after asks which
        self.counting = Counting(self.books, self.network) if self.network is not None else None
        self.record: Record | None = None
        self.job_lock: int | None = None  # the job-name lock, held from before the record on
        self.guard: ConnectionGuard | None = None  # the connection policy's queue
        self.chirp: ChirpPublisher | None = None  # decided once, before the job starts
        self.cgroup: cgroup.JobCgroup | None = None
        self.placement = request.placement  # the job's cgroups and the agent's, once known
        self.world: JobWorld | None = None  # the job's resolv.conf and hosts, once decided
        self.relay: Relay | None = None  # node loopback services inside the job's namespace
        self.job: Job | None = None
        self.setup_scope = trio.CancelScope()
        self._job_nursery: trio.Nursery | None = None

    # -- the whole life ---------------------------------------------------

    async def run(self) -> Outcome:
        """Return the job's status; raise a LarkError if the job never started."""
        status: int | None = None
        cleanup_errors: list[LarkError] = []
        # trio re-raises signals still queued when the receiver closes; one that arrives during
        # cleanup must not kill the agent afterwards, so what it restores is a no-op
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, _after_cleanup)
        with trio.open_signal_receiver(*FORWARDED_SIGNALS) as signals:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._route_signals, signals)
                    with self.setup_scope:
                        await self._setup(nursery)
                    if self.books.interrupted is not None:
                        raise Interrupted(self.books.interrupted)
                    status = await self._supervise()
                    nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + CLEANUP_BUDGET_S
                    cleanup_errors = await self.teardown()
                if scope.cancelled_caught:
                    log.error(
                        "cleanup of %s ran out of time after %s s", self.plan.name, CLEANUP_BUDGET_S
                    )
        assert status is not None
        return Outcome(status, cleanup_errors)

    async def _route_signals(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            route = self.books.route_signal(signum)
            if route in (Route.FORWARD, Route.FORWARD_AND_STOP):
                assert self.job is not None
                log.info("forwarding signal %d to job %s", signum, self.plan.name)
                self.job.signal(signum)
                if route is Route.FORWARD_AND_STOP and not self.req.wrapped:
                    assert self._job_nursery is not None  # TERM or INT: KILL after a grace
                    self._job_nursery.start_soon(self._kill_after_grace)
            elif route is Route.INTERRUPT:
                log.info("signal %d during setup of %s: cleaning up", signum, self.plan.name)
                self.setup_scope.cancel()

    # -- setup ------------------------------------------------------------

    async def _setup(self, nursery: trio.Nursery) -> None:
        plan = self.plan
        if self.network is None:
            log.info("USE_NETWORK_NAMESPACES is false: %s runs without Lark networking", plan.name)
            await self._spawn(None)
            return
        started = time.perf_counter()
        user = self.req.user
        self.chirp = await trio.to_thread.run_sync(
            ChirpPublisher.for_job, self.req.env, user.uid, user.gid, abandon_on_cancel=True
        )
        self.network.validate()  # before anything exists
        self.world = await trio.to_thread.run_sync(JobWorld.read, plan)
        if plan.mode is not NetworkType.NONE:
            self.network.allow_dns(await trio.to_thread.run_sync(self.world.node_dns))
        record = await self.setup_network(nursery)
        await trio.to_thread.run_sync(self.world.settle, record, self.network.lan())
        if plan.connections is not None:
            self.guard = await prepare.open_guard(plan)
            await self._step_done("policy")
        if plan.create_script is not None or plan.delete_script is not None:
            addresses = self.network.script_addresses()
            await prepare.run_create_script(
                plan,
                record,
                addresses,
                self.req.job_ad,
                self.req.machine_ad,
                self.network.script_env(),
            )
            await self._step_done("script")
        await self._open_relay(nursery)
        self._publish()
        self.cgroup = prepare.open_cgroup(plan, record, self._placement())
        await self._step_done("cgroup")
        log.info(
            "%s: network ready (%s) in %.1f ms (%s), starting job %s",
            plan.name,
            plan.mode,
            (time.perf_counter() - started) * 1000,
            self.books.steps_summary(),
            list(self.req.argv),
        )
        await self._spawn(plan.netns)

    async def _open_relay(self, nursery: trio.Nursery) -> None:
        """The node loopback services the job uses, on the same address and port inside its
        namespace (job/relay.py): the starter's chirp server, the node's loopback resolver
        the job's DNS names, the admin's list. Served from before the job starts."""
        plan = self.plan
        services = list(plan.loopback_services)
        if self.chirp is not None:
            contact = self.chirp.contact
            services.append(Service(Proto.TCP, contact.host, contact.port, "chirp"))
        if self.world is not None:
            services += self.world.relayed
        guard = self.guard  # (decides the checked services' flows, in both families)
        if not services:
            return
        self.relay = await trio.to_thread.run_sync(
            lambda: Relay.open(
                services,
                listen_in=functools.partial(netns.inside, plan.netns),
                decide=decided_by(guard) if guard is not None else None,
                job=plan.name,
            )
        )
        await nursery.start(self.relay.serve)
        log.info(
            "%s: relaying into the job's namespace: %s",
            plan.name,
            ", ".join(f"{s} ({s.why})" for s in self.relay.services),
        )
        await self._step_done("relay")

    async def setup_network(self, nursery: trio.Nursery | None = None) -> Record:
        """Everything but the job: the job lock, the record, and the driver's setup (address,
        netns + veth, firewall, ...), the driver validated first if the caller has not.
        ``nursery``: for the long tasks a driver starts (bridge mode's DHCP lease)."""
        assert self.network is not None
        if not self.network.validated:
            self.network.validate()
        self.books.start_steps(time.perf_counter())
        self.job_lock = await prepare.take_job_lock(self.plan, JOB_LOCK_WAIT_S)
        self.record = record = Record.create(
            self.plan.state_dir, self.plan.name, _plan_record(self.plan)
        )
        await self.network.setup(network.Setup(record, self._step_done, nursery, self._publish))
        return record

    def _release_job_lock(self) -> None:
        """Last of all: nothing named for the job is left (but veths the kernel is deleting)."""
        if self.job_lock is not None:
            locks.release(locks.job_lock_path(self.plan.lock_dir, self.plan.name), self.job_lock)
            self.job_lock = None

    async def _step_done(self, step: str) -> None:
        self.books.step_done(step, time.perf_counter())
        if testhooks.pause_after(step):
            await trio.sleep(60)  # cancellable: a signal still ends it
        await trio.lowlevel.checkpoint()

    def _placement(self) -> placement.Placement:
        if self.placement is None:
            self.placement = placement.Placement.here()
        return self.placement

    async def _spawn(self, job_netns: str | None) -> None:
        req = self.req
        self.books.spawning()
        mounts = self.world.mounts() if self.world is not None else None
        seats = self._placement()
        self.job = await trio.to_thread.run_sync(
            lambda: Job.spawn(
                req.argv, job_netns, req.user, req.env, req.cwd, seats, self.cgroup, mounts
            )
        )
        name = self.plan.name
        for signum in self.books.spawned(time.monotonic()):
            log.info("forwarding signal %d to job %s (held while it started)", signum, name)
            self.job.signal(signum)
        placement.protect_from_oom()  # after the fork: the job keeps the starter's score

    # -- while the job runs -------------------------------------------------

    async def _supervise(self) -> int:
        """The job, and around it the long tasks: the accounting poll, the connection guard,
        the watches on the job's links (the DHCP lease runs from setup on)."""
        assert self.job is not None
        async with trio.open_nursery() as nursery:
            self._job_nursery = nursery
            if self.books.supervised() and not self.req.wrapped:  # a TERM while it started
                nursery.start_soon(self._kill_after_grace)
            if self.network is not None and self.network.rules is not None:
                nursery.start_soon(self._poll)
            if self.guard is not None:
                await nursery.start(self.guard.serve)
            nursery.start_soon(self._watch_suspension)
            for watch in self.network.take_watches() if self.network is not None else []:
                lost = functools.partial(_gone, self._network_lost, watch.lost)
                await nursery.start(watch_link, watch.socket, watch.name, lost)
            status = await self.job.wait()
            nursery.cancel_scope.cancel()
        log.info("%s: job exited with status %d", self.plan.name, status)
        return status

    async def _watch_suspension(self) -> None:
        """The starter suspends a job by freezing its cgroup (or SIGSTOP without cgroups):
        the agent, outside it, goes on counting and renewing, and says so once per change
        (``LarkJobSuspended``)."""
        assert self.job is not None
        seats, pid = self._placement(), self.job.proc.pid
        job_cgroup = self.cgroup.path if self.cgroup is not None else None
        while True:
            now, before = seats.frozen(job_cgroup) or placement.stopped(pid), self.books.suspended
            if self.books.note_suspended(now):
                if now or before is not None:
                    log.info("%s: job %s", self.plan.name, "suspended" if now else "running")
                self._publish()
            await trio.sleep(min(self.plan.accounting_interval_s, 1.0))

    async def _poll(self) -> None:
        assert self.counting is not None
        while True:
            await trio.sleep(self.plan.accounting_interval_s)
            await self.counting.check()
            await self._publish_all()
            if not netns.netns_exists(self.plan.netns):
                self._network_lost(f"network namespace {self.plan.netns} was removed")

    def _network_lost(self, why: str) -> None:
        """Someone removed the job's network from outside: the job cannot go on as it was
        promised; stop it (TERM, a grace period, KILL) and clean up."""
        if not self.books.network_lost():
            return
        log.error("%s: %s; stopping the job", self.plan.name, why)
        if self._job_nursery is not None:
            self._job_nursery.start_soon(self._terminate_job)

    async def _terminate_job(self) -> None:
        assert self.job is not None
        self.job.signal(15)
        await self._kill_after_grace()

    async def _kill_after_grace(self) -> None:
        assert self.job is not None
        grace = self.plan.kill_grace_s
        await trio.sleep(grace)
        if self.job.proc.poll() is None:
            log.warning("%s: the job outlived %g s after TERM: killing it", self.plan.name, grace)
            self.job.signal(9)

    async def _publish_all(self, final: bool = False) -> None:
        """The update ad, and the job ad through chirp when the job has an IO proxy (the
        final push only if the last one went through, within a short budget: a failing
        chirp server never holds up the teardown)."""
        values = self._publish()
        chirp = self.chirp
        if values and chirp is not None:
            if not final:
                await chirp.push(values)
            elif chirp.healthy:
                await chirp.push(values, FINAL_PUSH_TIMEOUT_S)

    def _publish(self) -> dict[str, object]:
        """What the books say now, into the record's status and the update ad."""
        found: dict[str, object] = {}
        if self.network is not None:
            found.update(self.network.attributes())
        if self.world is not None and self.network is not None:
            self.world.safe_update(self.network.lan())  # (a bridged job's lease changed)
            found.update(self.world.attributes())
        if self.guard is not None:
            found.update(self.guard.attributes())
        if self.relay is not None:
            found.update(self.relay.attributes())
        counted = self.network is not None and self.network.rules is not None
        published = self.books.publication(found, counted, time.monotonic())
        if self.record is not None and self.record.path.exists():
            try:
                self.record.set_status(published.status)
            except LarkError as exc:
                log.warning("%s", exc)
        path = self.req.update_ad
        if path is not None:
            try:
                with map_errors(f"write update ad {path}"), userfiles.as_owner():
                    ads.write_atomically(path, ads.format_old(published.values))
            except LarkError as exc:
                log.warning("%s", exc)
        return published.values

    # -- teardown -------------------------------------------------------------

    async def teardown(self) -> list[LarkError]:
        """DESIGN.md section 2's order: stop the job, kill what it left, read and publish the
        final counters, the driver's teardown (the DHCP release, while the link is there),
        the record's undo, and last the job lock."""
        self.books.tearing_down = True
        network = self.network
        counted = network is not None and network.rules is not None
        if network is not None:
            network.close_watches()
        if self.job is not None:
            await self.job.stop(JOB_TERM_GRACE_S)
            await self._kill_leftovers()
            if counted and self.counting is not None:  # before the chain goes
                await self.counting.final_read()
            if self.guard is not None:  # the audit's pending counts, before they are published
                self.guard.flush_audit()
            if counted or self.guard is not None or self.relay is not None:
                await self._publish_all(final=True)
            self.job.close()
        if self.guard is not None:  # (its counts are published above)
            self.guard.close()
        if self.relay is not None:  # (likewise)
            self.relay.close()
        closing = await network.teardown() if network is not None else []
        try:
            return await self._undo()
        finally:
            for thread in closing:
                await trio.to_thread.run_sync(thread.join)
            self._release_job_lock()

    async def _undo(self) -> list[LarkError]:
        record = self.record
        if record is None:
            return []
        release = self.network.address_release() if self.network is not None else None
        lingering: list[str] = []  # veths the kernel deletes with the namespace, after we exit
        errors = await trio.to_thread.run_sync(lambda: undo_record(record, release, lingering))
        if errors:
            log.error(
                "%s: cleanup left %d problem(s); the state record %s stays for "
                "`lark-agent cleanup`",
                self.plan.name,
                len(errors),
                record.path,
            )
        else:
            log.info("%s: cleaned up", self.plan.name)
        return errors

    async def _kill_leftovers(self) -> None:
        """Whatever the job left in its cgroup dies with it, at once, before the final
        counters are read; HTCondor's starter does the same when a job exits
        (src/condor_starter.V6.1/vanilla_proc.cpp: VanillaProc::JobReaper calls
        Kill_Family). A failure leaves the rest to the undo of the record."""
        if self.cgroup is None:
            return
        try:
            killed = await trio.to_thread.run_sync(self.cgroup.kill_all)
        except LarkError as exc:
            log.error("%s: %s", self.plan.name, exc)
            return
        if killed:
            log.info(
                "%s: killed %d process(es) the job left behind (SIGKILL)", self.plan.name, killed
            )


def _after_cleanup(signum: int, _frame: object) -> None:
    log.info("signal %d after cleanup: nothing left to stop", signum)


def _plan_record(plan: JobNetwork) -> dict[str, object]:
    return {
        "mode": plan.mode,
        "netns": plan.netns,
        "chain": plan.chain,
        "external_interface": plan.external_interface,
    }


def _gone(lost: Callable[[str], None], why: str, _name: str) -> None:
    """watch_link's callback: the link it watched is gone."""
    lost(why)
