"""``cleanup NAME`` and ``cleanup --orphans``: what dead agents left, undone (state/sweeper.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import LarkError, UsageError
from .common import need_root, state_dirs


def _sweep(orphans: list[Any], dry_run: bool, verb: str) -> int:
    """Undo each orphan (each decides again whether its agent is alive); the failures."""
    failed = 0
    for orphan in orphans:
        if dry_run:
            for line in orphan.lines():
                print(f"{verb} {line}")
            continue
        try:
            removed = orphan.undo()
        except LarkError as exc:
            failed += 1
            print(f"{orphan}: {exc}", file=sys.stderr)
        else:
            if removed:
                for line in orphan.lines():
                    print(f"removed {line}")
    return failed


def cmd_cleanup(args: argparse.Namespace) -> int:
    from ..backends import locks
    from ..decide.names import check_name
    from ..state import sweeper
    from ..state.record import Record

    need_root()
    state_dir, lock_dir = state_dirs(args)
    if not args.names and not args.orphans:
        raise UsageError("name the jobs to clean up, or pass --orphans")
    failed = 0
    lingering: list[str] = []
    for name in args.names:
        check_name(name)
        path = state_dir / f"{name}.json"
        if not path.exists():
            print(f"{name}: nothing recorded")
            continue
        try:
            pid = int(Record.load(path).data["pid"])
        except LarkError:
            pid = 0  # unreadable: swept by name
        if locks.job_alive(lock_dir, name) or sweeper.agent_alive(pid):
            running = f"agent pid {pid}" if pid else "a running agent"
            raise UsageError(f"job {name} is still supervised by {running}")
        if args.dry_run:
            print(f"{name}: would clean up its record")
            continue
        orphans = sweeper.find_orphans(state_dir, lock_dir, lingering=lingering, only=name)
        errors = _sweep(orphans, False, "")
        failed += errors
        print(f"{name}: {'cleaned up' if not errors else 'incomplete'}")
    if args.orphans:
        orphans = sweeper.find_orphans(state_dir, lock_dir, args.match or "", lingering)
        failed += _sweep(orphans, args.dry_run, "orphan")
        if not orphans:
            print("no orphans")
    for err in sweeper.settle(lingering, lock_dir):  # the kernel deletes them in batches
        failed += 1
        print(f"veth: {err}", file=sys.stderr)
    return 1 if failed else 0
