"""The sans-IO DHCPv6 client: facts in, orders out, one deadline (n-dhcp4's shape).

``Client.handle(event)`` takes a fact carrying ``now`` and returns the orders to carry out
in order; ``next_deadline`` is the one time the driver must wake up at (the delayed first
SOLICIT, a retransmission, the end of ADVERTISE collection, T1, T2 or the end of the
lease, whichever the state needs). No sockets, no clock, no global randomness: a test
replays a whole lease's life with explicit times and a seeded ``random.Random``.

Every state change is in the tables at the end: ``REPLIES`` and ``EVENTS`` (the legal
(state, input) pairs, as h11 keeps its transitions), ``IGNORED`` (inputs that may come
late and are dropped with a reason) and ``NEXT_STATES``. Each state's data lives in the
object for that state: a lease only in the states that hold one.

Network garbage never raises: a malformed message, one for another transaction or client,
or one that breaks an acceptance rule (``lease``) gives no orders and is counted by rule in
``stats.dropped_why``. Retransmission follows RFC 8415 section 15 with the parameters of
section 7.6. The client always multicasts (a server's UNICAST option is ignored).
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from . import build
from . import options as opt
from .config import Config
from .errors import LocalProtocolError, MalformedMessage
from .events import (
    Action,
    DadFailed,
    GaveUp,
    Input,
    LeaseBound,
    LeaseLost,
    LeaseRenewed,
    PacketReceived,
    ReconfigureIgnored,
    ReleaseRequested,
    Started,
    TimerFired,
    Transmit,
)
from .lease import Advert, Lease, Refused, Rejected, advert_from, check_reply, lease_from_reply
from .lease import sol_max_rt as read_sol_max_rt
from .message import Message, decode

__all__ = ["EVENTS", "IGNORED", "NEXT_STATES", "REPLIES", "Client", "Config", "State", "Stats"]

MT = opt.MessageType
ST = opt.Status
MAX_ADVERTS = 8  # ADVERTISEs kept per SOLICIT: a link of many responders cannot grow a list


@dataclass(frozen=True)
class Params:
    """Section 15: initial and maximum retransmission time (s), maximum count (0: none)."""

    irt: float
    mrt: float
    mrc: int = 0


# Section 7.6. SOL_MAX_RT is the client's (config, or the server's option 82); the MRD of
# RENEW (until T2) and REBIND (until the lease ends) is the state's deadline.
SOLICIT = Params(1.0, 3600.0)
REQUEST = Params(1.0, 30.0, 10)
RENEW = Params(10.0, 600.0)
REBIND = Params(10.0, 600.0)
RELEASE = Params(1.0, 0.0, 4)  # REL_MAX_RC
DECLINE = Params(1.0, 0.0, 4)  # DEC_MAX_RC


class State(Enum):
    """RFC 8415 section 18's client exchanges as states: DECLINING between a lease lost to
    DAD and the next SOLICIT, RELEASED (the RELEASE exchange may still retransmit) and FAILED
    after the overall timeout."""

    INIT = "INIT"
    SOLICITING = "SOLICITING"
    REQUESTING = "REQUESTING"
    BOUND = "BOUND"
    RENEWING = "RENEWING"
    REBINDING = "REBINDING"
    DECLINING = "DECLINING"
    RELEASED = "RELEASED"
    FAILED = "FAILED"


_S = State
NEXT_STATES: dict[State, frozenset[State]] = {
    _S.INIT: frozenset({_S.SOLICITING, _S.RELEASED}),
    _S.SOLICITING: frozenset({_S.REQUESTING, _S.BOUND, _S.RELEASED, _S.FAILED}),
    _S.REQUESTING: frozenset({_S.SOLICITING, _S.REQUESTING, _S.BOUND, _S.RELEASED, _S.FAILED}),
    _S.BOUND: frozenset({_S.RENEWING, _S.REBINDING, _S.SOLICITING, _S.DECLINING, _S.RELEASED}),
    _S.RENEWING: frozenset(
        {_S.BOUND, _S.REBINDING, _S.SOLICITING, _S.REQUESTING, _S.DECLINING, _S.RELEASED}
    ),
    _S.REBINDING: frozenset({_S.BOUND, _S.SOLICITING, _S.REQUESTING, _S.DECLINING, _S.RELEASED}),
    _S.DECLINING: frozenset({_S.SOLICITING, _S.RELEASED, _S.FAILED}),
    _S.RELEASED: frozenset(),
    _S.FAILED: frozenset(),
}


@dataclass
class Stats:
    sent: int = 0
    dropped: int = 0
    dropped_why: collections.Counter[str] = field(default_factory=collections.Counter)
    ignored_why: collections.Counter[str] = field(default_factory=collections.Counter)
    reconfigures: int = 0


@dataclass
class _Exchange:
    """One transaction (section 15): its xid, first message, when it began (for ELAPSED_TIME
    and a lease's start), how often it was sent, its current RT and when to send again."""

    xid: int
    params: Params
    message: Message
    began: float = 0.0
    count: int = 0
    rt: float = 0.0
    retry_at: float = float("inf")

    @property
    def exhausted(self) -> bool:
        """Section 15: with an MRC, the exchange fails once sent MRC times (and one RT
        passed with no answer)."""
        return bool(self.params.mrc) and self.count >= self.params.mrc


# -- the states and their data ------------------------------------------------------


@dataclass
class _Init:
    name: ClassVar[State] = State.INIT
    wake_at: float | None = None  # the delayed first SOLICIT; None before Started


@dataclass
class _Soliciting:
    x: _Exchange
    adverts: list[Advert] = field(default_factory=list)
    collecting: bool = True  # until the first RT (section 18.2.1)
    name: ClassVar[State] = State.SOLICITING


@dataclass
class _Requesting:
    x: _Exchange
    chosen: Advert
    others: list[Advert]  # the SOLICIT's other ADVERTISEs, best first
    held: Lease | None = None  # a lease being re-established after NoBinding (18.2.10.1)
    name: ClassVar[State] = State.REQUESTING


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
class _Declining:
    x: _Exchange
    server: bytes
    name: ClassVar[State] = State.DECLINING


@dataclass
class _Released:
    x: _Exchange | None  # the RELEASE exchange while it runs
    server: bytes = b""
    name: ClassVar[State] = State.RELEASED


@dataclass
class _Failed:
    name: ClassVar[State] = State.FAILED


_StateData = (
    _Init
    | _Soliciting
    | _Requesting
    | _Bound
    | _Renewing
    | _Rebinding
    | _Declining
    | _Released
    | _Failed
)
_Leased = _Bound | _Renewing | _Rebinding


def _who(duid: bytes) -> str:
    return duid.hex() if len(duid) <= 20 else duid[:20].hex() + "..."


@dataclass
class _Heard:
    """What one acquisition heard: for the one line of a give-up, and the servers that
    refused us (their ADVERTISEs are not taken again in this acquisition)."""

    refused: dict[bytes, str] = field(default_factory=dict)
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    # servers whose ADVERTISE offered no address (section 18.2.9: ignored, not a refusal;
    # named in a give-up all the same, so that "every server is full" is what it says)
    advertised_nothing: dict[bytes, str] = field(default_factory=dict)

    def reason(self, timeout_s: float) -> str:
        said = {**self.advertised_nothing, **self.refused}
        parts = [f"server {_who(d)} {why}" for d, why in said.items()]
        if self.rejected:
            rules = ", ".join(f"{rule}: {n}" for rule, n in sorted(self.rejected.items()))
            parts.append(f"replies dropped ({rules})")
        return f"no lease after {timeout_s:g} s: " + ("; ".join(parts) or "no server answered")


@dataclass
class Client:
    config: Config
    rng: random.Random = field(default_factory=random.Random)
    next_deadline: float | None = None
    stats: Stats = field(default_factory=Stats)
    _s: _StateData = field(default_factory=_Init)
    _give_up_at: float = float("inf")
    _now: float = float("-inf")  # the latest fact's time: no deadline is set before it
    _heard: _Heard = field(default_factory=_Heard)
    _sol_max_rt: float = 0.0

    def __post_init__(self) -> None:
        self._sol_max_rt = self.config.sol_max_rt_s

    @property
    def state(self) -> State:
        return self._s.name

    @property
    def lease(self) -> Lease | None:
        """The lease the client holds and has reported (BOUND, RENEWING, REBINDING, and
        REQUESTING while it re-establishes one)."""
        s = self._s
        if isinstance(s, _Requesting):
            return s.held
        return s.lease if isinstance(s, _Leased) else None

    # -- the one entry point ----------------------------------------------------

    def handle(self, event: Input) -> list[Action]:
        self._now = max(self._now, event.now)
        s = self.state
        if isinstance(event, PacketReceived):
            actions = self._packet(event)
        elif isinstance(event, TimerFired) and (
            self.next_deadline is None or event.now < self.next_deadline
        ):
            return []  # early or stale wake-up
        elif (s, type(event)) in IGNORED:
            self.stats.ignored_why[IGNORED[s, type(event)]] += 1
            return []
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
        """The one time to wake up at, from the state's data; a time already past is now."""
        s = self._s
        at: float | None
        if isinstance(s, _Init):
            at = s.wake_at
        elif isinstance(s, _Soliciting | _Declining):
            at = s.x.retry_at
        elif isinstance(s, _Requesting):
            at = s.x.retry_at if s.held is None else min(s.x.retry_at, s.held.expires_at)
        elif isinstance(s, _Bound):
            at = s.lease.renew_at
        elif isinstance(s, _Renewing):
            at = min(s.x.retry_at, s.lease.rebind_at)
        elif isinstance(s, _Rebinding):
            at = min(s.x.retry_at, s.lease.expires_at)
        elif isinstance(s, _Released):
            at = s.x.retry_at if s.x is not None else None
        else:
            at = None
        if at is None:
            return None
        if self._acquiring():
            at = min(at, self._give_up_at)
        if at == float("inf"):
            return None
        return max(at, self._now)

    def _acquiring(self) -> bool:
        s = self._s
        return isinstance(s, _Soliciting | _Declining | _Init) or (
            isinstance(s, _Requesting) and s.held is None
        )

    # -- exchanges (section 15) -----------------------------------------------------

    def _exchange(self, params: Params, msg: Message) -> _Exchange:
        return _Exchange(xid=msg.xid, params=params, message=msg)

    def _xid(self) -> int:
        return self.rng.getrandbits(24)

    def _rand(self) -> float:
        return self.rng.uniform(-0.1, 0.1)

    def _send(self, x: _Exchange, now: float) -> list[Action]:
        """Send (or send again) the exchange's message, ELAPSED_TIME brought up to date, and
        set the next RT: IRT + RAND*IRT, then 2*RT + RAND*RT, at most MRT + RAND*MRT."""
        p = x.params
        if x.count == 0:
            x.began = now
            if p is SOLICIT:
                # section 18.2.1: the first RT of a SOLICIT MUST be strictly over IRT
                x.rt = p.irt + self.rng.uniform(0.001, 0.1) * p.irt
            else:
                x.rt = p.irt + self._rand() * p.irt
        else:
            x.rt = 2 * x.rt + self._rand() * x.rt
        mrt = self._sol_max_rt if p is SOLICIT else p.mrt
        if mrt and x.rt > mrt:
            x.rt = mrt + self._rand() * mrt
        msg = build.with_elapsed(x.message, now - x.began)
        x.count += 1
        x.retry_at = now + x.rt
        self.stats.sent += 1
        return [Transmit(msg)]

    # -- acquiring ------------------------------------------------------------------

    def _start(self, event: Started) -> list[Action]:
        s = self._s
        if not isinstance(s, _Init) or s.wake_at is not None:
            raise LocalProtocolError(f"Started while {self.state.value}")
        now = event.now
        self._new_acquisition(now)
        delay = self.rng.uniform(0, self.config.solicit_delay_max_s)
        if delay > 0:  # section 18.2.1: the first SOLICIT waits 0..SOL_MAX_DELAY
            s.wake_at = now + delay
            return []
        return self._solicit(now)

    def _wake(self, event: TimerFired) -> list[Action]:
        return self._solicit(event.now)

    def _new_acquisition(self, now: float) -> None:
        self._give_up_at = now + self.config.timeout_s
        self._heard = _Heard()

    def _solicit(self, now: float) -> list[Action]:
        x = self._exchange(SOLICIT, build.solicit(self.config, self._xid()))
        self._enter(_Soliciting(x))
        return self._send(x, now)

    def _gave_up(self, now: float) -> bool:
        return self._acquiring() and now >= self._give_up_at

    def _give_up(self) -> list[Action]:
        self._enter(_Failed())
        return [GaveUp(self._heard.reason(self.config.timeout_s))]

    def _solicit_timer(self, event: TimerFired) -> list[Action]:
        """Section 18.2.1: at the end of the first RT take the best ADVERTISE heard, else
        retransmit; from then on the first valid one is taken at once."""
        s, now = self._s, event.now
        assert isinstance(s, _Soliciting)
        if self._gave_up(now):
            return self._give_up()
        if s.adverts:
            best = sorted(s.adverts, key=lambda a: -a.preference)  # stable: first heard first
            return self._request(now, best[0], best[1:])
        s.collecting = False
        return self._send(s.x, now)

    def _advertise(self, now: float, msg: Message, server: bytes) -> list[Action]:
        s = self._s
        assert isinstance(s, _Soliciting)
        if server in self._heard.refused:
            return self._drop("an ADVERTISE from a server that refused us")
        try:
            ad = advert_from(msg, iaid=self.config.iaid)
        except Refused as exc:  # section 18.2.9: an ADVERTISE with no address is ignored
            self._heard.advertised_nothing[server] = f"said {exc.name}"
            return self._drop(f"an ADVERTISE saying {exc.name}")
        except Rejected as exc:
            return self._reject(exc)
        # section 18.2.1: preference 255 is taken at once, and so is any ADVERTISE once the
        # first RT is over; before that they are collected
        if ad.preference == 255 or not s.collecting:
            return self._request(now, ad, sorted(s.adverts, key=lambda a: -a.preference))
        if any(a.server_duid == ad.server_duid for a in s.adverts):
            return self._drop("a second ADVERTISE from one server")
        if len(s.adverts) >= MAX_ADVERTS:
            return self._drop("an ADVERTISE past the ones kept")
        s.adverts.append(ad)
        return []

    def _rapid_reply(self, now: float, msg: Message, server: bytes) -> list[Action]:
        """Section 18.2.1: a REPLY to a SOLICIT is taken only when we asked for rapid commit
        and it carries RAPID_COMMIT too (section 21.14: the server MUST include it)."""
        s = self._s
        assert isinstance(s, _Soliciting)
        if not self.config.rapid_commit:
            return self._drop("a REPLY to a SOLICIT without rapid commit")
        if msg.get(opt.RapidCommit) is None:
            return self._reject(Rejected("a REPLY to SOLICIT without RAPID_COMMIT"))
        if server in self._heard.refused:
            return self._drop("a REPLY from a server that refused us")
        try:
            lease = lease_from_reply(msg, iaid=self.config.iaid, start=s.x.began)
        except Refused as exc:
            # 18.2.10.1: NoAddrsAvail or NotOnLink: try another server (keep soliciting)
            self._heard.refused[server] = f"said {exc.name}"
            return []
        except Rejected as exc:
            return self._reject(exc)
        if now >= lease.expires_at:
            return self._drop("a lease over when it came")
        return self._bind(now, lease)

    def _request(
        self, now: float, ad: Advert, others: list[Advert], held: Lease | None = None
    ) -> list[Action]:
        """Section 18.2.2: REQUEST the advertised addresses from the chosen server."""
        msg = build.request(self.config, self._xid(), ad.server_duid, ad.addresses)
        x = self._exchange(REQUEST, msg)
        self._enter(_Requesting(x, ad, others, held))
        return self._send(x, now)

    def _next_server(self, now: float) -> list[Action]:
        """Another ADVERTISE of the same SOLICIT, or discovery again (section 18.2.10.1)."""
        s = self._s
        assert isinstance(s, _Requesting)
        others = [a for a in s.others if a.server_duid not in self._heard.refused]
        if others:
            return self._request(now, others[0], others[1:])
        return self._solicit(now)

    def _requesting_timer(self, event: TimerFired) -> list[Action]:
        s, now = self._s, event.now
        assert isinstance(s, _Requesting)
        if s.held is not None and now >= s.held.expires_at:
            return self._expire(s.held, now)
        if self._gave_up(now):
            return self._give_up()
        if s.x.exhausted:  # section 18.2.2: REQ_MAX_RC sent, no answer: another server
            self._heard.refused[s.chosen.server_duid] = "never answered a REQUEST"
            if s.held is not None:  # back to the lease's own timers (renew at once)
                self._enter(_Bound(s.held))
                return []
            return self._next_server(now)
        return self._send(s.x, now)

    def _reply_to_request(self, now: float, msg: Message, server: bytes) -> list[Action]:
        s = self._s
        assert isinstance(s, _Requesting)
        if server != s.chosen.server_duid:
            return self._drop("a REPLY from a server not asked")
        try:
            lease = lease_from_reply(msg, iaid=self.config.iaid, start=s.x.began)
        except Refused as exc:
            return self._refused_request(now, exc, server)
        except Rejected as exc:
            return self._reject(exc)
        if now >= lease.expires_at:
            return self._drop("a lease over when it came")
        if s.held is not None:
            self._enter(_Bound(lease))
            return [LeaseRenewed(lease)]
        return self._bind(now, lease)

    def _refused_request(self, now: float, exc: Refused, server: bytes) -> list[Action]:
        """Section 18.2.10: UnspecFail and UseMulticast leave the REQUEST to its
        retransmissions (we always multicast); 18.2.10.1: NoAddrsAvail and the others mean
        another server, NotOnLink discovery again."""
        s = self._s
        assert isinstance(s, _Requesting)
        if exc.status in (ST.UNSPEC_FAIL, ST.USE_MULTICAST):
            return self._drop(f"a REPLY saying {exc.name}")
        self._heard.refused[server] = f"said {exc.name}"
        if s.held is not None:
            # the server that held our binding denies it and gives nothing: stop using it
            lost = s.held
            self._new_acquisition(now)
            return [LeaseLost(lost, exc.name), *self._solicit(now)]
        if exc.status == ST.NOT_ON_LINK:
            return self._solicit(now)
        return self._next_server(now)

    def _bind(self, now: float, lease: Lease) -> list[Action]:
        self._enter(_Bound(lease))
        self._give_up_at = float("inf")
        return [LeaseBound(lease)]

    # -- keeping the lease ---------------------------------------------------------------

    def _expire(self, lease: Lease, now: float) -> list[Action]:
        """Section 18.2.5: the valid lifetime is over: stop using the addresses, and start
        over (a new acquisition, with its own timeout)."""
        self._new_acquisition(now)
        return [LeaseLost(lease, "expired"), *self._solicit(now)]

    def _lease_timer(self, event: TimerFired) -> list[Action]:
        """T1: RENEW to the lease's server (18.2.4) until T2; then REBIND to any (18.2.5)
        until the lease ends. Each retransmits as section 15 says (REN_/REB_ parameters)."""
        s, now = self._s, event.now
        assert isinstance(s, _Leased)
        lease = s.lease
        if now >= lease.expires_at:
            return self._expire(lease, now)
        addresses = [a.address for a in lease.addresses]
        if now >= lease.rebind_at and not isinstance(s, _Rebinding):
            msg = build.rebind(self.config, self._xid(), addresses)
            s = _Rebinding(lease, self._exchange(REBIND, msg))
            self._enter(s)
        elif isinstance(s, _Bound):
            msg = build.renew(self.config, self._xid(), lease.server_duid, addresses)
            s = _Renewing(lease, self._exchange(RENEW, msg))
            self._enter(s)
        return self._send(s.x, now)

    def _reply_to_extend(self, now: float, msg: Message, server: bytes) -> list[Action]:
        s = self._s
        assert isinstance(s, _Renewing | _Rebinding)
        if isinstance(s, _Renewing) and server != s.lease.server_duid:
            return self._drop("a REPLY from a server not asked")
        try:
            lease = lease_from_reply(msg, iaid=self.config.iaid, start=s.x.began)
        except Refused as exc:
            if exc.status == ST.NO_BINDING:
                # 18.2.10.1: REQUEST the binding again from the server that responded
                ad = Advert(server, 0, tuple(a.address for a in s.lease.addresses))
                return self._request(now, ad, [], held=s.lease)
            # anything else: keep the lease and go on asking until T2 / its end
            return self._drop(f"a REPLY saying {exc.name}")
        except Rejected as exc:
            return self._reject(exc)
        self._enter(_Bound(lease))
        return [LeaseRenewed(lease)]

    # -- DAD failure, release -----------------------------------------------------------

    def _dad_failed(self, event: DadFailed) -> list[Action]:
        """Section 18.2.8: an address found in use is DECLINEd to its server and not used;
        the client starts over once the DECLINE is answered or given up."""
        s, now = self._s, event.now
        assert isinstance(s, _Leased)
        lease = s.lease
        if all(a.address != event.address for a in lease.addresses):
            self.stats.ignored_why["a DAD failure for an address not leased"] += 1
            return []
        c = self.config
        msg = build.decline(c.duid, c.iaid, self._xid(), lease.server_duid, (event.address,))
        x = self._exchange(DECLINE, msg)
        self._enter(_Declining(x, lease.server_duid))
        self._new_acquisition(now)
        return [*self._send(x, now), LeaseLost(lease, "declined")]

    def _declining_timer(self, event: TimerFired) -> list[Action]:
        s, now = self._s, event.now
        assert isinstance(s, _Declining)
        if self._gave_up(now):
            return self._give_up()
        if s.x.exhausted:
            return self._solicit(now)
        return self._send(s.x, now)

    def _decline_answered(self, now: float, msg: Message, server: bytes) -> list[Action]:
        s = self._s
        assert isinstance(s, _Declining)
        if server != s.server:
            return self._drop("a REPLY from a server not asked")
        return self._solicit(now)  # section 18.2.10.2: any status ends the exchange

    def _release(self, event: ReleaseRequested) -> list[Action]:
        """Section 18.2.7: the addresses are no longer used from the moment the RELEASE is
        first sent; it is retransmitted (REL_MAX_RC) until a REPLY, which the driver may or
        may not wait for. With no lease there is nothing to send."""
        s, now = self._s, event.now
        lease = s.held if isinstance(s, _Requesting) else getattr(s, "lease", None)
        if lease is None:
            self._enter(_Released(None))
            return []
        c = self.config
        addresses = [a.address for a in lease.addresses]
        msg = build.release(c.duid, c.iaid, self._xid(), lease.server_duid, addresses)
        x = self._exchange(RELEASE, msg)
        self._enter(_Released(x, lease.server_duid))
        return [*self._send(x, now), LeaseLost(lease, "released")]

    def _released_timer(self, event: TimerFired) -> list[Action]:
        s = self._s
        assert isinstance(s, _Released) and s.x is not None
        if s.x.exhausted:
            s.x = None
            return []
        return self._send(s.x, event.now)

    def _release_answered(self, now: float, msg: Message, server: bytes) -> list[Action]:
        s = self._s
        assert isinstance(s, _Released)
        if server != s.server:
            return self._drop("a REPLY from a server not asked")
        s.x = None  # section 18.2.10.2: any status ends the exchange
        return []

    # -- packets ------------------------------------------------------------------------

    def _packet(self, event: PacketReceived) -> list[Action]:
        try:
            msg = decode(event.payload)
        except MalformedMessage:
            return self._drop("malformed")
        if msg.msg_type is MT.RECONFIGURE:
            return self._reconfigure()
        x: _Exchange | None = getattr(self._s, "x", None)
        if x is None:
            return self._drop("no exchange going on")
        try:
            server = check_reply(msg, xid=x.xid, client_duid=self.config.duid)
        except Rejected as exc:
            if str(exc) == "another transaction":
                return self._drop(str(exc))
            return self._reject(exc)
        if msg.msg_type in (MT.ADVERTISE, MT.REPLY):
            # 18.2.9/18.2.10: a valid ADVERTISE or REPLY may set SOL_MAX_RT, even one ignored
            new = read_sol_max_rt(msg)
            if new is not None:
                self._sol_max_rt = new
        handler = REPLIES.get((self.state, msg.msg_type))
        if handler is None:
            return self._drop(f"{msg.msg_type.name} while {self.state.value}")
        return handler(self, event.now, msg, server)

    def _reconfigure(self) -> list[Action]:
        """Section 18.2.11: a RECONFIGURE MUST be authenticated (RFC 8415 section 20.4); Lark
        shares no key with the server, so none is acted on. Logged sparingly."""
        self.stats.reconfigures += 1
        self._drop("RECONFIGURE (not authenticated)")
        n = self.stats.reconfigures
        return [ReconfigureIgnored(n)] if n & (n - 1) == 0 else []

    def _drop(self, why: str) -> list[Action]:
        self.stats.dropped += 1
        self.stats.dropped_why[why] += 1
        return []

    def _reject(self, exc: MalformedMessage) -> list[Action]:
        """A message that breaks an acceptance rule: dropped, and named in a give-up."""
        why = str(exc)
        self._heard.rejected[why] += 1
        return self._drop(why)


ReplyHandler = Callable[[Client, float, Message, bytes], list[Action]]

# The legal (state, message) pairs, for a message of our transaction; any other is dropped
# and counted. A RECONFIGURE (no transaction of ours) is ignored in every state.
REPLIES: dict[tuple[State, MT], ReplyHandler] = {
    (_S.SOLICITING, MT.ADVERTISE): Client._advertise,
    (_S.SOLICITING, MT.REPLY): Client._rapid_reply,
    (_S.REQUESTING, MT.REPLY): Client._reply_to_request,
    (_S.RENEWING, MT.REPLY): Client._reply_to_extend,
    (_S.REBINDING, MT.REPLY): Client._reply_to_extend,
    (_S.DECLINING, MT.REPLY): Client._decline_answered,
    (_S.RELEASED, MT.REPLY): Client._release_answered,
}

_LEASED = (_S.BOUND, _S.RENEWING, _S.REBINDING)

# The legal (state, local input) pairs; any other not in IGNORED is the caller's bug
# (LocalProtocolError). Timer wake-ups before the deadline are ignored first.
EVENTS: dict[tuple[State, type], Callable[[Client, Any], list[Action]]] = {
    (_S.INIT, Started): Client._start,
    (_S.INIT, TimerFired): Client._wake,
    (_S.SOLICITING, TimerFired): Client._solicit_timer,
    (_S.REQUESTING, TimerFired): Client._requesting_timer,
    (_S.DECLINING, TimerFired): Client._declining_timer,
    (_S.RELEASED, TimerFired): Client._released_timer,
    **{(s, TimerFired): Client._lease_timer for s in _LEASED},
    **{(s, DadFailed): Client._dad_failed for s in _LEASED},
    **{
        (s, ReleaseRequested): Client._release
        for s in (_S.INIT, _S.SOLICITING, _S.REQUESTING, *_LEASED, _S.DECLINING)
    },
}

# Inputs that may come late, through no fault of the caller: dropped, counted by reason.
_NO_LEASE = "a DAD failure with no lease (reported late)"
IGNORED: dict[tuple[State, type], str] = {
    **{
        (s, DadFailed): _NO_LEASE
        for s in (_S.INIT, _S.SOLICITING, _S.REQUESTING, _S.DECLINING, _S.RELEASED, _S.FAILED)
    },
    (_S.RELEASED, ReleaseRequested): "a second release",
    (_S.FAILED, ReleaseRequested): "a release after giving up",
    (_S.FAILED, TimerFired): "a timer after giving up",
}
