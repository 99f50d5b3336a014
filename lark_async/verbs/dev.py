"""The developer verbs: ``ip-lock-test``, ``ns-exec``, ``netns-test``."""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import LarkError, UsageError
from .common import cli_settings, command_words, need_root, report_cleanup


def cmd_ip_lock_test(args: argparse.Namespace) -> int:
    from ..backends import address
    from ..decide import settings

    try:
        network = settings._network(args.network)
    except ValueError as exc:
        raise UsageError(f"{args.network!r} {exc}") from exc
    lock_dir = Path(args.lock_dir or settings.DEFAULT_LOCK_DIR)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    lease = address.allocate(network, lock_dir, args.name or f"p{os.getpid()}")
    try:
        print(f"{lease.addresses.external} {lease.addresses.internal}", flush=True)
        time.sleep(args.hold)
    finally:
        lease.release()
    return 0


CLONE_FLAGS = {
    "net": 0x40000000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "mount": 0x00020000,
    "pid": 0x20000000,
}


def cmd_ns_exec(args: argparse.Namespace) -> int:
    cmd = command_words(args.cmd, "lark-agent ns-exec [--net] [--uts] ... -- CMD [ARGS...]")
    need_root()
    flags = 0
    for kind, flag in CLONE_FLAGS.items():
        if getattr(args, kind):
            flags |= flag
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        raise LarkError(f"unshare: {os.strerror(ctypes.get_errno())}")
    if args.mount and libc.mount(b"none", b"/", None, 0x4000 | (1 << 18), None) != 0:  # rprivate
        raise LarkError(f"make / private: {os.strerror(ctypes.get_errno())}")
    if args.net:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    # a new pid namespace applies to children only, so the command always runs as a child
    try:
        return subprocess.run(cmd).returncode % 256
    except FileNotFoundError as exc:
        raise LarkError(f"command not found: {cmd[0]}") from exc


FETCH = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    n = len(r.read())
print(f"fetched {n} bytes from {sys.argv[1]}")
"""


def cmd_netns_test(args: argparse.Namespace) -> int:
    import trio

    from ..decide import ads, plan, policy, settings
    from ..decide.modes import NetworkType
    from ..decide.request import JobRequest
    from ..job.process import resolve_user
    from ..job.supervisor import RunRequest, Supervisor

    need_root()
    resolved = settings.resolve_settings(
        cli_settings(args),
        ads.read_ad(None, "machine ad"),
        ads.read_ad(None, "job ad"),
        settings.htcondor_config(),
    )
    if resolved.network_type is not NetworkType.NAT:
        raise UsageError("netns-test sets up NAT mode only")
    user = resolve_user(args.user, False, None)
    name = plan.derive_job_name(args.name, JobRequest(), ads.read_ad(None, ""), os.getpid())
    job_plan = plan.derive_plan(policy.decide(resolved, JobRequest()), name)  # (no job ad)
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    with tempfile.TemporaryDirectory(prefix="lark-netns-test.") as tmp:
        update_ad = Path(tmp) / "update.ad"
        request = RunRequest(
            job_plan,
            [python, "-I", "-c", FETCH, args.target],
            user,
            {"PATH": "/usr/bin:/bin"},
            Path("/"),
            update_ad,
        )
        outcome = trio.run(Supervisor(request).run)
        print("--- update ad ---")
        print(update_ad.read_text() if update_ad.exists() else "(none written)", end="")
    report_cleanup(outcome.cleanup_errors, name)
    return outcome.status
