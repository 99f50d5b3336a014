"""Admin callout scripts written into the sandbox: recorders, arbitrary bodies, shipped examples."""

from __future__ import annotations

from pathlib import Path

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "scripts"

RECORDER = """#!/bin/sh
# record how we were called: one argument per line, then stdin
out="{out}.$$"
for a in "$@"; do printf '%s\\n' "$a"; done > "$out.args"
cat > "$out.stdin"
{extra}
"""


def script(sandbox, name: str, body: str) -> Path:
    path = sandbox.tmp / name
    path.write_text(body)
    path.chmod(0o755)
    return path


def recorder(sandbox, name: str, extra: str = "") -> Path:
    return script(sandbox, name, RECORDER.format(out=sandbox.tmp / name, extra=extra))


def calls(sandbox, name: str) -> list[tuple[list[str], str]]:
    found = []
    for args in sorted(sandbox.tmp.glob(f"{name}.*.args")):
        stdin = Path(str(args).removesuffix(".args") + ".stdin").read_text()
        found.append((args.read_text().splitlines(), stdin))
    return found


def contrib_script(sandbox, name: str, setting: str, value: str) -> Path:
    """A shipped example with its one setting pointed at the sandbox."""
    text = (CONTRIB / name).read_text()
    lines = [
        f'{setting}="{value}"' if ln.startswith(f"{setting}=") else ln for ln in text.split("\n")
    ]
    return script(sandbox, name, "\n".join(lines))
