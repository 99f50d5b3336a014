"""What a client is told: its identity, what it asks for, and its timings."""

from __future__ import annotations

from dataclasses import dataclass

from .arp import ProbeConfig


@dataclass(frozen=True)
class Config:
    chaddr: bytes
    client_id: bytes
    vendor_class: bytes = b"lark"
    hostname: str | None = None
    requested: tuple[int, ...] = (1, 3, 6, 12, 15, 26, 51, 54, 58, 59, 121)
    # The first retransmission comes after 2 s (+-1; RFC 2131 section 4.1 says 4): quick on a
    # lossy LAN, but never before 1 s, since a server that pings before it offers (ISC
    # dhcpd, dnsmasq) answers in about a second, and dnsmasq serves a DISCOVER that comes
    # during that second a second later still (measured: 2.0 s to a lease, against 1.0 s)
    retransmit_initial_s: float = 2.0
    retransmit_max_s: float = 64.0
    timeout_s: float = 60.0  # overall time to get a lease
    renew_retry_min_s: float = 60.0  # RFC 2131 section 4.4.5
    decline_wait_s: float = 10.0  # RFC 2131 section 3.1, step 5
    max_message_size: int = 1500
    broadcast_flag: bool = False
    # RFC 5227 probe of a new lease before it is reported bound (RFC 2131 section 2.2: the
    # client SHOULD); None reports it bound on the ACK. The RFC's own timings take 4-7 s:
    # ``arp.FAST`` is for callers that value a quick start on a LAN they know.
    probe: ProbeConfig | None = ProbeConfig()
