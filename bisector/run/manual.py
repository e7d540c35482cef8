"""Sessions marked by hand, as with `git bisect start/good/bad/skip/view`.

The session's state is its journal. `start` writes a session whose probe is `manual` and
whose bounds are marked by hand, then stops: the session is paused until someone marks the
revision it asks (`mark`). A mark on a paused session takes the repository lock, journals
a hand-marked step and runs the loop over the journal to the next question (or the end).
A mark on a running session (`bisector run` holds the lock) is appended to its journal as
a `mark` event; the session takes it before its next round (`run.rounds.MarksRunner`).
Either way the loop is the one of `core.loop`: a paused session asks what a running one would.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from bisector.core.errors import BoundsError, ContradictionError, LockedError, ProbeAbort, UsageError
from bisector.core.loop import Bisection
from bisector.core.model import Candidates, Outcome, Role, Status, Step, StepRequest, Verdict, hand_step
from bisector.core.search import Search
from bisector.io.config import load_file_config
from bisector.io.git import git, repo_root, resolve
from bisector.io.state import RepoLock, state_dir
from bisector.journal.codec import decode_step, encode_mark, encode_outcome, encode_step
from bisector.journal.read import apply_undo, find_unfinished, read_events
from bisector.journal.writer import JournalWriter
from bisector.run.plan import Plan, RunOptions
from bisector.run.wiring import make_suite

STATUS_OF = {BoundsError: Status.BOUNDS, ContradictionError: Status.CONTRADICTION, ProbeAbort: Status.ABORT}


@dataclass
class Progress:
    """Where a hand-marked session stands after a command."""

    session: str
    start: Mapping[str, object]
    journal: Path
    ask: str | None = None  # the revision to test next
    left: list[str] = field(default_factory=list)  # the revisions that can still be the culprit
    est_steps: int = 0
    outcome: Outcome | None = None  # set when the search ended
    queued: int = 0  # marks sent to a running session (it journals them itself)
    skipped: list[str] = field(default_factory=list)
    goods: list[str] = field(default_factory=list)  # the revisions observed good (bounds included)

    @property
    def terms(self) -> tuple[str, str]:
        t = self.start.get("terms") or {}
        assert isinstance(t, Mapping)
        return str(t.get("old", "good")), str(t.get("new", "bad"))


class _Ask(Exception):
    def __init__(self, requests: Sequence[StepRequest]):
        self.requests = list(requests)


class _AskRunner:
    """A runner with no one to run steps: the first round the loop sends is the question."""

    def run_round(self, requests: Sequence[StepRequest]) -> Iterator[Step]:
        raise _Ask(requests)
        yield  # pragma: no cover


def start(options: RunOptions) -> Progress:
    """A new session marked by hand: its bounds are the marks `--good`/`--bad`."""
    repo = repo_root(options.repo)
    with _locked(repo):
        if find_unfinished(repo) is not None:
            raise UsageError("an unfinished session exists: go on marking it (`bisector good/bad/skip`), "
                             "or drop it with `bisector reset`")
        opts = dataclasses.replace(options, probe="manual")
        plan = Plan.new(opts, load_file_config(repo), make_suite)
        writer = JournalWriter(plan.journal)
        # Both bounds are marked by hand as the session starts: the loop checks them (as replay does).
        writer.append("start", **{**plan.start, "bounds": "check"}, manual=True)
        c = plan.candidates
        marks = [(c.bad, Role.BAD_BOUND, Verdict.BAD)] + [(g, Role.GOOD_BOUND, Verdict.GOOD) for g in c.goods]
        for n, (key, role, verdict) in enumerate(marks, start=1):
            writer.append("step", **encode_step(hand_step(n, c.point(key), role, verdict, round=1)))
        return _advance(plan, writer)


def mark(repo_path: Path, verdict: Verdict, revs: Sequence[str]) -> Progress:
    """Mark `revs` (none: the revision the session asks) as `verdict`; `A..B` is a range."""
    repo = repo_root(repo_path)
    path = find_unfinished(repo)
    if path is None:
        raise UsageError("no session to mark: start one with `bisector start --good REV --bad REV`")
    lock = RepoLock(state_dir(repo) / "lock")
    try:
        lock.acquire()
    except LockedError:
        return _queue(repo, path, verdict, revs)
    try:
        plan = Plan.from_start(repo, read_events(path)[0])
        writer = JournalWriter(path)
        history = _history(plan)
        keys = _expand(repo, plan.candidates, revs) if revs else [_asked(plan, history)]
        number = max((s.number for s in history), default=0) + 1
        rnd = max((s.round for s in history), default=0) + 1
        for i, key in enumerate(keys):
            step = hand_step(number + i, plan.candidates.point(key), Role.SEARCH, verdict, round=rnd)
            writer.append("step", **encode_step(step))
        return _advance(plan, writer)
    finally:
        lock.release()


def status(repo_path: Path) -> Progress:
    """What the unfinished session asks, and what is left (nothing is written)."""
    repo = repo_root(repo_path)
    path = find_unfinished(repo)
    if path is None:
        raise UsageError("no unfinished session: start one with `bisector start --good REV --bad REV`")
    return _advance(Plan.from_start(repo, read_events(path)[0]), None)


# --------------------------------------------------------------------- internals
class _locked:
    def __init__(self, repo: Path):
        self.lock = RepoLock(state_dir(repo) / "lock")

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def _history(plan: Plan) -> list[Step]:
    return [decode_step(e, plan.axis.value) for e in apply_undo(read_events(plan.journal))]


def _bisection(plan: Plan, history: Sequence[Step]) -> Bisection:
    c, settings = plan.candidates, plan.settings
    return Bisection(c, lambda: Search.from_settings(c, settings), history=history)


def _asked(plan: Plan, history: Sequence[Step]) -> str:
    try:
        _bisection(plan, history).run(_AskRunner())
    except _Ask as ask:
        return ask.requests[0].point.key
    except (BoundsError, ContradictionError, ProbeAbort):
        pass
    raise UsageError("the session asks nothing more: name the revision to mark")


def _advance(plan: Plan, writer: JournalWriter | None) -> Progress:
    """Run the loop over the journal's steps to its next question, or to its end (journaled)."""
    history = _history(plan)
    b = _bisection(plan, history)
    progress = Progress(plan.session, plan.start, plan.journal,
                        skipped=[s.key for s in b.steps if s.verdict is Verdict.SKIP],
                        goods=[s.key for s in b.steps if s.verdict is Verdict.GOOD])
    try:
        outcome = b.run(_AskRunner())
    except _Ask as ask:
        progress.ask = ask.requests[0].point.key
        progress.left = b.suspects()
        progress.est_steps = b.estimate().steps
        return progress
    except (BoundsError, ContradictionError, ProbeAbort) as exc:
        outcome = Outcome(STATUS_OF[type(exc)], message=str(exc))
    progress.outcome = outcome
    progress.left = list(outcome.candidates)
    if writer is not None:
        writer.append("end", **encode_outcome(outcome), steps=b.counts(), elapsed=0, rounds=0)
        writer.close()
    return progress


def _expand(repo: Path, c: Candidates, revs: Sequence[str]) -> list[str]:
    """The candidates that `revs` name; `A..B` is every commit of `git rev-list A..B`."""
    keys: list[str] = []
    for rev in revs:
        if ".." in rev:
            a, b = rev.split("..", 1)
            lo, hi = resolve(repo, a or "HEAD", "revision"), resolve(repo, b or "HEAD", "revision")
            inside = [k for k in git(repo, "rev-list", f"{lo}..{hi}").split() if k in c.parents]
            if not inside:
                raise UsageError(f"no candidate of this session in {rev}")
            keys += inside
            continue
        key = resolve(repo, rev, "revision")
        if key not in c.parents:
            raise UsageError(f"{rev} is not a candidate of this session (not between its good and bad revisions)")
        keys.append(key)
    return list(dict.fromkeys(keys))


def _queue(repo: Path, path: Path, verdict: Verdict, revs: Sequence[str]) -> Progress:
    """The session runs (it holds the lock): append `mark` events for it to take."""
    start = read_events(path)[0]
    c = Plan.from_start(repo, start).candidates
    if not revs:
        raise UsageError("the session is running: name the revision to mark (`bisector good REV`)")
    keys = _expand(repo, c, revs)
    writer = JournalWriter(path)
    for key in keys:
        writer.append("mark", **encode_mark(f"{os.getpid()}-{secrets.token_hex(4)}", key, verdict))
    writer.close()
    return Progress(str(start["session"]), start, path, queued=len(keys))
