"""A job's DHCPv6 identity (RFC 8415 section 11): DUID-LL of its MAC, or DUID-UUID
(RFC 6355) derived from the job's identity, so that two jobs never share one."""

from __future__ import annotations

import struct
import uuid

DUID_LL = 3  # RFC 8415 section 11.4
DUID_UUID = 4  # RFC 6355 section 4
HW_ETHERNET = 1  # IANA hardware type (RFC 826)

# Lark's own namespace for uuid5 (RFC 9562 section 5.5); fixed for ever, since a job's
# DUID, and so its lease at the server, follows from it.
LARK_NAMESPACE = uuid.UUID("5d0c1a8e-6f57-4c1e-9c59-1a4b0e7d6a31")


def duid_ll(mac: bytes) -> bytes:
    """Type 3, hardware type 1 (Ethernet), the 6-byte MAC (section 11.4)."""
    if len(mac) != 6:
        raise ValueError(f"an Ethernet MAC is 6 bytes, not {len(mac)}")
    return struct.pack("!HH", DUID_LL, HW_ETHERNET) + mac


def duid_uuid(value: uuid.UUID | bytes) -> bytes:
    """Type 4 and the 16 octets of the UUID (RFC 6355 section 4)."""
    raw = value.bytes if isinstance(value, uuid.UUID) else value
    if len(raw) != 16:
        raise ValueError(f"a UUID is 16 bytes, not {len(raw)}")
    return struct.pack("!H", DUID_UUID) + raw


def derive_job_uuid(identity: str) -> uuid.UUID:
    """uuid5 of ``identity`` in Lark's namespace. Two jobs share a DUID only if they share
    an identity: give one that no other job on the site has at the same time (HTCondor's
    GlobalJobId, ``schedd#cluster.proc#qdate``, with the execute node's name)."""
    if not identity:
        raise ValueError("a job identity must not be empty")
    return uuid.uuid5(LARK_NAMESPACE, identity)


def derive_job_duid(identity: str) -> bytes:
    return duid_uuid(derive_job_uuid(identity))


def derive_iaid(duid: bytes) -> int:
    """A 32-bit IAID (section 12) from the DUID: stable for one job, and the job has one
    interface and one IA_NA, so it only has to be the same from one message to the next."""
    return int.from_bytes(uuid.uuid5(LARK_NAMESPACE, duid.hex()).bytes[:4], "big")
