"""What each ``lark-agent`` verb does; cli.py parses and reports, this module acts."""

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
from typing import Any

from .errors import ConfigError, LarkError, UsageError

# Each verb imports what it needs itself: ``dhcp-test`` need not pay for the agent's modules.


def _command(words: list[str], usage: str) -> list[str]:
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise UsageError(f"no command given: {usage}")
    return words


def _need_root() -> None:
    if os.geteuid() != 0:
        raise UsageError("must run as root (it creates network namespaces and firewall rules)")


def _cli_settings(args: argparse.Namespace) -> dict[str, Any]:
    from . import settings

    return settings.flag_values(args)


def _report_cleanup(errors: list[LarkError], name: str) -> None:
    if errors:
        print(
            f"lark-agent: warning: cleanup of {name} incomplete: {errors[0]} "
            f"(run: lark-agent cleanup {name})",
            file=sys.stderr,
        )


def cmd_run(args: argparse.Namespace) -> int:
    """Root's own verb: root names the ads and the settings, so the machine ad is an admin
    source like the config."""
    from . import ads
    from .jobproc import resolve_user

    argv = _command(args.job, "lark-agent run [OPTIONS] -- JOB [ARGS...]")
    _need_root()
    job_ad = ads.read_ad(args.job_ad or os.environ.get("_CONDOR_JOB_AD"), "job ad")
    machine_ad = ads.read_ad(args.machine_ad or os.environ.get("_CONDOR_MACHINE_AD"), "machine ad")
    user = resolve_user(args.user, args.allow_root, os.environ.get("SUDO_USER"))
    scratch = os.environ.get("_CONDOR_SCRATCH_DIR")
    update_ad = (
        Path(args.update_ad)
        if args.update_ad
        else Path(scratch) / ".lark.update.ad"
        if scratch
        else None
    )
    job = _Job(argv, user, dict(os.environ), None, update_ad, job_ad, machine_ad)
    return _run_job(job, machine_ad, "machine ad", _settings_config(), args)


def cmd_wrap(args: argparse.Namespace) -> int:
    """The root side of the sudo wrapper, which any local user may start: from the caller
    only its command and the job's environment (fd 3), both data. Settings come from the
    HTCondor config alone (its machine attributes included); the caller's ads are read as
    the caller and only ever requests; the job's name carries the agent's pid; the caller
    may hold at most LARK_MAX_JOBS_PER_USER agents."""
    from . import ads, settings, userfiles
    from .jobproc import resolve_user

    argv = _command(args.job, "lark-agent wrap -- JOB [ARGS...]")
    _need_root()
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if not (uid and gid and uid.isdigit() and gid.isdigit()):
        raise UsageError("wrap is run through sudo by contrib/htcondor/lark-job-wrapper")
    config = settings.root_htcondor_config()
    userfiles.set_owner(int(uid), int(gid))
    env = _job_environment()
    if "_CONDOR_WRAPPER_ERROR_FILE" in env:  # written as the job user (cli._wrapper_error)
        os.environ["_CONDOR_WRAPPER_ERROR_FILE"] = env["_CONDOR_WRAPPER_ERROR_FILE"]
    user = resolve_user(uid, False, None)
    with userfiles.as_owner():
        job_ad = ads.read_ad(env.get("_CONDOR_JOB_AD"), "job ad")
        machine_ad = ads.read_ad(env.get("_CONDOR_MACHINE_AD"), "machine ad")
    scratch = env.get("_CONDOR_SCRATCH_DIR")
    update_ad = Path(scratch) / ".lark.update.ad" if scratch else None
    job = _Job(argv, user, env, Path.cwd(), update_ad, job_ad, machine_ad)
    admin_ad = settings.config_machine_ad(config)
    return _run_job(job, admin_ad, "HTCondor config", config, argparse.Namespace(), wrapped=True)


def _settings_config() -> Any:
    from . import settings

    return settings.htcondor_config()


def _job_environment() -> dict[str, str]:
    """The job's environment, as the wrapper sent it on fd 3 (sudo reset ours): at most
    4 MiB, and only what arrives within a few seconds (the caller holds the other end)."""
    import select

    chunks: list[bytes] = []
    size, deadline = 0, time.monotonic() + 5.0
    try:
        with os.fdopen(3, "rb", buffering=0) as f:
            while size <= 4 << 20:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([f], [], [], left)[0]:
                    raise UsageError("the job's environment (fd 3) did not arrive in time")
                chunk = f.read(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except OSError:
        return {"PATH": "/usr/bin:/bin"}
    data = b"".join(chunks)[: 4 << 20]
    env = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key and b"\n" not in key:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


class _Job:
    """What the job is: its command, user, environment and the ads as they were read."""

    def __init__(
        self,
        argv: list[str],
        user: Any,
        env: dict[str, str],
        cwd: Path | None,
        update_ad: Path | None,
        job_ad: Any,
        machine_ad: Any,
    ) -> None:
        self.argv, self.user, self.env, self.cwd = argv, user, env, cwd
        self.update_ad, self.job_ad, self.machine_ad = update_ad, job_ad, machine_ad


def _run_job(
    job: _Job,
    admin_ad: Any,
    admin_source: str,
    config: Any,
    args: argparse.Namespace,
    wrapped: bool = False,
) -> int:
    """Evaluate what Lark reads of the ads (bounded), settings (``admin_ad`` holds the
    admin's machine attributes), the job's requests, the policy script, the plan, then the
    supervisor."""
    import trio

    from . import ads, plan, policy, settings
    from .backends import quota
    from .callouts import Script
    from .request import JOB_ATTRIBUTES, read_request
    from .supervisor import RunRequest, Supervisor

    admin_view, job_view, slot_view = ads.evaluate_bounded(
        [
            ads.Evaluation(admin_ad, settings.MACHINE_ATTRIBUTES, job.job_ad),
            ads.Evaluation(job.job_ad, JOB_ATTRIBUTES),
            ads.Evaluation(job.machine_ad, plan.SLOT_ATTRIBUTES),
        ],
        as_user=(job.user.uid, job.user.gid),
    )
    resolved = settings.resolve_settings(
        _cli_settings(args), admin_view, job_view, config, admin_source
    )
    asked = read_request(job_view)
    grant = policy.decide(resolved, asked)
    slot = None
    if wrapped:
        slot = quota.hold_user_slot(
            resolved.lock_dir, job.user.uid, job.user.name, resolved.jobs_per_user
        )
    try:
        if resolved.policy_script is not None:
            script = Script("policy", resolved.policy_script, resolved.script_timeout_s)
            grant = policy.run_policy_script(grant, script, job.job_ad, job.machine_ad)
        name = plan.derive_job_name(
            getattr(args, "name", None), asked, slot_view, os.getpid(), unique=wrapped
        )
        job_plan = plan.derive_plan(grant, name)
        request = RunRequest(
            job_plan,
            job.argv,
            job.user,
            job.env,
            job.cwd,
            job.update_ad,
            job.job_ad,
            job.machine_ad,
        )
        outcome = trio.run(Supervisor(request).run)
    finally:
        if slot is not None:
            slot.release()
    _report_cleanup(outcome.cleanup_errors, name)
    return outcome.status


def _dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    """The state and lock dirs the agents use: the flags, else LARK_STATE_DIR / LARK_LOCK_DIR
    of the HTCondor config (as ``run`` reads them), else the defaults. A sweeper that looked
    elsewhere than the agents would take live jobs for orphans."""
    from . import settings

    config = settings.htcondor_config() if not (args.state_dir and args.lock_dir) else {}
    found = []
    for flag, knob, default in (
        (args.state_dir, "LARK_STATE_DIR", settings.DEFAULT_STATE_DIR),
        (args.lock_dir, "LARK_LOCK_DIR", settings.DEFAULT_LOCK_DIR),
    ):
        path = Path(flag or config.get(knob) or default)
        if not path.is_absolute() and not flag:
            raise ConfigError(f'{knob} "{path}" (HTCondor config) is not an absolute path')
        found.append(path)
    return found[0], found[1]


def _sweep(orphans: list[Any], dry_run: bool, verb: str) -> int:
    """Undo each orphan (each decides again whether its agent is alive); the failures."""
    failed = 0
    for orphan in orphans:
        if dry_run:
            for line in orphan.lines():
                print(f"{verb} {line}")
            continue
        try:
            removed = orphan.undo()
        except LarkError as exc:
            failed += 1
            print(f"{orphan}: {exc}", file=sys.stderr)
        else:
            if removed:
                for line in orphan.lines():
                    print(f"removed {line}")
    return failed


def cmd_cleanup(args: argparse.Namespace) -> int:
    from . import sweeper
    from .backends import locks
    from .names import check_name
    from .record import Record

    _need_root()
    state_dir, lock_dir = _dirs(args)
    if not args.names and not args.orphans:
        raise UsageError("name the jobs to clean up, or pass --orphans")
    failed = 0
    lingering: list[str] = []
    for name in args.names:
        check_name(name)
        path = state_dir / f"{name}.json"
        if not path.exists():
            print(f"{name}: nothing recorded")
            continue
        try:
            pid = int(Record.load(path).data["pid"])
        except LarkError:
            pid = 0  # unreadable: swept by name
        if locks.job_alive(lock_dir, name) or sweeper.agent_alive(pid):
            running = f"agent pid {pid}" if pid else "a running agent"
            raise UsageError(f"job {name} is still supervised by {running}")
        if args.dry_run:
            print(f"{name}: would clean up its record")
            continue
        orphans = sweeper.find_orphans(state_dir, lock_dir, lingering=lingering, only=name)
        errors = _sweep(orphans, False, "")
        failed += errors
        print(f"{name}: {'cleaned up' if not errors else 'incomplete'}")
    if args.orphans:
        orphans = sweeper.find_orphans(state_dir, lock_dir, args.match or "", lingering)
        failed += _sweep(orphans, args.dry_run, "orphan")
        if not orphans:
            print("no orphans")
    for err in sweeper.settle(lingering, lock_dir):  # the kernel deletes them in batches
        failed += 1
        print(f"veth: {err}", file=sys.stderr)
    return 1 if failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    """Live jobs on this node, from their state records and their firewall counters."""
    import json
    import time

    from . import settings, sweeper
    from .backends import firewall
    from .record import Record

    _need_root()
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
        lease_end = None
        if status.get("LarkDHCPLeaseStart") and status.get("LarkDHCPLeaseLifetime", -1) >= 0:
            lease_end = int(status["LarkDHCPLeaseStart"]) + int(status["LarkDHCPLeaseLifetime"])
        rows.append(
            {
                "name": data.get("name", path.stem),
                "mode": data.get("plan", {}).get("mode"),
                "address": status.get("LarkInnerAddressIPv4"),
                "external": status.get("LarkExternalAddressIPv4"),
                "lease_expires_epoch": lease_end,
                "bytes_in": counters.get("Incoming", (None, None))[0],
                "bytes_out": counters.get("Outgoing", (None, None))[0],
                "agent_pid": pid,
                "agent_alive": sweeper.agent_alive(pid),
                "age_s": round(time.time() - float(data.get("started_epoch", time.time())), 1),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = ("NAME", "MODE", "ADDRESS", "LEASE ENDS", "BYTES IN", "BYTES OUT", "AGENT", "AGE")
    table = [head]
    for r in rows:
        ends = (
            time.strftime("%H:%M:%S", time.localtime(r["lease_expires_epoch"]))
            if r["lease_expires_epoch"]
            else "-"
        )
        agent = f"{r['agent_pid']}" + ("" if r["agent_alive"] else " (gone)")
        table.append(
            (
                str(r["name"]),
                str(r["mode"]),
                str(r["address"] or "-"),
                ends,
                "-" if r["bytes_in"] is None else str(r["bytes_in"]),
                "-" if r["bytes_out"] is None else str(r["bytes_out"]),
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


def cmd_ip_lock_test(args: argparse.Namespace) -> int:
    from . import settings
    from .backends import address

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
    cmd = _command(args.cmd, "lark-agent ns-exec [--net] [--uts] ... -- CMD [ARGS...]")
    _need_root()
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

    from . import ads, plan, policy, settings
    from .jobproc import resolve_user
    from .modes import NetworkType
    from .request import JobRequest
    from .supervisor import RunRequest, Supervisor

    _need_root()
    resolved = settings.resolve_settings(
        _cli_settings(args),
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
    _report_cleanup(outcome.cleanup_errors, name)
    return outcome.status


def cmd_dhcp_test(args: argparse.Namespace) -> int:
    from . import dhcp_test

    _need_root()
    run, where = (
        (dhcp_test.run, args.interface)
        if args.interface
        else (dhcp_test.run_on_bridge, args.bridge)
    )
    options = dhcp_test.Options(
        as_json=args.json,
        hold_s=args.hold,
        timeout_s=args.timeout,
        vendor=args.vendor_class.encode(),
        hostname=args.hostname,
        probe=dhcp_test.PROBES[args.probe],
    )
    return run(where, options)


def cmd_dump_firewall(args: argparse.Namespace) -> int:
    from .backends import firewall

    _need_root()
    shown = False
    for block in firewall.dump(args.iptables_command):
        print(block)
        shown = True
    if not shown:
        print("no Lark firewall rules on this node")
    return 0


def cmd_startd_attrs(args: argparse.Namespace) -> int:
    """STARTD_CRON: what this node offers, so jobs can match on it."""
    import shutil

    from . import ads, settings
    from .backends import address
    from .backends.netlink import rtnl

    no_ad = ads.read_ad(None, "")
    resolved = settings.resolve_settings(
        _cli_settings(args), no_ad, no_ad, settings.htcondor_config()
    )
    values: dict[str, object] = {
        "HasLark": resolved.use_network_namespaces,
        "LarkVersion": _version(),
        "LarkNetworkTypes": ",".join(resolved.allowed_network_types),
        "LarkDefaultNetworkType": resolved.network_type,
        "LarkFirewallBackend": resolved.firewall_backend,
    }
    network = resolved.local_network
    busy = sum(
        1
        for k in range(address.pool_size(network))
        if address.is_locked(address.lock_path(resolved.lock_dir, address.pool_pair(network, k)))
    )
    values["LarkLocalAddressesFree"] = address.pool_size(network) - busy
    with rtnl.Channel() as host:
        bridge = host.link(resolved.bridge_name)
        device = host.link(resolved.bridge_device) if resolved.bridge_device else None
    values["LarkBridgeAvailable"] = bool(
        (bridge is not None and bridge.kind == "bridge" and bridge.up)
        or (bridge is None and device is not None and device.up)
    )
    if resolved.firewall_backend == "iptables":
        values["LarkIptablesAvailable"] = shutil.which(resolved.iptables_command) is not None
    print(ads.format_old(values))
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lark-async")
    except PackageNotFoundError:
        return "unknown"


def dispatch(args: argparse.Namespace) -> int:
    verbs = {
        "status": cmd_status,
        "wrap": cmd_wrap,
        "startd-attrs": cmd_startd_attrs,
        "dump-firewall": cmd_dump_firewall,
        "dhcp-test": cmd_dhcp_test,
        "run": cmd_run,
        "cleanup": cmd_cleanup,
        "ip-lock-test": cmd_ip_lock_test,
        "ns-exec": cmd_ns_exec,
        "netns-test": cmd_netns_test,
    }
    return verbs[args.command](args)
