"""Promises of the README about bridge mode (and the callout scripts) that no other test held
the agent to (issue 21): what a job's port drops, the bridge Lark makes, the lease's
attributes and routes, a NAK and the search that follows, the scripts' environment."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from helpers import hostile_dhcp
from helpers.agent import python_job, read_update_ad
from helpers.bridge import CAPTURE, bridge_flags, static_flags
from helpers.dhcp import start_dnsmasq
from helpers.scripts import recorder
from sandbox import SITE_ADDR, SITE_NET, sh, start_kea

ROOT = Path(__file__).resolve().parents[2]

# -- frames a job's port lets on --------------------------------------------------------------

# A root job sends, from its own MAC, an honest ARP request and an honest IPv4 datagram (both
# must reach the site), then the same datagram in other clothes and frames of other kinds.
OTHER_FRAMES = r"""
import ipaddress, socket, struct, sys, time
sys.path.insert(0, sys.argv[1])
from dhcp import frame
ifname, own, gw = sys.argv[2], ipaddress.IPv4Address(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
mac = s.getsockname()[4]
bcast, everyone = b"\xff" * 6, ipaddress.IPv4Address("255.255.255.255")

def arp(tag):
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, own.packed, bytes(6),
                       ipaddress.IPv4Address(gw).packed)
    return bcast + mac + b"\x08\x06" + body + b"LARKTEST" + tag

def udp(tag):
    return frame.build_udp(b"LARKTEST" + tag, mac, own, everyone, src_port=5000, dst_port=9)

def tagged(tpid, f):  # the same frame with a VLAN tag (VID 5) before its ethertype
    return f[:12] + struct.pack("!HH", tpid, 5) + f[12:]

def ipv6(tag):  # UDP from a link-local address to all nodes (checksum 0: never parsed)
    body = struct.pack("!HHHH", 5000, 9, 18, 0) + b"LARKTEST" + tag
    hdr = struct.pack("!IHBB16s16s", 6 << 28, len(body), 17, 64,
                      b"\xfe\x80" + bytes(13) + b"\x01", b"\xff\x02" + bytes(13) + b"\x01")
    return b"\x33\x33\x00\x00\x00\x01" + mac + b"\x86\xdd" + hdr + body

def bad_header(tag):  # IPv4 from its own address whose header length (16 bytes) is wrong
    f = bytearray(udp(tag))
    f[14] = 0x44
    return bytes(f)

payload = b"LARKTEST"
frames = [
    arp(b"ok"),  # the controls: these must get through
    udp(b"ip"),
    tagged(0x8100, udp(b"v1")),  # 802.1Q
    tagged(0x88A8, udp(b"v2")),  # 802.1ad (QinQ)
    ipv6(b"6u"),  # IPv6 from a job without IPv6
    bcast + mac + b"\x88\xb5" + payload + b"x1",  # a local experimental ethertype
    bcast + mac + b"\x88\x63" + payload + b"p1",  # PPPoE discovery
    bcast + mac + struct.pack("!H", 13) + b"\xaa\xaa\x03" + payload + b"l1",  # 802.3 + LLC
    bad_header(b"h1"),
]
for _ in range(3):
    for f in frames:
        s.send(f)
    time.sleep(0.1)
print(len(frames))
"""


def test_a_jobs_port_passes_only_its_arp_and_ipv4(sandbox, host):
    """README, Bridge mode: "Only frames from the job's MAC get through; ARP ...; IPv4 only
    from the job's address, with a valid header ...; Everything else (IPv6 ..., VLAN tags,
    STP and other link-local frames) is dropped", and "Without IPv6 a bridged job's IPv6 is
    ... dropped at its port". A job root in its namespace sends each kind; the site sees
    only its ARP and its IPv4."""
    sandbox.kept_links.add("lark")
    name = sandbox.job_name()
    own = f"{SITE_NET}.64"
    site = ("nsenter", f"--net=/run/netns/{sandbox.site}")
    capture = subprocess.Popen(
        [*site, sys.executable, "-c", CAPTURE, "br0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sandbox.read_line(capture.stdout).strip() == "ready"
        agent = sandbox.start_agent(
            host,
            "--user", "root", "--allow-root", "--name", name, *static_flags(own),
            "--", *python_job(OTHER_FRAMES, str(ROOT), f"i_{name}", own, SITE_ADDR),
        )  # fmt: skip
        out, err = agent.communicate(timeout=60)
        assert agent.returncode == 0, err + sandbox.log_file.read_text()
        assert int(out) == 9
        time.sleep(0.2)  # (the last frames are on their way)
    finally:
        out, _ = capture.communicate("", timeout=30)
    assert json.loads(out.splitlines()[-1]) == ["ip", "ok"]


# -- the bridge Lark makes --------------------------------------------------------------------


def test_the_bridge_is_made_with_the_devices_mac_no_stp_and_no_forward_delay(sandbox, host):
    """README, Bridge mode: "Lark makes it from LARK_BRIDGE_DEVICE (forward delay 0, no
    STP, the device's MAC and MTU)"."""
    sandbox.kept_links.add("lark")
    before = sh("ip", "-d", "link", "show", "uplink", netns=host.netns).stdout
    mac = re.search(r"link/ether (\S+)", before).group(1)
    mtu = re.search(r" mtu (\d+)", before).group(1)
    r = sandbox.run_agent(host, *sandbox.who(), *static_flags(), "--", "true")
    assert r.returncode == 0, r.stderr
    bridge = sh("ip", "-d", "link", "show", "lark", netns=host.netns).stdout
    assert re.search(r"link/ether (\S+)", bridge).group(1) == mac, bridge
    assert re.search(r" mtu (\d+)", bridge).group(1) == mtu, bridge
    assert " forward_delay 0 " in bridge, bridge
    assert " stp_state 0 " in bridge, bridge


# -- a lease's attributes and routes ----------------------------------------------------------


def routes(table: str) -> set[tuple[str, str, str]]:
    """/proc/net/route's lines as (interface, destination/prefix, gateway)."""

    def addr(field: str) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(int.from_bytes(bytes.fromhex(field), "little"))

    found = set()
    for line in table.splitlines()[1:]:
        iface, dest, gateway, _flags, _ref, _use, _metric, mask = line.split()[:8]
        net = ipaddress.IPv4Network(f"{addr(dest)}/{addr(mask)}")
        found.add((iface, str(net), str(addr(gateway))))
    return found


def test_a_lease_gives_its_classless_routes_host_name_start_and_mac(sandbox, host):
    """README, Bridge mode: the lease's "address, mask, routes (classless routes when given,
    else the router) go on the job's interface"; the update ad's ``LarkHostname`` (the
    server's name for the job), ``LarkDHCPLeaseStart`` (when it was leased) and
    ``LarkDHCPMacAddress`` (the job's MAC, the one the server leased to)."""
    start_dnsmasq(
        sandbox,
        # RFC 3442: a route via a LAN router, an on-link one (0.0.0.0), and the default
        "--dhcp-option=121,10.229.0.0/16,10.77.0.5,10.230.0.0/16,0.0.0.0,0.0.0.0/0,10.77.0.1",
        "--dhcp-option=12,jobhost",
    )
    sandbox.kept_links.add("lark")
    name = sandbox.job_name()
    ad_path = sandbox.tmp / "lease.ad"
    before = time.time()
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--update-ad",
        str(ad_path),
        *bridge_flags("--dhcp-timeout", "15"),
        "--",
        "/bin/sh",
        "-c",
        f"ip -o link show dev i_{name}; cat /proc/net/route",
    )
    after = time.time()
    assert r.returncode == 0, r.stderr + sandbox.log_file.read_text()
    link, table = r.stdout.split("\n", 1)
    mac = re.search(r"link/ether (\S+)", link).group(1)
    ad = read_update_ad(ad_path)
    assert ad["LarkDHCPServer"] == SITE_ADDR
    assert ad["LarkDHCPMacAddress"] == mac
    assert ad["LarkHostname"] == "jobhost"
    assert int(before) <= ad["LarkDHCPLeaseStart"] <= after
    address = ad["LarkInnerAddressIPv4"]
    assert f"DHCPACK(br0) {address} {mac} " in (sandbox.tmp / "dnsmasq.log").read_text()
    job = f"i_{name}"
    assert {
        (job, "10.229.0.0/16", "10.77.0.5"),
        (job, "10.230.0.0/16", "0.0.0.0"),
        (job, "0.0.0.0/0", SITE_ADDR),
        (job, f"{SITE_NET}.0/24", "0.0.0.0"),
    } == routes(table)


# -- a NAK, and the search after it -----------------------------------------------------------


def states_until(ad_path: Path, wanted: str, timeout: float, seen: list[str]) -> dict:
    """Poll the update ad until its ``LarkDHCPState`` is ``wanted``; every state seen is
    appended to ``seen`` (once per change)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ad = read_update_ad(ad_path)
        except Exception:  # written atomically, but be patient with a first write
            ad = {}
        state = ad.get("LarkDHCPState")
        if state is not None and (not seen or seen[-1] != state):
            seen.append(state)
        if state == wanted:
            return ad
        assert time.monotonic() < deadline, (wanted, seen)
        time.sleep(0.05)


def job_ipv4(name: str) -> str:
    return sh("ip", "-o", "-4", "addr", "show", "dev", f"i_{name}", netns=f"lark-{name}").stdout


def test_a_nak_takes_the_address_away_and_the_job_searches_for_another(sandbox, host):
    """README, Bridge mode: "on expiry or a NAK the job loses the address while Lark asks for
    another one. Each change is logged and published (LarkDHCPState: bound, lost (expired),
    searching, ...)". The site's server goes and another one NAKs every REQUEST: the
    job's rebinding is NAKed (its renewal, to the server it asked, too, but by another
    server, which does not count), the address goes, a search with no lease is
    ``searching``, and a server that gives one makes the job ``bound`` again."""
    _, kea = start_kea(sandbox, lifetime=6)  # T1 2 s, T2 3 s
    sandbox.kept_links.add("lark")
    name = sandbox.job_name()
    ad_path = sandbox.tmp / "nak.ad"
    agent = sandbox.start_agent(
        host,
        *sandbox.who(),
        "--update-ad",
        str(ad_path),
        *bridge_flags("--accounting-interval", "0.1", "--dhcp-timeout", "3"),
        "--",
        "sleep",
        "60",
    )
    seen: list[str] = []
    try:
        first = states_until(ad_path, "bound", 15, seen)["LarkInnerAddressIPv4"]
        assert f" {first}/" in job_ipv4(name)
        kea.terminate()
        kea.wait(10)
        nak = hostile_dhcp.start(sandbox, "nak")  # and offers nothing
        lost = states_until(ad_path, "lost (nak)", 10, seen)
        assert "LarkInnerAddressIPv4" not in lost, lost
        assert job_ipv4(name) == ""
        states_until(ad_path, "searching", 10, seen)
        assert job_ipv4(name) == ""
        assert nak.stop() == 0
        start_kea(sandbox, lifetime=6, tag="kea-back")
        again = states_until(ad_path, "bound", 20, seen)["LarkInnerAddressIPv4"]
        assert f" {again}/" in job_ipv4(name)
    finally:
        agent.terminate()
        _, err = agent.communicate(timeout=30)
    assert agent.returncode == 128 + 15, err
    assert seen[:3] == ["bound", "lost (nak)", "searching"] and seen[-1] == "bound", seen
    log = sandbox.log_file.read_text()
    assert f"{name}: DHCP lease on {first} lost (nak)" in log


# -- the callout scripts' environment ---------------------------------------------------------


def script_env(sandbox, name: str) -> tuple[list[str], dict[str, str]]:
    """A recorder's arguments and environment (less the PWD its shell exports itself)."""
    [args_file] = sandbox.tmp.glob(f"{name}.*.args")
    env_file = Path(str(args_file).removesuffix(".args") + ".env")
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    env.pop("PWD", None)
    return args_file.read_text().splitlines(), env


def test_callout_scripts_get_a_minimal_environment_and_no_external_address_on_a_bridge(
    sandbox, host
):
    """README, Callout scripts: "a minimal environment (PATH, LARK_JOB_NAME,
    LARK_NETWORK_TYPE = nat or bridge, LARK_FIREWALL_BACKEND, ...)" and "In bridge mode the
    external address is empty"."""
    record = 'env > "$out.env"'
    base = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LARK_FIREWALL_BACKEND": "nftables",
        "LARK_IPTABLES": "iptables",
    }
    for mode, flags in (("nat", ()), ("bridge", static_flags())):
        if mode == "bridge":
            sandbox.kept_links.add("lark")
        name = sandbox.job_name(mode)
        create = recorder(sandbox, f"create-{mode}", record)
        delete = recorder(sandbox, f"delete-{mode}", record)
        ad_path = sandbox.tmp / f"{mode}.ad"
        r = sandbox.run_agent(
            host,
            *sandbox.who(name),
            *flags,
            "--update-ad",
            str(ad_path),
            "--create-script",
            str(create),
            "--delete-script",
            str(delete),
            "--",
            "true",
            env={"LARK_LEAK": "agent", "HOME": "/root"},  # the agent's own: never the scripts'
        )
        assert r.returncode == 0, r.stderr
        ad = read_update_ad(ad_path)
        inner = ad["LarkInnerAddressIPv4"]
        external = ad["LarkExternalAddressIPv4"] if mode == "nat" else ""
        if mode == "bridge":
            assert "LarkExternalAddressIPv4" not in ad, ad
        expected = {**base, "LARK_JOB_NAME": name, "LARK_NETWORK_TYPE": mode}
        args, env = script_env(sandbox, f"create-{mode}")
        assert args == [external, inner, f"LARK_{name}", f"e_{name}"]
        assert env == expected
        args, env = script_env(sandbox, f"delete-{mode}")
        assert args == [f"LARK_{name}", f"e_{name}", inner]
        assert env == expected
