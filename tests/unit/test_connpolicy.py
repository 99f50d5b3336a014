from __future__ import annotations

import ipaddress

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lark_async.decide.connpolicy import (
    ConnectionPolicy,
    admin_policy,
    job_policy,
    parse_rule,
    parse_rules,
)

ADMIN = parse_rules(
    "allow tcp 10.0.0.0/8:443\n deny udp 0.0.0.0/0:53, allow any 192.168.1.0/24, "
    "allow udp 10.1.0.0/16:1000-2000"
)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def assert_narrowed_to(policy: ConnectionPolicy, wanted: str, outside: tuple) -> None:
    """``policy`` narrowed by the job's ``wanted`` keeps the admin's entries and default and
    holds exactly the job's entries; each job entry's own destination (its first address and
    lowest port) is allowed by that entry, and ``outside`` (proto, address, port), which the
    admin allows and the job did not list, is refused as not in the job's list."""
    job = parse_rules(wanted, job=True)
    narrowed = policy.narrowed(job)
    assert narrowed == ConnectionPolicy(policy.rules, policy.default_allow, job)
    for rule in job:
        v6 = rule.network.version == 6
        proto = {None: 6, 1: 58 if v6 else 1}.get(rule.proto, rule.proto)
        port = rule.ports[0] if rule.ports else (None if rule.proto == 1 else 443)
        decision = narrowed.decide(proto, rule.network.network_address, port)
        assert (decision.allow, decision.rule) == (True, f"job: {rule.text}")
    proto, dst, port = outside
    assert policy.decide(proto, ip(dst), port).allow  # (the admin's alone allows it)
    refused = narrowed.decide(proto, ip(dst), port)
    assert (refused.allow, refused.rule) == (False, "job: not in LarkAllowedConnections")


@pytest.mark.parametrize(
    ("proto", "dst", "port", "allow", "rule"),
    [
        (6, "10.9.9.9", 443, True, "allow tcp 10.0.0.0/8:443"),
        (6, "10.9.9.9", 80, False, "default deny"),
        (17, "192.168.1.7", 53, False, "deny udp 0.0.0.0/0:53"),  # first match wins
        (17, "192.168.1.7", 54, True, "allow any 192.168.1.0/24"),
        (1, "192.168.1.7", None, True, "allow any 192.168.1.0/24"),
        (17, "10.1.2.3", 1500, True, "allow udp 10.1.0.0/16:1000-2000"),
        (17, "10.1.2.3", 2001, False, "default deny"),
        (1, "10.9.9.9", None, False, "default deny"),
    ],
)
def test_first_match_decides_else_the_default(proto, dst, port, allow, rule):
    decision = ConnectionPolicy(ADMIN, False).decide(proto, ip(dst), port)
    assert (decision.allow, decision.rule) == (allow, rule)


def test_default_allow_turns_the_list_into_a_blocklist():
    policy = admin_policy(parse_rules("deny tcp 10.0.0.0/8"), "allow")
    assert policy.decide(6, ip("10.0.0.1"), 22).allow is False
    assert policy.decide(6, ip("8.8.8.8"), 22).rule == "default allow"


@pytest.mark.parametrize(
    "wanted",
    ["tcp 10.0.0.5:443", "tcp 10.2.0.0/16:443", "udp 192.168.1.9:123", "icmp 192.168.1.9",
     "tcp 192.168.1.0/25", "udp 10.1.5.5:1000-1100", "allow tcp 10.0.0.1:443"],
)  # fmt: skip
def test_a_job_may_ask_for_less(wanted):
    assert_narrowed_to(ConnectionPolicy(ADMIN, False), wanted, (6, "10.255.255.254", 443))


@pytest.mark.parametrize(
    "wanted",
    ["tcp 10.0.0.5", "tcp 10.0.0.5:80", "udp 192.168.1.9:53", "any 192.168.1.0/25",
     "udp 10.1.5.5:900-1100", "tcp 8.8.8.8:443", "any 192.168.1.0/24:50-60"],
)  # fmt: skip
def test_a_job_may_not_ask_for_more(wanted):
    with pytest.raises(ValueError, match="asks for more than this node's connection policy"):
        ConnectionPolicy(ADMIN, False).narrowed(parse_rules(wanted, job=True))


def test_a_narrowed_policy_needs_both_the_admin_and_the_job():
    policy = job_policy(ADMIN, "deny", parse_rules("tcp 10.0.0.5:443", job=True))
    assert policy is not None
    assert policy.decide(6, ip("10.0.0.5"), 443).rule == "job: tcp 10.0.0.5:443"
    assert policy.decide(6, ip("10.0.0.6"), 443).rule == "job: not in LarkAllowedConnections"
    assert policy.decide(6, ip("10.0.0.5"), 80).rule == "default deny"


def test_without_an_admin_policy_a_job_narrows_an_open_network():
    assert job_policy(None, "deny", None) is None  # no policy at all: no queue
    policy = job_policy(None, "deny", parse_rules("udp 10.0.0.1:53", job=True))
    assert policy is not None and policy.decide(17, ip("10.0.0.1"), 53).allow
    assert not policy.decide(6, ip("10.0.0.1"), 80).allow


@pytest.mark.parametrize(
    ("text", "job", "message"),
    [
        ("alow tcp 1.2.3.4", False, "entry 1 'alow tcp 1.2.3.4': unknown verdict 'alow'"),
        ("allow tcp 1.2.3.4, tcp 1.2.3.5", False, "entry 2 'tcp 1.2.3.5': needs allow or deny"),
        ("allow tcp 1.2.3.4:0", False, "port range 0 is not within 1-65535"),
        ("allow tcp 1.2.3.4:70000", False, "port range 70000 is not within 1-65535"),
        ("allow tcp 1.2.3.4:9-3", False, "port range 9-3 is not within"),
        ("allow icmp 1.2.3.4:7", False, "icmp has no ports"),
        ("allow tcp 1.2.3.999", False, "'1.2.3.999' is not an IPv4 address"),
        ("allow sctp 1.2.3.4", False, "is not [allow|deny]"),
        ("allow tcp 1.2.3.4; rm -rf /", False, "is not [allow|deny]"),
        ("", False, "has no entries"),
        ("deny tcp 1.2.3.4", True, "a job may only list what it wants allowed"),
    ],
)
def test_malformed_entries_are_named(text, job, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("|", r"\|")):
        parse_rules(text, job=job)


# IPv6


@pytest.mark.parametrize(
    ("entry", "proto", "network", "ports"),
    [
        ("allow tcp [2001:db8::/32]:443", 6, "2001:db8::/32", (443, 443)),
        ("deny [::1]:53", None, "::1/128", (53, 53)),
        ("allow udp [2001:DB8::5]:1000-2000", 17, "2001:db8::5/128", (1000, 2000)),
        ("allow icmp [::/0]", 1, "::/0", None),
        ("allow tcp [2001:db8::1/64]", 6, "2001:db8::/64", None),  # host bits dropped
        ("allow any [2001:db8::10.0.0.1]", None, "2001:db8::a00:1/128", None),
        ("allow any [64:ff9b::/96]", None, "64:ff9b::/96", None),
        ("allow tcp [::ffff:0:0/95]", 6, "::fffe:0:0/95", None),  # more than mapped space
        ("allow tcp [::/96]", 6, "::/96", None),  # (IPv4-compatible: not mapped)
        ("ALLOW TCP [fe80::/10]:22", 6, "fe80::/10", (22, 22)),
        ("allow tcp 10.0.0.0/8:443", 6, "10.0.0.0/8", (443, 443)),
    ],
)
def test_ipv6_entries_are_bracketed(entry, proto, network, ports):
    (rule,) = parse_rules(entry)
    assert (rule.proto, rule.network, rule.ports) == (
        proto,
        ipaddress.ip_network(network),
        ports,
    )
    assert rule.text == entry
    assert parse_rules(rule.text) == (rule,)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("allow tcp 2001:db8::/32", "an IPv6 address goes in brackets: [ADDRESS/PREFIX]:PORT"),
        ("allow tcp 2001:db8::1:443", "an IPv6 address goes in brackets"),
        ("allow tcp ::1", "an IPv6 address goes in brackets"),
        ("allow tcp 1.2.3.4:5", None),
        ("allow tcp 1:2", "'1' is not an IPv4 address"),  # (one colon: not taken for IPv6)
        ("allow tcp [fe80::1%eth0]:22",
         "[fe80::1%eth0]: a zone (%...) names a link, which a policy cannot"),
        ("allow tcp [fe80::%1/64]", "a zone (%...) names a link"),
        ("allow tcp [10.0.0.1]:22", "[10.0.0.1]: brackets are for IPv6; write an IPv4 address"),
        ("allow tcp [::ffff:10.0.0.1]:443",
         "[::ffff:10.0.0.1] is IPv4-mapped: write 10.0.0.1 (it is decided as that IPv4 "
         "destination)"),
        ("allow tcp [::ffff:10.0.0.0/104]", "is IPv4-mapped: write 10.0.0.0/8 (it is"),
        ("allow any [::ffff:0:0/96]", "is IPv4-mapped: write 0.0.0.0/0 (it is"),
        ("allow any [::ffff:a00:1/127]", "is IPv4-mapped: write 10.0.0.0/31 (it is"),
        ("allow tcp [2001:db8::/129]", "[2001:db8::/129] is not an IPv6 address or network ("),
        ("allow tcp [2001:db8:::1]", "[2001:db8:::1] is not an IPv6 address or network ("),
        ("allow tcp [2001:db8::g]", "[2001:db8::g] is not an IPv6 address or network"),
        ("allow tcp [::1/0x10]", "[::1/0x10] is not an IPv6 address or network"),
        ("allow tcp [::\u0661]", "is not an IPv6 address or network"),  # an Arabic-Indic 1
        ("allow tcp [::1/\u0661]", "is not an IPv6 address or network"),
        ("allow tcp 1.2.3.4:\u0664\u0664\u0663", "is not [allow|deny]"),  # not port 443
        ("allow tcp 1.2.3.4/\u0668", "is not [allow|deny]"),
        ("allow tcp []:443", "is not [allow|deny]"),
        ("allow tcp [[::1]]", "is not [allow|deny]"),
        ("allow tcp [::1]]:53", "is not [allow|deny]"),
        ("allow tcp [::1]:", "is not [allow|deny]"),
        ("allow tcp [::1]53", "is not [allow|deny]"),
        ("allow tcp [::1] :53", "is not [allow|deny]"),
        ("allow tcp [::1/64 ]", "is not [allow|deny]"),
        ("allow tcp [::1]:65536", "port range 65536 is not within 1-65535, low to high"),
        ("allow tcp [::1]:0-5", "port range 0-5 is not within 1-65535"),
        ("allow icmp [::1]:7", "icmp has no ports"),
        ("allow tcp [::1]:7-7-7", "is not [allow|deny]"),
    ],
)  # fmt: skip
def test_malformed_ipv6_entries_are_named(entry, message):
    if message is None:
        assert parse_rules(entry)
        return
    with pytest.raises(ValueError) as caught:
        parse_rules(entry)
    assert str(caught.value).startswith(f"entry 1 {entry!r}: ")
    assert message in str(caught.value)


def test_an_entry_is_at_most_100_characters_and_its_message_stays_short():
    # (whitespace counts once: entries are read with single spaces)
    at_limit = "allow tcp [" + "1:" * 44 + "]"
    assert len(at_limit) == 100
    with pytest.raises(ValueError, match="is not an IPv6 address"):
        parse_rules(at_limit)
    over = "allow tcp [" + "1:" * 44 + "1]"
    with pytest.raises(ValueError) as caught:
        parse_rules(over)
    assert str(caught.value) == f"entry 1 '{over[:57]}...': is longer than 100 characters"
    spaced = "allow  tcp\t[2001:db8::/32]:443" + " " * 200
    assert parse_rules(spaced)[0].text == "allow tcp [2001:db8::/32]:443"
    huge = "allow tcp [" + ":" * 1_000_000 + "]"
    with pytest.raises(ValueError, match="is longer than 100 characters"):
        parse_rules(huge)


def test_a_job_lists_at_most_256_entries():
    entries = ", ".join(f"tcp 10.0.{n // 256}.{n % 256}:443" for n in range(257))
    assert len(parse_rules(entries.replace("tcp", "allow tcp"))) == 257  # (the admin's: any)
    assert len(parse_rules(entries.rsplit(",", 1)[0], job=True)) == 256
    with pytest.raises(ValueError, match=r"^has 257 entries; a job may list at most 256$"):
        parse_rules(entries, job=True)


POLICY6 = parse_rules(
    "allow tcp [2001:db8::/32]:443, deny udp [::/0]:53, allow any [2001:db8:1::/48], "
    "allow icmp [2001:db8:2::/48], allow icmp 10.0.0.0/8, allow tcp 10.0.0.0/8:443, "
    "deny any 0.0.0.0/0"
)


@pytest.mark.parametrize(
    ("proto", "dst", "port", "allow", "rule"),
    [
        (6, "2001:db8::5", 443, True, "allow tcp [2001:db8::/32]:443"),
        (6, "2001:db8::5", 80, False, "default deny"),
        (6, "2001:db9::5", 443, False, "default deny"),  # (0.0.0.0/0 is IPv4's only)
        (17, "2001:db8:1::5", 53, False, "deny udp [::/0]:53"),  # first match wins
        (17, "2001:db8:1::5", 54, True, "allow any [2001:db8:1::/48]"),
        (58, "2001:db8:1::5", None, True, "allow any [2001:db8:1::/48]"),
        (58, "2001:db8:2::5", None, True, "allow icmp [2001:db8:2::/48]"),  # ICMPv6 is icmp
        (6, "2001:db8:2::5", 443, True, "allow tcp [2001:db8::/32]:443"),
        (17, "2001:db8:2::5", 443, False, "default deny"),
        (1, "10.0.0.1", None, True, "allow icmp 10.0.0.0/8"),
        (58, "fe80::1", None, False, "default deny"),
        (17, "10.0.0.1", 443, False, "deny any 0.0.0.0/0"),
    ],
)
def test_ipv6_connections_are_decided_by_ipv6_entries(proto, dst, port, allow, rule):
    decision = ConnectionPolicy(POLICY6, False).decide(proto, ip(dst), port)
    assert (decision.allow, decision.rule) == (allow, rule)


def test_one_policy_for_both_families_ipv4_only_denies_all_ipv6_by_default():
    policy = admin_policy(parse_rules("allow any 0.0.0.0/0"), "deny")
    assert policy.decide(6, ip("10.0.0.1"), 443).allow
    for dst in ("2001:db8::1", "::1", "fe80::1", "ff02::1", "::"):
        assert policy.decide(6, ip(dst), 443).rule == "default deny"
    # a blocklist blocks what it lists: IPv6 is listed apart
    block = admin_policy(parse_rules("deny tcp 10.0.0.0/8, deny tcp [2001:db8::/32]"), "allow")
    assert not block.decide(6, ip("2001:db8::1"), 22).allow
    assert block.decide(6, ip("2001:db9::1"), 22).rule == "default allow"


@pytest.mark.parametrize(
    ("text", "default", "proto", "dst", "port", "allow", "rule"),
    [
        ("allow tcp 10.0.0.0/8:443, allow any [::/0]", "deny", 6, "::ffff:10.1.2.3", 443,
         True, "allow tcp 10.0.0.0/8:443 (as 10.1.2.3)"),
        ("allow tcp 10.0.0.0/8:443, allow any [::/0]", "deny", 6, "::ffff:8.8.8.8", 443,
         False, "default deny (as 8.8.8.8)"),  # [::/0] allows no IPv4 destination
        ("deny tcp 10.0.0.0/8, allow any [::/0]", "allow", 6, "::ffff:10.0.0.1", 22,
         False, "deny tcp 10.0.0.0/8 (as 10.0.0.1)"),
        ("allow icmp 10.0.0.0/8", "deny", 58, "::ffff:10.0.0.1", None,
         True, "allow icmp 10.0.0.0/8 (as 10.0.0.1)"),
        ("allow any [::/0], deny any 10.0.0.0/8", "allow", 6, "64:ff9b::a00:1", 22,
         False, "allow any [::/0]; deny any 10.0.0.0/8 (NAT64 to 10.0.0.1)"),
        ("allow any [::/0], deny any 10.0.0.0/8", "allow", 6, "64:ff9b::808:808", 22,
         True, "allow any [::/0]; default allow (NAT64 to 8.8.8.8)"),
        ("allow any [::/0], allow tcp 8.8.8.8:443", "deny", 6, "64:ff9b::808:808", 443,
         True, "allow any [::/0]; allow tcp 8.8.8.8:443 (NAT64 to 8.8.8.8)"),
        ("allow any [::/0], allow tcp 8.8.8.8:443", "deny", 6, "64:ff9b::808:808", 80,
         False, "allow any [::/0]; default deny (NAT64 to 8.8.8.8)"),
        ("deny any [64:ff9b::/96], allow any 0.0.0.0/0", "allow", 6, "64:ff9b::808:808", 443,
         False, "deny any [64:ff9b::/96]"),
        ("allow any 0.0.0.0/0", "deny", 6, "64:ff9b::808:808", 443, False, "default deny"),
        # outside the /96 (another NAT64 prefix is the site's, in its own entries)
        ("allow any [::/0], deny any 0.0.0.0/0", "deny", 6, "64:ff9b:1::808:808", 443,
         True, "allow any [::/0]"),
        ("allow any [::/0], deny any 0.0.0.0/0", "deny", 6, "64:ff9b::1:808:808", 443,
         True, "allow any [::/0]"),
    ],
)  # fmt: skip
def test_ipv6_addresses_standing_for_ipv4_ones_never_get_round_ipv4_entries(
    text, default, proto, dst, port, allow, rule
):
    decision = admin_policy(parse_rules(text), default).decide(proto, ip(dst), port)
    assert (decision.allow, decision.rule) == (allow, rule)


ADMIN6 = parse_rules(
    "allow tcp [2001:db8::/32]:443, deny any [2001:db8:bad::/48], allow any [2001:db8::/32], "
    "allow tcp 10.0.0.0/8:443"
)


@pytest.mark.parametrize(
    ("wanted", "ok"),
    [
        ("tcp [2001:db8:5::/48]:443", True),
        ("tcp [2001:db8::1]:443", True),
        ("udp [2001:db8:5::1]:53", True),
        ("icmp [2001:db8:5::1]", True),
        ("tcp 10.0.0.1:443, tcp [2001:db8::1]:443", True),  # both families in one list
        ("tcp [2001:db8::/31]:443", False),
        ("tcp [::/0]:443", False),
        ("udp [2001:db8:bad::1]:53", False),
        ("any [2001:db8::/32]", False),  # the deny before it touches it
        ("tcp [2001:db9::1]:443", False),
        ("tcp 10.0.0.1:80", False),
        ("tcp [::a00:1]:443", False),  # (no IPv6 entry is an IPv4 one)
    ],
)
def test_a_job_narrows_ipv6_as_it_narrows_ipv4(wanted, ok):
    policy = ConnectionPolicy(ADMIN6, False)
    if ok:
        assert_narrowed_to(policy, wanted, (6, "2001:db8:ffff::1", 443))
    else:
        with pytest.raises(ValueError, match="asks for more than this node's connection"):
            policy.narrowed(parse_rules(wanted, job=True))


def test_a_jobs_ipv4_only_list_leaves_it_no_ipv6():
    policy = job_policy(None, "deny", parse_rules("tcp 10.0.0.5:443", job=True))
    assert policy is not None
    assert policy.decide(6, ip("10.0.0.5"), 443).allow
    assert policy.decide(6, ip("2001:db8::5"), 443).rule == "job: not in LarkAllowedConnections"
    assert (
        policy.decide(6, ip("::ffff:10.0.0.5"), 443).rule == "job: tcp 10.0.0.5:443 (as 10.0.0.5)"
    )


def test_a_jobs_nat64_entry_still_meets_the_admins_ipv4_entries():
    admin = parse_rules("deny any 10.0.0.0/8")
    policy = job_policy(admin, "allow", parse_rules("any [64:ff9b::/96]", job=True))
    assert policy is not None
    assert policy.decide(6, ip("64:ff9b::808:808"), 443).rule == (
        "job: any [64:ff9b::/96]; default allow (NAT64 to 8.8.8.8)"
    )
    denied = policy.decide(6, ip("64:ff9b::a00:1"), 443)
    assert (denied.allow, denied.rule) == (
        False,
        "job: any [64:ff9b::/96]; deny any 10.0.0.0/8 (NAT64 to 10.0.0.1)",
    )


ENTRY_TEXT = st.text(
    alphabet="allowdenytcpudpicmpany []:/.%,-0123456789abcdefABCDEF\n\t", max_size=60
)


@given(ENTRY_TEXT, st.booleans())
def test_any_text_parses_or_says_why_in_one_line(text, job):
    try:
        rules = parse_rules(text, job=job)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    for rule in rules:
        assert parse_rules(rule.text, job=job) == (rule,)
        assert rule.network.version == (6 if "[" in rule.text else 4)


# POLICY6's IPv6 entries as (allow, protocols, network, ports), written out apart from the
# parser: what a destination that stands for no IPv4 one is decided by, first match first
POLICY6_IPV6 = [
    (True, {6}, "2001:db8::/32", (443, 443)),
    (False, {17}, "::/0", (53, 53)),
    (True, None, "2001:db8:1::/48", None),
    (True, {1, 58}, "2001:db8:2::/48", None),
]
DB8 = 0x20010DB8 << 96
IPV6_DESTINATIONS = st.one_of(
    st.integers(0, 2**128 - 1),
    st.integers(0, 2**96 - 1).map(lambda low: DB8 | low),  # 2001:db8::/32
    st.integers(0, 2**80 - 1).map(lambda low: DB8 | (1 << 80) | low),  # 2001:db8:1::/48
    st.integers(0, 2**80 - 1).map(lambda low: DB8 | (2 << 80) | low),  # 2001:db8:2::/48
)


@given(IPV6_DESTINATIONS, st.sampled_from([1, 6, 17, 58, 50]), st.integers(0, 65535))
def test_any_ipv6_destination_is_decided(value, proto, port):
    """By the first IPv6 entry that matches, else the default: both the verdict and the
    entry named (IPv6 addresses standing for IPv4 ones have their own tests above)."""
    dst = ipaddress.IPv6Address(value)
    assume(dst.ipv4_mapped is None and dst not in ipaddress.IPv6Network("64:ff9b::/96"))
    expected = (False, "default deny")
    for text, (allow, protos, network, ports) in zip(
        [r.text for r in POLICY6 if r.network.version == 6], POLICY6_IPV6, strict=True
    ):
        if protos is not None and proto not in protos:
            continue
        if dst not in ipaddress.IPv6Network(network):
            continue
        if ports is not None and not ports[0] <= port <= ports[1]:
            continue
        expected = (allow, text)
        break
    decision = admin_policy(POLICY6, "deny").decide(proto, dst, port)
    assert (decision.allow, decision.rule) == expected


# exact words and boundaries (mutation testing found them untested)


@pytest.mark.parametrize(
    ("text", "job", "message"),
    [
        ("", False, "has no entries"),
        (" , \n ,", False, "has no entries"),
        ("allow icmp 1.2.3.4:7", False, "entry 1 'allow icmp 1.2.3.4:7': icmp has no ports"),
        ("deny tcp 1.2.3.4", True,
         "entry 1 'deny tcp 1.2.3.4': a job may only list what it wants allowed"),
        ("allow tcp 2001:db8::1", False,
         "entry 1 'allow tcp 2001:db8::1': an IPv6 address goes in brackets: "
         "[ADDRESS/PREFIX]:PORT"),
        ("deny [::1] 2001:db8::1", False,
         "entry 1 'deny [::1] 2001:db8::1': an IPv6 address goes in brackets: "
         "[ADDRESS/PREFIX]:PORT"),
        ("deny [::1] [2001:db8::1", False,
         "entry 1 'deny [::1] [2001:db8::1': is not [allow|deny] [tcp|udp|icmp|any] "
         "ADDRESS[/PREFIX][:PORT[-PORT]]"),
        ("allow tcp [2001:db8::1] 2001:db8::1", False,
         "entry 1 'allow tcp [2001:db8::1] 2001:db8::1': an IPv6 address goes in brackets: "
         "[ADDRESS/PREFIX]:PORT"),
        ("allow tcp " + "1" * 50, False, "entry 1 'allow tcp " + "1" * 50 + "': '" + "1" * 50
         + "' is not an IPv4 address or network (Expected 4 octets in '" + "1" * 50 + "')"),
        ("allow tcp " + "1" * 51, False, "entry 1 'allow tcp " + "1" * 47 + "...': '"
         + "1" * 51 + "' is not an IPv4 address or network (Expected 4 octets in '"
         + "1" * 51 + "')"),
    ],
)  # fmt: skip
def test_messages_word_for_word(text, job, message):
    with pytest.raises(ValueError) as caught:
        parse_rules(text, job=job)
    assert str(caught.value) == message


def test_port_and_prefix_boundaries():
    assert parse_rules("allow tcp 1.2.3.4:1")[0].ports == (1, 1)
    assert parse_rules("allow tcp 1.2.3.4:65535")[0].ports == (65535, 65535)
    assert parse_rules("allow tcp 1.2.3.4:1-65535")[0].ports == (1, 65535)
    assert parse_rules("allow tcp 10.1.2.3/8")[0].network == ipaddress.ip_network("10.0.0.0/8")
    assert parse_rules("allow udp [2001:db8::1/32]")[0].network == ipaddress.ip_network(
        "2001:db8::/32"
    )


@pytest.mark.parametrize(
    ("wanted", "ok"),
    [
        ("tcp 10.0.0.1:150", False),  # inside the deny
        ("tcp 10.0.0.1:50-100", False),  # touching its low end
        ("tcp 10.0.0.1:200-300", False),  # touching its high end
        ("tcp 10.0.0.1:50-99", True),
        ("tcp 10.0.0.1:201-300", True),
    ],
)
def test_a_deny_touching_a_jobs_port_range_refuses_it(wanted, ok):
    policy = ConnectionPolicy(
        parse_rules("deny tcp 10.0.0.0/8:100-200, allow tcp 0.0.0.0/0"), False
    )
    if ok:
        assert_narrowed_to(policy, wanted, (6, "8.8.8.8", 443))
    else:
        with pytest.raises(ValueError, match="asks for more"):
            policy.narrowed(parse_rules(wanted, job=True))


def test_a_refused_job_entry_is_named_by_its_number():
    with pytest.raises(ValueError) as caught:
        ConnectionPolicy(ADMIN, False).narrowed(
            parse_rules("tcp 10.0.0.5:443, tcp 8.8.8.8:443", job=True)
        )
    assert str(caught.value) == (
        "entry 2 'tcp 8.8.8.8:443' asks for more than this node's connection policy allows"
    )


def test_a_job_outside_its_list_is_denied_and_without_one_gets_the_admins_policy():
    narrowed = job_policy(ADMIN, "deny", parse_rules("tcp 10.0.0.5:443", job=True))
    assert narrowed is not None
    refused = narrowed.decide(6, ip("10.0.0.6"), 443)
    assert (refused.allow, refused.rule) == (False, "job: not in LarkAllowedConnections")
    plain = job_policy(ADMIN, "allow", None)
    assert plain == ConnectionPolicy(ADMIN, True)


def test_a_nat64_address_is_decided_by_its_protocol_and_port_in_ipv6_too():
    policy = admin_policy(parse_rules("allow tcp [64:ff9b::/96]:443, allow any 0.0.0.0/0"), "deny")
    assert policy.decide(6, ip("64:ff9b::808:808"), 443).allow
    assert policy.decide(6, ip("64:ff9b::808:808"), 80).rule == "default deny"
    assert policy.decide(17, ip("64:ff9b::808:808"), 443).rule == "default deny"


def test_one_entry_alone_is_the_admins_unless_said():
    assert parse_rule("allow tcp [::1]:53").allow
    with pytest.raises(ValueError, match=r"^needs allow or deny$"):
        parse_rule("tcp [::1]:53")
    assert parse_rule("tcp [::1]:53", job=True).allow
