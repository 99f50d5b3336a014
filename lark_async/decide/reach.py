"""What a job may reach on its node, as the admin writes it: the node ports it opens
(``LARK_NODE_PORTS``) and the node's loopback services relayed into the job's namespace
(``LARK_JOB_LOOPBACK_SERVICES``).

Pure. Everything else on the node is closed to a NAT job (DESIGN.md section 4): the node's
addresses, its gateway address on the job's veth included, and the other jobs.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum

MAX_ENTRIES = 64  # an admin's list, not a firewall: more is a mistake, said as such
SHOWN_CHARS = 60  # of an entry quoted in an error: the message stays one short line


class Proto(StrEnum):
    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True)
class NodePort:
    """A port range on every node address that the admin opens to NAT jobs."""

    proto: Proto
    low: int
    high: int

    def __str__(self) -> str:
        ports = str(self.low) if self.low == self.high else f"{self.low}-{self.high}"
        return f"{self.proto} {ports}"


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Service:
    """A node loopback service that reaches the job on the same address and port inside its
    namespace (the agent listens there and relays to the node's)."""

    proto: Proto
    address: Address
    port: int
    why: str = "LARK_JOB_LOOPBACK_SERVICES"  # for the log: chirp, DNS, the admin's list
    checked: bool = False  # its flows go through the job's connection policy (DNS's do)

    def __str__(self) -> str:
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{self.proto} {host}:{self.port}"

    @property
    def key(self) -> tuple[Proto, Address, int]:
        return (self.proto, self.address, self.port)


_PORTS = re.compile(r"^(tcp|udp)\s+([0-9]{1,5})(?:-([0-9]{1,5}))?$", re.IGNORECASE)
_SERVICE = re.compile(
    r"^(tcp|udp)\s+(?:\[([0-9A-Fa-f:]+)\]|([0-9.]+)):([0-9]{1,5})$", re.IGNORECASE
)


def _entries(text: str) -> list[str]:
    entries = [" ".join(e.split()) for e in re.split(r"[,\n]", text) if e.strip()]
    if len(entries) > MAX_ENTRIES:
        raise ValueError(f"has {len(entries)} entries; at most {MAX_ENTRIES}")
    return entries


def _shown(entry: str) -> str:
    return repr(entry if len(entry) <= SHOWN_CHARS else entry[: SHOWN_CHARS - 3] + "...")


def _port(text: str, entry: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"entry {_shown(entry)} has port {text}, not between 1 and 65535")
    return port


def parse_node_ports(value: object) -> tuple[NodePort, ...]:
    """``tcp 3128, udp 8000-8010``; ValueError ends a sentence about the value."""
    found: list[NodePort] = []
    for entry in _entries(str(value)):
        m = _PORTS.match(entry)
        if m is None:
            raise ValueError(f"entry {_shown(entry)} is not 'tcp|udp PORT[-PORT]'")
        low = _port(m[2], entry)
        high = _port(m[3], entry) if m[3] else low
        if high < low:
            raise ValueError(f"entry {_shown(entry)} has its range backwards")
        found.append(NodePort(Proto(m[1].lower()), low, high))
    return tuple(dict.fromkeys(found))


def parse_services(value: object) -> tuple[Service, ...]:
    """``tcp 127.0.0.1:3128, udp [::1]:53``: loopback addresses only (anything else is
    reachable, or not, by routing and the firewall, never by the relay)."""
    found: dict[tuple[Proto, Address, int], Service] = {}
    for entry in _entries(str(value)):
        m = _SERVICE.match(entry)
        if m is None:
            raise ValueError(f"entry {_shown(entry)} is not 'tcp|udp ADDRESS:PORT'")
        try:
            address: Address = ipaddress.ip_address(m[2] or m[3])
        except ValueError:
            raise ValueError(f"entry {_shown(entry)} has no valid address") from None
        if not address.is_loopback:
            raise ValueError(
                f"entry {_shown(entry)} is not a loopback address (127.0.0.0/8 or ::1)"
            )
        service = Service(Proto(m[1].lower()), address, _port(m[4], entry))
        found.setdefault(service.key, service)
    return tuple(found.values())


@dataclass(frozen=True)
class NodeReach:
    """What of the node a NAT job's firewall lets through; the rest of the node's addresses
    (its gateway address on the job's veth included) and the other NAT jobs are closed."""

    ports: tuple[NodePort, ...] = ()  # LARK_NODE_PORTS, on every node address
    dns: tuple[Address, ...] = ()  # node addresses serving the job's DNS (53), either family
    job_to_job: bool = False  # LARK_JOB_TO_JOB

    def __str__(self) -> str:
        """For the log: ``tcp 3128, DNS on 10.0.0.1; other NAT jobs closed``."""
        opened = [str(port) for port in self.ports] + [f"DNS on {a}" for a in self.dns]
        jobs = "open" if self.job_to_job else "closed"
        return f"{', '.join(opened) or 'nothing'}; other NAT jobs {jobs}"

    def to_record(self) -> dict[str, object]:
        """For the state record's firewall step, so that a restore puts back the same rules."""
        return {
            "ports": [str(port) for port in self.ports],
            "dns": [str(addr) for addr in self.dns],
            "job_to_job": self.job_to_job,
        }

    @classmethod
    def from_record(cls, value: object) -> NodeReach:
        """``to_record``'s shape back; ValueError ends a sentence about what is wrong."""
        if not isinstance(value, dict):
            raise ValueError("is not an object")
        ports, dns, job_to_job = value.get("ports"), value.get("dns"), value.get("job_to_job")
        if not isinstance(ports, list) or not all(isinstance(p, str) for p in ports):
            raise ValueError(f"ports {ports!r} is not a list of 'tcp|udp PORT[-PORT]'")
        if not isinstance(dns, list) or not all(isinstance(a, str) for a in dns):
            raise ValueError(f"dns {dns!r} is not a list of IP addresses")
        if not isinstance(job_to_job, bool):
            raise ValueError(f"job_to_job {job_to_job!r} is not true or false")
        try:
            addresses = tuple(ipaddress.ip_address(a) for a in dns)
        except ValueError:
            raise ValueError(f"dns {dns!r} is not a list of IP addresses") from None
        return cls(parse_node_ports(", ".join(ports)), addresses, job_to_job)


CLOSED = NodeReach()  # nothing of the node opened: a NAT job's default
