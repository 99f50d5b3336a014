"""decide/reach.py's parsers: what an admin writes in LARK_NODE_PORTS and
LARK_JOB_LOOPBACK_SERVICES becomes ports and services, or a ValueError that names the entry."""

from __future__ import annotations

import ipaddress
import json

import pytest

from lark_async.decide.reach import (
    CLOSED,
    MAX_ENTRIES,
    NodePort,
    NodeReach,
    Proto,
    Service,
    parse_node_ports,
    parse_services,
)

V4, V6 = ipaddress.IPv4Address, ipaddress.IPv6Address


def test_services_in_both_families_and_protocols():
    assert parse_services("tcp 127.0.0.1:3128, udp [::1]:53\nUDP 127.0.0.53:53") == (
        Service(Proto.TCP, V4("127.0.0.1"), 3128),
        Service(Proto.UDP, V6("::1"), 53),
        Service(Proto.UDP, V4("127.0.0.53"), 53),
    )


def test_a_service_is_listed_once():
    found = parse_services("tcp 127.0.0.1:53, TCP  127.0.0.1:00053,\tudp 127.0.0.1:53")
    assert [str(s) for s in found] == ["tcp 127.0.0.1:53", "udp 127.0.0.1:53"]
    assert not any(s.checked for s in found)  # an admin's service: no policy asked


@pytest.mark.parametrize("value", ["", ",", " , \n ,", "\n"])
def test_no_entries_is_no_services(value):
    assert parse_services(value) == ()
    assert parse_node_ports(value) == ()


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("sctp 127.0.0.1:5", "entry 'sctp 127.0.0.1:5' is not 'tcp|udp ADDRESS:PORT'"),
        ("any 127.0.0.1:5", "entry 'any 127.0.0.1:5' is not 'tcp|udp ADDRESS:PORT'"),
        ("127.0.0.1:5", "entry '127.0.0.1:5' is not 'tcp|udp ADDRESS:PORT'"),
        ("tcp 127.0.0.1", "entry 'tcp 127.0.0.1' is not 'tcp|udp ADDRESS:PORT'"),
        ("tcp 127.0.0.1:", "entry 'tcp 127.0.0.1:' is not 'tcp|udp ADDRESS:PORT'"),
        ("tcp 127.0.0.1:5 x", "entry 'tcp 127.0.0.1:5 x' is not 'tcp|udp ADDRESS:PORT'"),
        ("tcp 127.0.0.1 : 5", "entry 'tcp 127.0.0.1 : 5' is not 'tcp|udp ADDRESS:PORT'"),
        ("tcp 127.0.0.1:-1", "entry 'tcp 127.0.0.1:-1' is not 'tcp|udp ADDRESS:PORT'"),
        ("tcp 127.0.0.1:123456", "entry 'tcp 127.0.0.1:123456' is not 'tcp|udp ADDRESS:PORT'"),
        ("tcp 127.0.0.1:0x35", "entry 'tcp 127.0.0.1:0x35' is not 'tcp|udp ADDRESS:PORT'"),
        ("tcp 127.0.0.1:\uff15\uff13", "entry 'tcp 127.0.0.1:\uff15\uff13' is not 'tcp|udp "
         "ADDRESS:PORT'"),  # a fullwidth 53
        ("tcp localhost:53", "entry 'tcp localhost:53' is not 'tcp|udp ADDRESS:PORT'"),
        # brackets: an IPv6 address needs them, an IPv4 one must not have them
        ("tcp ::1:53", "entry 'tcp ::1:53' is not 'tcp|udp ADDRESS:PORT'"),
        ("tcp [127.0.0.1]:53", "entry 'tcp [127.0.0.1]:53' is not 'tcp|udp ADDRESS:PORT'"),
        ("tcp [::1:53", "entry 'tcp [::1:53' is not 'tcp|udp ADDRESS:PORT'"),
        ("tcp ::1]:53", "entry 'tcp ::1]:53' is not 'tcp|udp ADDRESS:PORT'"),
        ("tcp [[::1]]:53", "entry 'tcp [[::1]]:53' is not 'tcp|udp ADDRESS:PORT'"),
        ("tcp [::1%lo]:53", "entry 'tcp [::1%lo]:53' is not 'tcp|udp ADDRESS:PORT'"),
        ("tcp [::ffff:127.0.0.1]:53", "entry 'tcp [::ffff:127.0.0.1]:53' is not 'tcp|udp "
         "ADDRESS:PORT'"),
        # addresses that are no address
        ("tcp 127.1:53", "entry 'tcp 127.1:53' has no valid address"),
        ("tcp 0127.0.0.1:53", "entry 'tcp 0127.0.0.1:53' has no valid address"),
        ("tcp 127.0.0.256:53", "entry 'tcp 127.0.0.256:53' has no valid address"),
        ("tcp ...:53", "entry 'tcp ...:53' has no valid address"),
        ("tcp [1:2:3:4:5:6:7:8:9]:53", "entry 'tcp [1:2:3:4:5:6:7:8:9]:53' has no valid "
         "address"),
        ("tcp [:::]:53", "entry 'tcp [:::]:53' has no valid address"),
        # addresses that are not the node's loopback
        ("tcp 10.0.0.1:53", "entry 'tcp 10.0.0.1:53' is not a loopback address "
         "(127.0.0.0/8 or ::1)"),
        ("tcp 0.0.0.0:53", "entry 'tcp 0.0.0.0:53' is not a loopback address "
         "(127.0.0.0/8 or ::1)"),
        ("tcp 128.0.0.1:53", "entry 'tcp 128.0.0.1:53' is not a loopback address "
         "(127.0.0.0/8 or ::1)"),
        ("udp [::]:53", "entry 'udp [::]:53' is not a loopback address (127.0.0.0/8 or ::1)"),
        ("udp [::2]:53", "entry 'udp [::2]:53' is not a loopback address (127.0.0.0/8 or ::1)"),
        ("udp [::ffff:7f00:1]:53", "entry 'udp [::ffff:7f00:1]:53' is not a loopback address "
         "(127.0.0.0/8 or ::1)"),
        ("udp [fe80::1]:53", "entry 'udp [fe80::1]:53' is not a loopback address "
         "(127.0.0.0/8 or ::1)"),
        # ports out of range name their entry
        ("tcp 127.0.0.1:0", "entry 'tcp 127.0.0.1:0' has port 0, not between 1 and 65535"),
        ("tcp 127.0.0.1:00000", "entry 'tcp 127.0.0.1:00000' has port 00000, not between 1 "
         "and 65535"),
        ("udp [::1]:65536", "entry 'udp [::1]:65536' has port 65536, not between 1 and 65535"),
        ("udp [::1]:99999", "entry 'udp [::1]:99999' has port 99999, not between 1 and 65535"),
        # one bad entry spoils the list, wherever it is
        ("tcp 127.0.0.1:1, udp 10.0.0.1:2", "entry 'udp 10.0.0.1:2' is not a loopback address "
         "(127.0.0.0/8 or ::1)"),
    ],
)  # fmt: skip
def test_a_bad_service_entry_is_named(value, error):
    with pytest.raises(ValueError) as caught:
        parse_services(value)
    assert str(caught.value) == error


def test_every_loopback_address_is_a_service():
    found = parse_services("udp 127.255.255.254:1, tcp 127.0.0.0:2, tcp [0:0::1]:3")
    assert [s.address for s in found] == [V4("127.255.255.254"), V4("127.0.0.0"), V6("::1")]
    assert str(found[2]) == "tcp [::1]:3"


def test_at_most_max_entries():
    many = ", ".join(f"tcp 127.0.0.1:{p}" for p in range(1, MAX_ENTRIES + 2))
    with pytest.raises(ValueError) as caught:
        parse_services(many)
    assert str(caught.value) == f"has {MAX_ENTRIES + 1} entries; at most {MAX_ENTRIES}"
    assert len(parse_services(many.rsplit(",", 1)[0])) == MAX_ENTRIES
    # a repeated entry still counts: the list as written is what is too long
    with pytest.raises(ValueError, match="entries; at most"):
        parse_services(", ".join(["tcp 127.0.0.1:1"] * (MAX_ENTRIES + 1)))
    ports = ", ".join(f"udp {p}" for p in range(1, MAX_ENTRIES + 2))
    with pytest.raises(ValueError, match=f"has {MAX_ENTRIES + 1} entries"):
        parse_node_ports(ports)


@pytest.mark.slow
def test_a_huge_value_is_refused_in_one_short_line():
    with pytest.raises(ValueError, match="entries; at most"):
        parse_services("tcp 127.0.0.1:1," * 1_000_000)
    assert parse_services("," * 1_000_000) == ()
    for huge, parse in [
        ("tcp " + "1" * 1_000_000 + ":5", parse_services),
        ("tcp [" + ":" * 1_000_000 + "]:5", parse_services),
        ("tcp 127.0.0.1:5" + " x" * 1_000_000, parse_services),
        ("udp " + "9" * 1_000_000, parse_node_ports),
    ]:
        with pytest.raises(ValueError) as caught:
            parse(huge)
        shown = repr(huge[:57] + "...")
        assert str(caught.value).startswith(f"entry {shown} "), str(caught.value)[:200]
        assert len(str(caught.value)) < 120
    exact = "tcp 10.0.0.1:" + "5" * 47  # 60 characters: shown whole
    with pytest.raises(ValueError, match=f"entry '{exact}' is not"):
        parse_services(exact)


def test_input_that_is_not_text_is_read_as_its_text():
    with pytest.raises(ValueError, match="entry 'None' is not"):
        parse_services(None)
    with pytest.raises(ValueError, match="entry '53' is not"):
        parse_node_ports(53)


def test_node_ports_single_and_ranges():
    assert parse_node_ports("tcp 3128, UDP 8000-8010\nudp 1-65535, tcp 5-5, tcp 5") == (
        NodePort(Proto.TCP, 3128, 3128),
        NodePort(Proto.UDP, 8000, 8010),
        NodePort(Proto.UDP, 1, 65535),
        NodePort(Proto.TCP, 5, 5),
    )
    assert [str(p) for p in parse_node_ports("tcp 80, udp 1-2")] == ["tcp 80", "udp 1-2"]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("tcp 10-9", "entry 'tcp 10-9' has its range backwards"),
        ("udp 65535-1", "entry 'udp 65535-1' has its range backwards"),
        ("tcp 0", "entry 'tcp 0' has port 0, not between 1 and 65535"),
        ("tcp 0-5", "entry 'tcp 0-5' has port 0, not between 1 and 65535"),
        ("tcp 5-65536", "entry 'tcp 5-65536' has port 65536, not between 1 and 65535"),
        ("icmp 5", "entry 'icmp 5' is not 'tcp|udp PORT[-PORT]'"),
        ("tcp", "entry 'tcp' is not 'tcp|udp PORT[-PORT]'"),
        ("3128", "entry '3128' is not 'tcp|udp PORT[-PORT]'"),
        ("tcp 5-", "entry 'tcp 5-' is not 'tcp|udp PORT[-PORT]'"),
        ("tcp -5", "entry 'tcp -5' is not 'tcp|udp PORT[-PORT]'"),
        ("tcp 5 - 6", "entry 'tcp 5 - 6' is not 'tcp|udp PORT[-PORT]'"),
        ("tcp 1-2-3", "entry 'tcp 1-2-3' is not 'tcp|udp PORT[-PORT]'"),
        ("tcp 123456", "entry 'tcp 123456' is not 'tcp|udp PORT[-PORT]'"),
        ("tcp 127.0.0.1:53", "entry 'tcp 127.0.0.1:53' is not 'tcp|udp PORT[-PORT]'"),
        ("tcp [53]", "entry 'tcp [53]' is not 'tcp|udp PORT[-PORT]'"),
    ],
)
def test_a_bad_node_port_entry_is_named(value, error):
    with pytest.raises(ValueError) as caught:
        parse_node_ports(value)
    assert str(caught.value) == error


# -- NodeReach: what of the node a NAT job may reach (the log line, the state record) ----------

REACH = NodeReach(
    parse_node_ports("tcp 3128, udp 8000-8010"),
    (V4("10.0.0.1"), V6("fd00::1")),
    job_to_job=True,
)


def test_what_the_log_says_a_nat_job_may_reach_of_the_node():
    assert str(CLOSED) == "nothing; other NAT jobs closed"
    assert str(REACH) == (
        "tcp 3128, udp 8000-8010, DNS on 10.0.0.1, DNS on fd00::1; other NAT jobs open"
    )
    assert str(NodeReach(dns=(V4("10.0.0.1"),))) == "DNS on 10.0.0.1; other NAT jobs closed"


def test_the_state_record_of_what_a_nat_job_may_reach_reads_back_the_same():
    record = REACH.to_record()
    assert record == {
        "ports": ["tcp 3128", "udp 8000-8010"],
        "dns": ["10.0.0.1", "fd00::1"],
        "job_to_job": True,
    }
    assert NodeReach.from_record(json.loads(json.dumps(record))) == REACH
    assert CLOSED.to_record() == {"ports": [], "dns": [], "job_to_job": False}
    assert NodeReach.from_record(CLOSED.to_record()) == CLOSED


_PORTS_ARE = "is not a list of 'tcp|udp PORT[-PORT]'"
_DNS_IS = "is not a list of IP addresses"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "is not an object"),
        ({"dns": [], "job_to_job": False}, f"ports None {_PORTS_ARE}"),
        ({"ports": "tcp 1", "dns": [], "job_to_job": False}, f"ports 'tcp 1' {_PORTS_ARE}"),
        ({"ports": [1], "dns": [], "job_to_job": False}, f"ports [1] {_PORTS_ARE}"),
        ({"ports": [], "job_to_job": False}, f"dns None {_DNS_IS}"),
        ({"ports": [], "dns": "10.0.0.1", "job_to_job": False}, f"dns '10.0.0.1' {_DNS_IS}"),
        ({"ports": [], "dns": [1], "job_to_job": False}, f"dns [1] {_DNS_IS}"),
        ({"ports": [], "dns": ["nope"], "job_to_job": False}, f"dns ['nope'] {_DNS_IS}"),
        ({"ports": [], "dns": []}, "job_to_job None is not true or false"),
        ({"ports": [], "dns": [], "job_to_job": 1}, "job_to_job 1 is not true or false"),
    ],
)
def test_a_broken_reach_record_is_one_sentence_about_it(value, message):
    with pytest.raises(ValueError) as caught:
        NodeReach.from_record(value)
    assert str(caught.value) == message
