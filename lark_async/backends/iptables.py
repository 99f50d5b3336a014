"""iptables backend (``LARK_FIREWALL_BACKEND = iptables``), for sites whose scripts use iptables.

It keeps the original Lark's contract to the letter: a chain named
``LarkIptableName`` in the filter table, with all of the job's traffic sent
through it from FORWARD, INPUT and OUTPUT, so a script's ``iptables -A "$3"
...`` lands where it always did. Every change is one ``iptables-restore
--noflush --wait`` batch. The command is ``LARK_IPTABLES`` (``iptables``, or
``iptables-nft`` / ``iptables-legacy`` to pick a build). The price is a linear
list of jump rules: unlike the nftables backend's verdict map, each packet is
matched against every job's jumps. NAT mode only: bridged frames never reach
iptables without br_netfilter.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from dataclasses import dataclass

from ..errors import KernelError

OUTGOING, INCOMING = "Outgoing", "Incoming"
_COUNTER_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s.*/\* (.+?) \*/")


@dataclass(frozen=True)
class IptablesRules:
    """What iptables holds of one NAT job; also what the state record keeps for undo."""

    command: str  # iptables, iptables-nft, iptables-legacy
    chain: str
    external_interface: str
    internal_address: ipaddress.IPv4Address

    def to_record(self) -> dict[str, object]:
        return {
            "family": "iptables",
            "command": self.command,
            "chain": self.chain,
            "external_interface": self.external_interface,
            "internal_address": str(self.internal_address),
        }

    @classmethod
    def from_record(cls, data: dict[str, object]) -> IptablesRules:
        return cls(
            str(data["command"]),
            str(data["chain"]),
            str(data["external_interface"]),
            ipaddress.IPv4Address(str(data["internal_address"])),
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


def render_add(job: IptablesRules) -> str:
    c, e = job.chain, job.external_interface
    return "\n".join(
        [
            "*filter",
            f":{c} - [0:0]",
            f"-A {c} -i {e} -m comment --comment {OUTGOING}",
            f"-A {c} -o {e} -m comment --comment {INCOMING}",
            f"-A {c} -i {e} ! -s {job.internal_address}/32 -j DROP",
            *(f"-I {jump}" for jump in job.jumps()),
            "COMMIT",
            "*nat",
            f"-A {job.masquerade()}",
            "COMMIT",
            "",
        ]
    )


def render_remove(job: IptablesRules) -> str:
    return "\n".join(
        [
            "*filter",
            *(f"-D {jump}" for jump in job.jumps()),
            f"-F {job.chain}",
            f"-X {job.chain}",
            "COMMIT",
            "*nat",
            f"-D {job.masquerade()}",
            "COMMIT",
            "",
        ]
    )


def check_installed(command: str) -> None:
    """Before anything is created: the backend's programs are there."""
    import shutil

    from ..errors import ConfigError

    for program in (command, f"{command}-restore"):
        if shutil.which(program) is None:
            raise ConfigError(
                f"LARK_FIREWALL_BACKEND iptables needs {program}, which is not installed"
            )


def _run(argv: list[str], stdin: str | None, doing: str) -> str:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
    except FileNotFoundError as exc:
        raise KernelError(f"{doing}: {argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise KernelError(f"{doing}: {argv[0]} did not finish within 60 s") from exc
    if done.returncode != 0:
        raise KernelError(f"{doing}: {_reason(done.stderr) or f'exit {done.returncode}'}")
    return done.stdout


def _reason(stderr: str) -> str:
    """The line that says what went wrong, not the usage hint iptables prints after it."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Try `")] or lines
    return lines[-1] if lines else ""


def apply_job(job: IptablesRules) -> None:
    _run(
        [f"{job.command}-restore", "--noflush", "--wait"],
        render_add(job),
        f"add iptables chain {job.chain}",
    )


def discard_job(job: IptablesRules) -> None:
    """Idempotent: the whole removal in one batch, or, when part is gone, piece by piece."""
    doing = f"remove iptables chain {job.chain}"
    try:
        _run([f"{job.command}-restore", "--noflush", "--wait"], render_remove(job), doing)
        return
    except KernelError:
        pass
    steps = [["-t", "filter", "-D", *j.split()] for j in job.jumps()]
    steps += [["-t", "filter", "-F", job.chain], ["-t", "filter", "-X", job.chain]]
    steps += [["-t", "nat", "-D", *job.masquerade().split()]]
    for step in steps:
        try:
            _run([job.command, "-w", *step], None, doing)
        except KernelError as exc:
            if not _absent(str(exc)):
                raise


def _absent(message: str) -> bool:
    text = message.lower()
    return any(
        s in text for s in ("does not exist", "no chain/target/match", "bad rule", "no such file")
    )


def has_masquerade(job: IptablesRules) -> bool:
    """Whether the job's MASQUERADE rule is still there (``-C``: exit 1 when it is not)."""
    argv = [job.command, "-w", "-t", "nat", "-C", *job.masquerade().split()]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KernelError(f"check the masquerade of {job.chain}: {exc}") from exc
    if done.returncode not in (0, 1):
        raise KernelError(f"check the masquerade of {job.chain}: {_reason(done.stderr)}")
    return done.returncode == 0


def read_counters(command: str, chain: str) -> dict[str, tuple[int, int]]:
    """Bytes and packets of every commented rule of the job's chain (admin rules included)."""
    out = _run(
        [command, "-w", "-t", "filter", "-L", chain, "-v", "-x", "-n"],
        None,
        f"read counters of {chain}",
    )
    counters: dict[str, tuple[int, int]] = {}
    for line in out.splitlines():
        m = _COUNTER_LINE.match(line)
        if m:
            counters[m.group(3)] = (int(m.group(2)), int(m.group(1)))
    return counters


def dump(command: str) -> str:
    """Lark's chains, the jumps to them and the masquerade rules, with counters, for a person."""
    sections: list[str] = []
    for table in ("filter", "nat"):
        out = _run(
            [command, "-w", "-t", table, "-L", "-v", "-x", "-n"], None, f"list iptables {table}"
        )
        for block in out.strip().split("\n\n"):
            lines = block.splitlines()
            if len(lines) < 2:
                continue
            name = lines[0].split()[1]
            rules = (
                lines[2:] if name.startswith("LARK_") else [r for r in lines[2:] if "LARK_" in r]
            )
            if name.startswith("LARK_") or rules:
                sections.append("\n".join([f"{lines[0]} [{table}]", lines[1], *rules]))
    return "\n\n".join(sections)


def save(command: str, table: str) -> str:
    return _run([f"{command}-save", "-t", table], None, f"read the {table} table")
