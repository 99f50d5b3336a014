"""Job, interface, namespace and chain names: readable if they fit, else hashed; never > 15."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from lark_async.decide import names
from lark_async.errors import EXIT_USAGE, UsageError

KERNEL_IFNAME_MAX = 15  # IFNAMSIZ - 1
IPTABLES_CHAIN_MAX = 28
VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,12}")
HASHED = re.compile(r"h[a-z2-7]{12}")

HOSTILE = [
    "../x",
    "a b",
    "é",
    "x" * 1000,
    "a/b",
    "$(reboot)",
    "-rf",
    "a\nb",
    "slot1\n",
    ".",
    "..",
    "\x00",
    "e_x;rm",
    "slot\u0661",  # ARABIC-INDIC DIGIT ONE, which \d matches
    "\u200b",
]


def assert_fits_the_kernel(name: str) -> None:
    assert VALID.fullmatch(name), name
    assert len(name) <= names.NAME_MAX == 13
    assert len(names.external_interface(name)) <= KERNEL_IFNAME_MAX
    assert len(names.internal_interface(name)) <= KERNEL_IFNAME_MAX
    assert len(names.chain_name(name)) <= IPTABLES_CHAIN_MAX


@pytest.mark.parametrize(
    ("slot", "job_id", "expected"),
    [
        ("slot1@node.example.org", "123.0", "s1-123_0"),
        ("slot1_2@node", "123.0", "s1_2-123_0"),
        ("slot12_34@node", None, "s12_34"),
        ("slot1", None, "s1"),
        (None, "7.3", "7_3"),
        ("gpu@node", "1.0", "gpu-1_0"),
    ],
)
def test_slot_and_job_id_give_a_readable_name(slot, job_id, expected):
    name = names.derive_name(slot, job_id, "p42")
    assert name == expected
    assert_fits_the_kernel(name)


@pytest.mark.parametrize(("slot", "job_id"), [(None, None), ("", ""), (None, ""), ("", None)])
def test_fallback_is_used_when_there_is_no_slot_and_no_job_id(slot, job_id):
    assert names.derive_name(slot, job_id, "p4242") == "p4242"


@pytest.mark.parametrize("slot", ["@node", "@other", "@", "@@x"])
def test_fallback_is_used_when_the_slot_short_name_is_empty(slot):
    assert names.derive_name(slot, None, "p4242") == "p4242"
    assert names.derive_name(slot, None, "p1") == "p1"  # ad-less runs stay apart


@pytest.mark.parametrize("slot", ["@node", "@"])
def test_an_empty_slot_short_name_is_left_out_of_the_name(slot):
    assert names.derive_name(slot, "123.0", "p4242") == "123_0"


def test_fallback_is_ignored_when_a_slot_or_job_id_is_given():
    assert names.derive_name("slot3@n", None, "p1") == "s3"
    assert names.derive_name(None, "9.1", "p1") == "9_1"


def test_a_name_longer_than_13_characters_is_hashed_to_exactly_13():
    readable = "s1_2-1234567_12"
    assert len(readable) > 13
    name = names.derive_name("slot1_2@node", "1234567.12", "p1")
    assert HASHED.fullmatch(name)
    assert len(name) == 13
    assert_fits_the_kernel(name)


def test_fourteen_characters_are_hashed():
    assert len("s1_1-1234567_0") == 14
    assert HASHED.fullmatch(names.derive_name("slot1_1@node", "1234567.0", "p1"))


def test_thirteen_characters_stay_readable():
    name = names.derive_name("slot1_2@node", "123456.1", "p1")
    assert name == "s1_2-123456_1"
    assert len(name) == 13


def test_hashed_names_are_deterministic():
    a = names.derive_name("slot1_2@node", "1234567.12", "p1")
    b = names.derive_name("slot1_2@other", "1234567.12", "p2")
    assert a == b  # only the slot's short name and the job id count


def test_a_hashed_name_is_the_same_in_every_release():
    """The hash is of the readable parts joined by '|' (sha256, base32, 12 characters): an
    agent of another release must find, and sweep, what the one before it named."""
    digest = hashlib.sha256(b"s1_2|1234567_12").digest()
    expected = "h" + base64.b32encode(digest).decode().lower()[:12]
    assert names.derive_name("slot1_2@node", "1234567.12", "p1") == expected


def test_hashed_names_of_different_jobs_differ():
    derived = {names.derive_name("slot1_1@n", f"{10_000_000 + i}.0", "p1") for i in range(2000)}
    assert len(derived) == 2000
    assert all(HASHED.fullmatch(n) for n in derived)


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("where", ["slot", "job_id", "fallback"])
def test_hostile_strings_always_give_a_safe_name(hostile, where):
    kwargs = {"slot": None, "job_id": None, "fallback": "p1"}
    kwargs[where] = hostile
    name = names.derive_name(kwargs["slot"], kwargs["job_id"], kwargs["fallback"])
    assert_fits_the_kernel(name)
    assert "/" not in name
    assert ".." not in name


@pytest.mark.parametrize("hostile", ["../x", "a b", "é", "x" * 1000, "$(reboot)"])
def test_hostile_slot_names_are_hashed_not_passed_through(hostile):
    assert HASHED.fullmatch(names.derive_name(hostile, "1.0", "p1"))


@pytest.mark.parametrize("name", ["a", "A1", "0", "job-1_x", "a" * 13, "Z-_"])
def test_check_name_accepts_valid_names(name):
    assert names.check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "a" * 14, "-a", "_a", "a b", "../x", "é", "a\n", "e_x/", "a.b", "a\x00"]
)
def test_check_name_rejects_invalid_names_with_a_usage_error(name):
    with pytest.raises(UsageError) as info:
        names.check_name(name)
    assert info.value.exit_code == EXIT_USAGE == 2
    assert "\n" not in str(info.value)


def test_check_name_error_message_names_the_rule():
    with pytest.raises(UsageError) as info:
        names.check_name("../x")
    assert str(info.value) == (
        "job name '../x' must be 1-13 characters of letters, digits, '_' or '-'"
        " and start with a letter or digit"
    )


def test_interface_netns_and_chain_names():
    assert names.external_interface("s1-123_0") == "e_s1-123_0"
    assert names.internal_interface("s1-123_0") == "i_s1-123_0"
    assert names.netns_name("s1-123_0") == "lark-s1-123_0"
    assert names.chain_name("s1-123_0") == "LARK_s1-123_0"


def test_longest_name_fits_interface_and_chain_limits():
    longest = "a" * names.NAME_MAX
    assert len(names.external_interface(longest)) == KERNEL_IFNAME_MAX
    assert len(names.internal_interface(longest)) == KERNEL_IFNAME_MAX
    assert len(names.chain_name(longest)) == 18 <= IPTABLES_CHAIN_MAX


@pytest.mark.parametrize(
    ("job_id", "pid", "expected"),
    [
        ("123.0", 4242, "123_0-w39u"),
        (None, 4242, "w39u"),
        ("1234567890.12", 99999, "7890_12-w255r"),  # the end of the id, the most distinctive
        ("12345678901234.1", 4194304, "1234_1-w2hwcg"),
        ("1.0", 0, "1_0-w0"),
        ("1.23456", 4194304, "23456-w2hwcg"),  # a cut that would start with '_' drops it
        ("X1.0", 4242, "X1_0-w39u"),  # only '_' and '-' are dropped from its start
        (".", 4242, "w39u"),  # nothing of the id is left: the tag alone, no leading '-'
        ("__-.", 4242, "w39u"),
    ],
)
def test_wrap_names_carry_the_agents_pid(job_id, pid, expected):
    name = names.derive_agent_name(job_id, pid)
    assert name == expected
    assert names.check_name(name) == name


def test_wrap_names_of_two_live_agents_never_collide():
    seen = {names.derive_agent_name("42.0", pid) for pid in range(1, 5000)}
    assert len(seen) == 4999


@pytest.mark.parametrize(
    ("thing", "prefix", "job"),
    [
        ("e_s1-42_0", "e_", "s1-42_0"),
        ("lark-abc", "lark-", "abc"),
        ("LARK_abc", "LARK_", "abc"),
        ("abc", "", "abc"),
        ("eth0", "e_", None),  # another prefix: not Lark's
        ("e_", "e_", None),  # nothing after it
        ("e_../x", "e_", None),  # no job name could be that
        ("e_abcdefghijklmn", "e_", None),  # 14 characters: longer than a job name
        ("lark-agent", "lark-", "agent"),
    ],
)
def test_the_job_a_thing_was_named_for(thing, prefix, job):
    assert names.job_of(thing, prefix) == job


def test_the_job_a_thing_was_named_for_without_a_prefix():
    """The sweeper names lock files and state records by the job name alone."""
    assert names.job_of("s1-42_0") == "s1-42_0"
    assert names.job_of("../x") is None


SLOTS = ["slot1_1@node", "slot1_2@node", "slot1@node", "slot2@node", "slot12_1@node"]


@pytest.mark.parametrize("job_id", ["123.0", "123456.1", "1234567.0", "987654321.12345"])
def test_the_same_job_id_in_two_slots_gives_two_names(job_id):
    """A job id repeats on a node (the same job rerun, a cluster id from another schedd), but
    no two slots hold one job at once: the slot's name is in the name, read or hashed."""
    derived = [names.derive_name(slot, job_id, "p1") for slot in SLOTS]
    assert len(set(derived)) == len(SLOTS), derived
    for name in derived:
        assert_fits_the_kernel(name)
