"""ClassAds in and out: job and machine ads are read strictly, the update ad is written atomically.

classad2's parsers accept truncated input silently (the old-syntax one stops
at the first bad line), so a cut-off ad would look valid: parse_ad checks that
the whole text was taken and names the first bad line otherwise.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import classad2

from .errors import AdError

_ATTR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def parse_ad(text: str, what: str) -> classad2.ClassAd:
    """Parse old (``A = 1`` lines) or new (``[ A = 1; ]``) syntax; raise AdError naming the line.

    Old syntax goes through classad2's own old-syntax parser (HTCondor's rules, literal
    backslashes included), which silently stops at the first bad line: every line's
    attribute must therefore come out of it, and the first one missing is the bad line.
    The new-syntax parser accepts truncated input, so the text is first checked whole.
    """
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            whole = classad2.ExprTree(stripped).eval()
            if isinstance(whole, classad2.ClassAd):
                return classad2.parseOne(stripped, classad2.ParserType.New)
        except (ValueError, classad2.ClassAdException):
            pass
        raise AdError(f"{what}: not a valid new-syntax ClassAd")
    lines: list[tuple[int, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "***")) or line == "------":
            continue
        attr, eq, _ = line.partition("=")
        if not eq or not _ATTR_RE.fullmatch(attr.strip()):
            raise AdError(f"{what} line {lineno}: expected 'Attribute = value', got {line[:60]!r}")
        lines.append((lineno, line))
    ad = _parse_old([line for _, line in lines])
    if ad is None:  # find the first bad line: a prefix parses iff it ends before it
        lo, hi = 0, len(lines) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if _parse_old([line for _, line in lines[: mid + 1]]) is None:
                hi = mid
            else:
                lo = mid + 1
        lineno, line = lines[lo]
        raise AdError(
            f"{what} line {lineno}: cannot parse the value of {line.split('=')[0].strip()}"
        )
    return ad


_SENTINEL = "LarkEndOfAdSentinel"


def _parse_old(lines: list[str]) -> classad2.ClassAd | None:
    """classad2's old-syntax parse, or None if it stopped early (a sentinel last line tells)."""
    try:
        ad = classad2.parseOne("\n".join([*lines, f"{_SENTINEL} = 1"]), classad2.ParserType.Old)
    except (ValueError, classad2.ClassAdException):
        return None
    if _SENTINEL not in ad:
        return None
    del ad[_SENTINEL]
    return ad


def read_ad(path: str | os.PathLike[str] | None, what: str) -> classad2.ClassAd:
    """An absent path (no ad given at all) is an empty ad; an unreadable file is an error."""
    if path is None:
        return classad2.ClassAd()
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        raise AdError(f"{what} {path}: {exc.strerror}") from exc
    return parse_ad(text, f"{what} {path}")


def evaluate(ad: classad2.ClassAd, attr: str, target: classad2.ClassAd | None = None) -> object:
    """Evaluate MY.attr with TARGET bound to ``target``; ``None`` when absent or undefined.

    Machine-ad settings may depend on the job (``ifThenElse(TARGET.X, ...)``):
    the admin writes the expression, the job only supplies data to it.
    """
    if attr not in ad:
        return None
    try:
        value = ad.lookup(attr).eval(ad, target) if target is not None else ad.eval(attr)
    except (ValueError, classad2.ClassAdException, TypeError):
        return classad2.Value.Error
    if value is classad2.Value.Undefined:
        return None
    return value


def format_old(values: Mapping[str, object]) -> str:
    """Old-syntax ad text, one sorted line per attribute, escaped by classad2's own writer."""
    ad = classad2.ClassAd()
    for key, value in values.items():
        if isinstance(value, str):  # one attribute, one line, whatever the value holds
            value = "".join(c if c.isprintable() else "?" for c in value)
        ad[key] = value
    return "".join(f"{line}\n" for line in sorted(ad.printOld().splitlines()) if line)


def write_atomically(path: Path, text: str) -> None:
    """Write + rename, so a reader (the starter) never sees half an ad."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
