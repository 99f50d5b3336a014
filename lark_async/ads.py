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
    """Parse old (``A = 1`` lines) or new (``[ A = 1; ]``) syntax; raise AdError naming the line."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            return classad2.parseOne(stripped, classad2.ParserType.New)
        except (ValueError, classad2.ClassAdException) as exc:
            raise AdError(f"{what}: not a valid new-syntax ClassAd ({exc})") from exc
    ad = classad2.ClassAd()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("***") or line == "------":
            continue
        attr, eq, expr = line.partition("=")
        attr = attr.strip()
        if not eq or not _ATTR_RE.fullmatch(attr):
            raise AdError(f"{what} line {lineno}: expected 'Attribute = value', got {line[:60]!r}")
        try:
            ad[attr] = classad2.ExprTree(expr.strip())
        except (ValueError, classad2.ClassAdException) as exc:
            raise AdError(f"{what} line {lineno}: cannot parse the value of {attr}") from exc
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


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return classad2.quote(str(value))


def format_old(values: Mapping[str, object]) -> str:
    """Old-syntax ad text, sorted; strings are quoted by classad2 so data cannot inject lines."""
    return "".join(f"{key} = {_literal(values[key])}\n" for key in sorted(values))


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
