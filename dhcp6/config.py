"""What a client is told: its identity, what it asks for, and its timings."""

from __future__ import annotations

from dataclasses import dataclass

from . import options as opt
from .errors import MalformedMessage


@dataclass(frozen=True)
class Config:
    duid: bytes  # duid.duid_ll(mac) or duid.derive_job_duid(identity): never shared by two jobs
    iaid: int  # of the one IA_NA the client keeps
    rapid_commit: bool = True  # RFC 8415 section 18.2.1: SOLICIT asks for a two-message exchange
    requested: tuple[int, ...] = (opt.DNS_SERVERS, opt.DOMAIN_LIST)
    # RFC 8415 section 18.2.1 delays the first SOLICIT by 0..SOL_MAX_DELAY (1 s) so that a
    # link's hosts that start together do not answer together; a job's namespace is one
    # host that starts alone, and Lark passes 0.
    solicit_delay_max_s: float = 1.0
    sol_max_rt_s: float = 3600.0  # section 7.6; a server's SOL_MAX_RT option replaces it
    timeout_s: float = 60.0  # overall time to get a lease (like dhcp.Config)

    def __post_init__(self) -> None:
        try:
            opt.check_duid(self.duid, "our")
        except MalformedMessage as exc:
            raise ValueError(str(exc)) from None
        if not 0 <= self.iaid <= 0xFFFFFFFF:
            raise ValueError(f"IAID {self.iaid} is not 32 bits")
        if self.solicit_delay_max_s < 0 or self.timeout_s <= 0 or self.sol_max_rt_s <= 0:
            raise ValueError("delays and timeouts must not be negative")
