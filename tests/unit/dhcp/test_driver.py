"""A whole lease's life through the trio Driver, in virtual time (MockClock), against
servers scripted in-process behind a Link: offers, a black hole, renew, rebind, NAK,
expiry, a conflict and the release. The real-server tests are in tests/integration."""

from __future__ import annotations

import ipaddress
import itertools
import math
import random
import struct
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from dhcp import arp
from dhcp import options as opt
from dhcp.client import RESTART_FIRST_S, Client, Config, State
from dhcp.errors import DhcpFailed, LocalProtocolError
from dhcp.events import (
    Action,
    AddressInUse,
    LeaseBound,
    LeaseLost,
    LeaseRenewed,
    SendArp,
    Transmit,
)
from dhcp.lease import Lease
from dhcp.message import BOOTREPLY, Message, encode
from dhcp.trio_driver import Driver

MT = opt.MessageType
IP = ipaddress.IPv4Address
MAC = bytes.fromhex("02aabbccddee")
CID = opt.client_id(9, opt.duid_ll(MAC))
PROBE = arp.ProbeConfig(initial_wait_s=0.0, count=2, interval_s=(0.1, 0.1), final_wait_s=0.2)


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@dataclass
class Server:
    """One scripted server: its id, the address it gives, how long it takes to answer, and
    what it does with each kind of request (``answers[kind]``: "ack", "nak" or None)."""

    ident: IP
    address: IP
    delay_s: float = 0.01
    lease_s: int = 100
    mac: bytes = b"\x02\0\0\0\0\x01"
    offers: bool = True
    requests: str | None = "ack"  # what a REQUEST naming it, or for its address, gets
    heard: list[MT] = field(default_factory=list)

    def answer(self, msg: Message) -> list[bytes]:
        kind = msg.message_type
        assert kind is not None
        self.heard.append(kind)
        if kind is MT.DISCOVER:
            return [self.reply(msg, MT.OFFER)] if self.offers else []
        if kind is not MT.REQUEST or self.requests is None:
            return []
        named = msg.options.get(opt.SERVER_ID)
        wanted = msg.options.get(opt.REQUESTED_ADDRESS) or msg.ciaddr.packed
        if named not in (None, self.ident.packed) or wanted != self.address.packed:
            return []
        return [self.reply(msg, MT.ACK if self.requests == "ack" else MT.NAK)]

    def reply(self, msg: Message, kind: MT) -> bytes:
        o = {opt.MESSAGE_TYPE: bytes([kind]), opt.SERVER_ID: self.ident.packed}
        if kind is not MT.NAK:
            o[opt.LEASE_TIME] = struct.pack("!I", self.lease_s)
            o[opt.SUBNET_MASK] = IP("255.255.255.0").packed
        yiaddr = self.address if kind is not MT.NAK else IP(0)
        return encode(Message(op=BOOTREPLY, xid=msg.xid, chaddr=MAC, yiaddr=yiaddr, options=o))


class ScriptedLink:
    """A LAN of scripted servers (and, optionally, a host holding an address) behind the
    Link a Driver speaks through. Every unicast reaches its server only; broadcasts all."""

    can_probe = True

    def __init__(self, nursery: trio.Nursery, *servers: Server) -> None:
        self.nursery = nursery
        self.servers = list(servers)
        self.sent: list[tuple[float, Transmit]] = []
        self.arp_sent: list[tuple[float, SendArp | bytes]] = []
        self.holder: tuple[IP, bytes] | None = None  # someone on the LAN using this address
        self._in, self._out = trio.open_memory_channel[tuple[bytes, bytes]](math.inf)
        self._arp_in, self._arp_out = trio.open_memory_channel[bytes](math.inf)
        self.address_gone_at: list[float] = []
        self.forgot_arp = 0  # forget_arp calls: one as each probe begins

    async def receive(self) -> tuple[bytes, bytes]:
        return await self._out.receive()

    async def receive_arp(self) -> bytes:
        return await self._arp_out.receive()

    def forget_arp(self) -> None:
        self.forgot_arp += 1
        while True:
            try:
                self._arp_out.receive_nowait()
            except trio.WouldBlock:
                return

    async def send(self, t: Transmit) -> None:
        self.sent.append((trio.current_time(), t))
        for server in self.servers:
            if t.dest in (server.ident, IP("255.255.255.255")):
                for payload in server.answer(t.message):
                    self.nursery.start_soon(self._deliver, server, payload)

    async def _deliver(self, server: Server, payload: bytes) -> None:
        await trio.sleep(server.delay_s)
        self._in.send_nowait((payload, server.mac))

    async def send_arp(self, frame: bytes) -> None:
        self.arp_sent.append((trio.current_time(), frame))
        probe = arp.parse(frame)
        if self.holder is not None and probe is not None and probe.target_ip == self.holder[0]:
            ip, mac = self.holder
            self._arp_in.send_nowait(arp.build(arp.REPLY, mac, ip, probe.sender_ip))

    def address_gone(self) -> None:
        self.address_gone_at.append(trio.current_time())

    def kinds(self) -> list[MT | None]:
        return [t.message.message_type for _, t in self.sent]


def make_client(**kw) -> Client:
    kw.setdefault("probe", PROBE)
    kw.setdefault("retransmit_initial_s", 1.0)
    kw.setdefault("renew_retry_min_s", 5.0)
    return Client(Config(chaddr=MAC, client_id=CID, **kw), rng=random.Random(3))


SITE = Server(IP("10.77.0.1"), IP("10.77.0.50"), delay_s=1.0)
HOLE = Server(IP("10.77.0.9"), IP("10.77.0.99"), delay_s=0.0, requests=None)


def fresh(server: Server, **changes: object) -> Server:
    return Server(**{**server.__dict__, "heard": [], **changes})


async def test_a_whole_lease_life_in_virtual_time(clock):
    site, hole = fresh(SITE), fresh(HOLE)
    second = Server(IP("10.77.0.2"), site.address, offers=False)
    seen: list[Action] = []
    async with trio.open_nursery() as nursery:
        link = ScriptedLink(nursery, hole, site, second)
        second.requests = None  # it answers only once the first has gone
        driver = Driver(make_client(), link, on_action=seen.append)
        began = trio.current_time()
        lease = await nursery.start(driver.run)
        took = trio.current_time() - began
        # the black hole offered first, at once; the site's OFFER came 1 s after the DISCOVER
        assert lease.server_id == site.ident and lease.server_mac == site.mac
        asked = [t.message.options.get(opt.SERVER_ID) for _, t in link.sent]
        assert asked.count(hole.ident.packed) == 2 and asked[-1] == site.ident.packed
        assert took <= site.delay_s + 1.0 + PROBE.count * 0.1 + PROBE.final_wait_s
        assert [type(a) for a in seen[-2:]] == [SendArp, LeaseBound]  # announced, bound

        await trio.sleep_until(lease.renew_at + 1.5)  # T1: renewed by unicast to the site
        renewal = next(t for _, t in link.sent if t.message.ciaddr == lease.address)
        assert (renewal.dest, renewal.src, renewal.dst_mac) == (site.ident, lease.address, site.mac)
        renewed = [a for a in seen if isinstance(a, LeaseRenewed)]
        assert len(renewed) == 1 and driver.lease == renewed[0].lease

        site.requests, second.requests = None, "ack"  # the site's server goes away
        current = renewed[0].lease
        await trio.sleep_until(current.rebind_at + 1.5)  # T2: another server rebinds it
        rebound = [a for a in seen if isinstance(a, LeaseRenewed)][-1]
        assert rebound.lease.server_id == second.ident and driver.client.state is State.BOUND

        second.requests = "nak"  # then refuses the next renewal: the address goes
        await trio.sleep_until(rebound.lease.renew_at + 1.5)
        [lost] = [a for a in seen if isinstance(a, LeaseLost)]
        assert lost.reason == "nak" and driver.lease is None and link.address_gone_at
        refused = [at for at, t in link.sent if t.dest == second.ident][-1]
        restarted = next(at for at, t in link.sent if at > refused)
        assert restarted - refused >= RESTART_FIRST_S  # waited before starting over

        site.requests = "ack"  # back: the next DISCOVER gets a new lease
        await trio.sleep(5)
        assert driver.lease is not None and driver.lease.server_id == site.ident

        await driver.release()
        assert link.kinds()[-1] is MT.RELEASE and driver.client.state is State.STOPPED
        nursery.cancel_scope.cancel()


async def test_with_every_server_gone_the_lease_expires_and_the_address_goes(clock):
    site = fresh(SITE, lease_s=40, delay_s=0.01)
    seen: list[Action] = []
    async with trio.open_nursery() as nursery:
        link = ScriptedLink(nursery, site)
        driver = Driver(make_client(probe=None), link, on_action=seen.append)
        lease = await nursery.start(driver.run)
        site.requests = None
        await trio.sleep_until(lease.expires_at + 0.1)
        lost = [a for a in seen if isinstance(a, LeaseLost)]
        assert [a.reason for a in lost] == ["expired"] and driver.lease is None
        extends = [t for at, t in link.sent if t.message.ciaddr == lease.address]
        # renewal retries at half the time left, 5 s at least: a handful, never a storm
        assert 3 <= len(extends) <= 8 and MT.DISCOVER in link.kinds()
        nursery.cancel_scope.cancel()


async def test_no_lease_raises_dhcp_failed_naming_what_was_heard(clock):
    async with trio.open_nursery() as nursery:
        link = ScriptedLink(nursery, fresh(SITE, requests="nak", delay_s=0.05))
        driver = Driver(make_client(timeout_s=20), link)
        with pytest.raises(DhcpFailed) as failed:
            await driver.run()
        assert str(failed.value) == "no lease after 20 s: 10.77.0.1 NAKed"
        # each round (DISCOVER, REQUEST: NAKed) waits longer than the last before the next:
        # ~3,000 packets a second before the backoff
        starts = [at for at, t in link.sent if t.message.message_type is MT.DISCOVER]
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert len(starts) >= 5 and gaps == sorted(gaps) and gaps[-1] >= 4 * gaps[0]
        assert len(link.sent) <= 2 * len(starts)
        nursery.cancel_scope.cancel()


async def test_a_black_hole_and_a_server_that_refuses_are_both_named(clock):
    async with trio.open_nursery() as nursery:
        link = ScriptedLink(nursery, fresh(HOLE), fresh(SITE, requests="nak", delay_s=0.05))
        driver = Driver(make_client(timeout_s=20), link)
        with pytest.raises(DhcpFailed) as failed:
            await driver.run()
        assert str(failed.value) == (
            "no lease after 20 s: offers from 10.77.0.9 were never acknowledged; 10.77.0.1 NAKed"
        )
        assert len(link.sent) / 20 <= 3  # a few packets a second at most
        nursery.cancel_scope.cancel()


async def test_an_address_in_use_is_declined_and_another_lease_follows(clock, caplog):
    site = fresh(SITE, delay_s=0.01)
    seen: list[Action] = []
    holder_mac = bytes.fromhex("020000000077")
    async with trio.open_nursery() as nursery:
        link = ScriptedLink(nursery, site)
        link.holder = (site.address, holder_mac)
        driver = Driver(make_client(), link, on_action=seen.append)
        nursery.start_soon(driver.run)
        await trio.sleep(1)
        [in_use] = [a for a in seen if isinstance(a, AddressInUse)]
        assert in_use == AddressInUse(site.address, site.ident, holder_mac)
        assert caplog.messages == [
            "10.77.0.50 from 10.77.0.1 is already used by 02:00:00:00:00:77: declining it"
        ]
        assert link.kinds()[-1] is MT.DECLINE and not any(isinstance(a, LeaseBound) for a in seen)
        link.holder = None
        site.address = IP("10.77.0.51")
        await trio.sleep(12)  # RFC 2131 section 3.1: ten seconds at least after a DECLINE
        assert driver.lease is not None and driver.lease.address == site.address
        declined_at = next(at for at, t in link.sent if t.message.message_type is MT.DECLINE)
        again = [at for at, t in link.sent if t.message.message_type is MT.DISCOVER][-1]
        assert again - declined_at >= 10
        nursery.cancel_scope.cancel()


async def test_a_host_the_driver_knows_of_counts_as_an_answer_to_the_probe(clock, caplog):
    site = fresh(SITE, delay_s=0.01)
    seen: list[Action] = []
    async with trio.open_nursery() as nursery:
        link = ScriptedLink(nursery, site)
        driver = Driver(make_client(), link, seen.append, taken=lambda a: a == site.address)
        nursery.start_soon(driver.run)
        await trio.sleep(1)
        assert [a.holder for a in seen if isinstance(a, AddressInUse)] == [b""]
        assert link.arp_sent == []  # never probed on the wire: known taken
        assert caplog.messages == [
            "10.77.0.50 from 10.77.0.1 is already used by this host: declining it"
        ]
        nursery.cancel_scope.cancel()


async def test_release_after_the_loop_was_cancelled_is_still_sent(clock):
    """A job's nursery ends before its teardown releases the lease."""
    site = fresh(SITE, delay_s=0.01)
    async with trio.open_nursery() as nursery:
        link = ScriptedLink(nursery, site)
        driver = Driver(make_client(probe=None), link)
        async with trio.open_nursery() as inner:
            lease = await inner.start(driver.run)
            inner.cancel_scope.cancel()
        await driver.release()
        last = link.sent[-1][1]
        assert last.message.message_type is MT.RELEASE and last.src == lease.address
        nursery.cancel_scope.cancel()


async def test_a_probing_client_needs_a_link_that_can_probe():
    class NoArp(ScriptedLink):
        can_probe = False

    async with trio.open_nursery() as nursery:
        with pytest.raises(LocalProtocolError) as refused:
            Driver(make_client(), NoArp(nursery))
        assert str(refused.value) == "the client probes (RFC 5227) but the link has no ARP"
        Driver(make_client(probe=None), NoArp(nursery))  # fine without a probe
        nursery.cancel_scope.cancel()


def test_the_scripted_server_answers_only_what_names_it():
    """The test's own server, checked: a REQUEST naming another server gets nothing."""
    s = fresh(SITE)
    request = Message(
        op=1,
        xid=5,
        chaddr=MAC,
        options={
            opt.MESSAGE_TYPE: bytes([MT.REQUEST]),
            opt.SERVER_ID: IP("10.77.0.9").packed,
            opt.REQUESTED_ADDRESS: s.address.packed,
        },
    )
    assert s.answer(request) == []
    named = Message(**{**request.__dict__, "options": {**request.options, 54: s.ident.packed}})
    assert len(s.answer(named)) == 1


async def test_arp_is_heard_only_while_probing(clock):
    """A busy LAN's ARP never wakes a bound client: the frames wait unread, and what queued
    up before a probe is forgotten as it begins, once per probe."""
    site = fresh(SITE, delay_s=0.01)
    async with trio.open_nursery() as nursery:
        link = ScriptedLink(nursery, site)
        driver = Driver(make_client(), link)
        lease = await nursery.start(driver.run)
        assert link.forgot_arp == 1
        chatter = arp.build(arp.REQUEST, b"\x02\0\0\0\0\x09", IP("10.77.0.9"), IP("10.77.0.8"))
        for _ in range(3):
            link._arp_in.send_nowait(chatter)
        await trio.sleep_until(lease.renew_at + 1)  # renewed meanwhile: the loop went round
        assert driver.client.state is State.BOUND and driver.lease != lease
        assert link.forgot_arp == 1 and link._arp_out.statistics().current_buffer_used == 3
        nursery.cancel_scope.cancel()


async def test_run_ends_by_itself_once_released(clock):
    site = fresh(SITE, delay_s=0.01)
    async with trio.open_nursery() as nursery:
        link = ScriptedLink(nursery, site)
        driver = Driver(make_client(probe=None), link)
        ended = trio.Event()

        async def run(task_status: trio.TaskStatus[Lease] = trio.TASK_STATUS_IGNORED) -> None:
            await driver.run(task_status=task_status)
            ended.set()

        await nursery.start(run)
        with trio.fail_after(1):
            await driver.release()
            await ended.wait()  # no cancellation: the loop saw the client stop
        assert link.kinds()[-1] is MT.RELEASE
        nursery.cancel_scope.cancel()


async def test_released_before_any_lease_run_ends_quietly(clock):
    """A release while still acquiring stops the client: run() returns, it does not fail."""
    async with trio.open_nursery() as nursery:
        link = ScriptedLink(nursery, fresh(HOLE))  # offers, never acknowledges
        driver = Driver(make_client(probe=None), link)
        nursery.start_soon(driver.run)
        await trio.sleep(0.5)
        with trio.fail_after(1):
            await driver.release()
        await trio.sleep(1)
        assert driver.client.state is State.STOPPED and driver.failure is None
        assert driver._running is False  # run() returned, and without DhcpFailed
        assert MT.RELEASE not in link.kinds()  # nothing to release: no lease was had
        nursery.cancel_scope.cancel()


async def test_release_of_a_driver_never_run_is_carried_out_at_once(clock):
    async with trio.open_nursery() as nursery:
        link = ScriptedLink(nursery, fresh(SITE))
        driver = Driver(make_client(probe=None), link)
        with trio.fail_after(1):
            await driver.release()
        assert driver.client.state is State.STOPPED and link.sent == []
        nursery.cancel_scope.cancel()


# -- pinned by mutation testing (bench/dhcp_mutation.py) ---------------------------------


async def test_a_release_before_any_lease_ends_run_quietly_and_sends_nothing(clock):
    """A job torn down while its address is still being sought: run() returns (no
    DhcpFailed: nothing failed), at once, and no RELEASE goes out for a lease never had."""
    finished: list[float] = []
    async with trio.open_nursery() as nursery:
        link = ScriptedLink(nursery, fresh(HOLE))  # offers, never acknowledges
        driver = Driver(make_client(probe=None), link)

        async def run() -> None:
            await driver.run()
            finished.append(trio.current_time())

        nursery.start_soon(run)
        await trio.sleep(0.3)
        await driver.release()
        released_at = trio.current_time()
        await trio.testing.wait_all_tasks_blocked()
        assert finished == [released_at] and driver.failure is None
        assert MT.RELEASE not in link.kinds() and driver.client.state is State.STOPPED
        nursery.cancel_scope.cancel()


async def test_the_loop_ends_as_soon_as_a_release_is_carried_out(clock):
    """release() goes through the loop while it runs; it does not wait for the next T1."""
    finished: list[float] = []
    async with trio.open_nursery() as nursery:
        link = ScriptedLink(nursery, fresh(SITE, delay_s=0.01))
        driver = Driver(make_client(probe=None), link)

        async def run(task_status=trio.TASK_STATUS_IGNORED) -> None:
            await driver.run(task_status=task_status)
            finished.append(trio.current_time())

        lease = await nursery.start(run)
        await driver.release()
        released_at = trio.current_time()
        await trio.testing.wait_all_tasks_blocked()
        assert finished == [released_at] and released_at < lease.renew_at
        assert link.kinds()[-1] is MT.RELEASE and driver.lease is None
        nursery.cancel_scope.cancel()


async def test_a_driver_never_run_carries_a_release_out_itself(clock):
    async with trio.open_nursery() as nursery:
        link = ScriptedLink(nursery, fresh(SITE))
        driver = Driver(make_client(probe=None), link)
        with trio.fail_after(1):  # never handed to a loop that is not there
            await driver.release()
        assert driver.client.state is State.STOPPED and link.sent == []
        nursery.cancel_scope.cancel()


class CountingLink(ScriptedLink):
    def __init__(self, nursery: trio.Nursery, *servers: Server) -> None:
        super().__init__(nursery, *servers)
        self.arp_reads = 0
        self.forgotten = 0

    async def receive_arp(self) -> bytes:
        self.arp_reads += 1
        return await super().receive_arp()

    def forget_arp(self) -> None:
        self.forgotten += 1
        super().forget_arp()


@pytest.mark.parametrize("probe", [PROBE, None])
async def test_arp_is_read_only_while_probing(clock, probe):
    """A busy LAN's ARP never wakes a client that is not probing: the ARP reader runs
    from the ACK to the end of the probe, once, and not at all without a probe."""
    async with trio.open_nursery() as nursery:
        link = CountingLink(nursery, fresh(SITE, delay_s=0.01))
        driver = Driver(make_client(probe=probe), link)
        lease = await nursery.start(driver.run)
        await trio.sleep_until(lease.renew_at + 1)  # renewed: the loop went round again
        assert link.forgotten == (1 if probe else 0) and link.arp_reads == link.forgotten
        link._arp_in.send_nowait(b"\0" * 28)  # ARP heard while bound stays unread
        await trio.sleep(1)
        assert link.arp_reads == link.forgotten
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("holder", "who"), [(bytes.fromhex("020000000077"), "02:00:00:00:00:77"), (b"", "this host")]
)
async def test_an_address_in_use_is_logged_with_its_server_and_holder(clock, caplog, holder, who):
    site = fresh(SITE, delay_s=0.01)
    async with trio.open_nursery() as nursery:
        link = ScriptedLink(nursery, site)
        if holder:
            link.holder = (site.address, holder)
        driver = Driver(make_client(), link, taken=lambda a: not holder and a == site.address)
        with caplog.at_level("WARNING", logger="dhcp.driver"):
            nursery.start_soon(driver.run)
            await trio.sleep(1)
        assert [r.getMessage() for r in caplog.records if r.name == "dhcp.driver"] == [
            f"{site.address} from {site.ident} is already used by {who}: declining it"
        ]
        nursery.cancel_scope.cancel()


async def test_a_driver_over_sockets_speaks_through_a_socket_link():
    import socket

    from dhcp.trio_driver import SocketLink, Sockets

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        sockets = Sockets("eth0", MAC, raw=a, arp=None)
        driver = Driver(make_client(probe=None), sockets)
        assert isinstance(driver.link, SocketLink) and driver.link.sockets is sockets
        with pytest.raises(
            LocalProtocolError, match=r"^the client probes \(RFC 5227\) but the link has no ARP$"
        ):
            Driver(make_client(), sockets)  # no ARP socket: no probe
