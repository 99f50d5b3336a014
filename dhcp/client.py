"""The sans-IO DHCP client: facts in, orders out, one deadline (n-dhcp4's shape).

``Client.handle(event)`` takes a fact carrying ``now`` and returns the
actions to carry out in order; ``next_deadline`` is the one time the driver
must wake up at (retransmission, T1, T2 or expiry, whichever the state
needs). No sockets, no clock, no global randomness: a test replays a whole
lease's life with explicit times and a seeded ``random.Random``.

Network garbage never raises: a malformed packet, or one for another xid,
chaddr or client id, gives no actions and counts in ``stats.dropped``.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass, field
from enum import Enum

from . import options as opt
from .errors import LocalProtocolError, MalformedMessage
from .events import (
    BROADCAST,
    Action,
    ConflictDetected,
    GaveUp,
    Input,
    LeaseBound,
    LeaseLost,
    LeaseRenewed,
    PacketReceived,
    ReleaseRequested,
    Started,
    TimerFired,
    Transmit,
)
from .lease import Lease, lease_from_ack
from .message import BOOTREPLY, BOOTREQUEST, BROADCAST_FLAG, ZERO, Message, decode

MT = opt.MessageType
REQUESTING_ATTEMPTS = 4  # then back to INIT (RFC 2131 section 3.1, step 5)


class State(Enum):
    """RFC 2131 figure 5; STOPPED after a release or giving up."""

    INIT = "INIT"
    SELECTING = "SELECTING"
    REQUESTING = "REQUESTING"
    REBOOTING = "REBOOTING"  # INIT-REBOOT's wait for an answer (section 3.2)
    BOUND = "BOUND"
    RENEWING = "RENEWING"
    REBINDING = "REBINDING"
    STOPPED = "STOPPED"


@dataclass(frozen=True)
class Config:
    chaddr: bytes
    client_id: bytes
    vendor_class: bytes = b"lark"
    hostname: str | None = None
    requested: tuple[int, ...] = (1, 3, 6, 12, 15, 26, 51, 54, 58, 59, 121)
    retransmit_initial_s: float = 2.0
    retransmit_max_s: float = 64.0
    timeout_s: float = 60.0  # overall time to get a lease
    renew_retry_min_s: float = 60.0  # RFC 2131 section 4.4.5
    decline_wait_s: float = 10.0  # RFC 2131 section 3.1, step 5
    max_message_size: int = 1500
    broadcast_flag: bool = False


@dataclass
class Stats:
    dropped: int = 0
    sent: int = 0


@dataclass
class _Exchange:
    """One transaction: its xid, when it began (for ``secs``) and its retransmissions."""

    xid: int
    began: float
    attempt: int = 0
    last: Message | None = None
    dest: ipaddress.IPv4Address = BROADCAST
    src: ipaddress.IPv4Address = ZERO
    sent_at: float = 0.0


@dataclass
class Client:
    config: Config
    rng: random.Random = field(default_factory=random.Random)
    remembered: Lease | None = None
    state: State = State.INIT
    lease: Lease | None = None
    next_deadline: float | None = None
    stats: Stats = field(default_factory=Stats)
    _x: _Exchange | None = None
    _offer_server: ipaddress.IPv4Address | None = None
    _offered: ipaddress.IPv4Address | None = None
    _give_up_at: float = float("inf")
    _naked_by: ipaddress.IPv4Address | None = None  # the last NAK while acquiring

    # -- the one entry point ----------------------------------------------------

    def handle(self, event: Input) -> list[Action]:
        if self.state is State.STOPPED:
            return []
        if isinstance(event, Started):
            return self._start(event.now)
        if isinstance(event, PacketReceived):
            return self._packet(event.now, event.payload)
        if isinstance(event, TimerFired):
            if self.next_deadline is None or event.now < self.next_deadline:
                return []  # early or stale wake-up
            return self._timer(event.now)
        if isinstance(event, ReleaseRequested):
            return self._release(event.now)
        if isinstance(event, ConflictDetected):
            return self._decline(event.now)
        raise LocalProtocolError(f"unknown input {event!r}")

    # -- acquiring ------------------------------------------------------------------

    def _start(self, now: float) -> list[Action]:
        if self.state is not State.INIT or self._x is not None:
            raise LocalProtocolError(f"Started while {self.state.value}")
        self._give_up_at = now + self.config.timeout_s
        old = self.remembered
        if old is not None and now < old.expires_at:  # INIT-REBOOT, section 3.2
            self.state = State.REBOOTING
            self._new_exchange(now)
            return self._send(now, self._message(MT.REQUEST, now, requested=old.address))
        return self._discover(now)

    def _discover(self, now: float) -> list[Action]:
        self.state = State.SELECTING
        self._offer_server = self._offered = None
        self._new_exchange(now)
        return self._send(now, self._message(MT.DISCOVER, now))

    def _new_exchange(self, now: float) -> None:
        self._x = _Exchange(xid=self.rng.getrandbits(32), began=now)

    def _send(
        self,
        now: float,
        msg: Message,
        dest: ipaddress.IPv4Address = BROADCAST,
        src: ipaddress.IPv4Address = ZERO,
        retry_at: float | None = None,
    ) -> list[Action]:
        x = self._x
        assert x is not None
        x.last, x.dest, x.src, x.sent_at = msg, dest, src, now
        self.stats.sent += 1
        if retry_at is None:
            delay = min(
                self.config.retransmit_initial_s * 2**x.attempt, self.config.retransmit_max_s
            )
            retry_at = now + max(delay / 2, delay + self.rng.uniform(-1, 1))
        x.attempt += 1
        self.next_deadline = min(retry_at, self._give_up_at) if self.lease is None else retry_at
        return [Transmit(msg, dest, src)]

    def _message(
        self,
        kind: MT,
        now: float,
        ciaddr: ipaddress.IPv4Address = ZERO,
        requested: ipaddress.IPv4Address | None = None,
        server_id: ipaddress.IPv4Address | None = None,
    ) -> Message:
        """Table 5 of RFC 2131: which fields and options each message carries."""
        c = self.config
        o: dict[int, bytes] = {opt.MESSAGE_TYPE: bytes([kind]), opt.CLIENT_ID: c.client_id}
        if requested is not None:
            o[opt.REQUESTED_ADDRESS] = requested.packed
        if server_id is not None:
            o[opt.SERVER_ID] = server_id.packed
        if kind in (MT.DISCOVER, MT.REQUEST):
            o[opt.PARAMETER_REQUEST_LIST] = bytes(c.requested)
            o[opt.MAX_MESSAGE_SIZE] = struct.pack("!H", c.max_message_size)
            o[opt.VENDOR_CLASS_ID] = c.vendor_class
            if c.hostname:
                o[opt.HOSTNAME] = c.hostname.encode()
        x = self._x
        assert x is not None
        broadcast = c.broadcast_flag and ciaddr == ZERO
        return Message(
            op=BOOTREQUEST,
            xid=x.xid,
            chaddr=c.chaddr,
            options=o,
            ciaddr=ciaddr,
            secs=min(int(now - x.began), 0xFFFF),
            flags=BROADCAST_FLAG if broadcast else 0,
        )

    # -- timers -------------------------------------------------------------------------

    def _timer(self, now: float) -> list[Action]:
        s, lease, x = self.state, self.lease, self._x
        if s is State.INIT:  # after a DECLINE's wait
            self._give_up_at = now + self.config.timeout_s
            return self._discover(now)
        if s in (State.SELECTING, State.REQUESTING, State.REBOOTING):
            if now >= self._give_up_at:
                self.state, self.next_deadline = State.STOPPED, None
                why = f"no lease after {self.config.timeout_s:g} s ({s.value})"
                if self._naked_by is not None:
                    why += f"; the last request was refused (NAK) by {self._naked_by}"
                return [GaveUp(why)]
            assert x is not None and x.last is not None
            if s is State.REQUESTING and x.attempt >= REQUESTING_ATTEMPTS:
                return self._discover(now)
            return self._send(now, self._refresh(x.last, now), x.dest, x.src)
        assert lease is not None
        if now >= lease.expires_at:  # section 4.4.5: stop using the address, start over
            self.lease = None
            self._give_up_at = now + self.config.timeout_s
            return [LeaseLost(lease, "expired"), *self._discover(now)]
        if now >= lease.rebind_at and s is not State.REBINDING:
            self.state = State.REBINDING
            self._new_exchange(now)
        elif s is State.BOUND:
            self.state = State.RENEWING
            self._new_exchange(now)
        return self._renew_request(now)

    def _renew_request(self, now: float) -> list[Action]:
        """RENEWING unicasts to the server until T2, REBINDING broadcasts until expiry;
        each retries at half the time left, but not sooner than the minimum (4.4.5)."""
        lease = self.lease
        assert lease is not None
        msg = self._message(MT.REQUEST, now, ciaddr=lease.address)
        if self.state is State.RENEWING:
            end, dest = lease.rebind_at, lease.server_id
        else:
            end, dest = lease.expires_at, BROADCAST
        retry = min(now + max((end - now) / 2, self.config.renew_retry_min_s), end)
        return self._send(now, msg, dest, lease.address, retry_at=retry)

    def _refresh(self, msg: Message, now: float) -> Message:
        x = self._x
        assert x is not None
        return Message(
            op=msg.op,
            xid=msg.xid,
            chaddr=msg.chaddr,
            options=msg.options,
            ciaddr=msg.ciaddr,
            flags=msg.flags,
            secs=min(int(now - x.began), 0xFFFF),
        )

    # -- packets ------------------------------------------------------------------------

    def _packet(self, now: float, payload: bytes) -> list[Action]:
        try:
            msg = decode(payload)
        except MalformedMessage:
            return self._drop()
        x = self._x
        if (
            x is None
            or msg.op != BOOTREPLY
            or msg.xid != x.xid
            or msg.chaddr != self.config.chaddr
            or msg.options.get(opt.CLIENT_ID, self.config.client_id) != self.config.client_id
        ):
            return self._drop()
        try:
            server = opt.address(msg.options[opt.SERVER_ID], opt.SERVER_ID)
        except (KeyError, MalformedMessage):
            return self._drop()
        kind, s = msg.message_type, self.state
        if kind is MT.OFFER and s is State.SELECTING:
            return self._offer(now, msg, server)
        if kind is MT.ACK and s in (
            State.REQUESTING,
            State.REBOOTING,
            State.RENEWING,
            State.REBINDING,
        ):
            return self._ack(now, msg, server)
        if kind is MT.NAK and s in (
            State.REQUESTING,
            State.REBOOTING,
            State.RENEWING,
            State.REBINDING,
        ):
            return self._nak(now, server)
        return self._drop()

    def _drop(self) -> list[Action]:
        self.stats.dropped += 1
        return []

    def _offer(self, now: float, msg: Message, server: ipaddress.IPv4Address) -> list[Action]:
        if msg.yiaddr.is_unspecified or msg.yiaddr.is_multicast or msg.yiaddr == BROADCAST:
            return self._drop()
        self.state, self._offer_server, self._offered = State.REQUESTING, server, msg.yiaddr
        assert self._x is not None
        self._x.attempt = 0
        request = self._message(MT.REQUEST, now, requested=msg.yiaddr, server_id=server)
        return self._send(now, request)

    def _expected(self) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv4Address | None]:
        """(address the ACK must carry, server it must come from; None: any server)."""
        s = self.state
        if s is State.REQUESTING:
            return self._offered, self._offer_server
        if s is State.REBOOTING:
            assert self.remembered is not None
            return self.remembered.address, None
        assert self.lease is not None
        return self.lease.address, self.lease.server_id if s is State.RENEWING else None

    def _ack(self, now: float, msg: Message, server: ipaddress.IPv4Address) -> list[Action]:
        address, from_server = self._expected()
        if msg.yiaddr != address or (from_server is not None and server != from_server):
            return self._drop()
        assert self._x is not None
        try:
            lease = lease_from_ack(msg, start=self._x.sent_at)
        except MalformedMessage:
            return self._drop()
        renewed = self.state in (State.RENEWING, State.REBINDING)
        self.state, self.lease, self._x = State.BOUND, lease, None
        self.remembered = lease
        self.next_deadline = lease.renew_at
        return [LeaseRenewed(lease) if renewed else LeaseBound(lease)]

    def _nak(self, now: float, server: ipaddress.IPv4Address) -> list[Action]:
        """A NAK from a server other than the one we chose (REQUESTING, RENEWING) is ignored;
        while rebooting or rebinding any server speaks for the network (sections 3.2, 4.4.5)."""
        _, from_server = self._expected()
        if from_server is not None and server != from_server:
            return self._drop()
        lost = [LeaseLost(self.lease, "nak")] if self.lease is not None else []
        if self.lease is not None:  # a lease lost: a new acquisition, with its own timeout
            self._give_up_at = now + self.config.timeout_s
        self.lease = self.remembered = None
        self._naked_by = server  # a server that NAKs every request still ends in GaveUp
        return [*lost, *self._discover(now)]

    # -- leaving ------------------------------------------------------------------------

    def _release(self, now: float) -> list[Action]:
        """RELEASE is unicast to the server from the leased address (section 4.4.6), so a
        server that checks the source (dnsmasq) honours it."""
        lease = self.lease
        self.state, self.next_deadline, self.lease = State.STOPPED, None, None
        if lease is None:
            return []
        self._new_exchange(now)
        msg = self._message(MT.RELEASE, now, ciaddr=lease.address, server_id=lease.server_id)
        self.stats.sent += 1
        return [Transmit(msg, lease.server_id, lease.address), LeaseLost(lease, "released")]

    def _decline(self, now: float) -> list[Action]:
        lease = self.lease
        if lease is None or self.state is not State.BOUND:
            raise LocalProtocolError(f"ConflictDetected while {self.state.value}")
        self._new_exchange(now)
        msg = self._message(MT.DECLINE, now, requested=lease.address, server_id=lease.server_id)
        self.stats.sent += 1
        self.state, self.lease, self.remembered = State.INIT, None, None
        self._x = None
        self.next_deadline = now + self.config.decline_wait_s
        return [Transmit(msg, BROADCAST, ZERO), LeaseLost(lease, "declined")]
