"""A bridged job that is root in its namespace (``--allow-root``) attacks the LAN and loses.

Each test runs the attack as the job, against a real bridge and a real Kea, and checks
what the LAN sees: the job's address binding (the anti-spoof set), the node's bridge
forwarding table, the DHCP server's pool, and the frames that reach the site.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers.agent import python_job, read_update_ad
from helpers.bridge import CAPTURE, bridge_flags, static_flags
from sandbox import HTTP_PORT, KEA_POOL, SITE_ADDR, SITE_NET, sh, start_kea

ROOT = Path(__file__).resolve().parents[2]
SITE_MAC = "02:10:77:00:00:01"  # the site bridge's, the gateway's (sandbox.create_site)


def root_job(sandbox, host, name: str, flags: tuple[str, ...], script: str, *args: str):
    return sandbox.start_agent(
        host,
        "--user", "root", "--allow-root", "--name", name, *flags,
        "--", *python_job(script, *args),
    )  # fmt: skip


def finish(sandbox, agent) -> str:
    """The job's output once it is done; the agent must have run it and cleaned up."""
    out, err = agent.communicate(timeout=60)
    assert agent.returncode == 0, err + sandbox.log_file.read_text()
    return out


def node_reaches_gateway(host, tries: int = 10) -> int:
    """TCP connections from the node itself to the gateway (the site's HTTP server) that
    succeed, one every 0.2 s."""
    probe = (
        "import socket, sys, time\nok = 0\n"
        f"for _ in range({tries}):\n"
        "    try:\n"
        f"        socket.create_connection(('{SITE_ADDR}', {HTTP_PORT}), 1).close(); ok += 1\n"
        "    except OSError:\n        pass\n"
        "    time.sleep(0.2)\nprint(ok)\n"
    )
    return int(sh(sys.executable, "-c", probe, netns=host.netns).stdout)


class Watch:
    """Poll a command in a namespace until stopped, keeping every output seen."""

    def __init__(self, netns: str, *cmd: str) -> None:
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(netns, cmd), daemon=True)
        self._thread.start()

    def _run(self, netns: str, cmd: tuple[str, ...]) -> None:
        while not self._stop.is_set():
            self.seen.append(sh(*cmd, netns=netns, check=False).stdout)
            time.sleep(0.05)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(10)
        return self.seen


# -- forged DHCP replies to itself --------------------------------------------------------

FORGE_DHCP = r"""
import ipaddress, json, random, socket, struct, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from dhcp import frame, options as opt
from dhcp.message import BOOTREPLY, BOOTREQUEST, Message, decode, encode
ifname, gw, seconds = sys.argv[2], ipaddress.IPv4Address(sys.argv[3]), float(sys.argv[4])
FAKE = ipaddress.IPv4Address(sys.argv[5])  # the forged replies' IP source, to tell them apart
MT = opt.MessageType

def tc(*args):
    subprocess.run(["tc", *args], check=True)

# what it sends from UDP port 67 comes straight back in (and never leaves); the real
# server's answers and the gateway's ARP replies (to a conflict probe) are dropped
tc("qdisc", "add", "dev", ifname, "clsact")
tc("filter", "add", "dev", ifname, "egress", "protocol", "ip", "u32", "match", "ip", "protocol",
   "17", "0xff", "match", "ip", "sport", "67", "0xffff", "action", "mirred", "ingress",
   "redirect", "dev", ifname)
drops = (
    "table netdev attack { chain in { "
    f'type filter hook ingress device "{ifname}" priority 0 ; '
    f"ip saddr {gw} udp sport 67 drop ; arp saddr ip {gw} drop ; }} ; }}"
)
subprocess.run(["nft", "-f", "-"], input=drops.encode(), check=True)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((ifname, 0))
mac = s.getsockname()[4]
s.settimeout(0.1)

def reply(kind, xid, yiaddr=ipaddress.IPv4Address(0)):
    o = {opt.MESSAGE_TYPE: bytes([kind]), opt.SERVER_ID: gw.packed}
    if kind != MT.NAK:
        o.update({opt.LEASE_TIME: struct.pack("!I", 3600), opt.ROUTER: gw.packed,
                  opt.SUBNET_MASK: bytes([255, 255, 255, 0])})
    m = Message(op=BOOTREPLY, xid=xid, chaddr=mac, yiaddr=yiaddr, options=o)
    dest = ipaddress.IPv4Address("255.255.255.255")
    s.send(frame.build_udp(encode(m), mac, FAKE, dest, dst_mac=mac, src_port=67, dst_port=68))

def claim_gateway():
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, mac, gw.packed, b"\xff" * 6,
                      gw.packed)
    s.send(b"\xff" * 6 + mac + b"\x08\x06" + arp)

seen, end, blind = [], time.time() + seconds, 0.0
while time.time() < end:
    if time.time() > blind:  # blind forgeries too: an ACK and a NAK for any transaction
        blind = time.time() + 0.3
        reply(MT.ACK, random.getrandbits(32), gw)
        reply(MT.NAK, random.getrandbits(32))
        claim_gateway()
    try:
        data, addr = s.recvfrom(4096)
    except socket.timeout:
        continue
    payload = frame.parse_udp(data, dst_port=67, check_udp=False)
    if addr[2] != socket.PACKET_OUTGOING or payload is None:
        continue
    try:
        m = decode(payload)
    except Exception:
        continue
    if m.op != BOOTREQUEST or m.chaddr != mac:
        continue
    kind = m.message_type
    seen.append(kind.name if kind else "?")
    if kind is MT.REQUEST and not m.ciaddr.is_unspecified:  # a renewal: refuse it
        reply(MT.NAK, m.xid)
    elif kind is MT.DISCOVER:
        reply(MT.OFFER, m.xid, gw)
    elif kind is MT.REQUEST and m.options.get(opt.REQUESTED_ADDRESS) == gw.packed:
        reply(MT.ACK, m.xid, gw)
print(json.dumps(seen))
"""


def test_forged_dhcp_replies_to_itself_never_bind_the_gateways_address(sandbox, host):
    """The issue's attack: the job loops its own forged NAK, OFFER and ACK for the
    gateway's address back into its interface, drops the server's real answers and the
    gateway's ARP replies, and claims the gateway by ARP. The job's binding stays the
    lease the server gave, and the node keeps reaching its gateway."""
    start_kea(sandbox, lifetime=4)
    sandbox.kept_links.add("lark")
    name = sandbox.job_name()
    ad = sandbox.tmp / "forge.ad"
    flags = bridge_flags("--update-ad", str(ad), "--accounting-interval", "0.2")
    fake = f"{SITE_NET}.250"
    agent = root_job(sandbox, host, name, flags, FORGE_DHCP, str(ROOT), f"i_{name}", SITE_ADDR,
                     "8", fake)  # fmt: skip
    chain_set = ("nft", "list", "set", "bridge", "lark", f"LARK_{name}_ip")
    watch = Watch(host.netns, *chain_set)
    try:
        time.sleep(2)  # a renewal or two into the attack
        reached = node_reaches_gateway(host)
    finally:
        finish(sandbox, agent)
        seen = watch.stop()
    bound = {ip for text in seen for ip in re.findall(r"\d+\.\d+\.\d+\.\d+", text)}
    assert SITE_ADDR not in bound, bound
    first, last = (ipaddress.IPv4Address(a) for a in KEA_POOL)
    assert bound and all(first <= ipaddress.IPv4Address(ip) <= last for ip in bound), bound
    assert reached == 10
    assert read_update_ad(ad).get("LarkInnerAddressIPv4", next(iter(bound))) in bound


# -- frames with other MACs ---------------------------------------------------------------

STEAL_MACS = r"""
import socket, struct, sys, time
ifname, seconds, macs = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
frames = []
for text in macs:
    mac = bytes.fromhex(text.replace(":", ""))
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, bytes(4), bytes(6), bytes(4))
    frames.append(b"\xff" * 6 + mac + b"\x08\x06" + arp)  # broadcast: seen by every port
    frames.append(b"\x02\x00\x00\x00\x00\x09" + mac + b"\x08\x00" + bytes(46))  # unicast
sent, end = 0, time.time() + seconds
while time.time() < end:
    for f in frames:
        s.send(f)
        sent += 1
    time.sleep(0.005)
print(sent)
"""


def fdb(host) -> list[str]:
    """The forwarding table of the node's bridge (empty before the first job makes it)."""
    show = ("bridge", "fdb", "show", "br", "lark")
    return sh(*show, netns=host.netns, check=False).stdout.splitlines()


def test_frames_with_other_macs_are_dropped_before_the_bridge_learns_them(sandbox, host):
    """The attacker sends with the gateway's and a victim job's MAC as source: neither is
    ever learnt on its port (checked in the forwarding table all along), the node reaches
    its gateway 10 times out of 10 meanwhile, and the victim's MAC stays on its own port."""
    sandbox.kept_links.add("lark")
    victim, attacker = sandbox.job_name("v"), sandbox.job_name("a")
    started = sandbox.start_agent(
        host, *sandbox.who(victim), *static_flags(f"{SITE_NET}.61"), "--", "sleep", "30"
    )
    try:
        deadline = time.monotonic() + 20
        while f"e_{victim}" not in "".join(fdb(host)):
            assert time.monotonic() < deadline, sandbox.log_file.read_text()
            time.sleep(0.05)
        link = sh("ip", "-o", "link", "show", f"i_{victim}", netns=f"lark-{victim}").stdout
        victim_mac = re.search(r"link/ether (\S+)", link).group(1)
        watch = Watch(host.netns, "bridge", "fdb", "show", "br", "lark")
        agent = root_job(sandbox, host, attacker, static_flags(f"{SITE_NET}.62"), STEAL_MACS,
                         f"i_{attacker}", "4", SITE_MAC, victim_mac)  # fmt: skip
        try:
            time.sleep(1)
            reached = node_reaches_gateway(host)
        finally:
            sent = int(finish(sandbox, agent))
            seen = watch.stop()
        assert sent > 100
        stolen = [
            line
            for text in seen
            for line in text.splitlines()
            if (SITE_MAC in line or victim_mac in line) and f"e_{attacker}" in line
        ]
        assert stolen == [], stolen[:3]
        assert reached == 10
        assert any(line.startswith(f"{victim_mac} dev e_{victim} ") for line in fdb(host))
    finally:
        started.terminate()
        started.communicate(timeout=30)


# -- the site's pool ------------------------------------------------------------------------

EXHAUST = r"""
import ipaddress, os, random, socket, struct, sys, time
sys.path.insert(0, sys.argv[1])
from dhcp import frame, options as opt
from dhcp.message import BOOTREQUEST, Message, encode
ifname, server = sys.argv[2], ipaddress.IPv4Address(sys.argv[3])
first, last = (ipaddress.IPv4Address(a) for a in sys.argv[4:6])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
mac = s.getsockname()[4]
zero, everyone = ipaddress.IPv4Address(0), ipaddress.IPv4Address("255.255.255.255")

def send(kind, chaddr, cid, requested=None):
    o = {opt.MESSAGE_TYPE: bytes([kind]), opt.CLIENT_ID: cid}
    if requested is not None:
        o.update({opt.REQUESTED_ADDRESS: requested.packed, opt.SERVER_ID: server.packed})
    m = Message(op=BOOTREQUEST, xid=random.getrandbits(32), chaddr=chaddr, options=o)
    s.send(frame.build_udp(encode(m), mac, zero, everyone))

sent = 0
for _ in range(4):
    for n in range(int(first), int(last) + 1):
        chaddr = b"\x02" + os.urandom(5)
        cid = b"\x01" + chaddr
        send(opt.MessageType.DISCOVER, chaddr, cid)
        send(opt.MessageType.REQUEST, chaddr, cid, ipaddress.IPv4Address(n))
        sent += 2
    time.sleep(0.2)
print(sent, flush=True)
time.sleep(30)
"""


def test_dhcp_from_a_job_with_other_hardware_addresses_cannot_empty_the_pool(sandbox, host):
    """DISCOVER and REQUEST for every address of the pool, each from a made-up chaddr and
    client id, sent from the job's own MAC: the server allocates none of them, and the next
    honest job gets a lease."""
    pool = (f"{SITE_NET}.100", f"{SITE_NET}.104")
    kea_log, _ = start_kea(sandbox, lifetime=3600, pool=pool)
    sandbox.kept_links.add("lark")
    attacker = sandbox.job_name("a")
    ad = sandbox.tmp / "attacker.ad"
    agent = root_job(sandbox, host, attacker, bridge_flags("--update-ad", str(ad)), EXHAUST,
                     str(ROOT), f"i_{attacker}", SITE_ADDR, *pool)  # fmt: skip
    try:
        assert int(sandbox.read_line(agent.stdout)) == 40
        time.sleep(0.5)  # let the server answer whatever reached it
        honest = sandbox.run_agent(
            host, *sandbox.who(sandbox.job_name("h")), *bridge_flags("--dhcp-timeout", "10"),
            "--", "true",
        )  # fmt: skip
        assert honest.returncode == 0, honest.stderr
    finally:
        agent.terminate()
        agent.communicate(timeout=30)
    allocated = re.findall(r"DHCP4_LEASE_ALLOC \[hwtype=1 (\S+)\]", kea_log.read_text())
    assert len(set(allocated)) == 2, allocated  # the attacker's own lease and the honest job's
    assert read_update_ad(ad)["LarkDHCPMacAddress"] in allocated


# -- forged ARP and DHCP server frames -----------------------------------------------------

FORGE_FRAMES = r"""
import ipaddress, socket, struct, sys, time
sys.path.insert(0, sys.argv[1])
from dhcp import frame
ifname, own = sys.argv[2], ipaddress.IPv4Address(sys.argv[3])
gw, other = ipaddress.IPv4Address(sys.argv[4]), ipaddress.IPv4Address(sys.argv[5])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
mac = s.getsockname()[4]
bcast, zero = b"\xff" * 6, ipaddress.IPv4Address(0)
everyone = ipaddress.IPv4Address("255.255.255.255")

def arp(tag, op, sha, spa):
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha, spa.packed, bcast, gw.packed)
    return bcast + mac + b"\x08\x06" + body + b"LARKTEST" + tag

def udp(tag, src, sport, dport):
    return frame.build_udp(b"LARKTEST" + tag, mac, src, everyone, src_port=sport, dst_port=dport)

def ipv6(tag, icmp_type):  # ICMPv6 from fe80::1 to all nodes (no checksum: never parsed)
    body = bytes([icmp_type, 0, 0, 0]) + b"LARKTEST" + tag
    hdr = struct.pack("!IHBB16s16s", 6 << 28, len(body), 58, 255,
                      b"\xfe\x80" + bytes(13) + b"\x01", b"\xff\x02" + bytes(13) + b"\x01")
    return b"\x33\x33\x00\x00\x00\x01" + mac + b"\x86\xdd" + hdr + body

frames = [
    arp(b"ok", 1, mac, own),  # the control: an honest ARP request must get through
    arp(b"m1", 2, b"\x02\xde\xad\x00\x00\x01", own),  # another MAC as sender
    arp(b"z1", 1, mac, zero),  # an RFC 5227 probe from 0.0.0.0
    arp(b"z2", 2, mac, zero),  # a reply from 0.0.0.0
    arp(b"g1", 2, mac, gw),  # the gateway's address as sender
    arp(b"o1", 2, mac, other),  # another host's address as sender
    udp(b"s1", own, 67, 68),  # a DHCP server's message from the bound address
    udp(b"s2", zero, 67, 68),
    udp(b"s3", own, 67, 67),  # (a relay's)
    udp(b"c1", zero, 68, 67),  # a DHCP client's (the agent speaks for the job)
    udp(b"c2", own, 1234, 68),  # to DHCP clients, from another port
    ipv6(b"r1", 134),  # a router advertisement
]
for _ in range(3):
    for f in frames:
        s.send(f)
    time.sleep(0.1)
print(len(frames))
"""


def test_forged_arp_and_dhcp_server_frames_never_reach_the_site(sandbox, host):
    """ARP with another sender MAC, from 0.0.0.0 or with another address, and DHCP server
    (and client) messages, IPv6 router advertisements: none reaches the site's bridge, but
    the job's honest ARP does."""
    sandbox.kept_links.add("lark")
    name = sandbox.job_name()
    own = f"{SITE_NET}.63"
    site = ("nsenter", f"--net=/run/netns/{sandbox.site}")
    capture = subprocess.Popen(
        [*site, sys.executable, "-c", CAPTURE, "br0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sandbox.read_line(capture.stdout).strip() == "ready"
        agent = root_job(sandbox, host, name, static_flags(own), FORGE_FRAMES, str(ROOT),
                         f"i_{name}", own, SITE_ADDR, host.address)  # fmt: skip
        assert int(finish(sandbox, agent)) == 12
        time.sleep(0.2)  # (the last frames are on their way)
    finally:
        out, _ = capture.communicate("", timeout=30)
    assert json.loads(out.splitlines()[-1]) == ["ok"]
