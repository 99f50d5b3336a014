"""Bridge mode end to end: the job on the site LAN with its own address, counted, unspoofable."""

from __future__ import annotations

from sandbox import FILE_SIZES, HTTP_PORT, SITE_ADDR, SITE_NET, sh
from test_nat import FETCH_JOB, PY, read_update_ad

STATIC = f"{SITE_NET}.60"


def bridge_flags(*extra: str) -> tuple[str, ...]:
    return ("--network-type", "bridge", "--bridge-device", "uplink", *extra)


def static_flags(address: str = STATIC) -> tuple[str, ...]:
    return bridge_flags(
        "--address-type", "static", "--static-address", f"{address}/24", "--gateway", SITE_ADDR
    )


def test_a_static_job_downloads_through_a_bridge_made_from_the_uplink(sandbox, host):
    sandbox.kept_links.add("lark")
    ad_path = sandbox.tmp / "static.ad"
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--update-ad",
        str(ad_path),
        *static_flags(),
        "--",
        *FETCH_JOB,
        sandbox.url("1m"),
    )
    assert r.returncode == 0, r.stderr + sandbox.log_file.read_text()
    assert r.stdout.strip() == str(FILE_SIZES["1m"])
    ad = read_update_ad(ad_path)
    assert ad["LarkNetworkType"] == "bridge" and ad["LarkAddressType"] == "static"
    assert ad["LarkInnerAddressIPv4"] == STATIC and ad["LarkGateway"] == SITE_ADDR
    assert ad["LarkBridgeName"] == "lark"
    payload = FILE_SIZES["1m"]
    assert payload <= ad["NetworkIncoming"] <= payload * 1.06
    assert 0 < ad["NetworkOutgoing"] < payload * 0.05
    # the host kept its address and its way to the site, now through the bridge
    addrs = sh("ip", "-o", "-4", "addr", "show", "dev", "lark", netns=host.netns).stdout
    assert f"{host.address}/24" in addrs
    route = sh("ip", "route", "show", "default", netns=host.netns).stdout
    assert f"via {SITE_ADDR} dev lark" in route
    sandbox.wait_for_port(host.netns, SITE_ADDR, HTTP_PORT, timeout=2)


SPOOF = """
import socket, subprocess, sys
site, port, ifname = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def attempt(src=None):
    s = socket.socket()
    s.settimeout(1.0)
    try:
        if src:
            s.bind((src, 0))
        s.connect((site, port))
        return "ok"
    except OSError:
        return "blocked"
    finally:
        s.close()

print(attempt())
subprocess.run(["ip", "addr", "add", sys.argv[4] + "/24", "dev", ifname], check=True)
print(attempt(sys.argv[4]))
subprocess.run(["ip", "addr", "del", sys.argv[4] + "/24", "dev", ifname], check=True)
subprocess.run(["ip", "link", "set", ifname, "address", "02:11:22:33:44:55"], check=True)
subprocess.run(["ip", "neigh", "flush", "all"], check=True)
print(attempt())
"""


def test_a_job_cannot_send_from_another_address_or_mac(sandbox, host):
    """Even a job running as root in its namespace (which may change its address and MAC)
    gets nothing out but what is its own."""
    sandbox.kept_links.add("lark")
    name = sandbox.job_name()
    r = sandbox.run_agent(
        host,
        "--user",
        "root",
        "--allow-root",
        "--name",
        name,
        *static_flags(),
        "--",
        PY,
        "-I",
        "-c",
        SPOOF,
        SITE_ADDR,
        str(HTTP_PORT),
        f"i_{name}",
        f"{SITE_NET}.61",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "blocked", "blocked"]


SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    s.sendto(b"x" * 1000, (sys.argv[1], 9))
"""


def test_bridge_accounting_counts_ip_bytes_exactly(sandbox, host):
    sandbox.kept_links.add("lark")
    ad_path = sandbox.tmp / "udp.ad"
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--update-ad",
        str(ad_path),
        *static_flags(),
        "--",
        PY,
        "-I",
        "-c",
        SEND,
        SITE_ADDR,
    )
    assert r.returncode == 0, r.stderr
    ad = read_update_ad(ad_path)
    assert ad["NetworkOutgoing"] == 3 * (20 + 8 + 1000)  # IPv4 + UDP headers, no Ethernet
