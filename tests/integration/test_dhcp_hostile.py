"""Real peers (issue 16): a hostile DHCP responder on the LAN beside the real server.

The responder (tests/helpers/hostile_dhcp.py) runs in the site namespace and answers the
client before the real server can: dnsmasq waits a second before each OFFER
(``--dhcp-reply-delay=1``, as on the LAN of the issue), and Kea answers from behind a slow
link (tests/helpers/slow_link.py), so its OFFERs and ACKs come after the responder's.
The client is seen only through its black-box interfaces: ``lark-agent dhcp-test`` on a
throwaway port of the site bridge (its JSON), and a bridged job run by the agent (its
update ad). Each test asserts that the lease is the real server's (an address of its pool,
its server id, its lease time and router) and what the responder recorded of the
client's messages: which offers it took. The client of a22d041 (first OFFER taken,
REQUESTed four times over about 15 s) failed the black-hole tests and took OFFERs without a
lease time or of 127/8 and 240/4; each test was broken once against the client it guards.
"""

from __future__ import annotations

import ipaddress
import json

import pytest
from helpers import hostile_dhcp
from helpers.agent import python_job, read_update_ad
from helpers.bridge import bridge_flags
from helpers.dhcp import POOL, start_dnsmasq
from helpers.slow_link import SERVER as SLOW_SERVER
from helpers.slow_link import slow_server
from sandbox import SITE_ADDR, Host, start_kea

DNSMASQ = SITE_ADDR  # dnsmasq's server id: the site bridge's address
SLOW_DELAY = 0.3  # Kea's link: every frame of Kea's reaches the LAN this late
KEA_LEASE_S = 60


@pytest.fixture
def hostile(sandbox):
    """``hostile(*personas)`` starts the responder in the site namespace (one per call, each
    with its own record); on the way out each must stop on SIGTERM, cleanly and at once."""
    started: list[hostile_dhcp.Running] = []

    def start(*names: str) -> hostile_dhcp.Running:
        running = hostile_dhcp.start(sandbox, *names, tag=f"hostile{len(started)}")
        started.append(running)
        return running

    yield start
    for running in started:
        assert running.stop() == 0, "the hostile responder did not stop cleanly"
        assert running.events("stopped"), "the hostile responder did not close its record"


def dnsmasq_slower(sandbox) -> str:
    """dnsmasq on the site bridge, one second late with every OFFER; its server id.

    Authoritative, as a site's only server is set up: it NAKs every REQUEST that names
    another server ("wrong server-ID"). Its reply delay blocks its one loop, so a REQUEST
    (or a second DISCOVER) that comes during the delay is answered only after it: its ACK
    can come more than a second after the REQUEST, and its NAKs of the REQUESTs to the
    black hole come when the client may already be asking dnsmasq itself, in the same
    transaction."""
    start_dnsmasq(sandbox, "--dhcp-reply-delay=1")
    return DNSMASQ


def kea_behind_a_slow_link(sandbox, lifetime: int = KEA_LEASE_S) -> str:
    """Kea behind the slow link: each of its OFFERs and ACKs comes late; its server id."""
    start_kea(sandbox, lifetime=lifetime, netns=slow_server(sandbox, SLOW_DELAY), iface="lan")
    return SLOW_SERVER


REAL = {"dnsmasq": (dnsmasq_slower, 120), "kea": (kea_behind_a_slow_link, KEA_LEASE_S)}


def dhcp_test(sandbox, *flags: str) -> tuple[int, dict | str]:
    """``lark-agent dhcp-test --bridge br0 --json`` in the site namespace: (status, the lease
    it printed, or its stderr)."""
    site = Host(sandbox.site, SITE_ADDR)
    r = sandbox.run_agent(site, "--bridge", "br0", "--json", *flags, verb="dhcp-test", timeout=90)
    if r.returncode != 0:
        return r.returncode, r.stderr.strip()
    return 0, json.loads(r.stdout.splitlines()[0])


def outcome(status: int, lease: dict | str) -> str:
    """What dhcp-test ended with, for an assertion's message."""
    return f"dhcp-test printed {lease}" if status == 0 else f"dhcp-test failed ({status}): {lease}"


def assert_real_lease(values: dict, server: str, lifetime: int) -> None:
    """The lease is the real server's: its pool, its id, its lease time, its router."""
    address = ipaddress.IPv4Address(values["LarkInnerAddressIPv4"])
    assert POOL[0] <= address <= POOL[1], values
    assert values["LarkDHCPServer"] == server, values
    assert values["LarkDHCPLeaseLifetime"] == lifetime, values
    assert values["LarkGateway"] == SITE_ADDR and values["LarkSubnetMask"] == "255.255.255.0"


def requests_before_the_real_one(responder, persona: str, real: str) -> tuple[int, bool]:
    """(REQUESTs that took ``persona``'s offer before the client's first REQUEST of the real
    server's, whether there was such a REQUEST of the real server's at all)."""
    taken = 0
    for request in responder.requests():
        if request["server_id"] == real:
            return taken, True
        if request in responder.named(persona):
            taken += 1
    return taken, False


def gave_up_quickly_on_the_black_hole(responder, real: str) -> None:
    """The issue's figure, structurally: the black hole's OFFER came first, and the client
    REQUESTed it at most twice before it REQUESTed the real server's offer."""
    assert responder.offered_first("black-hole", real), (
        "the black hole's OFFER was not first: this test proves nothing\n" + responder.summary()
    )
    taken, moved_on = requests_before_the_real_one(responder, "black-hole", real)
    assert moved_on and taken <= 2, (
        f"{taken} REQUESTs to the black hole "
        + ("before one to the real server" if moved_on else "and none to the real server")
        + "; what the LAN heard (seconds from the first DISCOVER):\n"
        + responder.summary()
    )


# -- a) a black hole ----------------------------------------------------------------------


@pytest.mark.parametrize("server", ["dnsmasq", "kea"])
def test_a_black_hole_is_given_up_within_two_requests(sandbox, hostile, server):
    start_server, lifetime = REAL[server]
    real = start_server(sandbox)
    black_hole = hostile("black-hole")
    status, lease = dhcp_test(sandbox, "--timeout", "20")
    gave_up_quickly_on_the_black_hole(black_hole, real)
    assert status == 0, lease
    assert_real_lease(lease, real, lifetime)


def test_a_bridged_job_with_a_black_hole_on_the_lan_gets_the_real_lease(sandbox, host, hostile):
    real = kea_behind_a_slow_link(sandbox)
    sandbox.kept_links.add("lark")
    black_hole = hostile("black-hole")
    ad_path = sandbox.tmp / "job.ad"
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--update-ad",
        str(ad_path),
        *bridge_flags("--dhcp-timeout", "20"),
        "--",
        "true",
        timeout=90,
    )
    gave_up_quickly_on_the_black_hole(black_hole, real)
    assert r.returncode == 0, r.stderr
    ad = read_update_ad(ad_path)
    assert_real_lease(ad, real, KEA_LEASE_S)


# -- b) a foreign NAK ---------------------------------------------------------------------


def test_a_nak_from_a_server_not_chosen_is_ignored(sandbox, hostile):
    real = kea_behind_a_slow_link(sandbox)
    nak = hostile("nak")
    status, lease = dhcp_test(sandbox, "--timeout", "20")
    assert status == 0, f"{lease}\n{nak.summary()}"
    assert_real_lease(lease, real, KEA_LEASE_S)
    # the NAK came before the real server's ACK, every time the client asked
    naks = nak.events("sent", persona="nak", kind="NAK")
    acks = nak.events("real", kind="ACK", server_id=real)
    assert naks and acks and naks[0]["t"] < acks[0]["t"], nak.summary()
    assert len(naks) == len(nak.requests()), nak.summary()


RENEWING = """
import sys, time
time.sleep(float(sys.argv[1]))
"""


def test_a_bridged_job_keeps_its_lease_through_foreign_naks_on_renewal(sandbox, host, hostile):
    """Every REQUEST, the first one and each renewal, is NAKed by a server the client did
    not choose before the real ACK comes: the job keeps its one address throughout."""
    real = kea_behind_a_slow_link(sandbox, lifetime=6)
    sandbox.kept_links.add("lark")
    nak = hostile("nak")
    ad_path = sandbox.tmp / "job.ad"
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--update-ad",
        str(ad_path),
        *bridge_flags("--dhcp-timeout", "20", "--accounting-interval", "0.2"),
        "--",
        *python_job(RENEWING, "6"),
        timeout=90,
    )
    assert r.returncode == 0, f"{r.stderr}\n{nak.summary()}"
    ad = read_update_ad(ad_path)
    assert_real_lease(ad, real, 6)
    assert ad["LarkDHCPRenewals"] >= 2 and ad["LarkDHCPState"] == "bound", ad
    requests = nak.requests()
    assert len(requests) >= 3, nak.summary()  # the first, then renewals
    assert {r["requested"] or r["ciaddr"] for r in requests} == {ad["LarkInnerAddressIPv4"]}
    assert len(nak.events("sent", persona="nak")) == len(requests)


# -- c) replies for another transaction or another client ----------------------------------


def test_offers_and_acks_for_another_transaction_or_client_are_ignored(sandbox, hostile):
    real = kea_behind_a_slow_link(sandbox)
    names = ("other-xid", "other-chaddr", "longer-chaddr", "other-client-id")
    responder = hostile(*names, "race-acks")
    status, lease = dhcp_test(sandbox, "--timeout", "20")
    assert status == 0, f"{lease}\n{responder.summary()}"
    for name in names:
        assert not responder.named(name), f"took the OFFER of {name}\n{responder.summary()}"
    # the racing ACKs (lease time 7777 s, router .21) came before the real one and lost
    assert_real_lease(lease, real, KEA_LEASE_S)
    raced = responder.events("sent", persona="race-acks")
    acks = responder.events("real", kind="ACK", server_id=real)
    assert len(raced) == 4 and acks and raced[-1]["t"] < acks[0]["t"], responder.summary()


# -- d) frames that are not an OFFER, and OFFERs whose lease cannot be used -----------------

NOT_AN_OFFER = [name for name in hostile_dhcp.LIES if name not in hostile_dhcp.BAD_PARAMETERS]


@pytest.mark.parametrize(
    "lie",
    NOT_AN_OFFER,
)
def test_a_frame_that_is_not_an_offer_is_never_taken(sandbox, hostile, lie):
    real = dnsmasq_slower(sandbox)
    liar = hostile(lie)
    status, lease = dhcp_test(sandbox, "--timeout", "20")
    assert liar.events("sent", persona=lie, kind="OFFER"), liar.summary()
    assert not liar.named(lie), (
        f"the client took the {lie} OFFER; {outcome(status, lease)}\n{liar.summary()}"
    )
    assert status == 0, f"{lease}\n{liar.summary()}"
    assert_real_lease(lease, real, 120)


@pytest.mark.parametrize("lie", hostile_dhcp.BAD_PARAMETERS)
def test_an_offer_whose_lease_cannot_be_used_is_given_up_quickly(sandbox, hostile, lie):
    """A client may take such an OFFER (it reads the lease in the ACK), but the ACK lies
    the same way: the client must give that server up as it does a black hole."""
    real = dnsmasq_slower(sandbox)
    liar = hostile(lie)
    status, lease = dhcp_test(sandbox, "--timeout", "20")
    taken, moved_on = requests_before_the_real_one(liar, lie, real)
    assert moved_on and taken <= 2, f"{taken} REQUESTs to the {lie} server\n{liar.summary()}"
    assert status == 0, f"{lease}\n{liar.summary()}"
    assert_real_lease(lease, real, 120)


def test_a_bridged_job_gets_the_real_lease_among_every_liar(sandbox, host, hostile):
    """All the liars at once, and the black hole, against a bridged job."""
    real = kea_behind_a_slow_link(sandbox)
    sandbox.kept_links.add("lark")
    responder = hostile(*hostile_dhcp.LIES, "black-hole")
    ad_path = sandbox.tmp / "job.ad"
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--update-ad",
        str(ad_path),
        *bridge_flags("--dhcp-timeout", "25"),
        "--",
        "true",
        timeout=90,
    )
    for lie in NOT_AN_OFFER:
        assert not responder.named(lie), f"the job's client took the {lie} OFFER"
    assert r.returncode == 0, f"{r.stderr}\n{responder.summary()}"
    assert_real_lease(read_update_ad(ad_path), real, KEA_LEASE_S)


# -- what a lying server's lease says is never taken as it is --------------------------------


def test_control_characters_in_a_lease_never_reach_the_ad(sandbox, host, hostile):
    """On a LAN where a server whose host name and domain carry control characters is the
    only one, dhcp-test and a bridged job take its lease; what they publish has none."""
    nasty = hostile("nasty-text")
    status, lease = dhcp_test(sandbox, "--timeout", "10")
    assert status == 0, lease
    assert lease["LarkDHCPServer"] == hostile_dhcp.PERSONAS["nasty-text"].server_id
    assert lease["LarkHostname"].isprintable() and "evil" in lease["LarkHostname"], lease
    sandbox.kept_links.add("lark")
    ad_path = sandbox.tmp / "job.ad"
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--update-ad",
        str(ad_path),
        *bridge_flags("--dhcp-timeout", "10"),
        "--",
        "true",
        timeout=60,
    )
    assert r.returncode == 0, f"{r.stderr}\n{nasty.summary()}"
    text = ad_path.read_text()
    ad = read_update_ad(ad_path)
    assert ad["LarkDHCPServer"] == hostile_dhcp.PERSONAS["nasty-text"].server_id
    assert "LarkInjected" not in ad and "LarkDomainInjected" not in ad, text
    assert all(ch.isprintable() for line in text.splitlines() for ch in line), text
    assert ad["LarkHostname"].isprintable() and "evil" in ad["LarkHostname"], ad
