"""The sans-IO DHCP client: facts in, orders out, one deadline (n-dhcp4's shape).

``Client.handle(event)`` takes a fact carrying ``now`` and returns the orders
to carry out in order; ``next_deadline`` is the one time the driver must wake
up at (retransmission, the next offer, a probe, T1, T2 or expiry, whichever
the state needs). No sockets, no clock, no global randomness: a test replays a
whole lease's life with explicit times and a seeded ``random.Random``.

Every state change is in the two tables at the end (``REPLIES``, ``EVENTS``:
the legal (state, input) pairs, as h11 keeps its transitions) and in
``NEXT_STATES`` (where each state may go). Each state's data lives in the
object for that state: a lease only in the states that hold one.

Network garbage never raises: a malformed reply, one for another
transaction, or one that breaks an acceptance rule (``lease.lease_from_reply``)
gives no orders and is counted by rule in ``stats.dropped_why``.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from . import arp, build
from . import options as opt
from .config import Config
from .errors import LocalProtocolError, MalformedMessage
from .events import (
    BROADCAST,
    Action,
    AddressInUse,
    ArpReceived,
    ConflictDetected,
    GaveUp,
    Input,
    LeaseBound,
    LeaseLost,
    LeaseRenewed,
    PacketReceived,
    ReleaseRequested,
    SendArp,
    Started,
    TimerFired,
    Transmit,
)
from .lease import Lease, Rejected, lease_from_reply
from .message import BOOTREPLY, ZERO, Message, decode

__all__ = ["NEXT_STATES", "Client", "Config", "State", "Stats"]

MT = opt.MessageType
# REQUESTs for one offer while no other offer waits, then the client starts over
# (RFC 2131 section 3.1 step 5 leaves the count to us; four spans the RFC's ~4, 8, 16 s)
REQUESTING_ATTEMPTS = 4
# A healthy server ACKs within milliseconds (Kea, dnsmasq: under 10 ms in the sandbox; a
# server that pings first does so before its OFFER, not its ACK). So the chosen server
# gets two REQUESTs this far apart, and after twice this the next offer is REQUESTed:
# a black-hole responder costs a second, not the RFC's four-second retransmissions.
QUICK_RETRY_S = 0.5
MAX_OFFERS = 4  # offers kept per transaction: a LAN of many responders cannot grow a storm
# Starting over after a NAK, a DECLINE or offers that all failed waits 0.5 s, then twice as
# long each time up to 16 s (plus up to a quarter for spread), until a lease is bound. A
# server that NAKs every REQUEST so costs a handful of packets in a 30 s start-up, where
# restarting at once cost thousands a second; the first wait is short, since one NAK is
# usual (a client back on another subnet, RFC 2131 section 3.2).
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 16.0


class State(Enum):
    """RFC 2131 figure 5, with PROBING (the RFC 5227 probe of a new lease: section 2.2's
    "SHOULD probe") between the ACK and BOUND, and STOPPED after a release or giving up."""

    INIT = "INIT"
    SELECTING = "SELECTING"
    REQUESTING = "REQUESTING"
    REBOOTING = "REBOOTING"  # INIT-REBOOT's wait for an answer (section 3.2)
    PROBING = "PROBING"
    BOUND = "BOUND"
    RENEWING = "RENEWING"
    REBINDING = "REBINDING"
    STOPPED = "STOPPED"


_S = State
NEXT_STATES: dict[State, frozenset[State]] = {
    _S.INIT: frozenset({_S.SELECTING, _S.REBOOTING, _S.STOPPED}),
    _S.SELECTING: frozenset({_S.REQUESTING, _S.STOPPED}),
    _S.REQUESTING: frozenset({_S.REQUESTING, _S.PROBING, _S.BOUND, _S.INIT, _S.STOPPED}),
    _S.REBOOTING: frozenset({_S.PROBING, _S.BOUND, _S.INIT, _S.SELECTING, _S.STOPPED}),
    _S.PROBING: frozenset({_S.BOUND, _S.INIT, _S.STOPPED}),
    _S.BOUND: frozenset({_S.RENEWING, _S.REBINDING, _S.INIT, _S.SELECTING, _S.STOPPED}),
    _S.RENEWING: frozenset({_S.BOUND, _S.REBINDING, _S.INIT, _S.SELECTING, _S.STOPPED}),
    _S.REBINDING: frozenset({_S.BOUND, _S.INIT, _S.SELECTING, _S.STOPPED}),
    _S.STOPPED: frozenset(),
}


@dataclass
class Stats:
    dropped: int = 0
    sent: int = 0
    dropped_why: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass(frozen=True)
class _Offer:
    server: ipaddress.IPv4Address
    address: ipaddress.IPv4Address


@dataclass
class _Exchange:
    """One transaction: its xid, when it began (for ``secs``), its last message and when to
    send that again."""

    xid: int
    began: float
    attempt: int = 0
    last: Transmit | None = None
    first_at: float = 0.0  # the first send of the message (RFC 2131 4.4.1: a lease's start)
    retry_at: float = float("inf")
    # SELECTING's REQUESTs: how many named each server, offers REQUESTed before the one
    # chosen now, and NAKs put down to REQUESTs that named another server (below)
    named: collections.Counter[ipaddress.IPv4Address] = field(default_factory=collections.Counter)
    tried: list[_Offer] = field(default_factory=list)
    excused: collections.Counter[ipaddress.IPv4Address] = field(default_factory=collections.Counter)


@dataclass(frozen=True)
class _Reply:
    """A decoded reply for our transaction, with its server identifier."""

    message: Message
    server: ipaddress.IPv4Address
    src_mac: bytes


# -- the states and their data ------------------------------------------------------


@dataclass
class _Init:
    name: ClassVar[State] = State.INIT
    wake_at: float | None = None  # after a restart's wait; None before Started


@dataclass
class _Selecting:
    x: _Exchange
    name: ClassVar[State] = State.SELECTING


@dataclass
class _Requesting:
    x: _Exchange
    chosen: _Offer
    waiting: list[_Offer]  # the transaction's other valid offers, in arrival order
    switch_at: float  # from then on, a waiting offer replaces an unanswered chosen one
    name: ClassVar[State] = State.REQUESTING


@dataclass
class _Rebooting:
    x: _Exchange
    address: ipaddress.IPv4Address
    name: ClassVar[State] = State.REBOOTING


@dataclass
class _Probing:
    lease: Lease
    prober: arp.Prober
    name: ClassVar[State] = State.PROBING


@dataclass
class _Bound:
    lease: Lease
    name: ClassVar[State] = State.BOUND


@dataclass
class _Renewing:
    lease: Lease
    x: _Exchange
    name: ClassVar[State] = State.RENEWING


@dataclass
class _Rebinding:
    lease: Lease
    x: _Exchange
    name: ClassVar[State] = State.REBINDING


@dataclass
class _Stopped:
    name: ClassVar[State] = State.STOPPED


_StateData = (
    _Init
    | _Selecting
    | _Requesting
    | _Rebooting
    | _Probing
    | _Bound
    | _Renewing
    | _Rebinding
    | _Stopped
)
_Leased = _Bound | _Renewing | _Rebinding
_Acquiring = (_Init, _Selecting, _Requesting, _Rebooting)


@dataclass
class _Heard:
    """What one acquisition heard, for the one line of a give-up."""

    began: float
    unacknowledged: list[ipaddress.IPv4Address] = field(default_factory=list)
    naked: list[ipaddress.IPv4Address] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)

    def reason(self, timeout_s: float) -> str:
        parts = []
        if self.unacknowledged:
            who = ", ".join(map(str, dict.fromkeys(self.unacknowledged)))
            parts.append(f"offers from {who} were never acknowledged")
        if self.naked:
            parts.append(f"{', '.join(map(str, dict.fromkeys(self.naked)))} NAKed")
        parts += self.in_use
        if self.rejected:
            rules = ", ".join(f"{rule}: {n}" for rule, n in sorted(self.rejected.items()))
            parts.append(f"replies dropped ({rules})")
        return f"no lease after {timeout_s:g} s: " + ("; ".join(parts) or "no server answered")


@dataclass
class Client:
    config: Config
    rng: random.Random = field(default_factory=random.Random)
    remembered: Lease | None = None  # for INIT-REBOOT (section 3.2), and kept once bound
    next_deadline: float | None = None
    stats: Stats = field(default_factory=Stats)
    _s: _StateData = field(default_factory=_Init)
    _give_up_at: float = float("inf")
    _now: float = float("-inf")  # the latest fact's time: no deadline is set before it
    _restarts: int = 0
    _heard: _Heard = field(default_factory=lambda: _Heard(0.0))

    @property
    def state(self) -> State:
        return self._s.name

    @property
    def lease(self) -> Lease | None:
        """The lease the client holds and has reported (BOUND, RENEWING, REBINDING)."""
        return self._s.lease if isinstance(self._s, _Leased) else None

    # -- the one entry point ----------------------------------------------------

    def handle(self, event: Input) -> list[Action]:
        s = self.state
        if s is State.STOPPED:
            return []
        self._now = max(self._now, event.now)
        if isinstance(event, PacketReceived):
            actions = self._packet(event)
        elif isinstance(event, ArpReceived) and s is not State.PROBING:
            return []  # a frame that queued up before the probe ended
        elif isinstance(event, TimerFired) and (
            self.next_deadline is None or event.now < self.next_deadline
        ):
            return []  # early or stale wake-up
        else:
            handler = EVENTS.get((s, type(event)))
            if handler is None:
                raise LocalProtocolError(f"{type(event).__name__} while {s.value}")
            actions = handler(self, event)
        self.next_deadline = self._deadline()
        return actions

    def _enter(self, new: _StateData) -> None:
        if new.name not in NEXT_STATES[self.state]:
            raise LocalProtocolError(f"{self.state.value} cannot go to {new.name.value}")
        self._s = new

    def _deadline(self) -> float | None:
        """The one time to wake up at, from the state's data; a time already past (a T1
        gone by when the ACK came) is now."""
        s = self._s
        if isinstance(s, _Init):
            at = s.wake_at
        elif isinstance(s, _Requesting):
            at = min(s.x.retry_at, s.switch_at) if s.waiting else s.x.retry_at
        elif isinstance(s, _Selecting | _Rebooting | _Renewing | _Rebinding):
            at = s.x.retry_at
        elif isinstance(s, _Probing):
            at = s.prober.next_at
        elif isinstance(s, _Bound):
            at = s.lease.renew_at
        else:
            return None
        if at is None:
            return None
        if isinstance(s, _Acquiring):
            at = min(at, self._give_up_at)
        return max(at, self._now)

    # -- acquiring ------------------------------------------------------------------

    def _start(self, event: Started) -> list[Action]:
        if not isinstance(self._s, _Init) or self._s.wake_at is not None:
            raise LocalProtocolError(f"Started while {self.state.value}")
        now = event.now
        self._new_acquisition(now)
        old = self.remembered
        if old is not None and now < old.expires_at:  # INIT-REBOOT, section 3.2
            x = self._exchange(now)
            self._enter(_Rebooting(x, old.address))
            return self._send(x, now, build.request_reboot(self.config, x.xid, 0, old.address))
        return self._discover(now)

    def _new_acquisition(self, now: float) -> None:
        self._give_up_at = now + self.config.timeout_s
        self._restarts = 0
        self._heard = _Heard(now)

    def _exchange(self, now: float) -> _Exchange:
        return _Exchange(xid=self.rng.getrandbits(32), began=now)

    def _discover(self, now: float) -> list[Action]:
        x = self._exchange(now)
        self._enter(_Selecting(x))
        return self._send(x, now, build.discover(self.config, x.xid, 0))

    def _restart(self, now: float, at_least_s: float = 0.0) -> list[Action]:
        """Back to INIT, to DISCOVER after a wait that grows with each restart."""
        self._restarts += 1
        wait = min(RESTART_FIRST_S * 2 ** (self._restarts - 1), RESTART_MAX_S)
        wait = max(wait * self.rng.uniform(1.0, 1.25), at_least_s)
        self._enter(_Init(wake_at=now + wait))
        return []

    def _wake(self, event: TimerFired) -> list[Action]:
        if self._gave_up(event.now):
            return [self._give_up()]
        return self._discover(event.now)

    def _send(
        self,
        x: _Exchange,
        now: float,
        msg: Message,
        dest: ipaddress.IPv4Address = BROADCAST,
        src: ipaddress.IPv4Address = ZERO,
        retry_at: float | None = None,
        dst_mac: bytes = b"",
    ) -> list[Action]:
        """Send (and remember for retransmission) a message of exchange ``x``; the next try
        follows RFC 2131 section 4.1's doubling with +-1 s, unless ``retry_at`` says."""
        sent = Transmit(msg, dest, src, dst_mac)
        x.last = sent
        named = msg.options.get(opt.SERVER_ID)
        if msg.message_type is MT.REQUEST and named is not None:
            x.named[ipaddress.IPv4Address(named)] += 1
        if x.attempt == 0:
            x.first_at = now
        self.stats.sent += 1
        if retry_at is None:
            c = self.config
            # (the doubling stops counting at 2**64: a float overflows at 2**1024, a DISCOVER
            # retransmitted for 18 hours against no server)
            delay = min(c.retransmit_initial_s * 2 ** min(x.attempt, 64), c.retransmit_max_s)
            retry_at = now + max(delay / 2, delay + self.rng.uniform(-1, 1))
        x.attempt += 1
        x.retry_at = retry_at
        return [sent]

    def _again(self, x: _Exchange, now: float, retry_at: float | None = None) -> list[Action]:
        """The exchange's last message once more, with ``secs`` brought up to date."""
        last = x.last
        assert last is not None  # every exchange sends as it begins
        msg = dataclasses.replace(last.message, secs=min(int(now - x.began), 0xFFFF))
        return self._send(x, now, msg, last.dest, last.src, retry_at, last.dst_mac)

    def _gave_up(self, now: float) -> bool:
        return now >= self._give_up_at

    def _give_up(self) -> GaveUp:
        self._enter(_Stopped())
        return GaveUp(self._heard.reason(self.config.timeout_s))

    def _retransmit(self, event: TimerFired) -> list[Action]:
        """SELECTING and REBOOTING: the same message again, until the give-up; a REBOOTING
        client no one answers starts over with a DISCOVER (section 3.2 step 4's choice)."""
        s = self._s
        assert isinstance(s, _Selecting | _Rebooting)
        if self._gave_up(event.now):
            return [self._give_up()]
        if isinstance(s, _Rebooting) and s.x.attempt >= REQUESTING_ATTEMPTS:
            return self._discover(event.now)
        return self._again(s.x, event.now)

    def _offer(self, now: float, reply: _Reply) -> list[Action]:
        """SELECTING: take the first valid offer at once (no wait for others)."""
        s = self._s
        assert isinstance(s, _Selecting)
        offer = self._valid_offer(reply)
        if offer is None:
            return []
        return self._request(now, s.x, offer, [])

    def _another_offer(self, now: float, reply: _Reply) -> list[Action]:
        """REQUESTING: keep a later offer of the transaction as a fall-back."""
        s = self._s
        assert isinstance(s, _Requesting)
        offer = self._valid_offer(reply)
        if offer is None:
            return []
        known = {s.chosen.server, *(o.server for o in s.waiting)}
        if offer.server in known or len(s.waiting) + 1 >= MAX_OFFERS:
            return self._drop("an offer already held")
        s.waiting.append(offer)
        return []

    def _valid_offer(self, reply: _Reply) -> _Offer | None:
        try:
            lease = lease_from_reply(reply.message, start=0.0)
        except MalformedMessage as exc:
            self._reject(exc)
            return None
        return _Offer(lease.server_id, lease.address)

    def _request(
        self, now: float, x: _Exchange, offer: _Offer, waiting: list[_Offer]
    ) -> list[Action]:
        """REQUEST ``offer`` (same xid: section 4.4.1), twice quickly before falling back."""
        self._enter(_Requesting(x, offer, waiting, switch_at=now + 2 * QUICK_RETRY_S))
        x.attempt = 0
        msg = build.request_offer(self.config, x.xid, now - x.began, offer.address, offer.server)
        return self._send(x, now, msg, retry_at=now + QUICK_RETRY_S)

    def _requesting_timer(self, event: TimerFired) -> list[Action]:
        s, now = self._s, event.now
        assert isinstance(s, _Requesting)
        if self._gave_up(now):
            self._heard.unacknowledged.append(s.chosen.server)
            return [self._give_up()]
        if s.waiting and now >= s.switch_at:
            self._heard.unacknowledged.append(s.chosen.server)
            s.x.tried.append(s.chosen)
            return self._next_offer(now)
        if s.x.attempt >= REQUESTING_ATTEMPTS:
            self._heard.unacknowledged.append(s.chosen.server)
            return self._restart(now)
        return self._again(s.x, now)

    def _next_offer(self, now: float) -> list[Action]:
        s = self._s
        assert isinstance(s, _Requesting)
        if not s.waiting:
            return self._restart(now)  # every offer failed: start over (section 3.1 step 5)
        return self._request(now, s.x, s.waiting[0], s.waiting[1:])

    # -- the answer to a REQUEST ---------------------------------------------------------

    def _expected(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address | None]:
        """(address the ACK must carry, server it must come from; None: any server).

        REQUESTING and RENEWING asked one server (sections 3.1 step 3 and 4.4.5); a client
        rebooting or rebinding asked the network, and any server speaks for it."""
        s = self._s
        if isinstance(s, _Requesting):
            return s.chosen.address, s.chosen.server
        if isinstance(s, _Rebooting):
            return s.address, None
        assert isinstance(s, _Renewing | _Rebinding)
        return s.lease.address, s.lease.server_id if isinstance(s, _Renewing) else None

    def _ack(self, now: float, reply: _Reply) -> list[Action]:
        address, from_server = self._expected()
        s = self._s
        late = (
            isinstance(s, _Requesting) and _Offer(reply.server, reply.message.yiaddr) in s.x.tried
        )
        # (late: a slow server's ACK for its offer, REQUESTed earlier in this transaction)
        if not late and from_server is not None and reply.server != from_server:
            return self._drop("an answer from a server not asked")
        if not late and reply.message.yiaddr != address:
            return self._drop("an ACK for another address")
        assert isinstance(s, _Requesting | _Rebooting | _Renewing | _Rebinding)
        try:
            lease = lease_from_reply(reply.message, start=s.x.began if late else s.x.first_at)
        except MalformedMessage as exc:
            return self._reject(exc)
        if now >= lease.expires_at:  # counted from our first REQUEST: over before it came
            return self._drop("a lease over when it came")
        lease = dataclasses.replace(lease, server_mac=reply.src_mac)
        if isinstance(s, _Renewing | _Rebinding):
            self._enter(_Bound(lease))
            self.remembered = lease
            return [LeaseRenewed(lease)]
        probe = self.config.probe
        if probe is None:
            return self._bind(lease)
        prober = arp.Prober(self.config.chaddr, lease.address, probe, self.rng)
        prober.start(now)
        self._enter(_Probing(lease, prober))
        return self._probe_frames(now)

    def _nak(self, now: float, reply: _Reply) -> list[Action]:
        """A NAK from a server other than the one asked is ignored; otherwise the address is
        not ours (sections 3.1 step 5, 3.2, 4.4.5) and the client starts over after a wait."""
        _, from_server = self._expected()
        if from_server is not None and reply.server != from_server:
            return self._drop("a NAK from a server not asked")
        s = self._s
        if isinstance(s, _Requesting):
            # An authoritative server NAKs a broadcast REQUEST that names another server
            # (dnsmasq: "wrong server-ID"), and a NAK does not say which REQUEST it answers:
            # as many NAKs as REQUESTs named other servers are put down to those.
            x, server = s.x, reply.server
            others = sum(n for named, n in x.named.items() if named != server)
            if x.excused[server] < others:
                x.excused[server] += 1
                return self._drop("a NAK for a REQUEST that named another server")
        lost: list[Action] = []
        if isinstance(s, _Leased):
            lost = [LeaseLost(s.lease, "nak")]
            self._new_acquisition(now)  # a lease lost: a new acquisition, with its timeout
        self._heard.naked.append(reply.server)
        self.remembered = None
        if isinstance(s, _Requesting) and s.waiting:
            return self._next_offer(now)  # (a NAKed offer is not "tried": no late ACK for it)
        return [*lost, *self._restart(now)]

    # -- the probe of a new address (RFC 5227) -------------------------------------------

    def _probe_timer(self, event: TimerFired) -> list[Action]:
        s = self._s
        assert isinstance(s, _Probing)
        if s.prober.finished(event.now):
            probe = self.config.probe
            assert probe is not None  # PROBING only with a probe
            announce = [SendArp(s.prober.announcement(), None)] if probe.announce else []
            return [*announce, *self._bind(s.lease)]
        return self._probe_frames(event.now)

    def _probe_frames(self, now: float) -> list[Action]:
        s = self._s
        assert isinstance(s, _Probing)
        frame = s.prober.tick(now)
        return [] if frame is None else [SendArp(frame, s.lease.address)]

    def _arp(self, event: ArpReceived) -> list[Action]:
        s = self._s
        assert isinstance(s, _Probing)
        if not s.prober.hear(event.frame):
            return []
        return self._decline(event.now, s.prober.holder or b"")

    def _conflict(self, event: ConflictDetected) -> list[Action]:
        return self._decline(event.now, b"")

    def _decline(self, now: float, holder: bytes) -> list[Action]:
        """The address is someone else's: DECLINE it and wait at least ten seconds before
        starting over (RFC 2131 section 3.1 step 5). It was never reported bound."""
        s = self._s
        assert isinstance(s, _Probing)
        lease, c = s.lease, self.config
        xid = self.rng.getrandbits(32)
        msg = build.decline(c.chaddr, c.client_id, xid, lease.address, lease.server_id)
        self.stats.sent += 1
        self.remembered = None
        who = holder.hex(":") if holder else "this host"
        self._heard.in_use.append(f"{lease.server_id} offered {lease.address}, in use by {who}")
        return [
            Transmit(msg, BROADCAST, ZERO),
            AddressInUse(lease.address, lease.server_id, holder),
            *self._restart(now, at_least_s=c.decline_wait_s),
        ]

    def _bind(self, lease: Lease) -> list[Action]:
        self._enter(_Bound(lease))
        self.remembered = lease
        self._restarts = 0
        return [LeaseBound(lease)]

    # -- keeping the lease ---------------------------------------------------------------

    def _lease_timer(self, event: TimerFired) -> list[Action]:
        s, now = self._s, event.now
        assert isinstance(s, _Leased)
        lease = s.lease
        if now >= lease.expires_at:  # section 4.4.5: stop using the address, start over
            self._new_acquisition(now)
            return [LeaseLost(lease, "expired"), *self._discover(now)]
        if now >= lease.rebind_at and not isinstance(s, _Rebinding):
            s = _Rebinding(lease, self._exchange(now))
            self._enter(s)
        elif isinstance(s, _Bound):
            s = _Renewing(lease, self._exchange(now))
            self._enter(s)
        return self._extend(s, now)

    def _extend(self, s: _Renewing | _Rebinding, now: float) -> list[Action]:
        """RENEWING unicasts to the server until T2, REBINDING broadcasts until expiry;
        each retries at half the time left, but not sooner than the minimum (4.4.5)."""
        lease = s.lease
        msg = build.request_extend(self.config, s.x.xid, now - s.x.began, lease.address)
        if isinstance(s, _Renewing):
            end, dest, mac = lease.rebind_at, lease.server_id, lease.server_mac
        else:
            end, dest, mac = lease.expires_at, BROADCAST, b""
        retry = min(now + max((end - now) / 2, self.config.renew_retry_min_s), end)
        return self._send(s.x, now, msg, dest, lease.address, retry, mac)

    # -- leaving ------------------------------------------------------------------------

    def _release(self, event: ReleaseRequested) -> list[Action]:
        """RELEASE is unicast to the server from the leased address (section 4.4.6), so a
        server that checks the source (dnsmasq) honours it. A lease still being probed was
        committed by its server too, but never reported: released without a LeaseLost."""
        s = self._s
        self._enter(_Stopped())
        if not isinstance(s, _Leased | _Probing):
            return []
        lease, c = s.lease, self.config
        xid = self.rng.getrandbits(32)
        msg = build.release(c.chaddr, c.client_id, xid, lease.address, lease.server_id)
        self.stats.sent += 1
        sent = Transmit(msg, lease.server_id, lease.address, lease.server_mac)
        return [sent] if isinstance(s, _Probing) else [sent, LeaseLost(lease, "released")]

    # -- packets ------------------------------------------------------------------------

    def _packet(self, event: PacketReceived) -> list[Action]:
        try:
            msg = decode(event.payload)
        except MalformedMessage:
            return self._drop("malformed")
        s = self._s
        x = getattr(s, "x", None)
        if (
            x is None
            or msg.op != BOOTREPLY
            or msg.xid != x.xid
            or msg.chaddr != self.config.chaddr
            or msg.options.get(opt.CLIENT_ID, self.config.client_id) != self.config.client_id
        ):
            return self._drop("another transaction")
        kind = msg.message_type
        if kind is None:  # RFC 2132 section 9.6: exactly one octet, after RFC 3396 joining
            return self._reject(Rejected("more than one message type"))
        try:  # table 3: OFFER, ACK and NAK all MUST name their server
            server = opt.address(msg.options[opt.SERVER_ID], opt.SERVER_ID)
        except (KeyError, MalformedMessage):
            return self._reject(Rejected("no server identifier"))
        handler = REPLIES.get((self.state, kind))
        if handler is None:
            return self._drop(f"{kind.name} while {self.state.value}")
        return handler(self, event.now, _Reply(msg, server, event.src_mac))

    def _drop(self, why: str) -> list[Action]:
        self.stats.dropped += 1
        self.stats.dropped_why[why] += 1
        return []

    def _reject(self, exc: MalformedMessage) -> list[Action]:
        """A reply that breaks an acceptance rule: dropped, and named in a give-up."""
        why = str(exc) if isinstance(exc, Rejected) else "a malformed option"
        self._heard.rejected[why] += 1
        return self._drop(why)


ReplyHandler = Callable[[Client, float, _Reply], list[Action]]

# The legal (state, reply) pairs; any other reply is dropped and counted.
REPLIES: dict[tuple[State, MT], ReplyHandler] = {
    (_S.SELECTING, MT.OFFER): Client._offer,
    (_S.REQUESTING, MT.OFFER): Client._another_offer,
    **{(s, MT.ACK): Client._ack for s in (_S.REQUESTING, _S.REBOOTING, _S.RENEWING, _S.REBINDING)},
    **{(s, MT.NAK): Client._nak for s in (_S.REQUESTING, _S.REBOOTING, _S.RENEWING, _S.REBINDING)},
}

# The legal (state, local input) pairs; any other is the caller's bug (LocalProtocolError).
# Timer wake-ups before the deadline and ARP frames outside PROBING are ignored first.
EVENTS: dict[tuple[State, type], Callable[[Client, Any], list[Action]]] = {
    (_S.INIT, Started): Client._start,
    (_S.INIT, TimerFired): Client._wake,
    (_S.SELECTING, TimerFired): Client._retransmit,
    (_S.REBOOTING, TimerFired): Client._retransmit,
    (_S.REQUESTING, TimerFired): Client._requesting_timer,
    (_S.PROBING, TimerFired): Client._probe_timer,
    (_S.PROBING, ArpReceived): Client._arp,
    (_S.PROBING, ConflictDetected): Client._conflict,
    **{(s, TimerFired): Client._lease_timer for s in (_S.BOUND, _S.RENEWING, _S.REBINDING)},
    **{(s, ReleaseRequested): Client._release for s in State if s is not _S.STOPPED},
}
