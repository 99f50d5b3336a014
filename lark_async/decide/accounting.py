"""Pure: counter samples -> the Network* attributes of the update ad."""

from __future__ import annotations

import re

# HTCondor's NetworkInputMb/NetworkOutputMb are decimal megabytes: its docker universe
# publishes them as ``double(netIn) / (1000 * 1000)`` (src/condor_starter.V6.1/docker_proc.cpp),
# and a site's monitoring stores a Lark job's in the same field as a docker job's
BYTES_PER_MB = 1000 * 1000
_ATTR_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


# The comments of the job chain's two counting rules, whichever backend holds them: the
# names the ad's Network<Comment> attributes come from (NetworkOutgoing, NetworkIncoming).
OUTGOING, INCOMING = "Outgoing", "Incoming"
# the IPv6 part of each, counted by a job with IPv6: NetworkOutgoingIPv6, NetworkIncomingIPv6
OUTGOING_IPV6, INCOMING_IPV6 = "OutgoingIPv6", "IncomingIPv6"


def derive_accounting(counters: dict[str, tuple[int, int]], elapsed_s: float) -> dict[str, object]:
    """Bytes at the IP layer, from the job's point of view, plus one ``Network<Comment>`` per
    commented counting rule an admin added to the job's chain (invalid names are skipped)."""
    incoming = counters.get(INCOMING, (0, 0))[0]
    outgoing = counters.get(OUTGOING, (0, 0))[0]
    values: dict[str, object] = {
        "NetworkIncoming": incoming,
        "NetworkOutgoing": outgoing,
        "NetworkInputMb": incoming / BYTES_PER_MB,
        "NetworkOutputMb": outgoing / BYTES_PER_MB,
        "AverageBandwidthUsageIncoming": incoming / elapsed_s if elapsed_s > 0 else 0.0,
        "AverageBandwidthUsageOutgoing": outgoing / elapsed_s if elapsed_s > 0 else 0.0,
    }
    taken = {key.lower() for key in values}  # ClassAd attribute names ignore case
    for comment, (nbytes, _packets) in sorted(counters.items()):
        attr = f"Network{comment}"
        if not _ATTR_RE.fullmatch(comment) or attr.lower() in taken:
            continue
        taken.add(attr.lower())
        values[attr] = nbytes
    return values
