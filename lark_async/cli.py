"""``lark-agent``: the only module that prints errors or picks exit statuses."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from . import userfiles
from .errors import EXIT_SETUP_FAILED, EXIT_USAGE, LarkError, UsageError

PROG = "lark-agent"
DEFAULT_LOG = "/var/log/lark/agent.log"
log = logging.getLogger("lark")
log.addHandler(logging.NullHandler())  # before logging is set up, errors are printed once, by us


class _Parser(argparse.ArgumentParser):
    """Usage errors as UsageError. Flags taken from the settings table are added only when
    their verb is parsed (``later``), so that the other verbs (``dhcp-test``, whose start-up
    is measured) never load it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.later: list[Callable[[argparse.ArgumentParser], None]] = []

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        while self.later:
            self.later.pop(0)(self)
        return super().parse_known_args(*args, **kwargs)


def _settings_flags(p: argparse.ArgumentParser) -> None:
    """Each admin setting that has a flag, as ``settings.Settings`` declares it."""
    from .decide import settings

    g = p.add_argument_group(
        "admin settings (override the machine ad and HTCondor config; root only)"
    )
    for knob in settings.KNOBS:
        if knob.flag is None:
            continue
        help_text = knob.flag_help().replace("%", "%%")
        if knob.switch:
            g.add_argument(
                knob.flag, dest=knob.field, action="store_true", default=None, help=help_text
            )
            g.add_argument(
                f"--no-{knob.flag[2:]}",
                dest=knob.field,
                action="store_false",
                help=f"{knob.name} off",
            )
        else:
            g.add_argument(
                knob.flag,
                dest=knob.field,
                metavar=knob.metavar,
                choices=knob.choices,
                help=help_text,
            )


def _iptables_flag(p: argparse.ArgumentParser) -> None:
    """dump-firewall's --iptables: the builds the iptables backend may run."""
    from .decide.settings import IPTABLES_COMMANDS

    p.add_argument(
        "--iptables",
        dest="iptables_command",
        default="iptables",
        choices=IPTABLES_COMMANDS,
        help="which iptables build to read (default iptables)",
    )


def _common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-file",
        metavar="FILE",
        help=f"where the agent logs what it did (default {DEFAULT_LOG})",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also log progress to stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Lark: a network namespace, veth pair, NAT and byte accounting for each "
        "HTCondor job. Run as root.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="run one job in its own network namespace",
        description="Set up the job's network, run JOB as its user inside it, keep the update "
        "ad current, then remove everything and exit with the job's status (128+N for signal "
        "N). Exit 125: Lark could not set up the network; 126: the job cannot be executed; "
        "127: the job command was not found. The reason is printed on one line and written to "
        "$_CONDOR_WRAPPER_ERROR_FILE when that is set.",
    )
    run.add_argument("--job-ad", metavar="FILE", help="job ad (default $_CONDOR_JOB_AD)")
    run.add_argument(
        "--machine-ad", metavar="FILE", help="machine ad (default $_CONDOR_MACHINE_AD)"
    )
    run.add_argument(
        "--update-ad",
        metavar="FILE",
        help="where to write Lark's attributes and the byte counts "
        "(default $_CONDOR_SCRATCH_DIR/.lark.update.ad)",
    )
    run.add_argument("--user", help="run the job as this user (default: the sudo caller)")
    run.add_argument("--allow-root", action="store_true", help="allow the job to run as root")
    run.add_argument(
        "--name",
        help="job name, at most 13 characters (default: derived from the slot name and job id)",
    )
    run.later += [_settings_flags, _common_flags]  # in this order in --help
    run.add_argument("job", nargs=argparse.REMAINDER, metavar="-- JOB [ARGS...]")

    clean = sub.add_parser(
        "cleanup",
        help="remove what jobs left behind (named jobs, or every orphan); never a live job",
        description="Undo every resource recorded for the named jobs, or with --orphans "
        "everything of Lark's on this node whose agent is gone: records of dead agents (their "
        "delete scripts run), and lark-* namespaces, e_* veths, LARK_* chains of nftables and "
        "iptables, NAT sources and address lock files that belong to no record. A job whose "
        "agent runs is never touched. Safe to run any number of times, and while jobs run.",
    )
    clean.add_argument("names", nargs="*", metavar="NAME")
    clean.add_argument(
        "--orphans",
        action="store_true",
        help="clean everything of Lark's whose agent is gone",
    )
    clean.add_argument("--dry-run", action="store_true", help="list what would go, change nothing")
    clean.add_argument(
        "--match",
        metavar="PREFIX",
        help="with --orphans: only unrecorded objects of job names starting with PREFIX",
    )
    clean.add_argument("--state-dir", metavar="DIR", default=None)
    clean.add_argument("--lock-dir", metavar="DIR", default=None)
    _common_flags(clean)

    lock = sub.add_parser(
        "ip-lock-test",
        help="lock an address pair from a pool, print it and hold it",
        description="Try the address pool the way `run` does: lock a pair, print "
        "'EXTERNAL INTERNAL', hold it, release it.",
    )
    lock.add_argument("network", metavar="NETWORK/PREFIX")
    lock.add_argument(
        "--hold", type=float, default=0.0, metavar="S", help="seconds to hold the lock (default 0)"
    )
    lock.add_argument("--lock-dir", default=None, metavar="DIR")
    lock.add_argument("--name", default=None, help="job name the lock is taken for")

    nsx = sub.add_parser(
        "ns-exec",
        help="run a command in fresh namespaces, for trying ideas",
        description="Run CMD in new namespaces of the kinds given (as root, no user change).",
    )
    for kind in ("net", "uts", "ipc", "mount", "pid"):
        nsx.add_argument(f"--{kind}", action="store_true", help=f"new {kind} namespace")
    nsx.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")

    dht = sub.add_parser(
        "dhcp-test",
        help="get a DHCP lease on an interface with Lark's client, print it, release it",
        description="Acquire a DHCPv4 lease with Lark's own client on IF, or on a throwaway "
        "veth attached to bridge BR (in the network namespace this runs in), print it as a "
        "ClassAd (or JSON), optionally hold it and show each renewal, then release it and "
        "remove what it made. The address is not configured on IF; on the throwaway veth it "
        "is, so that unicast renewals are answered. A new lease is first probed for with ARP "
        "(RFC 5227) and declined when another host already uses it. With -6, the same with "
        "Lark's DHCPv6 client (IA_NA, rapid commit when the server allows it): from IF's "
        "IPv6 link-local address (waited for while duplicate address detection runs), UDP "
        "port 546 to ff02::1:2 port 547; renewals at T1, rebinding at T2, a RELEASE at the "
        "end; the lease's DNS servers and search domains (options 23, 24) are printed; the "
        "address is configured nowhere (replies come to the link-local address); "
        "--vendor-class, --hostname and --probe do not apply.",
    )
    dht.add_argument(
        "-6",
        "--ipv6",
        action="store_true",
        help="DHCPv6 instead of DHCPv4 (IF needs an IPv6 link-local address; no other "
        "DHCPv6 client may hold UDP port 546 on it)",
    )
    where = dht.add_mutually_exclusive_group(required=True)
    where.add_argument("--interface", metavar="IF", help="use this interface as it is")
    where.add_argument(
        "--bridge", metavar="BR", help="use a throwaway namespace and veth attached to this bridge"
    )
    dht.add_argument("--json", action="store_true", help="print JSON instead of a ClassAd")
    dht.add_argument(
        "--hold",
        type=float,
        default=0.0,
        metavar="S",
        help="keep the lease S seconds, printing each renewal (default 0)",
    )
    dht.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="give up when no lease comes within S seconds (default 30)",
    )
    dht.add_argument("--vendor-class", default="lark", help="option 60 (default lark)")
    dht.add_argument("--hostname", default=None, help="option 12 to send")
    dht.add_argument(
        "--probe",
        choices=("fast", "rfc", "off"),
        default="fast",
        help="address-conflict probe before using a lease: fast (2 probes, about 0.15 s; "
        "default), rfc (RFC 5227's timings, 4-7 s) or off",
    )

    wrap = sub.add_parser(
        "wrap",
        help="the root side of contrib/htcondor/lark-job-wrapper (through sudo; no options)",
        description="Run JOB as the sudo caller with Lark's network, taking every setting from "
        "the HTCondor config alone (machine attributes such as LarkNetworkType from config "
        "macros of that name, evaluated against the job ad); the caller's machine ad is never "
        "a source of settings. The job's environment comes on file descriptor 3 "
        "(NUL-separated, as `env -0` prints it); the job's ads, update ad and wrapper error "
        "file are read and written with the job user's permissions. One user runs at most "
        "LARK_MAX_JOBS_PER_USER jobs at once. Meant for the sudo rule in "
        "contrib/htcondor/50-lark.sudoers.",
    )
    wrap.add_argument("job", nargs=argparse.REMAINDER, metavar="-- JOB [ARGS...]")

    dump = sub.add_parser(
        "dump-firewall",
        help="every Lark chain and rule with its packet and byte counters",
        description="Print Lark's nftables tables (inet lark, bridge lark) and Lark's iptables "
        "chains, jumps and masquerade rules, with packet and byte counters, as a person reads "
        "them (the original lark_dump_firewall).",
    )
    dump.later.append(_iptables_flag)

    st = sub.add_parser(
        "status",
        help="live jobs on this node: name, mode, address, lease, bytes, agent, age",
        description="A table of the jobs Lark has state records for: name, mode, address, "
        "DHCP lease expiry, bytes in and out now, the agent's pid (and whether it is still "
        "alive) and age.",
    )
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.add_argument("--state-dir", metavar="DIR", help="where the records are (default "
                    "/run/lark/state)")  # fmt: skip

    sda = sub.add_parser(
        "startd-attrs",
        help="print this node's Lark attributes for STARTD_CRON (HasLark, LarkNetworkTypes, ...)",
        description="Print, as ClassAd attributes for a STARTD_CRON job, what this node offers: "
        "HasLark, LarkVersion, LarkNetworkTypes (what jobs may ask for), "
        "LarkDefaultNetworkType, LarkFirewallBackend, LarkBridgeAvailable and "
        "LarkLocalAddressesFree, from the HTCondor config (and the flags below).",
    )
    sda.later.append(_settings_flags)

    nst = sub.add_parser(
        "netns-test",
        help="full NAT setup, a child that fetches a URL, accounting printed, cleanup",
        description="Set up a NAT job network, fetch URL from inside it, print the update ad "
        "with the byte counts, and clean up.",
    )
    nst.add_argument("--target", required=True, metavar="URL")
    nst.add_argument("--user", default="nobody", help="user for the fetch (default nobody)")
    nst.add_argument("--name", default=None)
    nst.later += [_settings_flags, _common_flags]  # in this order in --help
    return parser


def _setup_logging(log_file: str | None, verbose: bool) -> str | None:
    """Log to the file (INFO); stderr only gets warnings (or INFO with -v)."""
    root = logging.getLogger("lark")
    root.setLevel(logging.DEBUG)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.INFO if verbose else logging.WARNING)
    stderr.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    stderr.addFilter(lambda record: getattr(record, "to_stderr", True))
    root.addHandler(stderr)
    path = log_file or DEFAULT_LOG
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
    except OSError:
        if log_file:
            log.warning("cannot open log file %s; logging to stderr only", path)
        return None
    handler.setLevel(logging.INFO)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {PROG}[%(process)d] %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    return path


def _report(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def _wrapper_error(message: str) -> None:
    """HTCondor returns the job to idle (instead of failing it) when this file exists."""
    path = os.environ.get("_CONDOR_WRAPPER_ERROR_FILE")
    if not path:
        return
    try:
        with userfiles.as_owner(), open(path, "a") as f:
            f.write(f"{PROG}: {message}\n")
    except OSError as exc:
        log.warning("cannot write $_CONDOR_WRAPPER_ERROR_FILE %s: %s", path, exc.strerror)


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    """Nurseries wrap errors in groups: report the first LarkError (they arrive in step order),
    log the others."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for sub in exc.exceptions:
                walk(sub)
        else:
            leaves.append(exc)

    walk(group)
    lark = [e for e in leaves if isinstance(e, LarkError)]
    chosen = lark[0] if lark else leaves[0]
    for other in leaves:
        if other is not chosen:
            log.error("also: %s: %s", type(other).__name__, other, extra={"to_stderr": False})
    return chosen


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    log_path: str | None = None
    command = None
    try:
        args = parser.parse_args(args_list)
        command = args.command
        if command is None:
            parser.print_help()
            return EXIT_USAGE
        if hasattr(args, "log_file"):
            log_path = _setup_logging(args.log_file, args.verbose)
        elif command == "wrap":  # no options through sudo: the log file is the admin's
            from .verbs.run import wrap_start

            args.wrap_config, args.wrap_placement = wrap_start(may_exec=argv is None)
            log_path = _setup_logging(args.wrap_config.get("LARK_LOG_FILE"), False)
        from . import verbs

        try:
            return verbs.dispatch(args)
        except BaseExceptionGroup as group:
            raise _first_leaf(group) from group
    except LarkError as exc:
        _report(str(exc))
        if command in (None, "run", "wrap"):
            _wrapper_error(str(exc))
        log.error("%s", exc, extra={"to_stderr": False})
        return exc.exit_code
    except KeyboardInterrupt:
        _report("interrupted")
        return 130
    except Exception as exc:  # a bug: one line for the user, the traceback to the log
        where = log_path or "the log (use --log-file)"
        message = f"internal error: {type(exc).__name__}: {exc} (details in {where})"
        _report(message)
        if command in ("run", "wrap"):
            _wrapper_error(message)
        if log_path:
            log.error("%s", "".join(traceback.format_exception(exc)), extra={"to_stderr": False})
        return EXIT_SETUP_FAILED


def entry() -> NoReturn:
    """The console script: main(), then a quick exit. Everything is finished and closed
    by then; the interpreter's own teardown (10-20 ms of freeing modules) buys nothing."""
    status = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            status = status or EXIT_SETUP_FAILED
    os._exit(status)


if __name__ == "__main__":
    entry()
