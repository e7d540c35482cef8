"""Reading journals: events, session summaries, the unfinished session, undo.

A torn last line (killed mid-write, power loss) is ignored; any other unreadable line is an
error that names it (or, when viewing, a one-line warning through `warn`).
"""

from __future__ import annotations

import json
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
            if not isinstance(event, dict) or "event" not in event or shape_problem(event):
                raise ValueError("not an event")
        except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
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


def apply_undo(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The step events that still count: an `undo` event {"step": N} retracts the earlier step N."""
    steps: list[dict[str, Any]] = []
    for e in events:
        if e["event"] == "step":
            steps.append(e)
        elif e["event"] == "undo":
            steps = [s for s in steps if s["step"] != e.get("step")]
    return steps
