"""Reading journals: events, session summaries, the unfinished session, undo.

A torn last line (killed mid-write, power loss) is ignored; any other unreadable line is an
error that names it (or, when viewing, a one-line warning through `warn`).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from bisector.core.errors import JournalError, UsageError
from bisector.core.model import Outcome, Step
from bisector.io.limits import shape_problem
from bisector.journal.codec import decode_outcome, decode_step
from bisector.journal.writer import JOURNAL_DIR, SCHEMA_VERSION


def journal_dir(repo: Path) -> Path:
    return repo / JOURNAL_DIR / "sessions"


# A journal is read whole: one larger than this is not a journal (or was tampered with).
MAX_JOURNAL_BYTES = 256 * 1024 * 1024
_DROP_HINT = "fix or remove that line, or drop the session with `bisector reset`"


def read_bounded(path: Path, limit: int, what: str, hint: str) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; a one-line JournalError otherwise
    (a FIFO, a device such as /dev/zero behind a symlink, a folder, a huge file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise JournalError(f"no such {what}: {path}") from None
    except OSError as exc:
        raise JournalError(f"cannot read {what} {path}: {exc.strerror}: {hint}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise JournalError(f"{path} is not a regular file: {hint}")
        if st.st_size > limit:
            raise JournalError(f"{path} is too large for a {what} ({st.st_size} bytes, "
                               f"at most {limit}): {hint}")
        chunks, left = [], limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise JournalError(f"{path} is too large for a {what} (more than {limit} bytes): {hint}")
        return b"".join(chunks)
    except OSError as exc:
        raise JournalError(f"cannot read {what} {path}: {exc.strerror}: {hint}") from None
    finally:
        os.close(fd)


_VERDICTS = ("good", "bad", "skip", "abort")


def _problem(event: dict[str, Any]) -> str | None:
    """What is wrong with an event's required fields (None: nothing)."""
    kind = event["event"]
    if not isinstance(kind, str):
        return "`event` must be a string"
    if kind == "start":
        if not isinstance(event.get("session"), str) or not event.get("session"):
            return "a start event without a session id"
        if not isinstance(event.get("bad"), str):
            return "a start event without a bad revision"
        goods = event.get("goods")
        if not isinstance(goods, list) or not all(isinstance(g, str) for g in goods):
            return "a start event whose goods are not a list of revisions"
        if not isinstance(event.get("config", {}), dict):
            return "a start event whose config is not an object"
    elif kind == "step":
        if isinstance(event.get("step"), bool) or not isinstance(event.get("step"), int):
            return "a step event without a step number"
        if not isinstance(event.get("commit"), str):
            return "a step event without a commit"
        if event.get("verdict") not in _VERDICTS:
            return f"a step event with an unknown verdict {event.get('verdict')!r}"
    elif kind == "undo" and (isinstance(event.get("step"), bool) or not isinstance(event.get("step"), int)):
        return "an undo event without a step number"
    return None


def read_events(path: Path, warn: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """All complete events of a journal, in order.

    With `warn` (viewing: `bisector journal`, `sessions`), an unreadable line is skipped
    and reported through `warn` in one line instead of stopping everything. The file must
    be a regular file under MAX_JOURNAL_BYTES; the first event must be the `start` event.
    """
    data = read_bounded(path, MAX_JOURNAL_BYTES, "journal", "move it away, or drop the session with `bisector reset`")
    lines = data.split(b"\n")
    # Everything after the last newline is a torn (incomplete) write: ignore it.
    complete = lines[:-1]
    events = []
    for lineno, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
            if not isinstance(event, dict) or "event" not in event or shape_problem(event):
                raise ValueError("not an event")
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than any event
            if warn is not None:
                warn(f"{path}:{lineno}: unreadable journal line skipped (edited or corrupted)")
                continue
            raise JournalError(
                f"{path}:{lineno}: not a journal line (the file was edited or corrupted): {_DROP_HINT}"
            ) from None
        problem = _problem(event) if event.get("v") == SCHEMA_VERSION else None
        if problem is None and not events and event["event"] != "start" and warn is None:
            problem = f"the journal begins with a {str(event['event'])[:20]!r} event, not its start event"
        if problem is not None:
            if warn is not None:
                warn(f"{path}:{lineno}: {problem}: line skipped")
                continue
            raise JournalError(f"{path}:{lineno}: {problem} (the file was edited or corrupted): {_DROP_HINT}")
        v = event.get("v")
        if v != SCHEMA_VERSION:
            raise JournalError(
                f"{path} was written by an incompatible bisector (journal schema v{str(v)[:20]}, "
                f"this bisector reads v{SCHEMA_VERSION}): use a matching bisector or drop it with `bisector reset`"
            )
        events.append(event)
    return events


@dataclass
class SessionSummary:
    """One session's journal, read: the start and end events as written, the steps and the
    outcome decoded. `events` keeps every event as written (the `--format json` view shows
    them unchanged; `posterior` events are not steps)."""

    id: str
    path: Path
    start: dict[str, Any]
    steps: list[Step]
    end: dict[str, Any] | None
    outcome: Outcome | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.end is not None

    @property
    def axis(self) -> str:
        return str(self.start.get("axis") or "code")

    def posteriors(self) -> dict[int, dict[str, Any]]:
        """The `posterior` events (noisy searches), by the step they follow."""
        return {e["after_step"]: e for e in self.events if e["event"] == "posterior" and "after_step" in e}


def summarize(path: Path, warn: Callable[[str], None] | None = None) -> SessionSummary:
    events = read_events(path, warn)
    start = next((e for e in events if e["event"] == "start"), None)
    if start is None:
        if warn is None:
            raise JournalError(f"{path} has no start event: drop it with `bisector reset`")
        warn(f"{path}: no readable start event; showing the steps that can be read")
        start = {"session": path.stem, "bad": "?", "goods": [], "candidates": "?"}
    axis = str(start.get("axis") or "code")
    steps = []
    for e in events:
        if e["event"] != "step":
            continue
        try:
            steps.append(decode_step(e, axis))
        except JournalError as exc:
            if warn is None:
                raise JournalError(f"{path}: {exc}") from None
            warn(f"{path}: {exc}: step skipped")
    end = next((e for e in reversed(events) if e["event"] == "end"), None)
    outcome = None
    if end is not None:
        try:
            outcome = decode_outcome(end)
        except JournalError as exc:
            if warn is None:
                raise JournalError(f"{path}: {exc}") from None
            warn(f"{path}: {exc}: the outcome is not shown")
    return SessionSummary(start["session"], path, start, steps, end, outcome, events)


def list_journals(repo: Path) -> list[Path]:
    d = journal_dir(repo)
    if not d.is_dir():
        return []
    return sorted(d.glob("*.jsonl"))


def iter_sessions(repo: Path) -> Iterator[SessionSummary]:
    for p in list_journals(repo):
        yield summarize(p)


def find_session(repo: Path, session: str | None, warn: Callable[[str], None] | None = None) -> SessionSummary:
    """A session's summary by id or id prefix (None: the latest). With `warn` (viewing),
    unreadable journal lines are skipped with a warning."""
    paths = list_journals(repo)
    w = warn
    if not paths:
        raise UsageError(f"no sessions in {journal_dir(repo)}: run `bisector run` first")
    if session is None:
        return summarize(paths[-1], w)
    matches = [p for p in paths if p.stem == session or p.stem.startswith(session)]
    if len(matches) != 1:
        known = ", ".join(p.stem for p in paths[-5:])
        raise UsageError(f"unknown session {session!r} (recent: {known})")
    return summarize(matches[0], w)


def find_unfinished(repo: Path) -> Path | None:
    """The journal of the session that was started and never ended, if any."""
    d = journal_dir(repo)
    if not d.is_dir():
        return None
    for path in sorted(d.glob("*.jsonl"), reverse=True):
        events = read_events(path)
        if events and not any(e["event"] == "end" for e in events):
            return path
    return None


def set_aside_unreadable(repo: Path) -> list[str]:
    """Rename each journal that cannot be read (corrupt, not a regular file, too large) to
    `<name>.unreadable`, so that `bisector run` starts again; what was set aside, in words."""
    out = []
    for path in list_journals(repo):
        try:
            read_events(path)
        except JournalError:
            target = path.with_name(path.name + ".unreadable")
            n = 1
            while target.exists() or target.is_symlink():
                n += 1
                target = path.with_name(f"{path.name}.unreadable{n}")
            path.rename(target)
            out.append(f"{path.stem} (unreadable journal kept as {target.name})")
    return out


def apply_undo(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The step events that still count: an `undo` event {"step": N} retracts the earlier step N."""
    steps: list[dict[str, Any]] = []
    for e in events:
        if e["event"] == "step":
            steps.append(e)
        elif e["event"] == "undo":
            steps = [s for s in steps if s["step"] != e.get("step")]
    return steps
