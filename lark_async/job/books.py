"""The job's books, kept apart from the I/O: what is known and decided, never done here.

httpcore's connection pool is the model (``_assign_requests_to_connections`` keeps the
books and returns what to close; ``_close_connections`` does the I/O): the supervisor
asks the books what a signal means, whether a lost network stops the job, what to
publish, and acts on the answer itself. Pure (no threads, sockets or files), so every
decision is unit-tested without a kernel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from ..decide.accounting import derive_accounting
from ..decide.modes import NetworkType
from ..decide.plan import JobNetwork
from ..decide.tally import Sample, Tally

STOP_SIGNALS = frozenset({2, 15})  # SIGINT, SIGTERM: the job is asked to stop


class Route(Enum):
    """What to do with a signal the agent received."""

    FORWARD = "forward"  # to the job
    FORWARD_AND_STOP = "forward and stop"  # to the job, then KILL after the grace period
    HOLD = "hold"  # the job is being started: it gets the signal once it exists
    INTERRUPT = "interrupt"  # during setup: stop setting up and clean up
    IGNORE = "ignore"  # during setup, again: the cleanup is already under way


class Phase(Enum):
    SETUP = "setup"
    SPAWNING = "spawning"  # the job exists any moment now
    STARTED = "started"  # the job runs; nothing watches it yet
    SUPERVISED = "supervised"  # the job runs, with its long tasks around it


@dataclass(frozen=True)
class Publication:
    values: dict[str, object]  # the update ad's (and the chirp push's)
    status: dict[str, object]  # the state record's status: the ``Lark*`` ones


class Books:
    """One job's books: step times, the tally, the phase, and what was decided so far."""

    def __init__(self, plan: JobNetwork) -> None:
        self.plan = plan
        self.step_times: dict[str, float] = {}
        self._mark = 0.0
        self.tally = Tally()  # the counts as published: never lower than before
        self.job_started = 0.0  # monotonic; 0: not started
        self.phase = Phase.SETUP
        self.interrupted: int | None = None  # the signal that ended setup
        self.held_signals: list[int] = []
        self.stopping = False  # a stop signal was forwarded and the KILL is scheduled
        self._stop_before_supervision = False  # one came before the KILL could be scheduled
        self.lost = False  # the job's network was taken from outside
        self.suspended: bool | None = None  # the starter froze the job (None: not asked yet)
        self.tearing_down = False  # from now on, damage to the firewall is not repaired

    # -- setup's steps ----------------------------------------------------------

    def start_steps(self, now: float) -> None:
        self._mark = now

    def step_done(self, step: str, now: float) -> None:
        self.step_times[step] = now - self._mark
        self._mark = now

    def steps_summary(self) -> str:
        """As the "network ready" line gives them: ``address 0.4, netns 3.1, ...`` (ms)."""
        return ", ".join(f"{k} {v * 1000:.1f}" for k, v in self.step_times.items())

    # -- the job's life and the signals ---------------------------------------------

    def spawning(self) -> None:
        self.phase = Phase.SPAWNING

    def spawned(self, now: float) -> list[int]:
        """The job exists: return the signals held for it meanwhile, to deliver now."""
        self.phase, self.job_started = Phase.STARTED, now
        held, self.held_signals = self.held_signals, []
        return held

    def supervised(self) -> bool:
        """The job's long tasks are there: whether to schedule the KILL now, for a stop
        signal that came while the job was being started (forwarded, or held and delivered,
        with no grace period running yet)."""
        self.phase = Phase.SUPERVISED
        if self._stop_before_supervision and not self.stopping:
            self.stopping = True
            return True
        return False

    def route_signal(self, signum: int) -> Route:
        """A job that runs gets every signal, and a stop signal also schedules a KILL once
        (while supervised, where the grace period can run; one that came while the job was
        being started, once it is: ``supervised``); before it exists, the first signal
        interrupts setup and a later one is already being acted on."""
        if self.phase in (Phase.STARTED, Phase.SUPERVISED):
            if signum in STOP_SIGNALS and self.phase is Phase.SUPERVISED and not self.stopping:
                self.stopping = True
                return Route.FORWARD_AND_STOP
            self._stop_before_supervision |= signum in STOP_SIGNALS
            return Route.FORWARD
        if self.phase is Phase.SPAWNING:
            self.held_signals.append(signum)
            self._stop_before_supervision |= signum in STOP_SIGNALS
            return Route.HOLD
        if self.interrupted is None:
            self.interrupted = signum
            return Route.INTERRUPT
        return Route.IGNORE

    def note_suspended(self, suspended: bool) -> bool:
        """What the last look at the job's freezer said; whether that is news."""
        news, self.suspended = suspended != self.suspended, suspended
        return news

    def network_lost(self) -> bool:
        """Someone removed the job's network: whether to stop the job (the first time only)."""
        first, self.lost = not self.lost, True
        return first

    # -- what is published ------------------------------------------------------------

    def observe(self, reading: Mapping[str, Sample]) -> list[str]:
        """One reading of the counters; the ones replaced from outside, to warn about."""
        return self.tally.observe(reading)

    def counts_restart(self) -> None:
        """The agent made the job's rules anew: all they count from now on is new."""
        self.tally.restart()

    def publication(self, found: Mapping[str, object], counted: bool, now: float) -> Publication:
        """The plan's attributes, then what was found since (the job's addresses or lease,
        the connection guard's counts), then, when the job's traffic is counted, the
        accounting over the job's life so far (``now`` monotonic)."""
        values = lark_attributes(self.plan)
        values.update(found)
        if self.suspended is not None:
            values["LarkJobSuspended"] = self.suspended
        status = {k: v for k, v in values.items() if k.startswith("Lark")}
        if self.plan.accounting and counted:
            elapsed = now - self.job_started if self.job_started else 0.0
            values.update(derive_accounting(self.tally.published, elapsed))
        return Publication(values, status)


def lark_attributes(plan: JobNetwork) -> dict[str, object]:
    """What the plan alone says (DESIGN.md section 3's ``Lark*`` names)."""
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
    return values
