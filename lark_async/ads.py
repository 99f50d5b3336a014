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

    Old syntax (what the starter writes) is parsed line by line: each value must be one whole
    expression, so a truncated or junk-trailed line is an error naming it. classad2's own
    parsers accept truncated input silently, and also load all of htcondor2 -- whose start-up
    resolves the node's hostname, a DNS round trip on every job start -- so old syntax avoids
    them; the rare new-syntax ad is first checked whole.
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
    ad = classad2.ClassAd()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "***")) or line == "------":
            continue
        attr, eq, value = line.partition("=")
        attr = attr.strip()
        if not eq or not _ATTR_RE.fullmatch(attr):
            raise AdError(f"{what} line {lineno}: expected 'Attribute = value', got {line[:60]!r}")
        expr = _old_strings_to_new(value.strip())
        try:  # parenthesised, junk after the expression cannot hide
            classad2.ExprTree(f"({expr})")
            ad[attr] = classad2.ExprTree(expr)
        except (ValueError, classad2.ClassAdException) as exc:
            raise AdError(f"{what} line {lineno}: cannot parse the value of {attr}") from exc
    return ad


def _old_strings_to_new(value: str) -> str:
    """Old ClassAd syntax keeps backslashes literal in strings (``"C:\\dir\\"`` is C:\\dir\\);
    only a backslash before a quote that does not end the line escapes it. Rewrite the
    strings with new-syntax escapes."""
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(value):
        c = value[i]
        if in_string and c == "\\":
            if value[i + 1 : i + 2] == '"' and value[i + 2 :].strip():
                out.append('\\"')
                i += 2
                continue
            out.append("\\\\")
        else:
            out.append(c)
            if c == '"':
                in_string = not in_string
        i += 1
    return "".join(out)


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
