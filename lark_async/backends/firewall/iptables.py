"""iptables backend (``LARK_FIREWALL_BACKEND = iptables``), for sites whose scripts use iptables;
and, for either backend, the job's way through a node's iptables ``FORWARD`` that drops.

It keeps the original Lark's contract to the letter: a chain named
``LarkIptableName`` in the filter table, with all of the job's traffic sent
through it from FORWARD, INPUT and OUTPUT, so a script's ``iptables -A "$3"
...`` lands where it always did. The command is ``LARK_IPTABLES`` (``iptables``,
or ``iptables-nft`` / ``iptables-legacy`` to pick a build). The price is a
linear list of jump rules: unlike the nftables backend's verdict map, each
packet is matched against every job's jumps. NAT mode only: bridged frames
never reach iptables without br_netfilter.

The node's iptables are not Lark's: a site tool may insert its own rules above
Lark's jumps, set FORWARD's policy to DROP (Docker does), or reload the whole
table (``iptables-restore`` without ``--noflush``). So nothing is assumed: the
state is read (``iptables-save``, xtables.py), compared with what the job needs
(``plan_repairs``, pure), and only what is missing or out of place is put back,
in one ``iptables-restore --noflush`` batch; a batch that loses a race with
another agent is planned again from a fresh read. Removal works the same way
(``plan_discard``): whatever of the job is there goes, absence is done.

Where a build's FORWARD would drop the job's traffic (policy DROP, or rules of
the node's own), the job's traffic is accepted in the shared chain
``LARK-FORWARD``, jumped to from FORWARD right after Lark's job jumps (the job
chains count and drop spoofed packets first), as CNI's firewall plugin does with
CNI-FORWARD and netavark with NETAVARK_FORWARD: out of the job's veth, and back
to it for connections already established. Each job's rules there carry its
chain name as a comment; the chain and its jump go with the last job.

A job with IPv6 has the same in ip6tables, the build matching ``LARK_IPTABLES``
(``command6``: ``ip6tables``, ``ip6tables-nft``, ``ip6tables-legacy``): a chain of the
same name counting the IPv6 part (``OutgoingIPv6``, ``IncomingIPv6``), its jumps, its
MASQUERADE for NAT66 (none for a routed job), and LARK-FORWARD where that build's FORWARD
would drop. Its IPv4 chain stays (the scripts' ``iptables -A "$3"``); a job with no IPv4
(an IPv6-only node) has everything it sends there dropped.
"""

from __future__ import annotations

import ipaddress
import shutil
from dataclasses import dataclass, field

from ...decide.accounting import INCOMING, INCOMING_IPV6, OUTGOING, OUTGOING_IPV6
from ...decide.modes import RuleFamily
from ...decide.names import CHAIN_PREFIX
from ...decide.reach import CLOSED, NodeReach
from . import xtables
from .xtables import IptablesError, Table

ACCEPT_CHAIN = "LARK-FORWARD"
BUILDS = ("iptables-nft", "iptables-legacy")
BUILDS6 = ("ip6tables-nft", "ip6tables-legacy")  # (the same two, for IPv6)
ATTEMPTS = 5  # reads and batches, when another agent's batch came in between
Counters = dict[str, tuple[int, int]]  # a counting rule's comment -> (bytes, packets)


def command6(command: str) -> str:
    """The ip6tables build matching an iptables one: iptables-nft -> ip6tables-nft."""
    assert command.startswith("iptables"), command
    return "ip6" + command.removeprefix("ip")


def is_ipv6(command: str) -> bool:
    """An ip6tables build (the only programs this module runs are iptables' and these)."""
    return command.startswith("ip6tables")


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class IptablesRules:
    """What one build (of the family of ``command``) holds of one NAT job; the IPv4 ones are
    also what the state record keeps for undo, and for a restore (``reach``: what of the
    node the job may reach; closed by default). ``internal_address`` is None where the job
    has no address of the family (all it sends of that family is dropped); ``nat``: its
    source is masqueraded (not for a routed IPv6 job)."""

    command: str  # iptables, iptables-nft, iptables-legacy, or an ip6tables build
    chain: str
    external_interface: str
    internal_address: Address | None
    reach: NodeReach = CLOSED
    nat: bool = True

    @property
    def ipv6(self) -> bool:
        return is_ipv6(self.command)

    @property
    def counter_names(self) -> tuple[str, str]:
        """The comments of the chain's two counting rules (outgoing, incoming)."""
        return (OUTGOING_IPV6, INCOMING_IPV6) if self.ipv6 else (OUTGOING, INCOMING)

    def to_record(self) -> dict[str, object]:
        addr = self.internal_address
        return {
            "family": RuleFamily.IPTABLES,
            "command": self.command,
            "chain": self.chain,
            "external_interface": self.external_interface,
            "internal_address": str(addr) if addr is not None else None,
            "reach": self.reach.to_record(),
        }

    def jumps(self) -> list[str]:
        c, e = self.chain, self.external_interface
        return [f"FORWARD -i {e} -j {c}", f"FORWARD -o {e} -j {c}", f"INPUT -i {e} -j {c}",
                f"OUTPUT -o {e} -j {c}"]  # fmt: skip

    def masquerade(self) -> str | None:
        """The POSTROUTING rule of its NAT (NAT66 in ip6tables); None without NAT."""
        if not self.nat or self.internal_address is None:
            return None
        return (
            f"POSTROUTING -s {self.internal_address}/{self.internal_address.max_prefixlen} "
            f"! -o e_+ -m comment --comment {self.chain} -j MASQUERADE"
        )


@dataclass(frozen=True)
class Wanted:
    """What one job needs in one iptables build: its counting chain with jumps and NAT (the
    iptables backend's build), its traffic accepted in LARK-FORWARD (a build that would drop
    it), or both."""

    job: IptablesRules
    counting: bool
    accept: bool


@dataclass
class Repairs:
    """A batch that makes a build hold what a job needs, and why it was needed."""

    filter_lines: list[str] = field(default_factory=list)
    nat_lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    resets_counters: bool = False  # the job chain's counting rules were made anew

    def batch(self) -> str | None:
        if not self.filter_lines and not self.nat_lines:
            return None
        return _batch(self.filter_lines, self.nat_lines)


def _batch(filter_lines: list[str], nat_lines: list[str]) -> str:
    text = []
    if filter_lines:
        text += ["*filter", *filter_lines, "COMMIT"]
    if nat_lines:
        text += ["*nat", *nat_lines, "COMMIT"]
    return "\n".join([*text, ""])


TO_THE_NODE = "-m addrtype ! --dst-type UNICAST"  # (see _chain_rules)
# IPv6's addrtype calls every unicast address UNICAST, the node's own too (it looks up a
# route only for LOCAL, ANYCAST and UNREACHABLE, and ANDs MULTICAST): the node is its local
# and anycast addresses (routes), and multicast, two rules for each of IPv4's one
TO_THE_NODE6 = ("-m addrtype --dst-type LOCAL,ANYCAST", "-d ff00::/8")
LINK_LOCAL6 = "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"  # fe80::/10, as iprange says it
NEIGHBOUR_DISCOVERY = ("neighbour-solicitation", "neighbour-advertisement")
OTHER_JOBS = "e_+"


def _spoof_rule(job: IptablesRules) -> str:
    """The rule that drops what the job sends from an address not its own (IPv6: its
    link-local addresses are its own too); without an address of the family, everything."""
    c, e, addr = job.chain, job.external_interface, job.internal_address
    if addr is None:
        return f"-A {c} -i {e} -j DROP"
    if job.ipv6:
        return f"-A {c} -i {e} ! -s {addr}/128 -m iprange ! --src-range {LINK_LOCAL6} -j DROP"
    return f"-A {c} -i {e} ! -s {addr}/32 -j DROP"


def _chain_rules(job: IptablesRules) -> list[str]:
    """The job's chain: its counters (each build sees its own family: the IPv4 chain's are
    ``Outgoing``/``Incoming``, the ip6tables chain's ``OutgoingIPv6``/``IncomingIPv6``), its
    source address, what it may reach of the node, and no other NAT job unless
    ``reach.job_to_job``. A job with no address of the family: counters, then a drop.

    The chain is jumped to from FORWARD, INPUT and OUTPUT; ``TO_THE_NODE`` (the destination
    is a local, broadcast, anycast or multicast address: the node's own; ``TO_THE_NODE6``
    for IPv6) is never true in FORWARD and always in INPUT, so the reach rules decide only
    what the job sends to the node. What they let on is RETURNed, not ACCEPTed: INPUT's own
    rules (the node's) still decide after Lark's, as they did. IPv6 lets neighbour
    discovery through (what ARP, which iptables never sees, is to IPv4). The rules that
    close (the DROPs) are what ``plan_repairs`` looks for."""
    c, e, reach = job.chain, job.external_interface, job.reach
    outgoing, incoming = job.counter_names
    rules = [
        f"-A {c} -i {e} -m comment --comment {outgoing}",
        f"-A {c} -o {e} -m comment --comment {incoming}",
        _spoof_rule(job),
    ]
    if job.internal_address is None:
        return rules
    version = 6 if job.ipv6 else 4
    for node in TO_THE_NODE6 if job.ipv6 else (TO_THE_NODE,):
        rules.append(f"-A {c} -i {e} {node} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")
        if job.ipv6:
            rules += [f"-A {c} -i {e} {node} -p ipv6-icmp -m icmp6 --icmpv6-type {kind} -j RETURN"
                      for kind in NEIGHBOUR_DISCOVERY]  # fmt: skip
        for port in reach.ports:
            ports = str(port.low) if port.low == port.high else f"{port.low}:{port.high}"
            p = port.proto
            rules.append(f"-A {c} -i {e} -p {p} -m {p} --dport {ports} {node} -j RETURN")
        for addr in (a for a in reach.dns if a.version == version and "-d " not in node):
            for dns in ("udp", "tcp"):
                rules.append(
                    f"-A {c} -i {e} -d {addr}/{addr.max_prefixlen} -p {dns} -m {dns} --dport 53 "
                    f"{node} -j RETURN"
                )
        rules.append(f"-A {c} -i {e} {node} -j DROP")
    if not reach.job_to_job:
        rules.append(
            f"-A {c} -i {e} -o {OTHER_JOBS} -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP"
        )
    return rules


def _options(line: str) -> dict[str, str]:
    """A rule of ``_chain_rules`` as iptables-save's would parse (order is not compared)."""
    chain, _, spec = line.removeprefix("-A ").partition(" ")
    return xtables.Rule(chain, spec).options


def _has(rules: list[xtables.Rule], line: str) -> bool:
    want = _options(line)
    return any(r.options == want for r in rules)


def _closes(job: IptablesRules, rules: list[xtables.Rule]) -> bool:
    """The chain still has the rules that keep the job from the node and the other jobs
    (every DROP it was made with)."""
    drops = [line for line in _chain_rules(job) if line.endswith(" -j DROP")]
    return all(_has(rules, line) for line in drops)


def _accept_rules(job: IptablesRules) -> list[str]:
    c, e = job.chain, job.external_interface
    return [
        f"-A {ACCEPT_CHAIN} -i {e} -m comment --comment {c} -j ACCEPT",
        f"-A {ACCEPT_CHAIN} -o {e} -m conntrack --ctstate RELATED,ESTABLISHED "
        f"-m comment --comment {c} -j ACCEPT",
    ]


def render_add(job: IptablesRules) -> str:
    """The job's counting chain, its jumps and its masquerade on a node that has none of it
    (what ``plan_repairs`` gives for an empty table)."""
    return plan_repairs(Wanted(job, counting=True, accept=False), {}).batch() or ""


def _is_job_jump(rule: xtables.Rule) -> bool:
    return rule.target.startswith(CHAIN_PREFIX)


def _leading_job_jumps(targets: list[str]) -> int:
    n = 0
    while n < len(targets) and targets[n].startswith(CHAIN_PREFIX):
        n += 1
    return n


def plan_repairs(want: Wanted, tables: dict[str, Table], renew: bool = False) -> Repairs:
    """Pure: the batch that gives ``want`` on a build whose tables are ``tables`` (empty
    when all is in place). Lark's jumps are "in place" when no rule of someone else's is
    above them: the job's jumps follow only other jobs' jumps, LARK-FORWARD's jump follows
    only job jumps. ``renew``: the counting chain's counters start from zero even where its
    rules are in place (as the other family's, made anew, just did)."""
    job, fix = want.job, Repairs()
    filt = tables.get("filter") or Table("filter")
    c = job.chain
    forward = [r.target for r in filt.rules("FORWARD")]
    if want.counting:
        rules = filt.rules(c)
        comments = {r.comment for r in rules}
        counting = set(job.counter_names) <= comments and _has(rules, _spoof_rule(job))
        if not filt.has_chain(c):
            fix.problems.append(f"its chain {c} is gone")
            fix.filter_lines += [f":{c} - [0:0]", *_chain_rules(job)]
            fix.resets_counters = True
        elif not (counting and _closes(job, rules)):
            why = "lost the rules that close the node to it" if counting else "was emptied"
            fix.problems.append(f"its chain {c} {why}")
            fix.filter_lines += [f"-F {c}", *_chain_rules(job)]
            fix.resets_counters = True
        elif renew:  # (its rules stay, the admin's too: all of them count from zero)
            fix.filter_lines.append(f"-Z {c}")
            fix.resets_counters = True
        for builtin in ("FORWARD", "INPUT", "OUTPUT"):
            wanted = [j.split(" ", 1)[1] for j in job.jumps() if j.startswith(builtin + " ")]
            present = filt.rules(builtin)
            mine = [i for i, r in enumerate(present) if r.target == c]
            have = {(r.options.get("-i"), r.options.get("-o")) for r in present if r.target == c}
            need = {(xtables.Rule(builtin, w).options.get("-i"),
                     xtables.Rule(builtin, w).options.get("-o")) for w in wanted}  # fmt: skip
            if not need <= have:
                fix.problems.append(f"its jump from {builtin} is gone")
            elif mine and _leading_job_jumps([r.target for r in present]) <= max(mine):
                fix.problems.append(f"a rule of someone else's is above its jump in {builtin}")
            else:
                continue
            fix.filter_lines += [f"-D {builtin} {present[i].spec}" for i in mine]
            fix.filter_lines += [f"-I {builtin} 1 {w}" for w in wanted]
            if builtin == "FORWARD":
                forward = [t for t in forward if t != c]
                forward = [c] * len(wanted) + forward
        masquerade = job.masquerade()
        if masquerade is not None and not any(
            r.target == "MASQUERADE" and r.comment == c
            for r in (tables.get("nat") or Table("nat")).rules("POSTROUTING")
        ):
            fix.problems.append(f"its NAT source {job.internal_address} (MASQUERADE) is gone")
            fix.nat_lines.append(f"-A {masquerade}")
    if want.accept:
        if not filt.has_chain(ACCEPT_CHAIN):
            fix.problems.append(f"{ACCEPT_CHAIN} is gone")
            fix.filter_lines.append(f"-N {ACCEPT_CHAIN}")
        mine_accept = [r for r in filt.rules(ACCEPT_CHAIN) if r.comment == c]
        directions = {("-i" in r.options, "-o" in r.options) for r in mine_accept}
        if directions != {(True, False), (False, True)} or len(mine_accept) != 2:
            if filt.has_chain(ACCEPT_CHAIN):
                fix.problems.append(f"its rules in {ACCEPT_CHAIN} are gone")
            fix.filter_lines += [f"-D {ACCEPT_CHAIN} {r.spec}" for r in mine_accept]
            fix.filter_lines += _accept_rules(job)
        jumps = [i for i, t in enumerate(forward) if t == ACCEPT_CHAIN]
        lead = _leading_job_jumps(forward)
        if not jumps or lead < jumps[0]:
            if jumps:
                fix.problems.append(f"a rule of someone else's is above {ACCEPT_CHAIN} in FORWARD")
            elif filt.has_chain(ACCEPT_CHAIN):
                fix.problems.append(f"the jump to {ACCEPT_CHAIN} from FORWARD is gone")
            fix.filter_lines += [
                f"-D FORWARD {r.spec}" for r in filt.rules("FORWARD") if r.target == ACCEPT_CHAIN
            ]
            rest = [t for t in forward if t != ACCEPT_CHAIN]
            fix.filter_lines.append(f"-I FORWARD {_leading_job_jumps(rest) + 1} -j {ACCEPT_CHAIN}")
    return fix


def plan_discard(chain: str, tables: dict[str, Table]) -> str | None:
    """Pure: the batch that removes whatever of the job ``chain`` the tables hold (its jumps
    from any chain, the chain, its rules in LARK-FORWARD and, with the last of those, that
    chain and its jumps, its masquerade); None when nothing of it is there."""
    filt = tables.get("filter") or Table("filter")
    lines: list[str] = []
    for name, rules in filt.chains.items():
        lines += [f"-D {name} {r.spec}" for r in rules if r.target == chain]
    accept = filt.rules(ACCEPT_CHAIN)
    lines += [f"-D {ACCEPT_CHAIN} {r.spec}" for r in accept if r.comment == chain]
    if filt.has_chain(chain):
        lines += [f"-F {chain}", f"-X {chain}"]
    if filt.has_chain(ACCEPT_CHAIN) and all(r.comment == chain for r in accept):
        for name, rules in filt.chains.items():
            lines += [f"-D {name} {r.spec}" for r in rules if r.target == ACCEPT_CHAIN]
        lines.append(f"-X {ACCEPT_CHAIN}")
    nat = tables.get("nat") or Table("nat")
    nat_lines = [
        f"-D POSTROUTING {r.spec}"
        for r in nat.rules("POSTROUTING")
        if r.target == "MASQUERADE" and r.comment == chain
    ]
    if not lines and not nat_lines:
        return None
    return _batch(lines, nat_lines)


def needs_accept(tables: dict[str, Table]) -> str | None:
    """Pure: why this build's FORWARD would drop a job's traffic (policy DROP, or rules of
    the node's own that may end in a drop), or None when it would not."""
    filt = tables.get("filter")
    if filt is None or not filt.has_chain("FORWARD"):
        return None
    own = [r for r in filt.rules("FORWARD") if not _is_job_jump(r) and r.target != ACCEPT_CHAIN]
    docker = " (Docker's DOCKER-USER is there)" if filt.has_chain("DOCKER-USER") else ""
    policy = filt.policies.get("FORWARD", "ACCEPT")
    if policy != "ACCEPT":
        return f"FORWARD policy {policy}{docker}"
    if any(r.target not in ("ACCEPT", "") for r in own):
        return f"FORWARD has rules of the node's own that may drop{docker}"
    return None


def _programs(command: str) -> tuple[str, ...]:
    return (command, f"{command}-restore", f"{command}-save")


def check_installed(command: str) -> None:
    """Before anything is created: the backend's programs are there."""
    from ...errors import ConfigError

    for program in _programs(command):
        if shutil.which(program) is None:
            raise ConfigError(
                f"LARK_FIREWALL_BACKEND iptables needs {program}, which is not installed"
            )


def missing6(command: str) -> str | None:
    """Why the iptables backend of ``LARK_IPTABLES`` ``command`` cannot give a job IPv6 (its
    ip6tables build is not installed), or None when it can."""
    for program in _programs(command6(command)):
        if shutil.which(program) is None:
            return (
                f"LARK_FIREWALL_BACKEND iptables (LARK_IPTABLES {command}) needs {program} for "
                "the job's IPv6, which is not installed"
            )
    return None


def ensure(want: Wanted, renew: bool = False) -> Repairs:
    """Read the build, put back what the job misses (nothing when all is in place); the
    repairs made, with their reasons. A batch that fails is planned again from a fresh read
    (another agent's batch may have come in between) before the failure is reported.
    ``renew``: see ``plan_repairs``."""
    command = want.job.command
    doing = f"restore iptables rules of {want.job.chain} ({command})"
    for attempt in range(ATTEMPTS):
        fix = plan_repairs(want, xtables.read(command, doing), renew)
        batch = fix.batch()
        if batch is None:
            return fix
        try:
            xtables.restore(command, batch, doing)
            return fix
        except IptablesError:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def apply_job(job: IptablesRules, accept: bool = False) -> None:
    ensure(Wanted(job, counting=True, accept=accept))


def discard_job(job: IptablesRules) -> None:
    """Idempotent, like CNI's DEL: whatever of the job the build holds goes; absent is done.
    Only a batch that still fails after fresh reads is an error."""
    discard(job.command, job.chain)


def discard(command: str, chain: str) -> None:
    """(See discard_job.) When the job's accept rules went but LARK-FORWARD stayed for the
    other jobs' rules, it is read once more: jobs ending at once each see the others' rules,
    and the last of them to look removes the chain they left empty."""
    doing = f"remove iptables chain {chain} ({command})"
    failures = 0
    while True:
        batch = plan_discard(chain, xtables.read(command, doing))
        if batch is None:
            return
        try:
            xtables.restore(command, batch, doing)
        except IptablesError:
            failures += 1
            if failures == ATTEMPTS:
                raise
            continue
        if f"-D {ACCEPT_CHAIN} " not in batch or f"-X {ACCEPT_CHAIN}" in batch:
            return


def inspect(want: Wanted) -> tuple[dict[str, tuple[int, int]], Repairs]:
    """One read for a poll: the job chain's counters (empty when the chain is gone) and what
    a repair would have to put back."""
    tables = xtables.read(want.job.command, f"read counters of {want.job.chain}", counters=True)
    return _counters(tables, want.job.chain), plan_repairs(want, tables)


def _counters(tables: dict[str, Table], chain: str) -> dict[str, tuple[int, int]]:
    filt = tables.get("filter") or Table("filter")
    return {r.comment: (r.nbytes, r.packets) for r in filt.rules(chain) if r.comment}


def read_counters(command: str, chain: str) -> dict[str, tuple[int, int]]:
    """Bytes and packets of every commented rule of the job's chain (admin rules included);
    empty when the chain is gone."""
    tables = xtables.read(command, f"read counters of {chain}", counters=True)
    return _counters(tables, chain)


def merge_counters(ipv4: Counters, ipv6: Counters) -> Counters:
    """Pure: one reading of a job's two chains, as the nftables backend's one chain reads:
    ``Outgoing``/``Incoming`` are both families' (IPv4's plus ``OutgoingIPv6``/
    ``IncomingIPv6``), which stay as they are; an admin's counter in both chains is summed.
    A total one of whose parts is missing (a chain gone, a rule deleted) is left out: the
    published value then stays as it was, rather than reading lower."""
    found = dict(ipv4)
    for name, (nbytes, packets) in ipv6.items():
        before = found.get(name, (0, 0))
        found[name] = (before[0] + nbytes, before[1] + packets)
    for total, part in ((OUTGOING, OUTGOING_IPV6), (INCOMING, INCOMING_IPV6)):
        if total in ipv4 and part in ipv6:
            found[total] = (ipv4[total][0] + ipv6[part][0], ipv4[total][1] + ipv6[part][1])
        else:
            found.pop(total, None)
    return found


def has_masquerade(job: IptablesRules) -> bool:
    """Whether the job's MASQUERADE rule is still there."""
    nat = xtables.read(job.command, f"check the masquerade of {job.chain}").get("nat")
    return nat is not None and any(
        r.target == "MASQUERADE" and r.comment == job.chain for r in nat.rules("POSTROUTING")
    )


def dump(command: str) -> str:
    """Lark's chains, the jumps to them and the masquerade rules, with counters, for a person."""
    sections: list[str] = []
    for table in ("filter", "nat"):
        out = xtables.run(
            [command, "-w", "-t", table, "-L", "-v", "-x", "-n"], None, f"list iptables {table}"
        )
        for block in out.strip().split("\n\n"):
            lines = block.splitlines()
            if len(lines) < 2:
                continue
            name = lines[0].split()[1]
            lark = name.startswith(CHAIN_PREFIX) or name == ACCEPT_CHAIN
            rules = lines[2:] if lark else [r for r in lines[2:] if "LARK" in r]
            if lark or rules:
                sections.append("\n".join([f"{lines[0]} [{table}]", lines[1], *rules]))
    return "\n\n".join(sections)


def save(command: str, table: str) -> str:
    return xtables.run([f"{command}-save", "-t", table], None, f"read the {table} table")
