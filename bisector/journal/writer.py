"""Writing the debugging journal: append-only JSONL, one event per line, flushed and fsynced.

A torn last line (killed mid-write, power loss) is cut off before the next append
(`bisector.journal.read` ignores it).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from bisector.core.errors import JournalError

SCHEMA_VERSION = 1
JOURNAL_DIR = ".bisector"


def check_state_folders(repo: Path) -> None:
    """`.bisector/`, its `sessions/` and `frozen/` are folders (or absent): a file, a dangling
    link or a link to a non-folder in their place is one error, before anything is written."""
    top = repo / JOURNAL_DIR
    for p in (top, top / "sessions", top / "frozen"):
        if (p.exists() or p.is_symlink()) and not p.is_dir():
            raise JournalError(f"{p} is not a folder: move it away (bisector keeps its journals and "
                               "frozen probes under .bisector/)")
        if p == top and not p.is_dir():
            return


class JournalWriter:
    """Appends events durably. Safe to reopen on a journal that ends in a torn line.

    Each append holds an flock on the journal: another process (`bisector good` from a second
    terminal) may append `mark` events to the journal of a running session. `echo` is given
    each record as it is written (`bisector run --json`)."""

    def __init__(self, path: Path, echo: Callable[[dict[str, Any]], None] | None = None):
        self.path = path
        self.echo = echo
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(path, "ab+")
        except OSError as exc:
            raise JournalError(f"cannot write the journal {path}: {exc.strerror}") from None
        fcntl.flock(self._f.fileno(), fcntl.LOCK_EX)
        try:
            self._cut_torn_tail()
        finally:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)

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
        fcntl.flock(self._f.fileno(), fcntl.LOCK_EX)
        try:
            self._f.write(line.encode())
            self._f.flush()
            os.fsync(self._f.fileno())
        finally:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
        if self.echo is not None:
            self.echo(json.loads(line))
        return record

    def note(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append an event derived from the others (a noisy search's `posterior`): written and
        flushed, not fsynced; the next `append` makes it durable, and a crash before that loses
        only what a replay recomputes."""
        record = {"v": SCHEMA_VERSION, "ts": round(time.time(), 3), "event": event, **fields}
        self._f.write((json.dumps(record, sort_keys=False, default=str) + "\n").encode())
        self._f.flush()
        return record

    def close(self) -> None:
        self._f.close()
