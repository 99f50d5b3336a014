"""What each ``lark-agent`` verb does: cli.py parses and reports, a module here acts.

Each verb's module is imported only when it runs, and imports what it needs itself:
``dhcp-test`` need not pay for the agent's modules.
"""

from __future__ import annotations

import argparse
import importlib

# verb -> (module in this package, function)
VERBS = {
    "run": ("run", "cmd_run"),
    "wrap": ("run", "cmd_wrap"),
    "cleanup": ("cleanup", "cmd_cleanup"),
    "status": ("status", "cmd_status"),
    "startd-attrs": ("startd_attrs", "cmd_startd_attrs"),
    "dump-firewall": ("dump_firewall", "cmd_dump_firewall"),
    "dhcp-test": ("dhcp_probe", "cmd_dhcp_test"),
    "ip-lock-test": ("dev", "cmd_ip_lock_test"),
    "ns-exec": ("dev", "cmd_ns_exec"),
    "netns-test": ("dev", "cmd_netns_test"),
}


def dispatch(args: argparse.Namespace) -> int:
    module, function = VERBS[args.command]
    verb = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    result: int = verb(args)
    return result
