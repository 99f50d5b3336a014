"""What the verbs share: root, the command after ``--``, settings from flags, the state and
lock dirs, the version, the cleanup warning."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LarkError, UsageError


def command_words(words: list[str], usage: str) -> list[str]:
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise UsageError(f"no command given: {usage}")
    return words


def need_root() -> None:
    if os.geteuid() != 0:
        raise UsageError("must run as root (it creates network namespaces and firewall rules)")


def cli_settings(args: argparse.Namespace) -> dict[str, Any]:
    from ..decide import settings

    return settings.flag_values(args)


def settings_config() -> Any:
    from ..decide import settings

    return settings.htcondor_config()


def state_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    """The state and lock dirs the agents use: the flags, else LARK_STATE_DIR / LARK_LOCK_DIR
    of the HTCondor config (as ``run`` reads them), else the defaults. A sweeper that looked
    elsewhere than the agents would take live jobs for orphans."""
    from ..decide import settings

    config = settings.htcondor_config() if not (args.state_dir and args.lock_dir) else {}
    found = []
    for flag, knob, default in (
        (args.state_dir, "LARK_STATE_DIR", settings.DEFAULT_STATE_DIR),
        (args.lock_dir, "LARK_LOCK_DIR", settings.DEFAULT_LOCK_DIR),
    ):
        path = Path(flag or config.get(knob) or default)
        if not path.is_absolute() and not flag:
            raise ConfigError(f'{knob} "{path}" (HTCondor config) is not an absolute path')
        found.append(path)
    return found[0], found[1]


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lark-async")
    except PackageNotFoundError:
        return "unknown"


def report_cleanup(errors: list[LarkError], name: str) -> None:
    if errors:
        print(
            f"lark-agent: warning: cleanup of {name} incomplete: {errors[0]} "
            f"(run: lark-agent cleanup {name})",
            file=sys.stderr,
        )
