"""Pure: the job's published counts, which never go backwards whatever happens to the rules.

The kernel's counters are not the agent's alone: someone may flush the firewall
(``nft flush ruleset``, ``iptables -F``), reload a ruleset saved earlier (``nft -f``
of a ``list ruleset``, which carries the counters as they were then), or run a full
``iptables-restore`` (zeros, or with ``-c`` the saved values). A ``Tally`` is fed what
each poll reads and publishes, per counter, what crossed since the job started as far
as it can tell:

* A counter that reads at least what it read last time is the same rule: the
  difference is added.
* A counter that reads lower (bytes or packets) was replaced from outside. What the new
  rule holds is of unknown origin: zero plus traffic since the replacement, or a saved
  value plus traffic, which would charge the job twice for the saved bytes. Nothing of
  it is added; the published value stays and grows with the new rule from here on. So
  a replacement costs at most the traffic between the last read before it and the
  first read after it, and never charges bytes that did not cross.
* A counter missing from a reading (chain gone, rule deleted) keeps its value.
* When the agent puts the rules back itself (``restart``), they start from zero, known:
  everything they count is added.

Limits: a replacement whose new rule has already counted more than the old one's last
reading (a saved value taken after that reading, or heavy traffic before the next poll)
is not seen as one; its reading is then taken as growth of the old rule, which is
right for a save taken just before the restore and loses the old rule's last reading
after a restore from zero. Either way the published value does not go down.
"""

from __future__ import annotations

from collections.abc import Mapping

Sample = tuple[int, int]  # (bytes, packets), as the backends read a commented counter


class Tally:
    """Readings in, published counts out; no I/O."""

    def __init__(self) -> None:
        self._published: dict[str, Sample] = {}
        self._last: dict[str, Sample] = {}  # what each rule read last (absent: from zero)

    @property
    def published(self) -> dict[str, Sample]:
        """A copy: the caller's changes never reach the tally."""
        return dict(self._published)

    def observe(self, reading: Mapping[str, Sample]) -> list[str]:
        """Fold in one poll's reading; return the counters that read lower than last time
        (replaced from outside), sorted, for the caller to say so."""
        replaced = []
        for name, (nbytes, packets) in reading.items():
            last_bytes, last_packets = self._last.get(name, (0, 0))
            total_bytes, total_packets = self._published.get(name, (0, 0))
            if nbytes < last_bytes or packets < last_packets:
                replaced.append(name)
            else:
                total_bytes += nbytes - last_bytes
                total_packets += packets - last_packets
            self._published[name] = (total_bytes, total_packets)
            self._last[name] = (nbytes, packets)
        return sorted(replaced)

    def restart(self) -> None:
        """The agent has just put fresh rules in place: every counter starts from zero."""
        self._last.clear()
