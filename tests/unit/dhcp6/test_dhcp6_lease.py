"""What an ADVERTISE or REPLY must hold to be acted on, and the Lease a REPLY gives."""

from __future__ import annotations

import ipaddress
import math

import pytest

from dhcp6 import options as opt
from dhcp6.lease import (
    Advert,
    Lease,
    LeasedAddress,
    Refused,
    Rejected,
    advert_from,
    check_reply,
    lease_from_reply,
    sol_max_rt,
)
from dhcp6.message import Message

MT = opt.MessageType
IP6 = ipaddress.IPv6Address
CLIENT = bytes.fromhex("0003000102aabbccddee")
SERVER = bytes.fromhex("000300010200000000fe")
ADDR, ADDR2 = IP6("2001:db8:77::50"), IP6("2001:db8:77::51")
INF = opt.INFINITY


def ia(*addresses: opt.IaAddress, t1=100, t2=160, iaid=7, status=None) -> opt.IaNa:
    o: tuple[opt.Option, ...] = addresses
    if status is not None:
        o += (opt.StatusCode(status, b"sorry"),)
    return opt.IaNa(iaid, t1, t2, o)


def addr(a=ADDR, preferred=200, valid=300, status=None) -> opt.IaAddress:
    o = () if status is None else (opt.StatusCode(status),)
    return opt.IaAddress(a, preferred, valid, o)


def reply(*options: opt.Option, kind=MT.REPLY, xid=5) -> Message:
    return Message(kind, xid, (opt.ServerId(SERVER), opt.ClientId(CLIENT), *options))


def test_a_reply_gives_its_lease():
    msg = reply(
        ia(addr()),
        opt.DnsServers((IP6("2001:db8::53"), IP6("fe80::53"), IP6("ff02::1"))),
        opt.DomainList(("example.com", "bad_-.name", "-bad.example", "lab.example")),
    )
    lease = lease_from_reply(msg, iaid=7, start=10.0)
    assert lease == Lease(
        addresses=(LeasedAddress(ADDR, 200.0, 300.0),),
        iaid=7,
        server_duid=SERVER,
        t1_s=100.0,
        t2_s=160.0,
        start=10.0,
        dns_servers=(IP6("2001:db8::53"), IP6("fe80::53")),  # no multicast resolver
        domains=("example.com", "lab.example"),  # only host-name text reaches resolv.conf
    )
    assert (lease.address, lease.renew_at, lease.rebind_at, lease.expires_at) == (
        ADDR,
        110.0,
        170.0,
        310.0,
    )


def test_check_reply_rules_of_section_16():
    assert check_reply(reply(), xid=5, client_duid=CLIENT) == SERVER
    # the texts are fixed words: a client counts its drops by them
    with pytest.raises(Rejected, match=r"^another transaction$"):
        check_reply(reply(), xid=6, client_duid=CLIENT)
    with pytest.raises(Rejected, match=r"^no server identifier$"):
        check_reply(Message(MT.REPLY, 5, (opt.ClientId(CLIENT),)), xid=5, client_duid=CLIENT)
    with pytest.raises(Rejected, match=r"^no client identifier$"):
        check_reply(Message(MT.REPLY, 5, (opt.ServerId(SERVER),)), xid=5, client_duid=CLIENT)
    with pytest.raises(Rejected, match=r"^another client's identifier$"):
        check_reply(reply(), xid=5, client_duid=SERVER)


@pytest.mark.parametrize(
    ("t1", "t2", "preferred", "valid", "expected"),
    [
        (0, 0, 200, 300, (100.0, 160.0)),  # 14.2, 21.4: 0.5 and 0.8 of preferred
        (0, 0, 0, 300, (150.0, 240.0)),  # deprecated: of the valid lifetime
        (50, 0, 200, 300, (50.0, 160.0)),
        (0, 60, 200, 300, (60.0, 60.0)),  # T1 from preferred, but never after T2
        (100, 500, 200, 300, (100.0, 300.0)),  # T2 at most the lease
        (400, 500, 200, 300, (300.0, 300.0)),
        (INF, INF, 200, 300, (300.0, 300.0)),
        (INF, INF, INF, INF, (math.inf, math.inf)),
        (0, 0, INF, INF, (math.inf, math.inf)),
        (100, 100, 200, 300, (100.0, 100.0)),
    ],
)
def test_t1_and_t2(t1, t2, preferred, valid, expected):
    lease = lease_from_reply(
        reply(ia(addr(preferred=preferred, valid=valid), t1=t1, t2=t2)), iaid=7, start=0
    )
    assert (lease.t1_s, lease.t2_s) == expected


def test_t1_after_t2_discards_the_ia_21_4():
    with pytest.raises(Rejected, match="T1 after T2"):
        lease_from_reply(reply(ia(addr(), t1=200, t2=100)), iaid=7, start=0)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        (addr(preferred=400, valid=300), "a preferred lifetime over the valid one"),
        (addr(valid=0, preferred=0), "valid lifetime of 0"),
        (addr(status=2), "^an address with a failure status$"),
        *[(addr(a=IP6(a)), "no host can have") for a in ("::", "::1", "ff02::1:2", "fe80::1")],
    ],
)
def test_unusable_addresses(address, reason):
    with pytest.raises(Rejected, match=reason):
        lease_from_reply(reply(ia(address)), iaid=7, start=0)
    # one usable address beside it is enough, and it alone is leased
    lease = lease_from_reply(reply(ia(address, addr(a=ADDR2))), iaid=7, start=0)
    assert [a.address for a in lease.addresses] == [ADDR2]


def test_no_address_at_all():
    with pytest.raises(Rejected, match=r"^no address$"):
        lease_from_reply(reply(ia()), iaid=7, start=0)


def test_the_same_address_twice_counts_once_and_the_shortest_lifetime_rules():
    lease = lease_from_reply(reply(ia(addr(), addr(), addr(a=ADDR2, valid=250))), iaid=7, start=0)
    assert [a.address for a in lease.addresses] == [ADDR, ADDR2]
    assert lease.valid_s == 250.0


def test_our_ia_na_only():
    with pytest.raises(Rejected, match="no IA_NA for our IAID"):
        lease_from_reply(reply(ia(addr(), iaid=8)), iaid=7, start=0)
    with pytest.raises(Rejected, match=r"^two IA_NA for one IAID$"):
        lease_from_reply(reply(ia(addr()), ia(addr(a=ADDR2))), iaid=7, start=0)
    lease = lease_from_reply(reply(ia(addr(a=ADDR2), iaid=8), ia(addr())), iaid=7, start=0)
    assert lease.address == ADDR


@pytest.mark.parametrize("status", [s for s in opt.Status if s is not opt.Status.SUCCESS])
def test_a_status_refuses(status):
    with pytest.raises(Refused) as info:
        lease_from_reply(reply(ia(addr(), status=status)), iaid=7, start=0)
    assert info.value.status == status and info.value.name == status.name
    assert str(info.value) == f"{status.name}: sorry"
    with pytest.raises(Refused, match=rf"^{status.name}$"):
        lease_from_reply(reply(opt.StatusCode(status)), iaid=7, start=0)


def test_success_statuses_are_no_refusal():
    msg = reply(ia(addr(status=0), status=0), opt.StatusCode(0))
    assert lease_from_reply(msg, iaid=7, start=0).address == ADDR


def test_an_advert():
    msg = reply(ia(addr(), addr(a=ADDR2)), opt.Preference(9), kind=MT.ADVERTISE)
    assert advert_from(msg, iaid=7) == Advert(SERVER, 9, (ADDR, ADDR2))
    assert advert_from(reply(ia(addr()), kind=MT.ADVERTISE), iaid=7).preference == 0
    with pytest.raises(Refused):
        advert_from(reply(opt.StatusCode(2), kind=MT.ADVERTISE), iaid=7)
    with pytest.raises(Rejected):
        advert_from(reply(ia(), kind=MT.ADVERTISE), iaid=7)


@pytest.mark.parametrize(
    ("value", "expected"), [(59, None), (60, 60.0), (86400, 86400.0), (86401, None)]
)
def test_sol_max_rt_bounds_21_24(value, expected):
    assert sol_max_rt(reply(opt.SolMaxRt(value))) == expected
    assert sol_max_rt(reply()) is None
