"""The nfnetlink encoder: message shapes, and counters parsed back from rule payloads."""

from __future__ import annotations

import ipaddress
import struct

from lark_async.backends.netlink import nfnl
from lark_async.decide.reach import CLOSED, NodeReach, parse_node_ports

ADDR = ipaddress.IPv4Address("192.168.181.3")
DNS = ipaddress.IPv4Address("10.77.0.11")
OPEN = NodeReach(parse_node_ports("tcp 3128, udp 8000-8010"), (DNS,), job_to_job=False)


def add(nat_set: str | None = "nat_sources", internal=ADDR, reach: NodeReach = CLOSED):
    return nfnl.job_add(
        "lark", "LARK_j", "e_j", internal, "jobs", nat_set, ("Outgoing", "Incoming"), reach
    )


def body_attrs(msg: nfnl.Message) -> dict[int, bytes]:
    return nfnl.parse_attrs(msg.body[4:])  # past nfgenmsg


def expressions(msg: nfnl.Message) -> list[str]:
    """The names of a rule's expressions, in order."""
    exprs = nfnl.attr_list(body_attrs(msg)[nfnl.NFTA_RULE_EXPRESSIONS])
    return [nfnl.parse_attrs(e)[nfnl.NFTA_EXPR_NAME].rstrip(b"\0").decode() for e in exprs]


def verdict(msg: nfnl.Message) -> int:
    """The verdict code a rule ends with."""
    last = nfnl.attr_list(body_attrs(msg)[nfnl.NFTA_RULE_EXPRESSIONS])[-1]
    data = nfnl.parse_attrs(nfnl.parse_attrs(last)[nfnl.NFTA_EXPR_DATA])
    code = nfnl.parse_attrs(
        nfnl.parse_attrs(data[nfnl.NFTA_IMMEDIATE_DATA])[nfnl.NFTA_DATA_VERDICT]
    )
    return struct.unpack(">i", code[nfnl.NFTA_VERDICT_CODE])[0]


def test_add_is_chain_rules_map_entry_and_nat_source_in_that_order():
    kinds = [m.kind for m in add()]
    assert kinds == [
        nfnl.NFT_MSG_NEWCHAIN,
        *[nfnl.NFT_MSG_NEWRULE] * 8,  # 2 counters, spoofing, node (4), other jobs
        nfnl.NFT_MSG_NEWSETELEM,
        nfnl.NFT_MSG_NEWSETELEM,
    ]
    assert add()[0].flags & nfnl.NLM_F_EXCL  # never adopt someone else's chain


def test_without_an_address_there_is_no_spoof_rule_and_no_nat_source():
    kinds = [m.kind for m in add(nat_set=None, internal=None)]
    assert kinds.count(nfnl.NFT_MSG_NEWRULE) == 7
    assert kinds.count(nfnl.NFT_MSG_NEWSETELEM) == 1


def test_the_counters_count_every_family():
    """No ``meta nfproto``: what crosses the veth is counted whatever its family."""
    for counting in add()[1:3]:
        assert expressions(counting) == ["meta", "cmp", "counter"]


def test_the_node_is_closed_but_for_replies_and_neighbour_discovery_and_so_are_other_jobs():
    rules = add()[4:9]
    icmpv6 = ["meta", "cmp", "meta", "cmp", "payload", "cmp", "fib", "cmp", "immediate"]
    assert [expressions(r) for r in rules] == [
        ["meta", "cmp", "fib", "cmp", "ct", "bitwise", "cmp", "immediate"],
        ["meta", "cmp", *icmpv6],
        ["meta", "cmp", *icmpv6],
        ["meta", "cmp", "fib", "cmp", "immediate"],
        ["meta", "cmp", "meta", "cmp", "ct", "bitwise", "cmp", "immediate"],
    ]
    assert [verdict(r) for r in rules] == [nfnl.NFT_RETURN] * 3 + [nfnl.NF_DROP] * 2


def test_each_opened_port_and_dns_address_lets_on_before_the_node_drop():
    rules = [m for m in add(reach=OPEN) if m.kind == nfnl.NFT_MSG_NEWRULE][3:]
    assert [verdict(r) for r in rules] == [nfnl.NFT_RETURN] * 7 + [nfnl.NF_DROP] * 2
    assert expressions(rules[4])[-6:] == ["payload", "cmp", "cmp", "fib", "cmp", "immediate"]
    assert all("fib" in expressions(r) for r in rules[:-1])  # inert where the node forwards


def test_jobs_reaching_each_other_have_no_rule_against_it():
    closed = [m for m in add() if m.kind == nfnl.NFT_MSG_NEWRULE]
    opened = [m for m in add(reach=NodeReach(job_to_job=True)) if m.kind == nfnl.NFT_MSG_NEWRULE]
    assert opened == closed[:-1]


def test_every_message_is_inet_family_and_names_table_and_chain():
    for msg in add():
        assert msg.body[0] == nfnl.NFPROTO_INET
        assert body_attrs(msg)[1] == b"lark\0"  # *_TABLE is attribute 1 everywhere


def test_rules_carry_their_comment_as_nftnl_userdata():
    rule = body_attrs(add()[1])
    assert rule[nfnl.NFTA_RULE_CHAIN] == b"LARK_j\0"
    assert rule[nfnl.NFTA_RULE_USERDATA] == bytes([0, 9]) + b"Outgoing\0"


def test_map_entry_jumps_to_the_job_chain_with_a_padded_ifname_key():
    elems = nfnl.attr_list(body_attrs(add()[-2])[nfnl.NFTA_SET_ELEM_LIST_ELEMENTS])
    elem = nfnl.parse_attrs(elems[0])
    key = nfnl.parse_attrs(elem[nfnl.NFTA_SET_ELEM_KEY])[nfnl.NFTA_DATA_VALUE]
    assert key == b"e_j".ljust(16, b"\0")
    verdict = nfnl.parse_attrs(
        nfnl.parse_attrs(elem[nfnl.NFTA_SET_ELEM_DATA])[nfnl.NFTA_DATA_VERDICT]
    )
    assert struct.unpack(">i", verdict[nfnl.NFTA_VERDICT_CODE])[0] == nfnl.NFT_JUMP
    assert verdict[nfnl.NFTA_VERDICT_CHAIN] == b"LARK_j\0"


def test_remove_drops_map_entry_and_nat_source_before_flushing_and_deleting_the_chain():
    msgs = nfnl.job_remove("lark", "LARK_j", "e_j", ADDR, "jobs", "nat_sources")
    assert [m.kind for m in msgs] == [
        nfnl.NFT_MSG_DELSETELEM,
        nfnl.NFT_MSG_DELSETELEM,
        nfnl.NFT_MSG_DELRULE,
        nfnl.NFT_MSG_DELCHAIN,
    ]
    flush = body_attrs(msgs[2])
    assert flush == {nfnl.NFTA_RULE_TABLE: b"lark\0", nfnl.NFTA_RULE_CHAIN: b"LARK_j\0"}


def test_counter_and_comment_are_read_back_from_a_rule_payload():
    counting = add()[1]
    payload = counting.body[4:]
    # the kernel reports counters in the counter expression's data; ours are zero on add
    assert nfnl.rule_counter(payload) == ("Outgoing", 0, 0)


def test_rule_without_comment_or_counter_has_no_counter_value():
    spoof = add()[3]
    assert nfnl.rule_counter(spoof.body[4:]) is None


def test_truncated_payloads_give_no_counter_rather_than_an_error():
    payload = add()[1].body[4:]
    for cut in range(len(payload)):
        assert nfnl.rule_counter(payload[:cut]) in (None, ("Outgoing", 0, 0))
