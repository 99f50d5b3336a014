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
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ...decide.accounting import INCOMING, OUTGOING
from ...decide.modes import RuleFamily
from ...decide.names import CHAIN_PREFIX
from ...decide.reach import CLOSED, NodeReach
from . import xtables
from .xtables import IptablesError, Table

ACCEPT_CHAIN = "LARK-FORWARD"
BUILDS = ("iptables-nft", "iptables-legacy")
ATTEMPTS = 5  # reads and batches, when another agent's batch came in between


@dataclass(frozen=True)
class IptablesRules:
    """What iptables holds of one NAT job; also what the state record keeps for undo, and
    for a restore (``reach``: what of the node the job may reach; closed by default)."""

    command: str  # iptables, iptables-nft, iptables-legacy
    chain: str
    external_interface: str
    internal_address: ipaddress.IPv4Address
    reach: NodeReach = CLOSED

    def to_record(self) -> dict[str, object]:
        return {
            "family": RuleFamily.IPTABLES,
            "command": self.command,
            "chain": self.chain,
            "external_interface": self.external_interface,
            "internal_address": str(self.internal_address),
            "reach": self.reach.to_record(),
        }

    @classmethod
    def from_record(cls, data: dict[str, object]) -> IptablesRules:
        reach = data.get("reach")
        return cls(
            str(data["command"]),
            str(data["chain"]),
            str(data["external_interface"]),
            ipaddress.IPv4Address(str(data["internal_address"])),
            CLOSED if reach is None else NodeReach.from_record(reach),
        )

    def jumps(self) -> list[str]:
        c, e = self.chain, self.external_interface
        return [f"FORWARD -i {e} -j {c}", f"FORWARD -o {e} -j {c}", f"INPUT -i {e} -j {c}",
                f"OUTPUT -o {e} -j {c}"]  # fmt: skip

    def masquerade(self) -> str:
        return (
            f"POSTROUTING -s {self.internal_address}/32 ! -o e_+ -m comment --comment "
            f"{self.chain} -j MASQUERADE"
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
OTHER_JOBS = "e_+"


def _chain_rules(job: IptablesRules) -> list[str]:
    """The job's chain: its counters (IPv4: iptables sees no other family; IPv6 is off on
    the job's veth, so the node drops it before any hook), its source address, what it may
    reach of the node, and no other NAT job unless ``reach.job_to_job``.

    The chain is jumped to from FORWARD, INPUT and OUTPUT; ``TO_THE_NODE`` (the destination
    is a local, broadcast, anycast or multicast address: the node's own) is never true in
    FORWARD and always in INPUT, so the reach rules decide only what the job sends to the
    node. What they let on is RETURNed, not ACCEPTed: INPUT's own rules (the node's) still
    decide after Lark's, as they did. The rules that close (the DROPs) are what
    ``plan_repairs`` looks for."""
    c, e, reach = job.chain, job.external_interface, job.reach
    rules = [
        f"-A {c} -i {e} -m comment --comment {OUTGOING}",
        f"-A {c} -o {e} -m comment --comment {INCOMING}",
        f"-A {c} -i {e} ! -s {job.internal_address}/32 -j DROP",
        f"-A {c} -i {e} {TO_THE_NODE} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
    ]
    for port in reach.ports:
        ports = str(port.low) if port.low == port.high else f"{port.low}:{port.high}"
        p = port.proto
        rules.append(f"-A {c} -i {e} -p {p} -m {p} --dport {ports} {TO_THE_NODE} -j RETURN")
    for addr in (a for a in reach.dns if a.version == 4):  # (iptables: IPv4 alone)
        for dns in ("udp", "tcp"):
            rules.append(
                f"-A {c} -i {e} -d {addr}/32 -p {dns} -m {dns} --dport 53 {TO_THE_NODE} -j RETURN"
            )
    rules.append(f"-A {c} -i {e} {TO_THE_NODE} -j DROP")
    if not reach.job_to_job:
        rules.append(
            f"-A {c} -i {e} -o {OTHER_JOBS} -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP"
        )
    return rules


def _closes(job: IptablesRules, rules: list[xtables.Rule]) -> bool:
    """The chain still has the rules that keep the job from the node and the other jobs."""
    node = any(r.target == "DROP" and r.options.get("!--dst-type") == "UNICAST" for r in rules)
    jobs = job.reach.job_to_job or any(
        r.target == "DROP" and r.options.get("-o") == OTHER_JOBS for r in rules
    )
    return node and jobs


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


def plan_repairs(want: Wanted, tables: dict[str, Table]) -> Repairs:
    """Pure: the batch that gives ``want`` on a build whose tables are ``tables`` (empty
    when all is in place). Lark's jumps are "in place" when no rule of someone else's is
    above them: the job's jumps follow only other jobs' jumps, LARK-FORWARD's jump follows
    only job jumps."""
    job, fix = want.job, Repairs()
    filt = tables.get("filter") or Table("filter")
    c = job.chain
    forward = [r.target for r in filt.rules("FORWARD")]
    if want.counting:
        rules = filt.rules(c)
        comments = {r.comment for r in rules}
        spoof = any(r.target == "DROP" and "!-s" in r.options for r in rules)
        counting = {OUTGOING, INCOMING} <= comments and spoof
        if not filt.has_chain(c):
            fix.problems.append(f"its chain {c} is gone")
            fix.filter_lines += [f":{c} - [0:0]", *_chain_rules(job)]
            fix.resets_counters = True
        elif not (counting and _closes(job, rules)):
            why = "lost the rules that close the node to it" if counting else "was emptied"
            fix.problems.append(f"its chain {c} {why}")
            fix.filter_lines += [f"-F {c}", *_chain_rules(job)]
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
        if not any(
            r.target == "MASQUERADE" and r.comment == c
            for r in (tables.get("nat") or Table("nat")).rules("POSTROUTING")
        ):
            fix.problems.append(f"its NAT source {job.internal_address} (MASQUERADE) is gone")
            fix.nat_lines.append(f"-A {job.masquerade()}")
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


def check_installed(command: str) -> None:
    """Before anything is created: the backend's programs are there."""
    import shutil

    from ...errors import ConfigError

    for program in (command, f"{command}-restore", f"{command}-save"):
        if shutil.which(program) is None:
            raise ConfigError(
                f"LARK_FIREWALL_BACKEND iptables needs {program}, which is not installed"
            )


def ensure(want: Wanted) -> Repairs:
    """Read the build, put back what the job misses (nothing when all is in place); the
    repairs made, with their reasons. A batch that fails is planned again from a fresh read
    (another agent's batch may have come in between) before the failure is reported."""
    command = want.job.command
    doing = f"restore iptables rules of {want.job.chain} ({command})"
    for attempt in range(ATTEMPTS):
        fix = plan_repairs(want, xtables.read(command, doing))
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
