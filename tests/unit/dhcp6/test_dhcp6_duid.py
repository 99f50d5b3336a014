"""A job's DHCPv6 identity: DUID-LL and DUID-UUID bytes, and a per-job UUID."""

from __future__ import annotations

import uuid

import pytest

from dhcp6 import duid
from dhcp6 import options as opt


def test_duid_ll_is_type_3_ethernet_and_the_mac():
    assert duid.duid_ll(bytes.fromhex("02aabbccddee")) == bytes.fromhex("0003000102aabbccddee")
    with pytest.raises(ValueError, match=r"^an Ethernet MAC is 6 bytes, not 5$"):
        duid.duid_ll(b"\x02" * 5)


def test_duid_uuid_is_type_4_and_16_octets():
    u = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
    assert duid.duid_uuid(u) == bytes.fromhex("0004") + u.bytes
    assert duid.duid_uuid(u.bytes) == duid.duid_uuid(u)
    with pytest.raises(ValueError, match=r"^a UUID is 16 bytes, not 15$"):
        duid.duid_uuid(bytes(15))


def test_a_job_identity_gives_one_uuid_for_ever():
    # fixed: a job's DUID (and so its lease at the server) follows from Lark's namespace
    assert uuid.UUID("5d0c1a8e-6f57-4c1e-9c59-1a4b0e7d6a31") == duid.LARK_NAMESPACE
    u = duid.derive_job_uuid("schedd.example#12.0#1700000000@node7")
    assert u == uuid.uuid5(duid.LARK_NAMESPACE, "schedd.example#12.0#1700000000@node7")
    assert u.version == 5
    assert duid.derive_job_duid("schedd.example#12.0#1700000000@node7") == duid.duid_uuid(u)


def test_two_jobs_never_share_a_duid():
    ids = [
        f"schedd#{c}.{p}#1700000000@node{n}" for c in range(50) for p in range(4) for n in (1, 2)
    ]
    duids = {duid.derive_job_duid(i) for i in ids}
    assert len(duids) == len(ids)
    for d in duids:
        assert opt.check_duid(d, "job") == d  # a valid DUID-UUID for the codec


def test_an_empty_identity_is_refused():
    with pytest.raises(ValueError, match=r"^a job identity must not be empty$"):
        duid.derive_job_uuid("")


def test_an_iaid_is_32_bits_and_stable():
    d = duid.derive_job_duid("a")
    assert duid.derive_iaid(d) == duid.derive_iaid(d) != duid.derive_iaid(duid.derive_job_duid("b"))
    assert 0 <= duid.derive_iaid(d) < 2**32
