"""``status``: the jobs on this node, from their state records, with their counters."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..errors import LarkError
from .common import need_root


def cmd_status(args: argparse.Namespace) -> int:
    """Live jobs on this node, from their state records and their firewall counters."""
    import json

    from ..backends import firewall
    from ..decide import settings
    from ..state import sweeper
    from ..state.record import Record

    need_root()
    state_dir = Path(args.state_dir or settings.DEFAULT_STATE_DIR)
    rows = []
    for path in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
        try:
            record = Record.load(path)
        except LarkError:
            continue
        data, steps = record.data, record.steps
        status = data.get("status", {})
        pid = int(data.get("pid", 0))
        fw = steps.get("firewall", {})
        counters: dict[str, tuple[int, int]] = {}
        try:
            if fw:
                counters = firewall.from_record(fw).read_counters()
        except LarkError:
            pass
        lease_end, lease6_end = _lease_end(status, "DHCP"), _lease_end(status, "DHCPv6")
        rows.append(
            {
                "name": data.get("name", path.stem),
                "mode": data.get("plan", {}).get("mode"),
                "address": status.get("LarkInnerAddressIPv4"),
                "external": status.get("LarkExternalAddressIPv4"),
                "address6": status.get("LarkInnerAddressIPv6"),
                "external6": status.get("LarkExternalAddressIPv6"),
                "lease_expires_epoch": lease_end,
                "lease6_expires_epoch": lease6_end,
                "dns": status.get("LarkJobDNS"),
                "bandwidth_in_mbit": _limit(status, "Ingress"),
                "bandwidth_out_mbit": _limit(status, "Egress"),
                "bytes_in": counters.get("Incoming", (None, None))[0],
                "bytes_out": counters.get("Outgoing", (None, None))[0],
                "bytes_in_ipv6": counters.get("IncomingIPv6", (None, None))[0],
                "bytes_out_ipv6": counters.get("OutgoingIPv6", (None, None))[0],
                "agent_pid": pid,
                "agent_alive": sweeper.agent_alive(pid),
                "age_s": round(time.time() - float(data.get("started_epoch", time.time())), 1),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = (
        "NAME",
        "MODE",
        "ADDRESS",
        "LEASE ENDS",
        "BYTES IN",
        "BYTES OUT",
        "MBIT/S IN/OUT",
        "AGENT",
        "AGE",
    )
    table = [head]
    for r in rows:
        ends = (
            " ".join(
                time.strftime("%H:%M:%S", time.localtime(r[key]))
                for key in ("lease_expires_epoch", "lease6_expires_epoch")
                if r[key]
            )
            or "-"
        )
        agent = f"{r['agent_pid']}" + ("" if r["agent_alive"] else " (gone)")
        table.append(
            (
                str(r["name"]),
                str(r["mode"]),
                " ".join(str(a) for a in (r["address"], r["address6"]) if a) or "-",
                ends,
                "-" if r["bytes_in"] is None else str(r["bytes_in"]),
                "-" if r["bytes_out"] is None else str(r["bytes_out"]),
                _limits(r["bandwidth_in_mbit"], r["bandwidth_out_mbit"]),
                agent,
                f"{r['age_s']:.0f}s",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print("(no jobs)")
    return 0


def _limit(status: dict[str, Any], direction: str) -> float | None:
    """The job's limit one way, from the update ad: ``LarkBandwidthLimitMbit`` stands for
    both unless they differ, when each direction has its own (or none: not shaped so)."""
    apart = any(f"LarkBandwidthLimit{d}Mbit" in status for d in ("Ingress", "Egress"))
    rate = status.get(f"LarkBandwidthLimit{direction}Mbit" if apart else "LarkBandwidthLimitMbit")
    return float(rate) if isinstance(rate, int | float) else None


def _limits(ingress: float | None, egress: float | None) -> str:
    """The job's limits towards it and from it, ``10/50`` (``-``: not shaped that way)."""
    if ingress is None and egress is None:
        return "-"
    return "/".join("-" if rate is None else f"{rate:g}" for rate in (ingress, egress))


def _lease_end(status: dict[str, Any], kind: str) -> int | None:
    """When a lease (``DHCP`` or ``DHCPv6``) of the update ad runs out, or None."""
    start, lifetime = status.get(f"Lark{kind}LeaseStart"), status.get(f"Lark{kind}LeaseLifetime")
    if not start or not isinstance(lifetime, int) or lifetime < 0:
        return None
    return int(start) + lifetime
