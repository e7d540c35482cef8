"""Step logs: kept after a session ends (journals and reports link to them) until
`bisector cache --prune` removes them.

Each session's steps log to `.git/bisector/logs/<session>/step-N/` (build.log, probe-NAME.log).
A link to a log that was pruned says so instead of pointing nowhere (`describe_log`).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bisector.io.state import state_dir

PRUNED = "removed by `bisector cache --prune`"


def logs_root(repo: Path) -> Path:
    return state_dir(repo) / "logs"


def session_logs(repo: Path, session: str) -> Path:
    """Where the steps of `session` write their logs (kept after the session ends)."""
    return logs_root(repo) / session


def log_exists(path: str | Path | None) -> bool:
    return bool(path) and Path(str(path)).is_file()


def describe_log(path: str | Path | None) -> str:
    """`path`, or `path (removed by ...)` when the log is gone; '' for no log."""
    if not path:
        return ""
    return str(path) if log_exists(path) else f"{path} ({PRUNED})"


@dataclass(frozen=True)
class SessionLogs:
    session: str
    path: Path
    size: int
    last_used: float


def list_logs(repo: Path) -> list[SessionLogs]:
    """The kept log folders, least recently written first."""
    root = logs_root(repo)
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else ():
        if not d.is_dir():
            continue
        files = [f for f in d.rglob("*") if f.is_file()]
        size = sum(f.stat().st_size for f in files)
        last = max([f.stat().st_mtime for f in files], default=d.stat().st_mtime)
        out.append(SessionLogs(d.name, d, size, last))
    return sorted(out, key=lambda s: s.last_used)


def prune_logs(repo: Path, *, older_than: float | None = None, max_bytes: int | None = None,
               keep: tuple[str, ...] = ()) -> list[SessionLogs]:
    """Remove session log folders: those unused for `older_than` seconds, then the least recently
    used until at most `max_bytes` remain (the cache's limits). `keep`: running sessions."""
    entries = [e for e in list_logs(repo) if e.session not in keep]
    now = time.time()
    drop = [e for e in entries if older_than is not None and now - e.last_used > older_than]
    if max_bytes is not None:
        left = [e for e in entries if e not in drop]
        total = sum(e.size for e in left)
        for e in left:  # least recently used first
            if total <= max_bytes:
                break
            drop.append(e)
            total -= e.size
    for e in drop:
        shutil.rmtree(e.path, ignore_errors=True)
    return drop
