"""Pure naming rules: job names, interface, namespace and chain names.

The kernel allows 15 characters in an interface name (IFNAMSIZ - 1), so a job
name has at most 13 and ``e_<name>``/``i_<name>`` always fit -- the original
Lark overflowed here with long slot names.
"""

from __future__ import annotations

import base64
import hashlib
import re

from ..errors import UsageError

IFNAMSIZ = 16
NAME_MAX = IFNAMSIZ - 1 - len("e_")  # 13
NETNS_PREFIX = "lark-"
CHAIN_PREFIX = "LARK_"
EXTERNAL_PREFIX, INTERNAL_PREFIX = "e_", "i_"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,12}$")
_SLOT_RE = re.compile(r"^slot(\d+)(?:_(\d+))?$")


def check_name(name: str) -> str:
    """Validate an explicit job name (from root's ``--name``)."""
    if not _NAME_RE.fullmatch(name):
        raise UsageError(
            f"job name {name!r} must be 1-{NAME_MAX} characters of letters, digits, '_' or '-'"
            " and start with a letter or digit"
        )
    return name


def _hashed(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return "h" + base64.b32encode(digest).decode().lower()[: NAME_MAX - 1]


def derive_name(slot: str | None, job_id: str | None, fallback: str) -> str:
    """A readable name from the slot and job id, or a hash when it does not fit.

    ``slot1_2@node`` and job ``123.0`` give ``s1_2-123_0``. Slot names are unique
    on a startd and a job id is unique in its schedd, so the pair is unique on
    the node; ``fallback`` (e.g. the agent's pid) keeps ad-less runs unique.
    """
    parts: list[str] = []
    short = slot.split("@", 1)[0] if slot else ""
    if short:
        m = _SLOT_RE.fullmatch(short)
        parts.append(f"s{m.group(1)}" + (f"_{m.group(2)}" if m.group(2) else "") if m else short)
    if job_id:
        parts.append(job_id.replace(".", "_"))
    if not parts:
        parts.append(fallback)
    candidate = "-".join(parts)
    if _NAME_RE.fullmatch(candidate):
        return candidate
    return _hashed("|".join(parts))


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, d = divmod(n, 36)
        out = digits[d] + out
        if not n:
            return out


def derive_agent_name(job_id: str | None, pid: int) -> str:
    """A name no live agent has, for ``wrap``: the caller writes the ads, so a job id (or a
    slot name) from them could squat another job's name; the agent's pid cannot be chosen.

    Job ``123.0`` run by agent 4242 gives ``123_0-w39u``; a job id too long to fit keeps its
    end (the most distinctive digits).
    """
    tag = f"w{_base36(pid)}"
    if not job_id:
        return tag
    room = NAME_MAX - len(tag) - 1
    job = job_id.replace(".", "_")[-room:].lstrip("_-")
    return f"{job}-{tag}" if job else tag


def external_interface(name: str) -> str:
    return f"{EXTERNAL_PREFIX}{name}"


def internal_interface(name: str) -> str:
    return f"{INTERNAL_PREFIX}{name}"


def netns_name(name: str) -> str:
    return f"{NETNS_PREFIX}{name}"


def chain_name(name: str) -> str:
    """Chain names stay within iptables' 28 characters (nftables allows 256)."""
    return f"{CHAIN_PREFIX}{name}"


def job_of(thing: str, prefix: str = "") -> str | None:
    """The job a ``prefix``-named thing (``lark-x``, ``e_x``, ``LARK_x``) was made for, or
    None when no job name follows the prefix (not Lark's)."""
    if not thing.startswith(prefix):
        return None
    name = thing.removeprefix(prefix)
    return name if _NAME_RE.fullmatch(name) else None
