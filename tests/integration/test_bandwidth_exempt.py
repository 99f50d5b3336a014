"""Networks exempt from a job's bandwidth limit (LARK_BANDWIDTH_EXEMPT) beyond a NAT job's
IPv4, which test_bandwidth.py covers: a bridged job, and a dual-stack NAT66 job whose
exemption of one family leaves the other shaped.

As in test_bandwidth.py: iperf3 both ways for 2 s against a 10 Mbit/s limit, a shaped rate
within 0.8-1.1x the limit, an exempt one far above it (a veth carries Gbit/s). Only rates
are checked, never the qdiscs that make them.
"""

from __future__ import annotations

import pytest
from helpers.agent import read_update_ad
from helpers.bridge import static_flags
from helpers.iperf import received_mbit, start_iperf, within
from sandbox import SITE_ADDR, SITE_ADDR6, SITE_NET, SITE_NET6, sh

IPERF_PORT = 5211
SECONDS = "2"
LIMIT = 10  # Mbit/s
FULL_SPEED = 100  # Mbit/s: ten times the limit, as test_bandwidth.py's exempt test
OTHER_ADDR = f"{SITE_NET}.2"  # a second server on the site LAN, not exempt


def iperf_job(*addresses: str) -> tuple[str, ...]:
    """A job that, for each address in turn, sends to it (egress), then receives from it
    (``-R``: ingress), printing each result as JSON."""
    runs = []
    for address in addresses:
        client = f"iperf3 -c {address} -p {IPERF_PORT} -t {SECONDS} -J"
        runs += [client, f"{client} -R"]
    return ("/bin/sh", "-c", "; ".join(runs))


def run_iperf(sandbox, host, addresses: tuple[str, ...], *flags: str):
    """A job limited to ``LIMIT`` that runs iperf3 against each address: {address: (from the
    job, towards the job) in Mbit/s}, and its update ad."""
    ad = sandbox.tmp / "j1.update.ad"
    result = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--update-ad",
        str(ad),
        "--bandwidth-limit",
        str(LIMIT),
        *flags,
        "--",
        *iperf_job(*addresses),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rates = received_mbit(result.stdout)
    assert len(rates) == 2 * len(addresses), result.stdout[-500:]
    found = {a: (rates[2 * i], rates[2 * i + 1]) for i, a in enumerate(addresses)}
    print({a: f"{out:.1f}/{into:.1f} Mbit/s out/in" for a, (out, into) in found.items()})
    return found, read_update_ad(ad)


def test_a_bridged_job_reaches_an_exempt_server_at_full_speed_and_others_shaped(sandbox, host):
    sandbox.kept_links.add("lark")  # (the site bridge stays, as on a node)
    sh("ip", "addr", "add", f"{OTHER_ADDR}/24", "dev", "br0", netns=sandbox.site)
    for address in (SITE_ADDR, OTHER_ADDR):
        start_iperf(sandbox, address, IPERF_PORT)
    rates, ad = run_iperf(
        sandbox,
        host,
        (SITE_ADDR, OTHER_ADDR),
        *static_flags(),
        "--bandwidth-exempt",
        f"{SITE_ADDR}/32",
    )
    out, into = rates[SITE_ADDR]
    assert out > FULL_SPEED and into > FULL_SPEED, (out, into)
    out, into = rates[OTHER_ADDR]
    assert within(out, LIMIT) and within(into, LIMIT), (out, into)
    assert ad["LarkNetworkType"] == "bridge" and ad["LarkBandwidthLimitMbit"] == LIMIT


@pytest.mark.parametrize(
    ("exempt", "full", "shaped"),
    [
        (f"{SITE_NET6}::/64", SITE_ADDR6, SITE_ADDR),
        # all of IPv4: its filter matches any packet it is given, so only the filter's
        # protocol keeps IPv6 off it (a site prefix would not, byte for byte, match IPv6)
        ("0.0.0.0/0", SITE_ADDR, SITE_ADDR6),
    ],
    ids=["ipv6-exempt", "ipv4-exempt"],
)
def test_a_dual_stack_jobs_exempt_family_is_full_speed_and_the_other_shaped(
    sandbox, exempt, full, shaped
):
    host = sandbox.add_host(ipv6=True)
    for address in (SITE_ADDR, SITE_ADDR6):
        start_iperf(sandbox, address, IPERF_PORT)
    rates, ad = run_iperf(
        sandbox, host, (full, shaped), "--ipv6", "on", "--bandwidth-exempt", exempt
    )
    out, into = rates[full]
    assert out > FULL_SPEED and into > FULL_SPEED, (out, into)
    out, into = rates[shaped]
    assert within(out, LIMIT) and within(into, LIMIT), (out, into)
    assert "LarkInnerAddressIPv6" in ad and ad["LarkBandwidthLimitMbit"] == LIMIT
