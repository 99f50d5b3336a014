"""ClassAds in and out: job and machine ads are read strictly, the update ad is written atomically.

classad2's old-syntax parser silently stops at the first bad line, so a
truncated ad would look valid; we parse old syntax line by line ourselves and
let classad2 parse each expression.
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
            classad2.ExprTree(stripped)
            return classad2.parseOne(stripped, classad2.ParserType.New)
        except (ValueError, classad2.ClassAdException) as exc:
            raise AdError(f"{what}: not a valid new-syntax ClassAd") from exc
    lines: list[tuple[int, str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "***")) or line == "------":
            continue
        attr, eq, _ = line.partition("=")
        attr = attr.strip()
        if not eq or not _ATTR_RE.fullmatch(attr):
            raise AdError(f"{what} line {lineno}: expected 'Attribute = value', got {line[:60]!r}")
        lines.append((lineno, attr, line))
    try:
        ad = classad2.parseOne("\n".join(line for _, _, line in lines), classad2.ParserType.Old)
    except (ValueError, classad2.ClassAdException):
        ad = classad2.ClassAd()
    for lineno, attr, _ in lines:
        if attr not in ad:
            raise AdError(f"{what} line {lineno}: cannot parse the value of {attr}")
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
