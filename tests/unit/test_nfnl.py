"""The nfnetlink encoder: message shapes, and counters parsed back from rule payloads."""

from __future__ import annotations

import ipaddress
import struct

from lark_async.backends.netlink import nfnl

ADDR = ipaddress.IPv4Address("192.168.181.3")


def add(nat_set: str | None = "nat_sources", internal=ADDR):
    return nfnl.job_add(
        "lark", "LARK_j", "e_j", internal, "jobs", nat_set, ("Outgoing", "Incoming")
    )


def body_attrs(msg: nfnl.Message) -> dict[int, bytes]:
    return nfnl.parse_attrs(msg.body[4:])  # past nfgenmsg


def test_add_is_chain_three_rules_map_entry_and_nat_source_in_that_order():
    kinds = [m.kind for m in add()]
    assert kinds == [
        nfnl.NFT_MSG_NEWCHAIN,
        nfnl.NFT_MSG_NEWRULE,
        nfnl.NFT_MSG_NEWRULE,
        nfnl.NFT_MSG_NEWRULE,
        nfnl.NFT_MSG_NEWSETELEM,
        nfnl.NFT_MSG_NEWSETELEM,
    ]
    assert add()[0].flags & nfnl.NLM_F_EXCL  # never adopt someone else's chain


def test_without_an_address_there_is_no_spoof_rule_and_no_nat_source():
    kinds = [m.kind for m in add(nat_set=None, internal=None)]
    assert kinds.count(nfnl.NFT_MSG_NEWRULE) == 2
    assert kinds.count(nfnl.NFT_MSG_NEWSETELEM) == 1


def test_every_message_is_inet_family_and_names_table_and_chain():
    for msg in add():
        assert msg.body[0] == nfnl.NFPROTO_INET
        assert body_attrs(msg)[1] == b"lark\0"  # *_TABLE is attribute 1 everywhere


def test_rules_carry_their_comment_as_nftnl_userdata():
    rule = body_attrs(add()[1])
    assert rule[nfnl.NFTA_RULE_CHAIN] == b"LARK_j\0"
    assert rule[nfnl.NFTA_RULE_USERDATA] == bytes([0, 9]) + b"Outgoing\0"


def test_map_entry_jumps_to_the_job_chain_with_a_padded_ifname_key():
    elems = nfnl.attr_list(body_attrs(add()[4])[nfnl.NFTA_SET_ELEM_LIST_ELEMENTS])
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
