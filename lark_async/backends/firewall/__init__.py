"""The job's firewall behind one interface (base.py), its backend chosen once (choice.py).

* nftables (default): a NAT job in the ``inet lark`` table, a bridged job in
  ``bridge lark`` (nft.py; nft_jobs.py puts it behind the interface);
* iptables (``LARK_FIREWALL_BACKEND = iptables``, NAT only): the job's chain in a
  build's filter table, and for its IPv6 in the matching ip6tables build's
  (iptables.py, xtables.py; iptables_jobs.py);
* either way, a NAT job's traffic accepted in each iptables (ip6tables) build
  whose FORWARD would drop it (nodefilter.py finds them, forward.py).

Outside this package, code speaks only to ``FirewallDriver`` (a live job),
``JobFirewall`` (one job: apply, discard, counters, poll checks, restore, record)
and the node-wide ``leftovers``/``dump``/NAT sources; nothing asks which backend.
"""

from .base import (
    Binding,
    Check,
    Counters,
    Damage,
    Finding,
    FirewallDriver,
    FirewallRecordError,
    JobFirewall,
    Leftover,
)
from .choice import driver_for, from_record
from .inventory import dump, leftovers
from .iptables import ACCEPT_CHAIN
from .nft_jobs import discard_nat_source, nat_sources
from .nodefilter import NodeFilter

__all__ = [
    "ACCEPT_CHAIN",
    "Binding",
    "Check",
    "Counters",
    "Damage",
    "Finding",
    "FirewallDriver",
    "FirewallRecordError",
    "JobFirewall",
    "Leftover",
    "NodeFilter",
    "discard_nat_source",
    "driver_for",
    "dump",
    "from_record",
    "leftovers",
    "nat_sources",
]
