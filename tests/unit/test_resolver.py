"""decide/resolver.py: the job's resolv.conf and hosts, and the node loopback resolvers relayed
into its namespace. The node's and the admin's files are root's; a DHCP lease's domain and
hostname come from the LAN and are treated as hostile."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from lark_async.decide import resolver
from lark_async.decide.reach import Proto, Service
from lark_async.decide.resolver import (
    JobView,
    Lan,
    ResolvConf,
    Sources,
    decide,
    is_hostname,
    parse_resolv_conf,
)

A = ipaddress.ip_address
V4 = ipaddress.IPv4Address

NODE_CONF = "# the node's\nnameserver 10.1.1.1\nsearch node.example\noptions ndots:2 rotate\n"
NODE_HOSTS = "127.0.0.1\tlocalhost\n127.0.1.1\tnode1.example node1\n10.0.0.9\tother\n"
HEAD = "# This job's own address on the LAN, written by Lark.\n"
LEASE_HEAD = "# The job's resolver, written by Lark (the DHCP lease).\n"
STATIC_HEAD = "# The job's resolver, written by Lark (LARK_JOB_DNS).\n"
HOSTILE = [
    "evil\nnameserver 6.6.6.6",
    "a b",
    "x" * 300,
    "-x",
    "x-",
    "",
    "..",
    ".x",
    "a..b",
    "a\tb",
    "a\rb",
    "a\x00b",
    "a;b",
    "a#b",
    "a_b",
    "\u00e9t\u00e9",
    "a/b",
    "a" * 64 + ".example",
]


def lease(
    dns: str = "10.0.0.1",
    domain: str | None = "lan.example",
    hostname: str | None = "job7",
    address: str | None = "10.0.0.5",
) -> Lan:
    return Lan(
        V4(address) if address else None,
        tuple(V4(a) for a in dns.split()),
        domain,
        hostname,
    )


def bridged(**kw: object) -> Sources:
    given: dict[str, object] = {
        "node_resolv_conf": NODE_CONF,
        "node_hosts": NODE_HOSTS,
        "bridged": True,
        "node_hostname": "node1",
    }
    given.update(kw)
    return Sources(**given)  # type: ignore[arg-type]


def nat(conf: str | None = NODE_CONF, **kw: object) -> Sources:
    kw.setdefault("node_hosts", None)
    return Sources(node_resolv_conf=conf, **kw)  # type: ignore[arg-type]


def dns(*addresses: str) -> tuple[Service, ...]:
    return tuple(
        Service(proto, A(a), 53, "DNS", checked=True)
        for a in addresses
        for proto in (Proto.UDP, Proto.TCP)
    )


# --- parse_resolv_conf ------------------------------------------------------------------


def test_the_limits_are_glibcs_and_a_bounded_read():
    assert resolver.MAX_NAMESERVERS == 3
    assert resolver.MAX_FILE_BYTES == 64 * 1024
    assert resolver.DNS_PORT == 53


def test_parse_reads_nameservers_search_and_options():
    conf = parse_resolv_conf(
        "nameserver 10.1.1.1\nnameserver\t2001:db8::53\nsearch a.example b.example\n"
        "options ndots:2 rotate\n"
    )
    assert conf == ResolvConf(
        (A("10.1.1.1"), A("2001:db8::53")), ("a.example", "b.example"), ("ndots:2", "rotate")
    )


@pytest.mark.parametrize("text", ["", "\n", "   \n\t\n", "# nothing\n; nothing\n"])
def test_an_empty_file_says_nothing(text):
    assert parse_resolv_conf(text) == ResolvConf()


def test_comments_with_hash_or_semicolon_are_ignored_whole_or_at_the_end_of_a_line():
    conf = parse_resolv_conf(
        "# nameserver 9.9.9.1\n"
        "; nameserver 9.9.9.2\n"
        "nameserver 10.0.0.1 # nameserver 9.9.9.3\n"
        "nameserver 10.0.0.2; 9.9.9.4\n"
        "nameserver#10.0.0.3\n"
        "nameserver;10.0.0.4\n"
        "search a.example # b.example # c.example\n"
        "options ndots:2 ; rotate ; edns0\n"
    )
    assert conf.nameservers == (A("10.0.0.1"), A("10.0.0.2"))
    assert conf.search == ("a.example",)
    assert conf.options == ("ndots:2",)


def test_only_the_first_three_good_nameservers_count():
    conf = parse_resolv_conf(
        "nameserver junk\n"
        + "".join(f"nameserver 10.0.0.{i}\n" for i in range(1, 6))
        + "nameserver 127.0.0.53\n"
    )
    assert conf.nameservers == (A("10.0.0.1"), A("10.0.0.2"), A("10.0.0.3"))


def test_an_ipv6_nameserver_loses_its_zone():
    conf = parse_resolv_conf("nameserver fe80::1%eth0\nnameserver ::1\nnameserver fe80::2%a%b\n")
    assert conf.nameservers == (A("fe80::1"), A("::1"), A("fe80::2"))
    assert [str(a) for a in conf.nameservers] == ["fe80::1", "::1", "fe80::2"]


@pytest.mark.parametrize(
    "junk",
    [
        "300.1.1.1",
        "1.2.3",
        "1.2.3.4/24",
        "dns.example",
        "10.0.0.1:53",
        "[::1]",
        "%eth0",
        "0x0a000001",
        "1.2.3.4\x00",
        "::1\x00junk",
    ],
)
def test_junk_nameservers_are_ignored(junk):
    conf = parse_resolv_conf(f"nameserver {junk}\nnameserver 10.0.0.7\n")
    assert conf.nameservers == (A("10.0.0.7"),)


def test_a_nameserver_line_without_address_or_with_another_key_is_ignored():
    conf = parse_resolv_conf("nameserver\nNAMESERVER 10.0.0.1\nnameservers 10.0.0.2\nns 10.0.0.3\n")
    assert conf == ResolvConf()


def test_only_the_first_word_after_nameserver_counts():
    assert parse_resolv_conf("nameserver 10.0.0.1 10.0.0.2\n").nameservers == (A("10.0.0.1"),)


@pytest.mark.parametrize(
    ("text", "search"),
    [
        ("search a.example b.example\ndomain c.example\n", ("c.example",)),
        ("domain c.example\nsearch a.example b.example\n", ("a.example", "b.example")),
        ("search a.example\nsearch b.example\n", ("b.example",)),
        ("domain a.example\ndomain b.example\n", ("b.example",)),
        ("domain c.example d.example\n", ("c.example",)),
        ("domain -bad c.example\n", ()),
        ("search a.example\ndomain -bad\n", ()),
        ("search a.example\nsearch -bad a_b\n", ()),
        ("domain c.example\nsearch\n", ("c.example",)),  # a bare key is no line
    ],
)
def test_the_last_search_or_domain_line_wins(text, search):
    assert parse_resolv_conf(text).search == search


def test_bad_search_words_are_dropped_and_at_most_six_kept():
    conf = parse_resolv_conf("search good.example -bad a_b.example ok. .. x a..b a$b\n")
    assert conf.search == ("good.example", "ok.", "x")
    many = " ".join(f"d{i}.example" for i in range(1, 9))
    assert parse_resolv_conf(f"search {many}\n").search == tuple(
        f"d{i}.example" for i in range(1, 7)
    )


def test_options_words_are_filtered_and_lines_add_up():
    conf = parse_resolv_conf(
        "options ndots:2 timeout:1 edns0 use-vc trust_ad a=b ndots:x ndots: :2 rotate$ n:1:2\n"
        "options attempts:3 Rotate\n"
    )
    assert conf.options == (
        "ndots:2",
        "timeout:1",
        "edns0",
        "use-vc",
        "trust_ad",
        "attempts:3",
        "Rotate",
    )


def test_a_one_megabyte_file_is_read_to_64_kib_only():
    head = "nameserver 10.0.0.1\n"
    last = "nameserver 10.0.0.2\n"  # its newline is the 65,536th character
    text = head + "#" * (65536 - len(head) - len(last) - 1) + "\n" + last
    assert len(text) == 65536
    text += "nameserver 10.0.0.3\n" + "# padding\n" * 110_000 + "search far.example\n"
    assert len(text) > 1 << 20
    assert parse_resolv_conf(text) == ResolvConf((A("10.0.0.1"), A("10.0.0.2")))


def test_crlf_lines_are_read():
    conf = parse_resolv_conf("nameserver 10.0.0.1\r\nsearch a.example\r\noptions ndots:2\r\n")
    assert conf == ResolvConf((A("10.0.0.1"),), ("a.example",), ("ndots:2",))


def test_nul_bytes_spoil_only_the_words_they_are_in():
    conf = parse_resolv_conf(
        "nameserver 10.0.0.1\x00\nnameserver 10.0.0.2\x00junk\n\x00nameserver 10.0.0.3\n"
        "nameserver 10.0.0.4\nsearch a.example\x00 b.example\noptions ndots:1\x00 rotate\n"
    )
    assert conf == ResolvConf((A("10.0.0.4"),), ("b.example",), ("rotate",))


@pytest.mark.parametrize(
    "name",
    [
        "x",
        "node1",
        "a.example",
        "a.example.",
        "a-b.c-d.example",
        "0.example",
        "A" * 63,
        ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61]),  # 253 characters
    ],
)
def test_hostnames(name):
    assert is_hostname(name)


@pytest.mark.parametrize(
    "name",
    [*HOSTILE, "a" * 64, ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62]), "a.example.."],
)
def test_not_hostnames(name):
    assert not is_hostname(name)


@pytest.mark.parametrize("name", ["evil\n", "a.example\n"])
def test_a_name_with_a_final_newline_is_not_a_hostname(name):
    assert not is_hostname(name)


# --- decide: where the job's resolv.conf comes from ---------------------------------------


def test_the_admins_file_comes_first_as_it_is():
    admin = "# site\r\nnameserver 192.0.2.1\nnameserver 192.0.2.2\x00\nnameserver 192.0.2.3\n"
    src = bridged(admin_resolv_conf=admin, netns_resolv_conf="nameserver 192.0.2.9\n")
    view = decide(src, lease())
    assert view.resolv_conf == admin
    assert view.dns_path == "LARK_JOB_RESOLV_CONF: 192.0.2.1 192.0.2.3"
    assert view.servers == (A("192.0.2.1"), A("192.0.2.3"))
    assert view.relayed == ()
    assert view.hosts is not None and view.hosts.startswith(HEAD + "10.0.0.5\t")


def test_an_empty_admin_file_still_wins():
    view = decide(nat(admin_resolv_conf="", netns_resolv_conf="nameserver 192.0.2.9\n"))
    assert view == JobView("", None, "LARK_JOB_RESOLV_CONF: no nameserver")


def test_the_netns_file_comes_next_as_it_is():
    netns = "nameserver 192.0.2.9\nsearch site.example\n"
    view = decide(bridged(netns_resolv_conf=netns, node_hosts=None), lease())
    assert view.resolv_conf == netns
    assert view.hosts == HEAD + "10.0.0.5\tjob7.lan.example job7 node1\n"
    assert view.dns_path == "/etc/netns: 192.0.2.9"
    assert view.servers == (A("192.0.2.9"),)
    empty = decide(nat(netns_resolv_conf="# nothing\n"))
    assert empty == JobView("# nothing\n", None, "/etc/netns: no nameserver")


def test_the_admins_and_netns_files_are_the_jobs_in_nat_mode_too():
    assert decide(nat(admin_resolv_conf="nameserver 192.0.2.1\n")).resolv_conf == (
        "nameserver 192.0.2.1\n"
    )
    assert decide(nat(netns_resolv_conf="nameserver 192.0.2.9\n")).resolv_conf == (
        "nameserver 192.0.2.9\n"
    )


def test_a_bridged_dhcp_job_gets_its_leases_servers_and_domain_with_the_nodes_options():
    view = decide(bridged(), lease("10.0.0.1 10.0.0.2"))
    assert view.resolv_conf == (
        LEASE_HEAD + "nameserver 10.0.0.1\nnameserver 10.0.0.2\nsearch lan.example\n"
        "options ndots:2 rotate\n"
    )
    assert view.dns_path == "DHCP lease: 10.0.0.1 10.0.0.2"
    assert view.servers == (A("10.0.0.1"), A("10.0.0.2"))
    assert view.relayed == ()


def test_a_lease_gives_at_most_three_servers_and_no_domain_no_search():
    view = decide(
        bridged(node_resolv_conf="nameserver 10.1.1.1\nsearch node.example\n"),
        lease("10.0.0.1 10.0.0.2 10.0.0.3 10.0.0.4", domain=None),
    )
    assert view.resolv_conf == (
        LEASE_HEAD + "nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
    )
    assert view.dns_path == "DHCP lease: 10.0.0.1 10.0.0.2 10.0.0.3"
    assert view.servers == (A("10.0.0.1"), A("10.0.0.2"), A("10.0.0.3"))


def test_a_lease_works_without_the_nodes_file():
    view = decide(bridged(node_resolv_conf=None), lease(domain="lan.example."))
    assert view.resolv_conf == LEASE_HEAD + "nameserver 10.0.0.1\nsearch lan.example.\n"


def test_a_lease_naming_a_loopback_server_gets_no_relay():
    """A LAN's DHCP server must not open the node's own resolver (or anything on the node's
    loopback) to the job: only the node's and the admin's files may."""
    view = decide(bridged(), lease("127.0.0.53 127.0.0.1"))
    assert view.relayed == ()
    assert view.dns_path == "DHCP lease: 127.0.0.53 127.0.0.1"


@pytest.mark.parametrize("domain", HOSTILE)
def test_a_hostile_lease_domain_never_reaches_resolv_conf(domain):
    view = decide(bridged(), lease("10.0.0.1", domain=domain))
    assert view.resolv_conf == LEASE_HEAD + "nameserver 10.0.0.1\noptions ndots:2 rotate\n"


def test_a_lease_domain_with_a_final_newline_never_reaches_resolv_conf():
    view = decide(bridged(), lease("10.0.0.1", domain="lan.example\n"))
    assert view.resolv_conf == LEASE_HEAD + "nameserver 10.0.0.1\noptions ndots:2 rotate\n"


@pytest.mark.parametrize(
    "lan",
    [None, lease(dns=""), Lan(None), Lan(V4("10.0.0.5"), (), "lan.example", "job7")],
    ids=["no-lan", "lease-without-dns", "no-address", "address-without-dns"],
)
def test_a_bridged_job_without_lease_servers_gets_the_nodes_file_verbatim(lan):
    view = decide(bridged(), lan)
    assert view.resolv_conf == NODE_CONF
    assert view.dns_path == "node: 10.1.1.1"
    assert view.servers == (A("10.1.1.1"),)


def test_a_bridged_job_always_has_a_file_of_its_own_even_an_empty_one():
    view = decide(bridged(node_resolv_conf=None))
    assert view.resolv_conf == "" and view.hosts is None
    assert view.dns_path == "node: no nameserver, 127.0.0.1 (relayed)"
    assert decide(bridged(node_resolv_conf="")).resolv_conf == ""


def test_a_static_bridged_job_gets_lark_job_dns_with_the_nodes_search_and_options():
    src = bridged(static=True, job_dns=(V4("192.0.2.53"),))
    view = decide(src, Lan(V4("10.0.0.5")))
    assert view.resolv_conf == (
        STATIC_HEAD + "nameserver 192.0.2.53\nsearch node.example\noptions ndots:2 rotate\n"
    )
    assert view.dns_path == "LARK_JOB_DNS: 192.0.2.53"
    assert view.servers == (A("192.0.2.53"),)
    assert view.relayed == ()
    assert view.hosts == HEAD + "10.0.0.5\tnode1\n" + NODE_HOSTS.replace(
        "\tnode1.example node1", " node1.example"
    )
    assert decide(src) == JobView(view.resolv_conf, None, view.dns_path, (), view.servers)


def test_lark_job_dns_keeps_every_search_domain_of_the_node():
    src = bridged(
        static=True,
        node_resolv_conf="search a.example b.example\n",
        job_dns=(V4("192.0.2.53"),),
    )
    assert decide(src).resolv_conf == (
        STATIC_HEAD + "nameserver 192.0.2.53\nsearch a.example b.example\n"
    )


def test_lark_job_dns_gives_at_most_three_and_beats_a_lease():
    src = bridged(
        static=True,
        node_resolv_conf="nameserver 127.0.0.53\n",
        job_dns=tuple(V4(f"192.0.2.{i}") for i in range(1, 5)),
    )
    view = decide(src, lease("10.0.0.1"))
    assert view.resolv_conf == (
        STATIC_HEAD + "nameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\n"
    )
    assert view.dns_path == "LARK_JOB_DNS: 192.0.2.1 192.0.2.2 192.0.2.3"
    assert view.relayed == ()


def test_a_static_job_ignores_a_lease_and_without_lark_job_dns_gets_the_nodes_file():
    for job_dns in (None, ()):
        view = decide(bridged(static=True, job_dns=job_dns), lease("10.0.0.1"))
        assert view.resolv_conf == NODE_CONF
        assert view.dns_path == "node: 10.1.1.1"


def test_lark_job_dns_is_for_static_bridged_jobs_only():
    job_dns = (V4("192.0.2.53"),)
    assert decide(bridged(job_dns=job_dns)).resolv_conf == NODE_CONF  # DHCP, no lease yet
    assert decide(nat(job_dns=job_dns, static=True)).resolv_conf is None


def test_a_nat_job_gets_the_nodes_own_file():
    view = decide(nat(), lease("10.0.0.1"))
    assert view == JobView(None, None, "node: 10.1.1.1", (), (A("10.1.1.1"),))
    glibcs = (
        Service(Proto.UDP, A("127.0.0.1"), 53, "DNS", checked=True),
        Service(Proto.TCP, A("127.0.0.1"), 53, "DNS", checked=True),
    )  # (glibc asks 127.0.0.1 when the file names no server: relayed like any loopback one)
    path = "node: no nameserver, 127.0.0.1 (relayed)"
    assert decide(nat(None)) == JobView(None, None, path, glibcs, (A("127.0.0.1"),))
    assert decide(nat("nameserver junk\n")).dns_path == path
    offline = decide(nat(None, networked=False))
    assert offline.relayed == () and offline.dns_path == "node: no nameserver, 127.0.0.1"


# --- the node's loopback resolvers, relayed ----------------------------------------------


@pytest.mark.parametrize("server", ["127.0.0.53", "127.0.0.1", "::1"])
def test_a_loopback_nameserver_of_the_node_is_relayed_over_udp_and_tcp(server):
    view = decide(nat(f"nameserver {server}\n"))
    assert view.relayed == (
        Service(Proto.UDP, A(server), 53, "DNS", checked=True),
        Service(Proto.TCP, A(server), 53, "DNS", checked=True),
    )
    assert view.dns_path == f"node: {server} (relayed)"
    assert view.servers == (A(server),)


def test_only_loopback_nameservers_are_relayed_each_once():
    conf = "nameserver 127.0.0.53\nnameserver 10.1.1.1\nnameserver 127.0.0.53\nnameserver ::1\n"
    view = decide(nat(conf))
    assert view.relayed == dns("127.0.0.53")
    assert view.dns_path == "node: 127.0.0.53 (relayed) 10.1.1.1 127.0.0.53 (relayed)"
    view = decide(nat("nameserver 127.0.0.1\nnameserver 10.1.1.1\nnameserver ::1\n"))
    assert view.relayed == dns("127.0.0.1", "::1")
    assert view.dns_path == "node: 127.0.0.1 (relayed) 10.1.1.1 ::1 (relayed)"


@pytest.mark.parametrize("server", ["10.1.1.1", "2001:db8::53", "fe80::1%eth0", "0.0.0.0"])
def test_a_nameserver_off_loopback_is_not_relayed(server):
    assert decide(nat(f"nameserver {server}\n")).relayed == ()
    assert decide(bridged(node_resolv_conf=f"nameserver {server}\n")).relayed == ()


def test_a_bridged_job_on_the_nodes_file_gets_its_loopback_resolver_relayed():
    view = decide(bridged(node_resolv_conf="nameserver 127.0.0.53\n"), lease(dns=""))
    assert view.resolv_conf == "nameserver 127.0.0.53\n"
    assert view.relayed == dns("127.0.0.53")


@pytest.mark.parametrize("where", ["admin_resolv_conf", "netns_resolv_conf"])
def test_the_admins_loopback_resolver_is_relayed_too(where):
    view = decide(nat(**{where: "nameserver 127.0.0.1\nnameserver 10.1.1.1\n"}))
    assert view.relayed == dns("127.0.0.1")


@pytest.mark.parametrize("where", ["node_resolv_conf", "admin_resolv_conf", "netns_resolv_conf"])
def test_a_job_without_network_gets_no_relay(where):
    given = {"node_resolv_conf": "nameserver 127.0.0.53\n", where: "nameserver 127.0.0.53\n"}
    view = decide(Sources(node_hosts=None, networked=False, **given))  # type: ignore[arg-type]
    assert view.relayed == ()
    assert view.servers == (A("127.0.0.53"),)
    assert "relayed" not in view.dns_path


# --- JobView.node_dns ---------------------------------------------------------------------


def test_node_dns_is_the_servers_that_are_the_nodes_own_non_loopback_addresses():
    asked: list[object] = []
    local = {V4("10.1.1.1"), V4("10.1.1.2"), A("fd00::53")}

    def is_local(a: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        asked.append(a)
        return a in local

    view = JobView(
        None,
        None,
        "x",
        servers=(
            A("127.0.0.53"),
            A("10.1.1.1"),
            A("192.0.2.1"),
            A("::1"),
            A("10.1.1.2"),
            A("fd00::53"),
            A("2001:db8::53"),
        ),
    )
    assert view.node_dns(is_local) == (V4("10.1.1.1"), V4("10.1.1.2"), A("fd00::53"))
    assert asked == [V4("10.1.1.1"), V4("192.0.2.1"), V4("10.1.1.2"), A("fd00::53"),
                     A("2001:db8::53")]  # fmt: skip
    loopback = JobView(None, None, "x", servers=(A("127.0.0.1"), A("::1")))
    assert loopback.node_dns(lambda a: True) == ()
    assert JobView(None, None, "x").node_dns(lambda a: True) == ()


def test_node_dns_from_a_decision():
    view = decide(nat("nameserver 127.0.0.53\nnameserver 10.1.1.1\nnameserver 192.0.2.1\n"))
    assert view.node_dns(lambda a: a == V4("10.1.1.1")) == (V4("10.1.1.1"),)


# --- the hosts file -----------------------------------------------------------------------


def test_a_bridged_job_is_named_first_then_the_nodes_file_without_those_names():
    view = decide(bridged(), lease())
    assert view.hosts == (
        HEAD + "10.0.0.5\tjob7.lan.example job7 node1\n"
        "127.0.0.1\tlocalhost\n127.0.1.1 node1.example\n10.0.0.9\tother\n"
    )


def test_a_dual_stack_job_has_both_its_addresses_and_an_ipv6_only_one_its_ipv6():
    job6 = ipaddress.IPv6Address("fd77::1:5")
    view = decide(bridged(node_hosts=None), replace(lease(), address6=job6))
    assert view.hosts == HEAD + "10.0.0.5\tjob7.lan.example job7 node1\n" + (
        "fd77::1:5\tjob7.lan.example job7 node1\n"
    )
    only6 = Lan(None, address6=job6)
    assert decide(bridged(node_hosts=None), only6).hosts == HEAD + "fd77::1:5\tnode1\n"
    assert decide(bridged(node_hosts=None), Lan(None)).hosts is None


def test_node_lines_lose_the_jobs_names_other_lines_are_kept_verbatim():
    node_hosts = (
        "127.0.0.1   localhost\n"
        "127.0.1.1 node1\n"  # left with no name: goes
        "127.0.1.1\tnode1  # Debian's\n"  # goes, comment and all
        "10.0.0.7 job7 # stale\n"
        "10.0.0.8  job7\tjob7.lan.example x  #  c\n"
        "10.0.0.9\tother # node1 job7\n"  # names in a comment stay
        "# node1 is 127.0.1.1\n"
        "  # indented comment\n"
        "\n"
        "127.0.1.1\n"  # no name at all: kept
        "node1\t10.0.0.1\n"  # a name in the address field is no name
        "::1 ip6-localhost node1 ip6-loopback\n"
    )
    view = decide(bridged(node_hosts=node_hosts), lease())
    assert view.hosts == (
        HEAD + "10.0.0.5\tjob7.lan.example job7 node1\n"
        "127.0.0.1   localhost\n"
        "10.0.0.8 x #  c\n"
        "10.0.0.9\tother # node1 job7\n"
        "# node1 is 127.0.1.1\n"
        "  # indented comment\n"
        "\n"
        "127.0.1.1\n"
        "node1\t10.0.0.1\n"
        "::1 ip6-localhost ip6-loopback\n"
    )


def test_node_lines_lose_the_jobs_names_in_any_case():
    view = decide(bridged(node_hosts="127.0.1.1\tNode1.example Node1\n"), lease())
    assert view.hosts == HEAD + "10.0.0.5\tjob7.lan.example job7 node1\n127.0.1.1 Node1.example\n"


def test_crlf_node_hosts_lines_are_read_as_lines():
    view = decide(bridged(node_hosts="127.0.0.1 localhost\r\n127.0.1.1 node1\r\n"), lease())
    assert view.hosts == HEAD + "10.0.0.5\tjob7.lan.example job7 node1\n127.0.0.1 localhost\n"


def test_the_nodes_hosts_file_is_read_to_64_kib_only():
    first = "10.0.0.9\tother\n"
    node_hosts = first + "#" * (65536 - len(first)) + "\n10.0.0.10 far\n"
    hosts = decide(bridged(node_hosts=node_hosts), lease()).hosts
    # (the line cut at 64 KiB goes whole: a half line is not read as a shorter one)
    assert hosts == HEAD + "10.0.0.5\tjob7.lan.example job7 node1\n" + first
    assert "far" not in hosts


@pytest.mark.parametrize(
    ("hostname", "domain", "names"),
    [
        ("job7", "lan.example", "job7.lan.example job7 node1"),
        ("job7.", "lan.example.", "job7.lan.example job7 node1"),
        ("job7.site.example", "lan.example", "job7.site.example node1"),
        ("job7", None, "job7 node1"),
        (None, "lan.example", "node1"),
        ("node1", "lan.example", "node1.lan.example node1"),
        ("node1", None, "node1"),
        ("job7.lan.example", None, "job7.lan.example node1"),
        ("jobX.", "site.X.", "jobX.site.X jobX node1"),
    ],
)
def test_the_jobs_names(hostname, domain, names):
    view = decide(bridged(node_hosts=None), lease(hostname=hostname, domain=domain))
    assert view.hosts == f"{HEAD}10.0.0.5\t{names}\n"


def test_the_node_hostname_is_named_only_when_it_is_one():
    view = decide(bridged(node_hosts=None, node_hostname="a b"), lease())
    assert view.hosts == HEAD + "10.0.0.5\tjob7.lan.example job7\n"
    view = decide(bridged(node_hosts=None, node_hostname=""), lease(hostname=None))
    assert view.hosts is None


@pytest.mark.parametrize("hostname", HOSTILE)
def test_a_hostile_lease_hostname_never_reaches_the_hosts_file(hostname):
    view = decide(bridged(), lease(hostname=hostname))
    assert view.hosts == (
        HEAD + "10.0.0.5\tnode1\n127.0.0.1\tlocalhost\n127.0.1.1 node1.example\n10.0.0.9\tother\n"
    )


@pytest.mark.parametrize("domain", HOSTILE)
def test_a_hostile_lease_domain_never_reaches_the_hosts_file(domain):
    view = decide(bridged(node_hosts=None), lease(domain=domain))
    assert view.hosts == HEAD + "10.0.0.5\tjob7 node1\n"


@pytest.mark.parametrize(
    ("hostname", "domain"), [("job7\n", "lan.example"), ("job7", "lan.example\n")]
)
def test_a_lease_name_with_a_final_newline_never_reaches_the_hosts_file(hostname, domain):
    view = decide(bridged(node_hosts=None), lease(hostname=hostname, domain=domain))
    assert view.hosts is not None
    assert view.hosts.count("\n") == 2
    assert view.hosts.startswith(HEAD + "10.0.0.5\t")


@pytest.mark.parametrize(
    "lan",
    [None, Lan(None), Lan(None, (V4("10.0.0.1"),), "lan.example", "job7")],
    ids=["no-lan", "no-address", "lease-without-address"],
)
def test_no_address_no_hosts_file(lan):
    assert decide(bridged(), lan).hosts is None


def test_a_nat_job_keeps_the_nodes_hosts_file():
    assert decide(nat(node_hosts="127.0.1.1 node1\n", node_hostname="node1"), lease()).hosts is None


def test_the_netns_hosts_file_is_used_as_it_is():
    netns_hosts = "10.9.9.9 anything\tnode1\n# as is\r\nnot even hosts"
    assert decide(bridged(netns_hosts=netns_hosts), lease()).hosts == netns_hosts
    assert decide(nat(netns_hosts=netns_hosts)).hosts == netns_hosts
    assert decide(bridged(netns_hosts=""), lease()).hosts == ""
    assert decide(bridged(netns_hosts="x", admin_resolv_conf="")).hosts == "x"


def test_the_hosts_file_follows_the_lease():
    src = bridged(node_hosts=None)
    assert decide(src, lease(address="10.0.0.5")).hosts == HEAD + (
        "10.0.0.5\tjob7.lan.example job7 node1\n"
    )
    assert decide(src, lease(address="10.0.0.6", hostname="job8")).hosts == HEAD + (
        "10.0.0.6\tjob8.lan.example job8 node1\n"
    )


def test_a_nameserver_line_cut_at_64_kib_is_not_read_as_a_shorter_address():
    filler = "#" * (65536 - len("nameserver 10.0.0.2") - 1) + "\n"
    conf = parse_resolv_conf(filler + "nameserver 10.0.0.22\n")
    assert conf.nameservers == ()
    assert parse_resolv_conf("nameserver 10.0.0.22\n" + filler).nameservers == (A("10.0.0.22"),)


def test_a_file_of_exactly_64_kib_is_read_to_its_last_line():
    last = "nameserver 10.0.0.2"
    filler = "#" * (65536 - len(last) - 1) + "\n"
    assert len(filler + last) == resolver.MAX_FILE_BYTES
    assert parse_resolv_conf(filler + last).nameservers == (A("10.0.0.2"),)


# --- IPv6: DHCPv6 (options 23, 24) and router advertisements (RDNSS, DNSSL) ---------------

V6 = ipaddress.IPv6Address
BOTH_HEAD = "# The job's resolver, written by Lark (the DHCP lease and the DHCPv6 lease).\n"


def v6(*addresses: str) -> tuple[ipaddress.IPv6Address, ...]:
    return tuple(V6(a) for a in addresses)


def dual(**kw: object) -> Lan:
    """A dual-stack LAN: the DHCP lease's servers, then IPv6 ones as given."""
    given: dict[str, object] = {"address": V4("10.0.0.5"), "dns": (V4("10.0.0.1"),)}
    given.update(kw)
    return Lan(**given)  # type: ignore[arg-type]


def only6(**kw: object) -> Lan:
    """An IPv6-only LAN: no DHCP lease, no IPv4 address."""
    return Lan(None, **kw)  # type: ignore[arg-type]


def test_the_search_limits_are_glibcs_and_musls():
    assert resolver.MAX_SEARCH == 6
    assert resolver.MAX_SEARCH_CHARS == 255


def test_a_lan_built_positionally_as_before_has_no_ipv6_side():
    lan = Lan(V4("10.0.0.5"), (V4("10.0.0.1"),), "lan.example", "job7")
    assert (lan.dhcp6_dns, lan.dhcp6_domains, lan.ra_dns, lan.ra_domains) == ((), (), (), ())
    assert lan.link is None


def test_a_dual_stack_job_asks_ipv4_and_ipv6_servers_in_turn():
    view = decide(
        bridged(),
        dual(dns=(V4("10.0.0.1"), V4("10.0.0.2")), dhcp6_dns=v6("2001:db8::53"),
             dhcp6_domains=("v6.example",)),
    )  # fmt: skip
    assert view.resolv_conf == (
        BOTH_HEAD + "nameserver 10.0.0.1\nnameserver 2001:db8::53\nnameserver 10.0.0.2\n"
        "search v6.example\noptions ndots:2 rotate\n"
    )
    assert view.dns_path == "DHCP lease: 10.0.0.1 10.0.0.2; DHCPv6: 2001:db8::53"
    assert view.servers == (A("10.0.0.1"), A("2001:db8::53"), A("10.0.0.2"))
    assert view.relayed == ()


def test_a_lease_of_three_servers_does_not_shut_out_ipv6():
    lan = dual(dns=tuple(V4(f"10.0.0.{i}") for i in (1, 2, 3)), ra_dns=v6("2001:db8::1"))
    view = decide(bridged(), lan)
    assert view.servers == (A("10.0.0.1"), A("2001:db8::1"), A("10.0.0.2"))
    assert view.dns_path == "DHCP lease: 10.0.0.1 10.0.0.2; RA: 2001:db8::1"
    assert view.resolv_conf is not None
    assert view.resolv_conf.startswith(
        "# The job's resolver, written by Lark (the DHCP lease and router advertisements).\n"
    )


def test_ipv6_servers_fill_in_when_the_lease_has_one():
    lan = dual(dhcp6_dns=v6("2001:db8::53", "2001:db8::54"), ra_dns=v6("2001:db8::1"))
    view = decide(bridged(), lan)
    assert view.servers == (A("10.0.0.1"), A("2001:db8::53"), A("2001:db8::54"))
    assert view.dns_path == "DHCP lease: 10.0.0.1; DHCPv6: 2001:db8::53 2001:db8::54"


def test_dhcpv6_servers_come_before_the_ras():
    """RFC 8106 section 5.3.1: the DHCP information takes precedence over the RA's."""
    lan = only6(ra_dns=v6("2001:db8::1", "2001:db8::2"), dhcp6_dns=v6("2001:db8::53"))
    view = decide(bridged(), lan)
    assert view.servers == (A("2001:db8::53"), A("2001:db8::1"), A("2001:db8::2"))
    assert view.dns_path == "DHCPv6: 2001:db8::53; RA: 2001:db8::1 2001:db8::2"


def test_an_ipv6_only_job_resolves_through_ipv6():
    lan = only6(dhcp6_dns=v6("2001:db8::53"), ra_dns=v6("2001:db8::1"),
                dhcp6_domains=("lan.example",), ra_domains=("ra.example",))  # fmt: skip
    view = decide(bridged(node_resolv_conf="nameserver 127.0.0.53\noptions edns0\n"), lan)
    assert view.resolv_conf == (
        "# The job's resolver, written by Lark (the DHCPv6 lease and router advertisements).\n"
        "nameserver 2001:db8::53\nnameserver 2001:db8::1\n"
        "search lan.example ra.example\noptions edns0\n"
    )
    assert view.dns_path == "DHCPv6: 2001:db8::53; RA: 2001:db8::1"
    assert view.servers == (A("2001:db8::53"), A("2001:db8::1"))
    assert view.relayed == ()
    assert view.hosts is None  # (no IPv4 address to name)


def test_router_advertisements_alone_make_the_file():
    view = decide(bridged(), only6(ra_dns=v6("2001:db8::1"), ra_domains=("ra.example",)))
    assert view.resolv_conf == (
        "# The job's resolver, written by Lark (router advertisements).\n"
        "nameserver 2001:db8::1\nsearch ra.example\noptions ndots:2 rotate\n"
    )
    assert view.dns_path == "RA: 2001:db8::1"


def test_all_three_sources_are_named():
    lan = dual(dhcp6_dns=v6("2001:db8::53"), ra_domains=("ra.example",))
    view = decide(bridged(node_resolv_conf=None), lan)
    assert view.resolv_conf == (
        "# The job's resolver, written by Lark "
        "(the DHCP lease, the DHCPv6 lease and router advertisements).\n"
        "nameserver 10.0.0.1\nnameserver 2001:db8::53\nsearch ra.example\n"
    )
    assert view.dns_path == "DHCP lease: 10.0.0.1; DHCPv6: 2001:db8::53"


def test_a_server_both_leases_and_the_ra_name_is_asked_once_as_the_first_source_said():
    lan = only6(dhcp6_dns=v6("2001:db8::53", "2001:db8::53"),
                ra_dns=v6("2001:db8::1", "2001:db8::53", "2001:db8::1"))  # fmt: skip
    view = decide(bridged(), lan)
    assert view.servers == (A("2001:db8::53"), A("2001:db8::1"))
    assert view.dns_path == "DHCPv6: 2001:db8::53; RA: 2001:db8::1"
    twice = decide(bridged(), dual(dns=(V4("10.0.0.1"), V4("10.0.0.1"), V4("10.0.0.2"))))
    assert twice.servers == (A("10.0.0.1"), A("10.0.0.2"))
    assert twice.dns_path == "DHCP lease: 10.0.0.1 10.0.0.2"


def test_at_most_three_servers_in_all():
    lan = only6(dhcp6_dns=v6(*(f"2001:db8::{i}" for i in range(1, 6))), ra_dns=v6("2001:db8::a"))
    view = decide(bridged(), lan)
    assert view.servers == v6("2001:db8::1", "2001:db8::2", "2001:db8::3")
    assert view.dns_path == "DHCPv6: 2001:db8::1 2001:db8::2 2001:db8::3"
    assert view.resolv_conf is not None and view.resolv_conf.count("nameserver") == 3


def test_a_link_local_server_takes_the_jobs_interface_as_its_zone():
    lan = only6(ra_dns=v6("fe80::1", "2001:db8::1"), link="i_job7")
    view = decide(bridged(), lan)
    assert view.resolv_conf is not None
    assert "nameserver fe80::1%i_job7\nnameserver 2001:db8::1\n" in view.resolv_conf
    assert view.dns_path == "RA: fe80::1%i_job7 2001:db8::1"
    assert view.servers == (V6("fe80::1%i_job7"), V6("2001:db8::1"))
    assert parse_resolv_conf(view.resolv_conf).nameservers == (A("fe80::1"), A("2001:db8::1"))


def test_a_zone_a_server_came_with_is_replaced_by_the_jobs():
    lan = only6(dhcp6_dns=(V6("fe80::53%eth0"), V6("2001:db8::53%eth0")), link="i_job7")
    assert decide(bridged(), lan).servers == (V6("fe80::53%i_job7"), V6("2001:db8::53"))
    lan = only6(dhcp6_dns=(V6("fe80::53%eth0"),))
    assert decide(bridged(), lan).resolv_conf == NODE_CONF


@pytest.mark.parametrize(
    "link", [None, "", "a b", "i_job7\nnameserver 6.6.6.6", "x" * 16, "i/job", "a%b", ".x", "é"]
)
def test_without_a_good_zone_link_local_servers_are_left_out(link):
    view = decide(bridged(), only6(ra_dns=v6("fe80::1", "2001:db8::1"), link=link))
    assert view.servers == (A("2001:db8::1"),)
    alone = decide(bridged(), only6(ra_dns=v6("fe80::1"), link=link))
    assert alone.resolv_conf == NODE_CONF  # no server from the LAN: the node's file
    assert alone.dns_path == "node: 10.1.1.1"


@pytest.mark.parametrize("link", ["i_job7", "x" * 15, "i_a.b-c_D9", "-x"])
def test_interface_names_as_zones(link):
    view = decide(bridged(), only6(ra_dns=v6("fe80::1"), link=link))
    assert view.servers == (V6(f"fe80::1%{link}"),)


@pytest.mark.parametrize(
    "server", ["::", "::1", "ff02::1", "ff05::1:3", "::ffff:10.0.0.1", "::ffff:127.0.0.1"]
)
def test_ipv6_servers_no_one_on_the_lan_can_be_are_left_out(server):
    lan = only6(dhcp6_dns=v6(server, "2001:db8::53"), ra_dns=v6(server), link="i_job7")
    assert decide(bridged(), lan).servers == (A("2001:db8::53"),)
    assert decide(bridged(), only6(ra_dns=v6(server), link="i_job7")).resolv_conf == NODE_CONF


def test_a_static_or_nat_job_ignores_the_ipv6_side():
    lan = dual(dns=(), dhcp6_dns=v6("2001:db8::53"), ra_dns=v6("2001:db8::1"))
    assert decide(bridged(static=True), lan).resolv_conf == NODE_CONF
    job_dns = (V4("192.0.2.53"),)
    assert decide(bridged(static=True, job_dns=job_dns), lan).servers == job_dns
    assert decide(nat(), lan).resolv_conf is None


def test_domains_alone_make_no_file_of_the_lans():
    lan = only6(dhcp6_domains=("lan.example",), ra_domains=("ra.example",))
    assert decide(bridged(), lan).resolv_conf == NODE_CONF


def test_the_search_list_is_the_leases_domain_then_dhcpv6s_then_the_ras():
    lan = dual(domain="v4.example", dhcp6_domains=("d6.example", "e6.example"),
               ra_domains=("ra.example",), ra_dns=v6("2001:db8::1"))  # fmt: skip
    view = decide(bridged(), lan)
    assert view.resolv_conf is not None
    assert "\nsearch v4.example d6.example e6.example ra.example\n" in view.resolv_conf


def test_a_domain_is_searched_once_whatever_its_case_or_final_dot():
    lan = dual(domain="Lan.Example", dhcp6_domains=("lan.example.", "b.example"),
               ra_domains=("LAN.EXAMPLE", "B.Example.", "c.example", "c.exampleX"))  # fmt: skip
    view = decide(bridged(), lan)
    assert view.resolv_conf is not None
    assert "\nsearch Lan.Example b.example c.example c.exampleX\n" in view.resolv_conf


def test_at_most_six_domains_are_searched():
    lan = dual(dhcp6_domains=tuple(f"d{i}.example" for i in range(1, 5)),
               ra_domains=tuple(f"r{i}.example" for i in range(1, 5)))  # fmt: skip
    conf = parse_resolv_conf(decide(bridged(), lan).resolv_conf or "")
    assert conf.search == ("d1.example", "d2.example", "d3.example", "d4.example",
                           "r1.example", "r2.example")  # fmt: skip


def test_the_search_line_holds_at_most_255_characters_a_longer_domain_is_left_out():
    a, b, x = ("a" * 63 + ".example", "b" * 63 + ".example", "x" * 63 + ".example")
    c = "c" * 40  # 71 + 1 + 71 + 1 + 71 + 1 + 40 = 256: left out
    d = "d" * 39  # ... 255: fits
    lan = dual(domain=a, dhcp6_domains=(b, a.upper() + ".", x), ra_domains=(c, d, "e"))
    conf = parse_resolv_conf(decide(bridged(), lan).resolv_conf or "")
    assert conf.search == (a, b, x, d)
    assert len(" ".join(conf.search)) == 255


@pytest.mark.parametrize("domain", HOSTILE)
@pytest.mark.parametrize("where", ["dhcp6_domains", "ra_domains"])
def test_a_hostile_ipv6_domain_never_reaches_resolv_conf(domain, where):
    lan = only6(ra_dns=v6("2001:db8::1"), **{where: (domain, "ok.example")})
    also = "the DHCPv6 lease and " if where == "dhcp6_domains" else ""
    assert decide(bridged(), lan).resolv_conf == (
        f"# The job's resolver, written by Lark ({also}router advertisements).\n"
        "nameserver 2001:db8::1\nsearch ok.example\noptions ndots:2 rotate\n"
    )


@pytest.mark.parametrize("domain", ["lan.example\n", "evil\nnameserver 6.6.6.6", "a b"])
def test_a_hostile_lease_domain_does_not_keep_the_ipv6_domains_out(domain):
    lan = dual(domain=domain, dhcp6_domains=("d6.example",))
    assert "\nsearch d6.example\n" in (decide(bridged(), lan).resolv_conf or "")


def test_merge_servers_and_merge_search_say_where_each_came_from():
    lan = dual(dns=(V4("10.0.0.1"), V4("10.0.0.2")), domain="v4.example",
               dhcp6_dns=v6("2001:db8::53"), ra_dns=v6("2001:db8::1", "2001:db8::2"),
               dhcp6_domains=("d6.example",), ra_domains=("ra.example",))  # fmt: skip
    assert resolver.merge_servers(lan) == (
        (A("10.0.0.1"), "DHCP lease"),
        (A("2001:db8::53"), "DHCPv6"),
        (A("10.0.0.2"), "DHCP lease"),
    )
    assert resolver.merge_search(lan) == (
        ("v4.example", "DHCP lease"),
        ("d6.example", "DHCPv6"),
        ("ra.example", "RA"),
    )
    assert resolver.merge_servers(Lan(None)) == ()
    assert resolver.merge_search(Lan(None)) == ()
