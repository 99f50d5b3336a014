"""iptables as it is: ``iptables-save`` text parsed, and commands judged by exit status.

iptables' words for "that is not there" differ between builds and versions
(legacy: "No chain/target/match by that name"; nf_tables: "chain `X' in table
`filter' is incompatible"; both may end with a usage hint), so nothing here
reads stderr to decide anything. What exists is read from ``iptables-save``
(which creates nothing: without ``-t`` it lists only tables that exist, so a
node without legacy tables does not get one), and a command's failure is its
exit status (1: other error, 2: parameter problem, 4: resource problem). Stderr
is only quoted, one line, in the error a person reads.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
from dataclasses import dataclass, field

from ...errors import KernelError

BUILTIN = {"filter": ("INPUT", "FORWARD", "OUTPUT"), "nat": ("PREROUTING", "INPUT", "OUTPUT",
           "POSTROUTING")}  # fmt: skip
_COUNTED = re.compile(r"^\[(\d+):(\d+)\]\s+")
_TARGET = re.compile(r"(?:^| )-[jg] (\S+)")


class IptablesError(KernelError):
    """An iptables command failed; ``status`` is its exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Rule:
    """One rule as ``iptables-save`` prints it; ``spec`` is what follows ``-A CHAIN``, usable
    as is after ``-D CHAIN`` or ``-C CHAIN``."""

    chain: str
    spec: str
    packets: int = 0
    nbytes: int = 0

    @functools.cached_property
    def options(self) -> dict[str, str]:
        """Option to value (``-i``, ``-o``, ``-j``, ``--comment``, ...); a negated one as
        ``!-s``. A flag without a value maps to an empty string. (Parsed once: a poll reads
        every job's rules of the build.)"""
        words = shlex.split(self.spec) if '"' in self.spec else self.spec.split()
        found: dict[str, str] = {}
        negate = False
        i = 0
        while i < len(words):
            word = words[i]
            if word == "!":
                negate = True
            elif word.startswith("-"):
                value = ""
                if i + 1 < len(words) and not words[i + 1].startswith("-") and words[i + 1] != "!":
                    value = words[i + 1]
                    i += 1
                found[("!" if negate else "") + word] = value
                negate = False
            i += 1
        return found

    @functools.cached_property
    def target(self) -> str:
        found = _TARGET.search(self.spec)
        return found.group(1) if found else ""

    @functools.cached_property
    def comment(self) -> str:
        return self.options.get("--comment", "") if "--comment" in self.spec else ""


@dataclass
class Table:
    """One table: policies of the built-in chains, and every chain's rules in order."""

    name: str
    policies: dict[str, str] = field(default_factory=dict)
    chains: dict[str, list[Rule]] = field(default_factory=dict)

    def has_chain(self, chain: str) -> bool:
        return chain in self.chains

    def rules(self, chain: str) -> list[Rule]:
        return self.chains.get(chain, [])


def parse_save(text: str) -> dict[str, Table]:
    """``iptables-save [-c]`` output (any number of tables) by table name."""
    tables: dict[str, Table] = {}
    table: Table | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = tables.setdefault(line[1:], Table(line[1:]))
        elif table is None:
            continue
        elif line == "COMMIT":
            table = None
        elif line.startswith(":"):
            name, policy = [*line[1:].split(), "-"][:2]
            table.chains.setdefault(name, [])
            if policy != "-":
                table.policies[name] = policy
        else:
            packets = nbytes = 0
            counted = _COUNTED.match(line) if line[0] == "[" else None
            if counted:
                packets, nbytes = int(counted.group(1)), int(counted.group(2))
                line = line[counted.end() :]
            if line.startswith("-A "):
                chain, _, spec = line[3:].partition(" ")
                table.chains.setdefault(chain, []).append(Rule(chain, spec, packets, nbytes))
    return tables


def run(argv: list[str], stdin: str | None, doing: str) -> str:
    """Run one iptables program; its output, or an IptablesError with its exit status."""
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
    except FileNotFoundError as exc:
        raise IptablesError(f"{doing}: {argv[0]} is not installed", 127) from exc
    except subprocess.TimeoutExpired as exc:
        raise IptablesError(f"{doing}: {argv[0]} did not finish within 60 s", 124) from exc
    if done.returncode != 0:
        reason = _reason(done.stderr) or f"exit {done.returncode}"
        raise IptablesError(f"{doing}: {reason}", done.returncode)
    return done.stdout


def _reason(stderr: str) -> str:
    """For the person: the first line that says something, not a usage hint ("Try `iptables
    -h'" in one version, "Try 'iptables -h'" in another) nor a warning about the other build."""
    for line in stderr.splitlines():
        text = line.strip()
        if text and not text.startswith(("Try ", "# Warning")):
            return text
    return ""


def read(command: str, doing: str, counters: bool = False) -> dict[str, Table]:
    """Every table ``command`` has in this namespace (``-c``: with counters)."""
    argv = [f"{command}-save", *(["-c"] if counters else [])]
    return parse_save(run(argv, None, doing))


def restore(command: str, batch: str, doing: str) -> None:
    """One atomic batch that leaves everything it does not name alone."""
    run([f"{command}-restore", "--noflush", "--wait"], batch, doing)
