"""The debugging journal: append-only JSONL, one event per line, flushed and fsynced.

Replaying a journal rebuilds a session's state, so a killed run resumes where it stopped.
A torn last line (killed mid-write, power loss) is ignored on read and cut off before
the next append; any other unreadable line is an error that names it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from bisector.core.errors import JournalError

SCHEMA_VERSION = 1
JOURNAL_DIR = ".bisector"
# Fault injection for the crash tests: "N" makes the Nth `step` event of this process a
# torn write (half the line reaches the disk) followed by SIGKILL, as a power loss would.
FAULT_TORN_WRITE = "BISECTOR_FAULT_TORN_WRITE"


def journal_dir(repo: Path) -> Path:
    return repo / JOURNAL_DIR / "sessions"


def read_events(path: Path, warn: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """All complete events of a journal, in order.

    With `warn` (viewing: `bisector journal`, `sessions`), an unreadable line is skipped
    and reported through `warn` in one line instead of stopping everything.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise JournalError(f"no such journal: {path}") from None
    lines = data.split(b"\n")
    # Everything after the last newline is a torn (incomplete) write: ignore it.
    complete = lines[:-1]
    events = []
    for lineno, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
            if not isinstance(event, dict) or "event" not in event:
                raise ValueError("not an event")
        except ValueError:
            if warn is not None:
                warn(f"{path}:{lineno}: unreadable journal line skipped (edited or corrupted)")
                continue
            raise JournalError(
                f"{path}:{lineno}: not a journal line (the file was edited or corrupted): "
                "fix or remove that line, or drop the session with `bisector reset`"
            ) from None
        v = event.get("v")
        if v != SCHEMA_VERSION:
            raise JournalError(
                f"{path} was written by an incompatible bisector (journal schema v{v}, "
                f"this bisector reads v{SCHEMA_VERSION}): use a matching bisector or drop it with `bisector reset`"
            )
        events.append(event)
    return events


class JournalWriter:
    """Appends events durably. Safe to reopen on a journal that ends in a torn line."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "ab+")
        self._cut_torn_tail()
        self._steps = 0
        fault = os.environ.get(FAULT_TORN_WRITE, "")
        self._fault_at = int(fault) if fault.isdigit() else None

    def _cut_torn_tail(self) -> None:
        f = self._f
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # Find the last newline and truncate after it.
        pos = size
        chunk = 4096
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            buf = f.read(pos - start)
            i = buf.rfind(b"\n")
            if i >= 0:
                f.truncate(start + i + 1)
                return
            pos = start
        f.truncate(0)

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"v": SCHEMA_VERSION, "ts": round(time.time(), 3), "event": event, **fields}
        line = json.dumps(record, sort_keys=False, default=str) + "\n"
        if event == "step":
            self._steps += 1
            if self._steps == self._fault_at:
                self._torn_write_and_die(line)
        self._f.write(line.encode())
        self._f.flush()
        os.fsync(self._f.fileno())
        return record

    def close(self) -> None:
        self._f.close()

    def _torn_write_and_die(self, line: str) -> None:
        import signal

        self._f.write(line[: len(line) // 2].encode())
        self._f.flush()
        os.fsync(self._f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class SessionSummary:
    id: str
    path: Path
    start: dict[str, Any]
    steps: list[dict[str, Any]]
    end: dict[str, Any] | None

    @property
    def finished(self) -> bool:
        return self.end is not None


def summarize(path: Path, warn: Callable[[str], None] | None = None) -> SessionSummary:
    events = read_events(path, warn)
    start = next((e for e in events if e["event"] == "start"), None)
    if start is None:
        if warn is None:
            raise JournalError(f"{path} has no start event: drop it with `bisector reset`")
        warn(f"{path}: no readable start event; showing the steps that can be read")
        start = {"session": path.stem, "bad": "?", "goods": [], "candidates": "?"}
    steps = [e for e in events if e["event"] == "step"]
    end = next((e for e in reversed(events) if e["event"] == "end"), None)
    return SessionSummary(start["session"], path, start, steps, end)


def list_journals(repo: Path) -> list[Path]:
    d = journal_dir(repo)
    if not d.is_dir():
        return []
    return sorted(d.glob("*.jsonl"))


def iter_sessions(repo: Path) -> Iterator[SessionSummary]:
    for p in list_journals(repo):
        yield summarize(p)
