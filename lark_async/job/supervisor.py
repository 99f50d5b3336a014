"""One job, one nursery: set up, run and watch the job, and always tear down.

The supervisor only sequences; kernel details live in backends/. Each
resource is noted in the state record before it is created, and teardown
(shielded, time-bounded) undoes exactly what the record lists, on every
path: normal exit, job failure, setup failure, signals and cancellation.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import classad2
import trio

from .. import testhooks, userfiles
from ..backends import address, cgroup, firewall, locks, mtu, netns, scripts
from ..backends.connguard import ConnectionGuard
from ..backends.lan.bridge import ensure_bridge, pin_port, wait_forwarding
from ..backends.lan.job_address import BridgeAddress, JobSide
from ..backends.netlink import probe, rtnl
from ..backends.netlink.watch import open_link_watch, watch_link
from ..decide import ads
from ..decide.accounting import derive_accounting
from ..decide.modes import CONNECTED, NetworkType
from ..decide.plan import JobNetwork
from ..decide.tally import Tally
from ..errors import Interrupted, LarkError, ResourceError, map_errors
from ..state.record import Record
from ..state.steps import StepName
from ..state.undo import undo_record
from .chirp import FINAL_PUSH_TIMEOUT_S, ChirpPublisher
from .process import FORWARDED_SIGNALS, Job, JobUser

CLEANUP_BUDGET_S = 30.0
JOB_TERM_GRACE_S = 5.0
JOB_LOCK_WAIT_S = 60.0  # a sweeper holds a dead job's name through its delete script

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


@dataclass
class Outcome:
    status: int
    cleanup_errors: list[LarkError]


def _kernel_features(plan: JobNetwork, driver: firewall.FirewallDriver | None) -> list[str]:
    features = ["netns"]
    if plan.mode in CONNECTED:
        features.append("veth")
        if plan.mode is NetworkType.BRIDGE:
            features.append("bridge")
        wanted = list(driver.kernel_features) if driver is not None else []
        if plan.connections is not None and "nftables" not in wanted:
            wanted.append("nftables")  # (the connection policy's flow set is nft's)
        features += wanted
        if plan.connections is not None:
            features.append("nfqueue")
    return features


class Supervisor:
    def __init__(self, request: RunRequest) -> None:
        self.req = request
        self.plan = request.plan
        self.record: Record | None = None
        self.job_lock: int | None = None  # the job-name lock, held from before the record on
        self.lease: address.AddressLease | None = None
        self.driver = firewall.driver_for(self.plan)  # chosen once: nothing after asks which
        self.firewall: firewall.JobFirewall | None = None  # the job's rules, once applied
        self.bridged: BridgeAddress | None = None  # bridge mode: the job's LAN address
        self.job_side: JobSide | None = None
        self.guard: ConnectionGuard | None = None  # the connection policy's queue
        self.job: Job | None = None
        self.cgroup: cgroup.JobCgroup | None = None
        self.job_started = 0.0
        self.interrupted: int | None = None
        self.spawning = False
        self.held_signals: list[int] = []
        self.step_times: dict[str, float] = {}
        self._step_mark = 0.0
        self.setup_scope = trio.CancelScope()
        self.watch_socket: socket.socket | None = None
        self.bridge_watch: socket.socket | None = None  # bridge mode: the bridge's deletion
        self.tally = Tally()  # the counts as published: never lower than before
        self._job_nursery: trio.Nursery | None = None
        self._lost = False
        self._stopping = False
        self._tearing_down = False
        self.chirp: ChirpPublisher | None = None  # decided once, before the job starts

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
                    if self.interrupted is not None:
                        raise Interrupted(self.interrupted)
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
            if self.job is not None:
                log.info("forwarding signal %d to job %s", signum, self.plan.name)
                self.job.signal(signum)
                if signum in (2, 15) and self._job_nursery is not None and not self._stopping:
                    # asked to stop: the job gets the signal, then KILL after a grace period
                    self._stopping = True
                    self._job_nursery.start_soon(self._kill_after_grace)
            elif self.spawning:  # the job exists any moment now: it gets the signal then
                self.held_signals.append(signum)
            elif self.interrupted is None:
                log.info("signal %d during setup of %s: cleaning up", signum, self.plan.name)
                self.interrupted = signum
                self.setup_scope.cancel()

    # -- setup ------------------------------------------------------------

    async def _setup(self, nursery: trio.Nursery) -> None:
        plan = self.plan
        if plan.mode is NetworkType.OFF:
            log.info("USE_NETWORK_NAMESPACES is false: %s runs without Lark networking", plan.name)
            await self._spawn(None)
            return
        started = time.perf_counter()
        user = self.req.user
        self.chirp = await trio.to_thread.run_sync(
            ChirpPublisher.for_job, self.req.env, user.uid, user.gid, abandon_on_cancel=True
        )
        for script in (plan.create_script, plan.delete_script):
            if script is not None:
                script.check()  # before anything exists
        probe.require(*_kernel_features(plan, self.driver))
        if self.driver is not None:
            self.driver.check_available()
        await self.setup_network(nursery)
        await self._open_guard()
        await self._run_create_script()
        self._publish({})
        self._open_cgroup()
        await self._step_done("cgroup")
        steps = ", ".join(f"{k} {v * 1000:.1f}" for k, v in self.step_times.items())
        log.info(
            "%s: network ready (%s) in %.1f ms (%s), starting job %s",
            plan.name,
            plan.mode,
            (time.perf_counter() - started) * 1000,
            steps,
            list(self.req.argv),
        )
        await self._spawn(plan.netns)

    async def setup_network(self, nursery: trio.Nursery | None = None) -> None:
        """Everything but the job: record, address, netns + veth, firewall."""
        plan = self.plan
        self._step_mark = time.perf_counter()
        await self._take_job_lock()
        self.record = record = Record.create(plan.state_dir, plan.name, _plan_record(plan))
        if plan.mode is NetworkType.BRIDGE:
            assert nursery is not None
            await self._setup_bridged(record, nursery)
            return
        addresses = None
        if plan.mode is NetworkType.NAT:
            record.note(StepName.ADDRESS, lock_dir=str(plan.lock_dir))
            self.lease = address.allocate(
                plan.local_network, plan.lock_dir, plan.name, plan.state_dir
            )
            record.note(StepName.ADDRESS, lock=str(self.lease.path))
            await self._step_done("address")
            addresses = self.lease.addresses
            log.info(
                "%s: addresses %s (host) / %s (job)",
                plan.name,
                addresses.external,
                addresses.internal,
            )

        def note(step: str) -> None:
            if StepName(step) is StepName.NETNS:
                record.note(StepName.NETNS, netns=plan.netns)
            else:
                record.note(StepName.VETH, external=plan.external_interface)

        nat = plan.mode is NetworkType.NAT
        external = plan.external_interface if nat else None
        mtu = await trio.to_thread.run_sync(self._nat_mtu) if nat else None
        self.watch_socket = netns.in_fresh_thread(
            lambda: netns.setup_job_netns(
                plan.netns,
                external,
                plan.internal_interface,
                addresses,
                note,
                lambda step: record.forget(StepName(step)),
                open_link_watch,
                mtu=mtu,
            ),
        )
        await self._step_done("netns")
        if addresses is not None:
            netns.enable_forwarding()
            await self._setup_firewall(record, addresses.internal)
            await self._step_done("firewall")

    def _nat_mtu(self) -> int | None:
        """The uplink's MTU within LARK_JOB_MTU (backends/mtu.py)."""
        with rtnl.Channel() as host, map_errors("read the node's default route"):
            uplink = mtu.uplink_mtu(host)
        chosen = mtu.derive_nat_mtu(uplink, self.plan.job_mtu)
        log.info(
            "%s: MTU %s (uplink %s, LARK_JOB_MTU %s)",
            self.plan.name,
            chosen or mtu.DEFAULT_MTU,
            uplink or "unknown: no default route",
            self.plan.job_mtu or "unset",
        )
        return chosen

    async def _setup_firewall(self, record: Record, internal: ipaddress.IPv4Address) -> None:
        """The job's rules, and its way through the node's own FORWARD where that would drop
        it (the driver's survey): noted in the record before any of it is added."""
        plan, driver = self.plan, self.driver
        assert driver is not None
        node = await trio.to_thread.run_sync(driver.survey, str(plan.local_network))
        for warning in node.warnings:
            log.warning("%s: %s", plan.name, warning)
        for build, why in sorted(node.accept.items()):
            log.info(
                "%s: %s on this node (%s): accepting the job's traffic in filter FORWARD via %s",
                plan.name,
                why,
                build,
                firewall.ACCEPT_CHAIN,
            )
        job = driver.job(plan.chain, plan.external_interface, internal, accept=sorted(node.accept))
        record.note(StepName.FIREWALL, **job.to_record())
        if job.quick:  # (one netlink transaction: a thread hop would cost more)
            job.apply()
        else:
            await trio.to_thread.run_sync(job.apply)
        self.firewall = job

    async def _take_job_lock(self) -> None:
        """Before the record and every resource: whoever holds the job's name may remove what
        is named for it, and the sweeper never takes it from a live agent. A sweeper holding
        it lets go within its removal; another agent holding it has the name in use."""
        plan = self.plan
        with trio.move_on_after(JOB_LOCK_WAIT_S):
            while (fd := locks.take_job_lock(plan.lock_dir, plan.name)) is None:
                await trio.sleep(0.02)
            self.job_lock = fd
            return
        raise ResourceError(
            f"job name {plan.name}: `lark-agent cleanup` held its lock for over "
            f"{JOB_LOCK_WAIT_S:g} s"
        )

    def _release_job_lock(self) -> None:
        """Last of all: nothing named for the job is left (but veths the kernel is deleting)."""
        if self.job_lock is not None:
            locks.release(locks.job_lock_path(self.plan.lock_dir, self.plan.name), self.job_lock)
            self.job_lock = None

    async def _setup_bridged(self, record: Record, nursery: trio.Nursery) -> None:
        """Bridge, then netns + veth as its port, firewall, forwarding, then the address."""
        plan, bridge = self.plan, self.plan.bridge
        assert bridge is not None
        with rtnl.Channel() as host:
            index = await trio.to_thread.run_sync(
                ensure_bridge, host, bridge.name, bridge.device, plan.lock_dir
            )
            # watched from now on: a bridge deleted before the job runs is seen when it does
            self.bridge_watch = open_link_watch(index)
            found = host.link_by_index(index)
        if found is None:
            raise ResourceError(f"bridge {bridge.name} was deleted while the job was set up")
        await self._step_done("bridge")

        def note(step: str) -> None:
            if StepName(step) is StepName.NETNS:
                record.note(StepName.NETNS, netns=plan.netns)
            else:
                record.note(StepName.VETH, external=plan.external_interface)

        def inside(ifindex: int) -> tuple[socket.socket, JobSide]:
            watch = open_link_watch(ifindex)
            try:
                return watch, JobSide.open(plan.internal_interface)
            except BaseException:
                watch.close()
                raise

        opened = netns.in_fresh_thread(
            lambda: netns.setup_job_netns(
                plan.netns,
                plan.external_interface,
                plan.internal_interface,
                None,
                note,
                lambda step: record.forget(StepName(step)),
                inside,
                bridge=index,
                mtu=found.mtu or None,  # the LAN's: the bridge (and node) keep theirs
            ),
        )
        assert opened is not None
        self.watch_socket, self.job_side = opened
        await self._step_done("netns")
        mac = self.job_side.mac  # read before the job runs: from now on the job's is pinned
        with rtnl.Channel() as host:  # (goes with the port: nothing to record)
            pinned = await trio.to_thread.run_sync(
                pin_port, host, plan.external_interface, bridge.name, mac
            )
        log.info(
            "%s: %s pinned to %s (%s)", plan.name, mac.hex(":"), plan.external_interface, pinned
        )
        if bridge.static is None:
            self.job_side.open_port(plan.external_interface, bridge.name)
        await self._step_done("port")
        assert self.driver is not None
        job = self.driver.job(plan.chain, plan.external_interface, mac=mac.hex(":"))
        self.firewall = job
        record.note(StepName.FIREWALL, **job.to_record())
        await trio.to_thread.run_sync(job.apply)
        await self._step_done("firewall")
        with rtnl.Channel() as host:
            await wait_forwarding(host, plan.external_interface, bridge.name, bridge.wait_s)
        await self._step_done("forwarding")
        republish = lambda: self._publish(self.tally.published)  # noqa: E731
        self.bridged = BridgeAddress(plan, self.job_side, job, republish, self._note_lease)
        if bridge.static is not None:
            await self.bridged.use_static()
        else:
            await nursery.start(self.bridged.keep_lease)
        await self._step_done("address")

    def _script_addresses(self) -> tuple[str, str]:
        """(external, internal) IPv4 for the scripts; a bridged job has no external address."""
        if self.lease is not None:
            return str(self.lease.addresses.external), str(self.lease.addresses.internal)
        values = self.bridged.attributes() if self.bridged is not None else {}
        return "", str(values.get("LarkInnerAddressIPv4", ""))

    async def _open_guard(self) -> None:
        plan, connections = self.plan, self.plan.connections
        if connections is None:
            return
        audit = plan.audit_dir / f"{plan.name}.jsonl" if plan.audit_dir is not None else None
        self.guard = guard = await trio.to_thread.run_sync(
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
        await self._step_done("policy")

    async def _run_create_script(self) -> None:
        """The delete script is noted first: it runs at cleanup even if create fails."""
        plan, record = self.plan, self.record
        if record is None or (plan.create_script is None and plan.delete_script is None):
            return
        external, internal = self._script_addresses()
        stdin = scripts.ads_stdin(
            ads.format_for_script(self.req.job_ad), ads.format_for_script(self.req.machine_ad)
        )
        env = {
            "LARK_JOB_NAME": plan.name,
            "LARK_NETWORK_TYPE": plan.mode,
            "LARK_FIREWALL_BACKEND": plan.firewall_backend,
            "LARK_IPTABLES": plan.iptables_command,
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
        await self._step_done("script")

    def _open_cgroup(self) -> None:
        """The job's own cgroup, noted before it is made, so that teardown can kill all the
        job forked at once. Without a usable cgroup v2 the job's processes are found
        through its network namespace (backends/procs.py)."""
        plan, record = self.plan, self.record
        assert record is not None
        home, why = cgroup.locate()
        if home is not None:
            record.note(StepName.CGROUP, path=str(cgroup.job_dir(home, plan.name)))
            try:
                self.cgroup = cgroup.JobCgroup.create(plan.name, home)
            except LarkError as exc:
                why = str(exc)
        if self.cgroup is not None:
            log.info(
                "%s: the job runs in cgroup %s; teardown kills it with %s",
                plan.name,
                self.cgroup.path,
                self.cgroup.method,
            )
        else:
            log.info(
                "%s: no cgroup for the job (%s); its processes are found through its network "
                "namespace",
                plan.name,
                why,
            )

    def _note_lease(self, lease: dict[str, object] | None) -> None:
        record = self.record
        if record is None or not record.path.exists():
            return
        try:
            if lease is None:
                record.forget(StepName.DHCP)
            else:
                record.note(StepName.DHCP, **lease)
        except LarkError as exc:
            log.warning("%s", exc)

    async def _step_done(self, step: str) -> None:
        now = time.perf_counter()
        self.step_times[step] = now - self._step_mark
        self._step_mark = now
        if testhooks.pause_after(step):
            await trio.sleep(60)  # cancellable: a signal still ends it
        await trio.lowlevel.checkpoint()

    async def _spawn(self, job_netns: str | None) -> None:
        req = self.req
        self.spawning = True
        self.job = await trio.to_thread.run_sync(
            lambda: Job.spawn(req.argv, job_netns, req.user, req.env, req.cwd, self.cgroup)
        )
        self.job_started = time.monotonic()
        for signum in self.held_signals:
            self.job.signal(signum)

    # -- while the job runs -------------------------------------------------

    async def _supervise(self) -> int:
        assert self.job is not None
        async with trio.open_nursery() as nursery:
            self._job_nursery = nursery
            if self.firewall is not None:
                nursery.start_soon(self._poll)
            if self.guard is not None:
                await nursery.start(self.guard.serve)
            if self.watch_socket is not None:
                watched, self.watch_socket = self.watch_socket, None
                await nursery.start(
                    watch_link, watched, self.plan.internal_interface, self._link_gone
                )
            if self.bridge_watch is not None:
                watched, self.bridge_watch = self.bridge_watch, None
                await nursery.start(watch_link, watched, "bridge", self._bridge_gone)
            status = await self.job.wait()
            nursery.cancel_scope.cancel()
        log.info("%s: job exited with status %d", self.plan.name, status)
        return status

    def _link_gone(self, _name: str) -> None:
        self._network_lost(
            f"the veth pair {self.plan.external_interface}/{self.plan.internal_interface} was "
            "deleted while the job ran"
        )

    def _bridge_gone(self, _name: str) -> None:
        bridge = self.plan.bridge
        assert bridge is not None
        self._network_lost(
            f"bridge {bridge.name} was deleted while the job ran (the job is off the LAN)"
        )

    def _network_lost(self, why: str) -> None:
        """Someone removed the job's network from outside: the job cannot go on as it was
        promised; stop it (TERM, a grace period, KILL) and clean up."""
        if self._lost:
            return
        self._lost = True
        log.error("%s: %s; stopping the job", self.plan.name, why)
        if self._job_nursery is not None:
            self._job_nursery.start_soon(self._terminate_job)

    async def _terminate_job(self) -> None:
        assert self.job is not None
        self.job.signal(15)
        await self._kill_after_grace()

    async def _kill_after_grace(self) -> None:
        assert self.job is not None
        await trio.sleep(JOB_TERM_GRACE_S)
        if self.job.proc.poll() is None:
            log.warning(
                "%s: the job outlived %g s after TERM: killing it", self.plan.name, JOB_TERM_GRACE_S
            )
            self.job.signal(9)

    async def _poll(self) -> None:
        while True:
            await trio.sleep(self.plan.accounting_interval_s)
            await self._check_firewall()
            await self._publish_all()
            if not netns.netns_exists(self.plan.netns):
                self._network_lost(f"network namespace {self.plan.netns} was removed")

    async def _check_firewall(self) -> None:
        """Each poll: the counters, and everything of the job's firewall where a site tool
        may have flushed, reloaded or reordered it, put back as it was (each look is the
        backend's: its chain, its NAT source, its place in each iptables build)."""
        job = self.firewall
        assert job is not None
        for check in job.checks(counting=self.plan.accounting):
            try:
                found = await trio.to_thread.run_sync(check.look)
            except LarkError as exc:
                log.warning("%s: %s: %s", self.plan.name, check.unreadable, exc)
                continue
            if found.counters is not None:
                self._observe(found.counters, job.chain)  # (a chain gone reads empty: values stay)
            damage = found.damage
            if damage is None or self._tearing_down:
                continue
            if damage.resets_counters:  # rules made anew: their counters start from zero
                await self._restore_rules(damage.why, damage.repair)
                continue
            log.warning("%s: %s: restoring its place", self.plan.name, damage.why)
            try:  # (the same rules, moved: their counters go on)
                await trio.to_thread.run_sync(damage.repair)
            except LarkError as exc:
                log.error("%s: could not restore the firewall: %s", self.plan.name, exc)

    def _observe(self, now: dict[str, tuple[int, int]], chain: str) -> None:
        replaced = self.tally.observe(now)
        if replaced:
            log.warning(
                "%s: counter(s) %s of %s read lower than before: the rules were replaced from "
                "outside; counting on from the published values (traffic since the last poll "
                "is not counted)",
                self.plan.name,
                ", ".join(replaced),
                chain,
            )

    async def _read_counters(self) -> None:
        """The final interval, folded into the tally, which publishes what crossed since the
        job started and never less than before: a chain that is gone leaves the last values."""
        job = self.firewall
        if job is None or not self.plan.accounting:
            return
        try:
            now = await trio.to_thread.run_sync(job.read_counters)
        except LarkError as exc:
            log.warning(
                "%s: counters unavailable, keeping the last values: %s", self.plan.name, exc
            )
            return
        self._observe(now, job.chain)

    async def _restore_rules(self, why: str, repair: Callable[[], object]) -> None:
        """Someone flushed the firewall (``nft flush ruleset``, ``iptables -F``) or took part
        of the job's rules: put them all back and count on from the last values read; what
        crossed while the rules were gone is not counted."""
        job = self.firewall
        assert job is not None
        log.warning(
            "%s: %s: restoring it (traffic since the last poll is not counted)",
            self.plan.name,
            why,
        )
        try:
            await trio.to_thread.run_sync(repair)
            self.tally.restart()  # fresh rules: all they count from now on is new
            if self.bridged is not None:  # (the lease's addresses are kept apart from the rules)
                bindings = self.bridged.bindings()
                await trio.to_thread.run_sync(job.set_addresses, bindings)
        except LarkError as exc:
            log.error("%s: could not restore the firewall: %s", self.plan.name, exc)

    async def _publish_all(self, final: bool = False) -> None:
        """The update ad, and the job ad through chirp when the job has an IO proxy (the
        final push only if the last one went through, within a short budget: a failing
        chirp server never holds up the teardown)."""
        values = self._publish(self.tally.published)
        chirp = self.chirp
        if values and chirp is not None:
            if not final:
                await chirp.push(values)
            elif chirp.healthy:
                await chirp.push(values, FINAL_PUSH_TIMEOUT_S)

    def _publish(self, counters: dict[str, tuple[int, int]]) -> dict[str, object]:
        values = _lark_attributes(self.plan, self.lease)
        if self.bridged is not None:
            values.update(self.bridged.attributes())
        if self.guard is not None:
            values.update(self.guard.attributes())
        if self.record is not None and self.record.path.exists():
            try:
                self.record.set_status({k: v for k, v in values.items() if k.startswith("Lark")})
            except LarkError as exc:
                log.warning("%s", exc)
        if self.plan.accounting and self.firewall is not None:
            elapsed = time.monotonic() - self.job_started if self.job_started else 0.0
            values.update(derive_accounting(counters, elapsed))
        path = self.req.update_ad
        if path is None:
            return values
        try:
            with map_errors(f"write update ad {path}"), userfiles.as_owner():
                ads.write_atomically(path, ads.format_old(values))
        except LarkError as exc:
            log.warning("%s", exc)
        return values

    # -- teardown -------------------------------------------------------------

    async def teardown(self) -> list[LarkError]:
        """Stop the job, read and publish the final counters, then undo the record."""
        self._tearing_down = True
        for watch in (self.watch_socket, self.bridge_watch):
            if watch is not None:  # setup stopped before the watch task took it
                watch.close()
        self.watch_socket = self.bridge_watch = None
        if self.job is not None:
            await self._stop_job()
            await self._kill_leftovers()
            if self.firewall is not None:  # the final interval is read before the chain goes
                await self._read_counters()
            if self.guard is not None:  # the audit's pending counts, before they are published
                self.guard.flush_audit()
            if self.firewall is not None or self.guard is not None:
                await self._publish_all(final=True)
            self.job.close()
        if self.guard is not None:  # (its counts are published above)
            self.guard.close()
        if self.bridged is not None:  # RELEASE while the link is still there
            await self.bridged.release()
        closing: list[threading.Thread] = []
        if self.job_side is not None:
            # closing a packet socket waits out an RCU grace period (~10 ms each): let that
            # overlap with the undo below instead of adding to it
            closing = [threading.Thread(target=c, daemon=True) for c in self.job_side.closers()]
            for thread in closing:
                thread.start()
            self.job_side = None
        try:
            return await self._undo()
        finally:
            for thread in closing:
                await trio.to_thread.run_sync(thread.join)
            self._release_job_lock()

    async def _undo(self) -> list[LarkError]:
        if self.record is None:
            return []
        lease = self.lease
        lingering: list[str] = []  # veths the kernel deletes with the namespace, after we exit
        errors = await trio.to_thread.run_sync(
            lambda: undo_record(self.record, lease.release if lease else None, lingering)  # type: ignore[arg-type]
        )
        if errors:
            log.error(
                "%s: cleanup left %d problem(s); the state record %s stays for "
                "`lark-agent cleanup`",
                self.plan.name,
                len(errors),
                self.record.path,
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

    async def _stop_job(self) -> None:
        """The trio way: TERM, a grace period, then KILL; always reap."""
        assert self.job is not None
        if self.job.proc.poll() is not None:
            return
        self.job.signal(15)
        with trio.move_on_after(JOB_TERM_GRACE_S):
            await self.job.wait()
            return
        self.job.signal(9)
        await self.job.wait()


def _after_cleanup(signum: int, _frame: object) -> None:
    log.info("signal %d after cleanup: nothing left to stop", signum)


def _plan_record(plan: JobNetwork) -> dict[str, object]:
    return {
        "mode": plan.mode,
        "netns": plan.netns,
        "chain": plan.chain,
        "external_interface": plan.external_interface,
    }


def _lark_attributes(plan: JobNetwork, lease: address.AddressLease | None) -> dict[str, object]:
    values: dict[str, object] = {
        "LarkNetworkType": plan.mode,
        "LarkAddressType": plan.address_type or "none",
    }
    if plan.mode is not NetworkType.NONE:
        values.update(
            LarkIptableName=plan.chain,
            LarkExternalInterface=plan.external_interface,
            LarkInternalInterface=plan.internal_interface,
        )
    if plan.bridge is not None:
        values["LarkBridgeName"] = plan.bridge.name
    if lease is not None:
        values.update(
            LarkInnerAddressIPv4=str(lease.addresses.internal),
            LarkExternalAddressIPv4=str(lease.addresses.external),
            LarkGateway=str(lease.addresses.external),
        )
    return values
