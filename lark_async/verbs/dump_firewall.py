"""``dump-firewall``: Lark's rules as the node's firewall holds them, with counters."""

from __future__ import annotations

import argparse

from .common import need_root


def cmd_dump_firewall(args: argparse.Namespace) -> int:
    from ..backends import firewall

    need_root()
    shown = False
    for block in firewall.dump(args.iptables_command):
        print(block)
        shown = True
    if not shown:
        print("no Lark firewall rules on this node")
    return 0
