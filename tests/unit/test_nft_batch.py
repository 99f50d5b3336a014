"""Golden tests of what the nftables backend sends: the nfnetlink batches of a job's rules
and removals, captured from the public functions and decoded to text (nftdecode.py).

The golden files under golden/ are the rules as the kernel gets them; a change to the
encoder that changes one byte changes this text. ``192.168.181.3`` is ``0xc0a8b503``,
``10.77.0.11`` is ``0x0a4d000b``; a fib address type or a ct state is in host byte order
(``0x01000000`` is unicast here), as nft writes it.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
from pathlib import Path

import pytest
from helpers.netlink import FakeKernel, ack, ack_all, reply

from lark_async.backends.firewall import nft
from lark_async.backends.netlink import nfnl
from lark_async.backends.netlink.core import NLM_F_ACK, Received, Socket, attr, nest
from lark_async.backends.netlink.nftdecode import describe_batch, describe_message
from lark_async.decide.reach import NodeReach, parse_node_ports
from lark_async.errors import KernelError

GOLDEN = Path(__file__).parent / "golden"
ADDR = ipaddress.IPv4Address("192.168.181.3")
NAT_JOB = nft.JobRules("LARK_s1-123_0", "e_s1-123_0", ADDR, nat=True)
NO_ADDRESS_JOB = nft.JobRules("LARK_p42", "e_p42", None, nat=True)
BRIDGE_JOB = nft.BridgeRules("LARK_b7", "e_b7", "02:aa:bb:cc:dd:ee")
NAT_ELEMENT = """\
newsetelem inet [request,ack,create]
  table="lark"
  set="nat_sources"
  elements
    key(value=0xc0a8b503)
"""
NAT6_ELEMENT = """\
newsetelem inet [request,ack,create]
  table="lark"
  set="nat_sources6"
  elements
    key(value=0xfd4c61726b0000000000000000000003)
"""


def golden(name: str) -> str:
    return (GOLDEN / f"{name}.nft-batch").read_text()


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    """The backend's one nfnetlink channel, over a fake kernel that accepts everything."""
    fake = FakeKernel(ack_all)
    monkeypatch.setattr(nft, "_channel", nfnl.Channel(Socket(fake)))
    return fake


def sent(kernel: FakeKernel) -> str:
    return "".join(describe_batch(data) + "\n" for data in kernel.sent)


def test_a_nat_job_is_one_batch_counting_both_ways_closed_to_the_node_and_other_jobs(kernel):
    """Counted in every family, spoofed sources dropped, the node and the other NAT jobs
    closed to it (replies to what the node opened go), masqueraded."""
    nft.apply_job(NAT_JOB)
    assert sent(kernel) == golden("inet_add_nat_job")


def test_what_the_admin_opens_of_the_node_is_in_the_same_batch(kernel):
    """``tcp 3128, udp 8000-8010`` and DNS on a node address let on before the node's drop;
    with LARK_JOB_TO_JOB no rule keeps the job from the others."""
    reach = NodeReach(parse_node_ports("tcp 3128, udp 8000-8010"),
                      (ipaddress.IPv4Address("10.77.0.11"),), job_to_job=True)  # fmt: skip
    nft.apply_job(dataclasses.replace(NAT_JOB, reach=reach))
    assert len(kernel.sent) == 1
    assert sent(kernel) == golden("inet_add_nat_job_reaching_the_node")


def test_a_job_without_nat_has_no_nat_source(kernel):
    nft.apply_job(nft.JobRules(NAT_JOB.chain, NAT_JOB.external_interface, ADDR, nat=False))
    assert NAT_ELEMENT in golden("inet_add_nat_job")
    assert sent(kernel) == golden("inet_add_nat_job").replace(NAT_ELEMENT, "")


def test_a_job_without_an_address_has_no_spoofing_rule_and_no_nat_source(kernel):
    nft.apply_job(NO_ADDRESS_JOB)
    assert sent(kernel) == golden("inet_add_job_without_address")


ADDR6 = ipaddress.IPv6Address("fd4c:6172:6b00::3")
DUAL_STACK_JOB = dataclasses.replace(NAT_JOB, internal_address6=ADDR6, nat6=True)


def test_a_dual_stack_job_counts_its_ipv6_part_drops_spoofed_ipv6_and_is_masqueraded(kernel):
    """Beside the IPv4 job's rules: the IPv6 part of each count, IPv6 only from its address
    or a link-local one, and its address in ``nat_sources6``; still one batch."""
    nft.apply_job(DUAL_STACK_JOB)
    assert len(kernel.sent) == 1
    assert sent(kernel) == golden("inet_add_dual_stack_job")


def test_an_ipv6_only_job_has_no_ipv4_at_all(kernel):
    """On an IPv6-only node: no IPv4 address, so any IPv4 from the job is dropped."""
    nft.apply_job(dataclasses.replace(DUAL_STACK_JOB, internal_address=None))
    assert sent(kernel) == golden("inet_add_ipv6_only_job")


def test_a_routed_job_has_no_nat66_source(kernel):
    routed = dataclasses.replace(DUAL_STACK_JOB, nat6=False)
    nft.apply_job(routed)
    added = golden("inet_add_dual_stack_job")
    assert NAT6_ELEMENT in added
    assert sent(kernel) == added.replace(NAT6_ELEMENT, "")


def test_removing_a_dual_stack_job_takes_both_nat_sources(kernel):
    nft.discard_job(DUAL_STACK_JOB)
    assert sent(kernel) == golden("inet_remove_dual_stack_job")


def test_a_stray_nat66_source_is_removed_from_the_ipv6_set(kernel):
    nft.discard_nat_source(ADDR6)
    assert sent(kernel) == golden("remove_nat_source").replace(
        'set="nat_sources"', 'set="nat_sources6"'
    ).replace("0xc0a8b503", "0x" + ADDR6.packed.hex())


def test_removing_a_nat_job_unhooks_it_before_deleting_its_chain(kernel):
    nft.discard_job(NAT_JOB)
    assert sent(kernel) == golden("inet_remove_nat_job")


def test_removing_a_job_without_an_address_touches_no_nat_source(kernel):
    nft.discard_job(NO_ADDRESS_JOB)
    assert sent(kernel) == golden("inet_remove_job_without_address")


def test_removing_a_bridged_job_removes_its_address_set_after_its_chain(kernel):
    nft.discard_bridge_job(BRIDGE_JOB)
    assert sent(kernel) == golden("bridge_remove_job")


def test_a_stray_nat_source_is_removed_alone(kernel):
    nft.discard_nat_source(ADDR)
    assert sent(kernel) == golden("remove_nat_source")


def messages(text: str) -> list[str]:
    """The lines of a decoded batch without its begin and end."""
    return [line for line in text.splitlines() if not line.startswith("batch ")]


def refusing(err: int, batches: int) -> FakeKernel:
    """A kernel refusing the first message of the first ``batches`` batches with ``err``."""
    count = 0

    def answer(sent: list[Received]) -> list[bytes]:
        nonlocal count
        count += 1
        acked = [m for m in sent if m.flags & NLM_F_ACK]
        if count > batches:
            return [ack(m.seq) for m in acked]
        return [ack(acked[0].seq, err)] + [ack(m.seq) for m in acked[1:-1]]  # no end: aborted

    return FakeKernel(answer)


def test_a_removal_finding_part_gone_removes_each_piece_alone(monkeypatch):
    """ENOENT (by errno) for the batch: each message again on its own, ENOENT being done."""
    fake = refusing(errno.ENOENT, batches=2)
    monkeypatch.setattr(nft, "_channel", nfnl.Channel(Socket(fake)))
    nft.discard_job(NAT_JOB)
    assert len(fake.sent) == 1 + 4  # the batch, then its four messages one by one
    one_by_one = [line for data in fake.sent[1:] for line in messages(describe_batch(data))]
    assert one_by_one == messages(golden("inet_remove_nat_job"))


def test_a_removal_refused_for_another_reason_is_an_error(monkeypatch):
    fake = refusing(errno.EPERM, batches=1)
    monkeypatch.setattr(nft, "_channel", nfnl.Channel(Socket(fake)))
    with pytest.raises(KernelError) as info:
        nft.discard_job(NAT_JOB)
    assert str(info.value) == "remove firewall chain LARK_s1-123_0: Operation not permitted"
    assert info.value.__cause__.errno == errno.EPERM
    assert len(fake.sent) == 1


def test_a_failed_commit_is_an_error(monkeypatch):
    """Every message acked but the batch end refused: the transaction did not happen."""

    def answer(sent: list[Received]) -> list[bytes]:
        acked = [m for m in sent if m.flags & NLM_F_ACK]
        return [ack(m.seq) for m in acked[:-1]] + [ack(acked[-1].seq, errno.ENOMEM)]

    monkeypatch.setattr(nft, "_channel", nfnl.Channel(Socket(FakeKernel(answer))))
    with pytest.raises(KernelError, match="Cannot allocate memory"):
        nft.apply_job(NAT_JOB)


# -- absence, asked by errno where libnftables only has words ---------------------------------


class FailingNft:
    """libnftables refusing the first ``failures`` commands; the commands it was given."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.commands: list[str] = []

    def run(self, commands: str, doing: str) -> str:
        self.commands.append(commands)
        if len(self.commands) <= self.failures:
            raise nft.NftError(doing, "Error: whatever the words say")
        return "table listed"


def answering_lookups(err: int) -> FakeKernel:
    """A kernel answering every lookup with ``err`` (0: found, with one reply)."""

    def answer(sent: list[Received]) -> list[bytes]:
        (msg,) = sent
        return [ack(msg.seq, err)] if err else [reply(msg.seq, b"\x07\0\0\0")]

    return FakeKernel(answer)


@pytest.mark.parametrize("failures", [1, 2])
def test_a_bridged_job_that_fails_is_tried_once_more_with_the_base(monkeypatch, failures):
    """No look at the port map in between: an agent starting at the same moment may create
    the table between the failure and the look (a CI run reported such a failure)."""
    fake_nft = FailingNft(failures=failures)
    monkeypatch.setattr(nft, "_nft", fake_nft)
    if failures == 1:
        nft.apply_bridge_job(BRIDGE_JOB)
    else:
        with pytest.raises(nft.NftError):
            nft.apply_bridge_job(BRIDGE_JOB)
    assert fake_nft.commands == [
        nft.render_bridge_add(BRIDGE_JOB),
        nft.render_bridge_base() + "\n" + nft.render_bridge_add(BRIDGE_JOB),
    ]


@pytest.mark.parametrize(("lookup", "absent"), [(errno.ENOENT, True), (0, False)])
def test_dumping_a_table_that_is_not_there_is_empty(monkeypatch, lookup, absent):
    monkeypatch.setattr(nft, "_nft", FailingNft(failures=1))
    monkeypatch.setattr(nft, "_channel", nfnl.Channel(Socket(answering_lookups(lookup))))
    if absent:
        assert nft.dump_table(nft.BRIDGE_FAMILY) == ""
    else:
        with pytest.raises(nft.NftError):
            nft.dump_table(nft.BRIDGE_FAMILY)


# -- the decoder hides nothing ----------------------------------------------------------------


def test_the_decoder_shows_what_it_does_not_know_instead_of_dropping_it():
    body = (
        b"\x01\0\0\0"  # nfgenmsg: inet
        + attr(nfnl.NFTA_CHAIN_TABLE, b"lark\0")
        + attr(9, b"\x01\x02")  # unknown
        + attr(nfnl.NFTA_CHAIN_NAME, b"x")  # no NUL
        + b"\xff"  # trailing
    )
    assert describe_message((10 << 8) | nfnl.NFT_MSG_NEWCHAIN, 0x4, body) == [
        "newchain inet [ack]",
        '  table="lark"',
        "  ?9=0x0102",
        "  name=0x78",
        "  ?-1=0xff",
    ]


def test_the_decoder_marks_a_nested_attribute_sent_without_the_nested_flag():
    data = attr(nfnl.NFTA_SET_ELEM_KEY, attr(nfnl.NFTA_DATA_VALUE, b"\x0a\0\0\x01"))
    elements = nest(nfnl.NFTA_LIST_ELEM, data)  # nested, as it should be
    body = b"\x01\0\0\0" + nest(nfnl.NFTA_SET_ELEM_LIST_ELEMENTS, elements)
    lines = describe_message((10 << 8) | nfnl.NFT_MSG_DELSETELEM, 0, body)
    assert lines[-1] == "    key!flat(value=0x0a000001)"
