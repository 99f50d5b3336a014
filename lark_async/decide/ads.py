"""ClassAds in and out: job and machine ads are read strictly, the update ad is written atomically.

classad2's parsers accept truncated input silently (the old-syntax one stops
at the first bad line), so a cut-off ad would look valid: parse_ad checks that
the whole text was taken and names the first bad line otherwise.
"""

from __future__ import annotations

import json
import os
import re
import resource
import select
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import classad2

from .. import userfiles
from ..errors import AdError

_ATTR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

# Bounds on ads from the job side, checked before anything is created. A real job ad is tens
# of KiB. classad's own evaluator gives up on a chain of about 450 operators, and its
# old-syntax printer overflows the stack (SIGSEGV) on a chain of some 40,000: an expression
# may be at most MAX_EXPR_DEPTH deep, counting chained operators and brackets.
AD_MAX_BYTES = 1 << 20
MAX_EXPR_DEPTH = 1000


def parse_ad(text: str, what: str) -> classad2.ClassAd:
    """Parse old (``A = 1`` lines) or new (``[ A = 1; ]``) syntax; raise AdError naming the line.

    Old syntax (what the starter writes) is parsed line by line: each value must be one whole
    expression, so a truncated or junk-trailed line is an error naming it. classad2's own
    parsers accept truncated input silently, and ``parseOne`` also loads all of htcondor2 --
    whose start-up resolves the node's hostname, a DNS round trip (or a minute's wait on a
    node without DNS) on every job start -- so neither syntax uses them: the rare new-syntax
    ad is checked whole, then built with ``classad2.ClassAd``.
    """
    stripped = text.strip()
    if stripped.startswith("["):
        _check_depth(stripped, what)
        try:  # parenthesised, junk after the ad cannot hide; the ad must be all there is
            whole = str(classad2.ExprTree(f"({stripped})"))
            ad = classad2.ClassAd(stripped)
            if whole == f"({classad2.ExprTree(str(ad))})":
                return ad
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
        _check_depth(expr, f"{what} line {lineno}: the value of {attr}")
        try:  # parenthesised, junk after the expression cannot hide
            classad2.ExprTree(f"({expr})")
            ad[attr] = classad2.ExprTree(expr)
        except (ValueError, classad2.ClassAdException) as exc:
            raise AdError(f"{what} line {lineno}: cannot parse the value of {attr}") from exc
    return ad


# each token's kind is the name of the group it matched
_TOKEN_RE = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<operator>[-+*/%<>=!&|^~?:]+)"""
    r"""|(?P<open>[(\[{])|(?P<close>[)\]}])|(?P<end>[,;])"""
)


def expression_depth(text: str) -> int:
    """An upper bound on the parse-tree depth of new-syntax ``text``, without parsing it:
    along any path, the operators chained at each bracket level plus the open brackets (a
    ',' or ';' ends a chain). Strings are skipped whole."""
    chain = [0]  # operators chained so far, per open bracket level
    depth = deepest = 0  # depth == sum(chain) + len(chain) - 1
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup
        if kind == "string":
            continue
        if kind == "open":
            chain.append(0)
            depth += 1
        elif kind == "close":
            if len(chain) > 1:
                depth -= chain.pop() + 1
        elif kind == "end":
            depth -= chain[-1]
            chain[-1] = 0
        else:
            chain[-1] += 1
            depth += 1
        deepest = max(deepest, depth)
    return deepest


def _check_depth(text: str, where: str) -> None:
    if expression_depth(text) > MAX_EXPR_DEPTH:
        raise AdError(
            f"{where} is nested too deeply (more than {MAX_EXPR_DEPTH} chained operators "
            "and brackets)"
        )


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
    """An absent path (no ad given at all) is an empty ad; an unreadable file is an error.

    The file must be a regular file, reached without a final symlink, and at most
    ``AD_MAX_BYTES``: a FIFO the caller holds open, ``/dev/zero`` or a gigabyte of ad
    must not stall or swell a root process (the job side is hostile, DESIGN.md section 4).
    """
    if path is None:
        return classad2.ClassAd()
    try:
        data = userfiles.read_regular(path, AD_MAX_BYTES, f"{AD_MAX_BYTES // 1024} KiB")
    except userfiles.Refused as exc:
        raise AdError(f"{what} {path}: {exc}") from exc
    except OSError as exc:
        raise AdError(f"{what} {path}: {exc.strerror}") from exc
    return parse_ad(data.decode(errors="replace"), f"{what} {path}")


def evaluate(ad: classad2.ClassAd, attr: str, target: classad2.ClassAd | None = None) -> object:
    """Evaluate MY.attr with TARGET bound to ``target``; ``None`` when absent or undefined.

    Machine-ad settings may depend on the job (``ifThenElse(TARGET.X, ...)``):
    the admin writes the expression, the job only supplies data to it.
    """
    if attr not in ad:
        return None
    try:
        value = ad.lookup(attr).eval(ad, target)
    except (ValueError, classad2.ClassAdException, TypeError):
        return classad2.Value.Error
    if value is classad2.Value.Undefined:
        return None
    return value


# -- evaluation of the job side's ads, bounded ------------------------------------------------

EVAL_CPU_S = 2  # CPU seconds the evaluating child may use (RLIMIT_CPU)
EVAL_WALL_S = 5.0  # and wall-clock seconds before it is killed
EVAL_MEMORY_BYTES = 1 << 30  # its address space (RLIMIT_AS)


@dataclass(frozen=True)
class Evaluation:
    """Evaluate ``attributes`` of ``ad`` (with TARGET bound to ``target`` when given)."""

    ad: classad2.ClassAd
    attributes: Sequence[str]
    target: classad2.ClassAd | None = None


def evaluate_bounded(
    requests: Sequence[Evaluation], as_user: tuple[int, int] | None = None
) -> list[classad2.ClassAd]:
    """Each request's attributes, evaluated in a forked child, as ads of literal values.

    Evaluating an ad is running the job side's code: forty self-doubling references
    (``A1 = A0 + A0``, ...) evaluate for days, and classad's C++ cannot be interrupted from
    Python. So a child does it, under CPU, memory and wall-clock limits (and with the job
    user's identity when root), and hands back plain values; the results evaluate instantly
    wherever Lark looks at them later (``evaluate`` with any target). Undefined attributes
    are left out, errors and values that are not plain (lists, ads) come back as ``error``.
    """
    child = _child(requests, as_user)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:  # the parent
        os.close(write_fd)
        try:
            data = _collect(pid, read_fd)
        finally:
            os.close(read_fd)
        try:
            results = json.loads(data)
        except ValueError:
            raise AdError("evaluating the ads failed (no result from the evaluator)") from None
        out = []
        for values in results:
            ad = classad2.ClassAd()
            for attr, value in values.items():
                ad[attr] = classad2.Value.Error if value is None else value
            out.append(ad)
        return out
    os.close(read_fd)
    child(write_fd)


def _child(
    requests: Sequence[Evaluation], as_user: tuple[int, int] | None
) -> Callable[[int], NoReturn]:
    """What the forked child runs: its limits, the job user's identity, then the values as
    JSON to the pipe; it never returns. (Made before the fork: a mutation run, which records
    the functions each test calls in the test's own process, sees it called there.)"""

    def run(fd: int) -> NoReturn:
        try:
            resource.setrlimit(resource.RLIMIT_CPU, (EVAL_CPU_S, EVAL_CPU_S))
            resource.setrlimit(resource.RLIMIT_AS, (EVAL_MEMORY_BYTES, EVAL_MEMORY_BYTES))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if as_user is not None and os.geteuid() == 0:
                os.setgroups([])
                os.setgid(as_user[1])
                os.setuid(as_user[0])
            results = []
            for request in requests:
                values: dict[str, object] = {}
                for attr in request.attributes:
                    value = evaluate(request.ad, attr, request.target)
                    if value is None:
                        continue
                    plain = type(value) in (bool, int, float, str)
                    values[attr] = value if plain else None
                results.append(values)
            with open(fd, "wb") as out:
                out.write(json.dumps(results).encode())
        except BaseException:
            os._exit(1)
        os._exit(0)

    return run


_READ_SIZE = 1 << 16  # a pipe's buffer
_TOO_LONG = "evaluating the ads took too long (a self-referencing or runaway expression?)"


def _collect(pid: int, fd: int) -> bytes:
    """The child's output; AdError (one line) when it failed. The child is always reaped."""
    deadline = time.monotonic() + EVAL_WALL_S
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AdError(_TOO_LONG)
        chunk = os.read(fd, _READ_SIZE)
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            raise AdError(_TOO_LONG)
        raise AdError(f"evaluating the ads failed ({signal.Signals(sig).name})")
    if os.WEXITSTATUS(status) != 0:
        raise AdError("evaluating the ads failed (out of memory, or an evaluator error)")
    return b"".join(chunks)


def format_for_script(ad: classad2.ClassAd) -> str:
    """Old-syntax text of ``ad`` for a callout script's stdin, one line per attribute.

    classad's old-syntax printer writes a string's newlines raw (so a job-ad string holding
    ``"\\n------\\n"`` would forge the separator between the job and the machine ad, and
    whole attributes after it) and stops a string at a NUL. A line that holds a control
    character, or does not read back as the same expression, is written with new-syntax
    escapes instead (``"a\\nb"``), as ``str(ExprTree)`` prints it.
    """
    lines = []
    for attr in ad:
        expr = ad.lookup(attr)
        one = classad2.ClassAd()
        one[attr] = expr
        line = one.printOld().removesuffix("\n")
        if not (line.isprintable() and _reads_back(line, attr, expr)):
            line = f"{attr} = {expr}"
        lines.append(line + "\n")
    return "".join(lines)


def _reads_back(line: str, attr: str, expr: classad2.ExprTree) -> bool:
    value = line[len(attr) :].lstrip().removeprefix("=").strip()
    try:
        return str(classad2.ExprTree(_old_strings_to_new(value))) == str(expr)
    except (ValueError, classad2.ClassAdException):
        return False


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
