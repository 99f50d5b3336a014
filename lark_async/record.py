"""Per-job state record: write-ahead JSON, so a crash leaves a record, never an orphan.

Each resource is noted *before* it is created; undo reads only the record,
so the supervisor and a later `lark-agent cleanup` share one path.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .ads import write_atomically
from .errors import ResourceError, map_errors


class Record:
    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def create(cls, state_dir: Path, name: str, plan: dict[str, Any]) -> Record:
        with map_errors(f"create state dir {state_dir}"):
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        record = cls(
            state_dir / f"{name}.json",
            {
                "name": name,
                "pid": os.getpid(),
                "started_epoch": time.time(),
                "plan": plan,
                "steps": {},
            },
        )
        try:
            fd = os.open(record.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise ResourceError(
                f"job name {name} is in use: state record {record.path} exists (if its agent is "
                f"gone, run: lark-agent cleanup {name})"
            ) from exc
        except OSError as exc:
            raise ResourceError(f"create state record {record.path}: {exc.strerror}") from exc
        os.close(fd)
        try:
            record.save()
        except BaseException:  # a full disk: leave no empty record behind either
            record.discard()
            raise
        return record

    @classmethod
    def load(cls, path: Path) -> Record:
        with map_errors(f"read state record {path}"):
            return cls(path, json.loads(path.read_text()))

    @property
    def steps(self) -> dict[str, dict[str, Any]]:
        return self.data["steps"]

    def note(self, step: str, **details: Any) -> None:
        """Record intent before the kernel is touched."""
        self.steps[step] = details
        self.save()

    def forget(self, step: str) -> None:
        """Take back a noted step whose object turned out not to be ours."""
        self.steps.pop(step, None)
        self.save()

    def set_status(self, status: dict[str, Any]) -> None:
        """What ``lark-agent status`` shows of the job (addresses, lease), saved when it
        changes."""
        if self.data.get("status") != status:
            self.data["status"] = status
            self.save()

    def save(self) -> None:
        with map_errors(f"write state record {self.path}"):
            write_atomically(self.path, json.dumps(self.data, sort_keys=True))

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
