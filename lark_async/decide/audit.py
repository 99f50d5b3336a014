"""The connection audit trail: which lines a job's decisions become. Pure: times in, lines out.

A job that makes connections in a loop must not fill the node's disk (one
unprivileged process making non-blocking connects wrote 6.3 MB/s, one line
per decision). So a decision is written at once the first time, and the
same decision again (same protocol, source, destination, port, verdict and
rule) within ``AUDIT_WINDOW_S`` of that line is only counted; when the window
ends, one line with ``count`` (and ``until``, the last one's time) stands for
them all. Each job's log is capped (``LARK_AUDIT_MAX_BYTES``): past the cap a
line says so and decisions are only counted (the last quarter of the cap is
kept for count lines). The update ad publishes both numbers
(``NetworkAuditRecordsCoalesced``, ``NetworkAuditRecordsDropped``).
"""

from __future__ import annotations

import datetime
import json
import math
from collections import OrderedDict
from dataclasses import dataclass

AUDIT_WINDOW_S = 10.0
MAX_OPEN_WINDOWS = 4096  # decisions remembered for coalescing; the oldest is closed first
NOTICE_BYTES = 400  # kept free under the cap for the line that says the cap was reached


@dataclass(frozen=True)
class AuditKey:
    """What makes two decisions the same."""

    protocol: str | int | None
    source: str | None
    destination: str | None
    port: int | None
    verdict: str
    rule: str


@dataclass
class _Window:
    opened: float  # when the decision's own line was written (monotonic)
    repeats: int = 0
    first: float = 0.0  # wall-clock time of the first and the last repeat
    last: float = 0.0


class AuditTrail:
    """One job's trail. ``decided`` and ``expire`` return the lines to append, in order."""

    def __init__(
        self,
        job: str,
        max_bytes: int,
        window_s: float = AUDIT_WINDOW_S,
        max_windows: int = MAX_OPEN_WINDOWS,
    ) -> None:
        self.job = job
        self.max_bytes = max_bytes
        self.window_s = window_s
        self.max_windows = max_windows
        self.written = 0  # bytes
        self.coalesced = 0  # decisions that a count line stands for (or will, pending)
        self.dropped = 0  # decisions no line stands for: the cap was reached
        self.capped = False
        self._windows: OrderedDict[AuditKey, _Window] = OrderedDict()  # oldest first

    def decided(self, key: AuditKey, now: float, wall: float) -> list[str]:
        lines = self.expire(now)
        window = self._windows.get(key)
        if window is not None:
            window.first = window.first or wall
            window.last = wall
            window.repeats += 1
            self.coalesced += 1
            return lines
        if len(self._windows) >= self.max_windows:
            lines += self._close(*self._windows.popitem(last=False))
        self._windows[key] = _Window(now)
        lines += self._emit(_record(self.job, key, wall), 1, counted=False)[0]
        return lines

    def expire(self, now: float) -> list[str]:
        """The count lines of the windows that have ended by ``now``."""
        lines: list[str] = []
        while self._windows:
            key, window = next(iter(self._windows.items()))
            if window.opened + self.window_s > now:
                break
            del self._windows[key]
            lines += self._close(key, window)
        return lines

    def next_deadline(self) -> float:
        """When the oldest open window ends (``inf`` when none is open)."""
        for window in self._windows.values():
            return window.opened + self.window_s
        return math.inf

    def close(self) -> list[str]:
        """Every pending count line (the job is over)."""
        lines: list[str] = []
        while self._windows:
            lines += self._close(*self._windows.popitem(last=False))
        return lines

    def _close(self, key: AuditKey, window: _Window) -> list[str]:
        if not window.repeats:
            return []
        record = _record(self.job, key, window.first)
        record["until"] = _iso(window.last)
        record["count"] = window.repeats
        lines, written = self._emit(record, window.repeats, counted=True)
        if not written:  # (counted as dropped instead)
            self.coalesced -= window.repeats
        return lines

    def _emit(
        self, record: dict[str, object], decisions: int, counted: bool
    ) -> tuple[list[str], bool]:
        """The lines to write, and whether the record is among them (not past the cap).
        The last quarter of the cap is for count lines: in a flood of ever different
        decisions, the count of the one repeated a million times still gets written."""
        line = json.dumps(record) + "\n"  # (ASCII: characters are bytes)
        room = self.max_bytes - NOTICE_BYTES - (0 if counted else self.max_bytes // 4)
        if (counted or not self.capped) and self.written + len(line) <= room:
            self.written += len(line)
            return [line], True
        self.dropped += decisions
        if self.capped:
            return [], False
        self.capped = True
        notice = json.dumps(
            {
                "time": record["time"],
                "job": self.job,
                "note": f"the audit log reached its cap of {self.max_bytes} bytes "
                "(LARK_AUDIT_MAX_BYTES): later decisions are counted in "
                "NetworkAuditRecordsDropped, not written (count lines of earlier ones "
                "may follow while they fit)",
            }
        )
        self.written += len(notice) + 1
        return [notice + "\n"], False


def _iso(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).isoformat()


def _record(job: str, key: AuditKey, wall: float) -> dict[str, object]:
    return {
        "time": _iso(wall),
        "job": job,
        "protocol": key.protocol,
        "source": key.source,
        "destination": key.destination,
        "port": key.port,
        "verdict": key.verdict,
        "rule": key.rule,
    }
