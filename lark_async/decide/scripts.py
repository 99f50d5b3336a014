"""An admin callout script as a setting names it: kind, path, time bound, and the check that
it is root's own (trust.py). Running one is backends/scripts.py's."""

from __future__ import annotations

import stat
from dataclasses import dataclass

from ..errors import ConfigError
from ..trust import check_root_file


@dataclass(frozen=True)
class Script:
    kind: str  # "create", "delete" or "policy": for messages
    path: str
    timeout_s: float

    def check(self) -> None:
        """A root-owned executable that only root may change, reached through root's
        directories only (trust.py): nobody else can swap it between this check and its run."""
        st = check_root_file(self.path, f"{self.kind} script")
        if not st.st_mode & stat.S_IXUSR:
            raise ConfigError(f"{self.kind} script {self.path} is not executable")
