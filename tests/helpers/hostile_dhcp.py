"""A hostile DHCP responder for the test sandbox, and the tests' handle on it.

Run as a program (``python hostile_dhcp.py --iface br0 --record FILE --real SERVER
--persona NAME ...``) inside the site namespace, beside the real server (Kea or dnsmasq);
``Responder`` starts it there, waits until it listens, reads what it recorded and stops it.
It is the tests' own code, stdlib only: it shares nothing with the client under test
(dhcp/), builds every frame byte by byte, and so can send what no encoder would.

It listens on the site bridge (an AF_PACKET socket, promiscuous, so it also sees what the
real server sends to one client's MAC) and plays one or more *personas*, each a server of
its own on the LAN (its own server id 10.77.0.X and MAC 02:10:77:00:00:X):

* ``black-hole``: answers every DISCOVER at once with a valid OFFER (an address outside the
  real pool, a lease time, a mask, a router) and never ACKs what it offered;
* ``nak``: NAKs every REQUEST it hears, with its own server id (a server the client did
  not choose);
* a *liar* (``LIES``): answers every DISCOVER with an OFFER that lies one way, and a
  REQUEST that names it with an ACK that lies the same way;
* ``race-acks``: answers every REQUEST that names another server (the real one) with ACKs
  for another transaction (xid), another client (chaddr, a longer chaddr that begins with
  the client's MAC, another client id), naming that server and the address asked for, but
  with a lease time and router of its own (``RACE_LEASE_S``, ``RACE_ROUTER``);
* ``nasty-text``: a complete, valid server whose leases carry a host name and domain with
  control characters (for a LAN where it is the only server).

With no persona it only listens and records (the bench's stopwatch on a plain LAN).

Everything goes out broadcast (Ethernet and IP), so it reaches the client whatever its MAC.

The record is JSON lines, flushed one by one (readable while it runs), with monotonic
times ``t``:

* ``{"ev": "ready"}`` once it listens;
* ``{"ev": "heard", "kind": "DISCOVER"|"REQUEST"|..., "xid", "chaddr", "server_id",
  "requested", "ciaddr", "to"}`` for each client message;
* ``{"ev": "sent", "persona", "kind", "xid"}`` for each reply it sent;
* ``{"ev": "real", "kind", "xid", "server_id", "yiaddr"}`` for each reply of another server
  (the real one) seen on the bridge;
* ``{"ev": "stopped"}`` on SIGTERM, when it exits (status 0).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SITE_NET = "10.77.0"
COOKIE = b"\x63\x82\x53\x63"
_BOOTP = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
KINDS = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK"}
KINDS.update({7: "RELEASE", 8: "INFORM"})
ETH_P_ALL, ETH_P_IP = 0x0003, 0x0800
SOL_PACKET, PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC = 263, 1, 1
LEASE_S = 3600
RACE_LEASE_S = 7777  # the lease time of the racing ACKs: a client that took one shows it
RACE_ROUTER = f"{SITE_NET}.21"
NASTY_HOSTNAME = b"evil\nLarkInjected = true\r\x1b[2J\x07\x7fend"
NASTY_DOMAIN = b"lan\x00\nLarkDomainInjected = 1"


def ip(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


# -- wire format, by hand --------------------------------------------------------------


def tlvs(options: list[tuple[int, bytes]]) -> bytes:
    """Options in the order given (a code may repeat), then END."""
    return b"".join(bytes((code, len(value))) + value for code, value in options) + b"\xff"


def bootp(
    xid: int,
    chaddr: bytes,
    options: bytes,
    yiaddr: bytes = bytes(4),
    siaddr: bytes = bytes(4),
    sname: bytes = b"",
    file: bytes = b"",
    hlen: int | None = None,
) -> bytes:
    header = _BOOTP.pack(
        2,  # BOOTREPLY
        1,
        len(chaddr) if hlen is None else hlen,
        0,
        xid,
        0,
        0,
        bytes(4),
        yiaddr,
        siaddr,
        bytes(4),
        chaddr.ljust(16, b"\0")[:16],
        sname.ljust(64, b"\0")[:64],
        file.ljust(128, b"\0")[:128],
    )
    return header + COOKIE + options


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True)
class Garble:
    """What to do to a frame on the way out (all off: a correct frame)."""

    cut_payload: int | None = None  # the DHCP payload cut to this many bytes (lengths agree)
    cut_frame: int = 0  # bytes cut off the end of the frame (the IP and UDP lengths lie)
    bad_ip_checksum: bool = False
    bad_udp_checksum: bool = False
    no_udp_checksum: bool = False  # 0: "not computed", which IPv4 allows


def udp_frame(payload: bytes, src_mac: bytes, src: bytes, garble: Garble = Garble()) -> bytes:
    """Ethernet/IPv4/UDP from ``src``:67 to 255.255.255.255:68, broadcast."""
    if garble.cut_payload is not None:
        payload = payload[: garble.cut_payload]
    dst = b"\xff" * 4
    udp = struct.pack("!HHHH", 67, 68, 8 + len(payload), 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
    udp_sum = checksum(pseudo + udp) or 0xFFFF
    if garble.bad_udp_checksum:
        udp_sum = (udp_sum ^ 0x5A5A) or 1
    if garble.no_udp_checksum:
        udp_sum = 0
    udp = udp[:6] + struct.pack("!H", udp_sum) + udp[8:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)
    ip_sum = checksum(header)
    if garble.bad_ip_checksum:
        ip_sum ^= 0x5A5A
    header = header[:10] + struct.pack("!H", ip_sum) + header[12:]
    frame = b"\xff" * 6 + src_mac + struct.pack("!H", ETH_P_IP) + header + udp
    return frame[: len(frame) - garble.cut_frame] if garble.cut_frame else frame


@dataclass(frozen=True)
class Heard:
    """A client's message, as far as the responder cares."""

    kind: int | None
    xid: int
    chaddr: bytes  # hlen bytes
    options: dict[int, bytes]
    ciaddr: bytes
    to: bytes  # IP destination

    def get_ip(self, code: int) -> str | None:
        value = self.options.get(code)
        return str(ipaddress.IPv4Address(value)) if value is not None and len(value) == 4 else None


def parse(frame: bytes, port: int) -> tuple[bytes, bytes, int, bytes] | None:
    """(source MAC, IP source, UDP source port, payload) of an IPv4/UDP frame to ``port``;
    checksums are not checked (this is a sniffer, and the kernel may not have filled them)."""
    if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
        return None
    ihl = (frame[14] & 15) * 4
    if frame[14 + 9] != 17:
        return None
    udp = frame[14 + ihl :]
    if len(udp) < 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", udp)
    if dport != port:
        return None
    return frame[6:12], frame[14 + 12 : 14 + 16], sport, udp[8:length]


def parse_bootp(payload: bytes, to: bytes) -> Heard | None:
    if len(payload) < _BOOTP.size + 4 or payload[_BOOTP.size : _BOOTP.size + 4] != COOKIE:
        return None
    fields = _BOOTP.unpack_from(payload)
    options: dict[int, bytes] = {}
    i, area = 0, payload[_BOOTP.size + 4 :]
    while i < len(area) and area[i] != 255:
        if area[i] == 0:
            i += 1
            continue
        if i + 1 >= len(area) or i + 2 + area[i + 1] > len(area):
            break
        options[area[i]] = options.get(area[i], b"") + area[i + 2 : i + 2 + area[i + 1]]
        i += 2 + area[i + 1]
    kind = options.get(53, b"")
    return Heard(
        kind=kind[0] if len(kind) == 1 else None,
        xid=fields[4],
        chaddr=fields[11][: min(fields[2], 16)],
        options=options,
        ciaddr=fields[7],
        to=to,
    )


# -- personas ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lie:
    """How a liar bends its replies: the options it leaves out or replaces, its address, the
    transaction and client it answers, and what happens to the frame."""

    drop: tuple[int, ...] = ()
    replace: tuple[tuple[int, bytes], ...] = ()
    extra: tuple[tuple[int, bytes], ...] = ()  # options added at the end (a repeat: RFC 3396)
    yiaddr: str | None = None
    xid_xor: int = 0
    chaddr: bytes | None = None  # another client's hardware address
    chaddr_tail: bytes = b""  # appended to the client's own (hlen grows)
    garble: Garble = Garble()
    overload_in_file: bool = False  # options 54/51/1/3 only in sname, behind a 52 in file


# Each lie makes an OFFER that is not one a client may take (it is not for this client or
# transaction, cannot be read, lacks what RFC 2131 table 3 says an OFFER MUST carry, or
# offers an address no host may use), or one whose lease no client may use
# (``BAD_PARAMETERS``); its ACKs lie the same way.
LIES: dict[str, Lie] = {
    "cut-options": Lie(garble=Garble(cut_payload=_BOOTP.size + 4 + 3 + 6 + 4)),
    "cut-header": Lie(garble=Garble(cut_payload=120)),
    # the END and the last option (DNS) cut off, with no UDP checksum (IPv4 allows that):
    # only the IP and UDP lengths tell
    "cut-frame": Lie(garble=Garble(cut_frame=7, no_udp_checksum=True)),
    "bad-ip-checksum": Lie(garble=Garble(bad_ip_checksum=True)),
    "bad-udp-checksum": Lie(garble=Garble(bad_udp_checksum=True)),
    "two-message-types": Lie(extra=((53, bytes((ACK,))),)),
    "no-server-id": Lie(drop=(54,)),
    "no-lease-time": Lie(drop=(51,)),
    "yiaddr-0.0.0.0": Lie(yiaddr="0.0.0.0"),
    "yiaddr-255.255.255.255": Lie(yiaddr="255.255.255.255"),
    "yiaddr-224.0.0.5": Lie(yiaddr="224.0.0.5"),
    "yiaddr-127.0.0.5": Lie(yiaddr="127.0.0.5"),
    "yiaddr-240.0.0.5": Lie(yiaddr="240.0.0.5"),
    "option-52-in-file": Lie(overload_in_file=True),
    "other-xid": Lie(xid_xor=0x5A5A5A5A),
    "other-chaddr": Lie(chaddr=bytes.fromhex("02cc00000001")),
    "longer-chaddr": Lie(chaddr_tail=bytes.fromhex("00112233445566778899")),
    "other-client-id": Lie(extra=((61, b"\xff\x00\x00\x00\x01\x00\x03\x00\x01\x02\xcc\0\0\0\1"),)),
    # an OFFER a client may take, whose lease it cannot use
    "noncontiguous-mask": Lie(replace=((1, ip("255.0.255.0")),)),
    "route-width-33": Lie(extra=((121, bytes((33, 10, 77, 0, 0, 1)) + ip(f"{SITE_NET}.1")),)),
    "route-truncated": Lie(extra=((121, bytes((24, 10, 77))),)),
}
BAD_PARAMETERS = ("noncontiguous-mask", "route-width-33", "route-truncated")


@dataclass(frozen=True)
class Persona:
    name: str
    octet: int  # its server id and MAC end in this

    @property
    def server_id(self) -> str:
        return f"{SITE_NET}.{self.octet}"

    @property
    def mac(self) -> bytes:
        return bytes((0x02, 0x10, 0x77, 0, 0, self.octet))

    @property
    def offered(self) -> str:
        """The address it offers: its lie's, or its own outside the real pool (.100-.150),
        10.77.0.(200 + X % 50), so that a REQUEST asking for it took its offer."""
        lie = LIES.get(self.name)
        return (
            lie.yiaddr if lie is not None and lie.yiaddr else f"{SITE_NET}.{200 + self.octet % 50}"
        )


def personas() -> dict[str, Persona]:
    found = {"black-hole": Persona("black-hole", 9), "nak": Persona("nak", 8)}
    found["race-acks"] = Persona("race-acks", 21)
    found["nasty-text"] = Persona("nasty-text", 61)
    for i, name in enumerate(LIES):
        found[name] = Persona(name, 22 + i)
    return found


PERSONAS = personas()


@dataclass
class Responder:
    """The program: a socket on the bridge, the personas it plays, the record."""

    sock: socket.socket
    playing: list[Persona]
    record: Callable[[dict[str, object]], None]
    own_macs: set[bytes] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.own_macs = {p.mac for p in self.playing}

    def serve(self, stop: Callable[[], bool]) -> None:
        while not stop():
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.2)
            except InterruptedError:
                continue
            if not ready:
                continue
            self.handle(self.sock.recv(65535))

    def handle(self, frame: bytes) -> None:
        """A frame seen on the bridge: a client's (coming in) or the real server's (sent by
        the bridge itself, or forwarded between two of its ports); never one of ours."""
        if frame[6:12] in self.own_macs:
            return
        to_server = parse(frame, 67)
        if to_server is not None:
            heard = parse_bootp(to_server[3], frame[14 + 16 : 14 + 20])
            if heard is not None and heard.kind in (DISCOVER, REQUEST, DECLINE, RELEASE, INFORM):
                self.heard(heard)
            return
        to_client = parse(frame, 68)
        if to_client is not None and to_client[2] == 67:
            reply = parse_bootp(to_client[3], frame[14 + 16 : 14 + 20])
            if reply is not None:
                self.record(
                    {
                        "ev": "real",
                        "kind": KINDS.get(reply.kind or 0, str(reply.kind)),
                        "xid": reply.xid,
                        "server_id": reply.get_ip(54),
                        "yiaddr": str(ipaddress.IPv4Address(to_client[3][16:20])),
                    }
                )

    def heard(self, msg: Heard) -> None:
        named, requested = msg.get_ip(54), msg.get_ip(50)
        self.record(
            {
                "ev": "heard",
                "kind": KINDS.get(msg.kind or 0, str(msg.kind)),
                "xid": msg.xid,
                "chaddr": msg.chaddr.hex(":"),
                "server_id": named,
                "requested": requested,
                "ciaddr": str(ipaddress.IPv4Address(msg.ciaddr)),
                "to": str(ipaddress.IPv4Address(msg.to)),
            }
        )
        for persona in self.playing:
            if msg.kind == DISCOVER and persona.name not in ("nak", "race-acks"):
                self.send(persona, OFFER, msg)
            elif msg.kind == REQUEST:
                if persona.name == "nak":
                    self.send(persona, NAK, msg)
                elif persona.name == "race-acks":
                    if named is None or named not in {p.server_id for p in self.playing}:
                        self.race(persona, msg, named, requested)
                elif persona.name != "black-hole" and (
                    named == persona.server_id or requested == persona.offered
                ):
                    self.send(persona, ACK, msg)

    def send(self, persona: Persona, kind: int, msg: Heard) -> None:
        lie = LIES.get(persona.name, Lie())
        sid = ip(persona.server_id)
        if kind == NAK:
            options = [(53, bytes((NAK,))), (54, sid), (56, b"foreign NAK")]
            self.out(persona, kind, msg.xid, bootp(msg.xid, msg.chaddr, tlvs(options)))
            return
        offered = persona.offered
        params: list[tuple[int, bytes]] = [
            (54, sid),
            (51, struct.pack("!I", LEASE_S)),
            (1, ip("255.255.255.0")),
            (3, sid),
            (6, sid),
        ]
        if persona.name == "nasty-text":
            params += [(12, NASTY_HOSTNAME), (15, NASTY_DOMAIN)]
        replaced = dict(lie.replace)
        params = [(c, replaced.get(c, v)) for c, v in params if c not in lie.drop]
        sname = file = b""
        if lie.overload_in_file:
            # the options area says "file holds options"; file says "so does sname" (an
            # overload inside file, which RFC 2131 section 4.1 gives no meaning); only sname
            # holds the server id, lease time, mask and router
            sname, file = tlvs(params[:4]), tlvs([(52, b"\x02")])
            params = [(52, b"\x01")]
        options = [(53, bytes((kind,))), *params, *lie.extra]
        chaddr = lie.chaddr or msg.chaddr + lie.chaddr_tail
        xid = msg.xid ^ lie.xid_xor
        payload = bootp(xid, chaddr, tlvs(options), ip(offered), sid, sname, file)
        self.out(persona, kind, xid, payload, lie.garble)

    def race(self, persona: Persona, msg: Heard, named: str | None, requested: str | None) -> None:
        """ACKs for the REQUEST that names another server, each for another transaction or
        client, naming that server and the address asked for, with a lease of our own."""
        address = requested or str(ipaddress.IPv4Address(msg.ciaddr))
        server = named or str(ipaddress.IPv4Address(msg.to))
        options = [
            (53, bytes((ACK,))),
            (54, ip(server)),
            (51, struct.pack("!I", RACE_LEASE_S)),
            (1, ip("255.255.255.0")),
            (3, ip(RACE_ROUTER)),
        ]
        for lie in ("other-xid", "other-chaddr", "longer-chaddr", "other-client-id"):
            how = LIES[lie]
            chaddr = how.chaddr or msg.chaddr + how.chaddr_tail
            xid = msg.xid ^ how.xid_xor
            payload = bootp(xid, chaddr, tlvs([*options, *how.extra]), ip(address), ip(server))
            self.out(persona, ACK, xid, payload, note=lie)

    def out(
        self,
        persona: Persona,
        kind: int,
        xid: int,
        payload: bytes,
        garble: Garble = Garble(),
        note: str | None = None,
    ) -> None:
        self.sock.send(udp_frame(payload, persona.mac, ip(persona.server_id), garble))
        event: dict[str, object] = {"ev": "sent", "persona": persona.name, "kind": KINDS[kind]}
        event["xid"] = xid
        if note:
            event["lie"] = note
        self.record(event)


def open_socket(iface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    sock.bind((iface, ETH_P_ALL))
    index = socket.if_nametoindex(iface)
    mreq = struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b"")
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)  # gone with the socket
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iface", required=True)
    parser.add_argument("--record", required=True, type=Path)
    parser.add_argument(
        "--persona", action="append", choices=sorted(PERSONAS), default=[], help="none: listen only"
    )
    args = parser.parse_args(argv)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    with open(args.record, "a", buffering=1) as out:

        def record(event: dict[str, object]) -> None:
            out.write(json.dumps({"t": time.monotonic(), **event}) + "\n")

        with open_socket(args.iface) as sock:
            responder = Responder(sock, [PERSONAS[name] for name in args.persona], record)
            record({"ev": "ready", "pid": os.getpid(), "personas": args.persona})
            responder.serve(lambda: bool(stopping))
        record({"ev": "stopped"})
    return 0


# -- the tests' side -----------------------------------------------------------------------


class Running:
    """A responder started in a namespace; ``events()`` is its record so far."""

    def __init__(self, proc: subprocess.Popen, record: Path, names: tuple[str, ...]) -> None:
        self.proc = proc
        self.path = record
        self.personas = [PERSONAS[name] for name in names]

    def events(self, ev: str | None = None, **match: object) -> list[dict]:
        found = []
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:  # a line being written
                continue
            if (ev is None or event["ev"] == ev) and all(
                event.get(k) == v for k, v in match.items()
            ):
                found.append(event)
        return found

    def requests(self) -> list[dict]:
        return self.events("heard", kind="REQUEST")

    def named(self, persona: str) -> list[dict]:
        """The client's REQUESTs that took this persona's offer: naming its server id, or
        asking for the address only it offers."""
        p = PERSONAS[persona]
        return [
            r
            for r in self.requests()
            if r["server_id"] == p.server_id or r["requested"] == p.offered
        ]

    def to_real_ack(self, real_server: str) -> float | None:
        """Seconds from the client's first DISCOVER to the real server's first ACK, both as
        seen on the bridge (None: no such ACK)."""
        discovers = self.events("heard", kind="DISCOVER")
        acks = self.events("real", kind="ACK", server_id=real_server)
        return acks[0]["t"] - discovers[0]["t"] if discovers and acks else None

    def offered_first(self, persona: str, real_server: str) -> bool:
        """Whether this persona's OFFER for the client's first DISCOVER was on the wire
        before the real server's OFFER for it (the precondition of the black-hole tests)."""
        discovers = self.events("heard", kind="DISCOVER")
        if not discovers:
            return False
        xid = discovers[0]["xid"]
        ours = self.events("sent", persona=persona, kind="OFFER", xid=xid)
        real = self.events("real", kind="OFFER", xid=xid, server_id=real_server)
        return bool(ours) and (not real or ours[0]["t"] < real[0]["t"])

    def summary(self) -> str:
        """The client's messages as the responder heard them, for an assertion's message."""
        events = self.events()
        t0 = next((e["t"] for e in events if e["ev"] == "heard"), 0.0)
        lines = []
        for e in events:
            if e["ev"] == "heard":
                lines.append(
                    f"{e['t'] - t0:7.3f} client {e['kind']} xid {e['xid']:#010x} "
                    f"server {e['server_id']} asks {e['requested']}"
                )
            elif e["ev"] == "real":
                lines.append(
                    f"{e['t'] - t0:7.3f} real {e['kind']} from {e['server_id']} of {e['yiaddr']}"
                )
        return "\n".join(lines)

    def stop(self) -> int:
        """SIGTERM; its exit status (0: it stopped cleanly, closing its socket)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return self.proc.returncode


def start(sandbox, *names: str, iface: str = "br0", tag: str = "hostile") -> Running:
    """The responder playing ``names`` on ``iface`` of the sandbox's site namespace, its
    record under the sandbox's directory; returns once it listens. The sandbox kills it on
    teardown whatever happens (``sandbox.procs``)."""
    record = sandbox.tmp / f"{tag}.jsonl"
    record.unlink(missing_ok=True)
    argv = [sys.executable, "-I", str(Path(__file__).resolve()), "--iface", iface]
    argv += ["--record", str(record)]
    for name in names:
        argv += ["--persona", name]
    running = Running(sandbox.start_in(sandbox.site, argv), record, names)
    end = time.monotonic() + 10
    while not running.events("ready"):
        assert running.proc.poll() is None, (
            f"the hostile responder exited ({running.proc.returncode})"
        )
        assert time.monotonic() < end, "the hostile responder never got ready"
        time.sleep(0.02)
    return running


if __name__ == "__main__":
    sys.exit(main())
