"""Journals as evidence: replay a journal's decisions without building anything.

`replay` runs the session's own loop (`core.loop.Bisection`) with the journal as its runner:
`JournalRunner` answers each round the loop sends with the next round the journal recorded,
and raises `Divergence` when the loop asks for other revisions. The journal is then an honest
record of the search. Steps of one round may be journaled in any order (parallel workers).
Each `resume` event starts a stretch: the loop starts again from the steps so far, as the
resumed session did. Journals carry the number of workers (`jobs`) and number every round;
for older journals without them, the round size is guessed (1 to 64).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from bisector.core.errors import BoundsError, ContradictionError, ProbeAbort, UsageError
from bisector.core.loop import Bisection
from bisector.core.model import Outcome, Role, Status, Step, StepRequest, is_hand
from bisector.core.search import Search
from bisector.io.git import repo_root
from bisector.io.history import load_start_candidates
from bisector.journal.codec import decode_step, trusted_bounds
from bisector.journal.read import apply_undo, read_events

MAX_JOBS = 64  # the largest round size tried when guessing the number of workers
STATUS_OF = {BoundsError: Status.BOUNDS, ContradictionError: Status.CONTRADICTION, ProbeAbort: Status.ABORT}


@dataclass
class ReplayResult:
    ok: bool
    message: str
    checked: int = 0  # steps whose choice was checked
    divergence_step: int | None = None  # the journal step where the replay first disagreed


class Divergence(Exception):
    def __init__(self, step: int | None, message: str):
        super().__init__(message)
        self.step = step


class StretchEnd(Exception):
    """The journal has no more steps here: the run was killed (a `resume` may follow) or is unfinished."""


class JournalRunner:
    """The recorded steps of one stretch, handed out round by round.

    `numbered`: the rounds are told apart by their round numbers (journals with `jobs`);
    otherwise a round is the longest run of next steps that test the requested revisions."""

    def __init__(self, steps: Sequence[Step], *, numbered: bool):
        self.steps = list(steps)
        self.numbered = numbered
        self.i = 0

    @property
    def left(self) -> list[Step]:
        return self.steps[self.i:]

    def _match(self, keys: Sequence[str]) -> int:
        """How many of the next steps test keys of `keys` (each once)."""
        seen: set[str] = set()
        k = self.i
        while k < len(self.steps) and len(seen) < len(keys):
            key = self.steps[k].key
            if key not in keys or key in seen:
                break
            seen.add(key)
            k += 1
        return k - self.i

    def pick_round(self, ask: Callable[[int], list[str]], jobs: int) -> list[str]:
        """The next round's keys: `ask(jobs)`. Older journals did not record `jobs`, and numbered
        only their search rounds: the round size k (1 to 64) is the one whose `ask(k)` the
        journal's next steps match, preferring the match that is exactly the next numbered
        search round, then the longest."""
        if self.numbered:
            return ask(jobs)
        j = self.i
        while (j < len(self.steps) and self.steps[j].round == self.steps[self.i].round
               and self.steps[j].role in (Role.SEARCH, Role.CALIBRATE)):
            j += 1
        first: list[str] | None = None
        best: list[str] | None = None
        best_n = 0
        for k in range(1, MAX_JOBS + 1):
            keys = ask(k)
            if not keys:
                return []
            first = first or keys
            n = self._match(keys)
            if n and (n == len(keys) or self.i + n == len(self.steps)):
                if n == j - self.i:
                    return keys
                if n > best_n:
                    best, best_n = keys, n
            if len(keys) < k:  # the search has no more to offer
                break
        return best or first or []

    def _group(self, keys: Sequence[str]) -> list[Step]:
        if not self.numbered:
            return self.steps[self.i:self.i + self._match(keys)]
        j, number = self.i, self.steps[self.i].round
        while j < len(self.steps) and self.steps[j].round == number:
            j += 1
        return self.steps[self.i:j]

    def incoming(self, next_step: int) -> list[Step]:
        """The revisions marked by hand next in the journal (`bisector good/bad/skip`): the loop
        takes them before it asks, as the session did."""
        out = []
        while self.i < len(self.steps) and self.steps[self.i].role is Role.SEARCH and is_hand(self.steps[self.i]):
            out.append(self.steps[self.i])
            self.i += 1
        return out

    def run_round(self, requests: Sequence[StepRequest]) -> Iterator[Step]:
        if self.i >= len(self.steps):
            raise StretchEnd
        keys = [r.point.key for r in requests]
        got = self._group(keys)
        seen: set[str] = set()
        for step in got:
            if step.key not in keys or step.key in seen:
                self._diverge(step, keys, seen, requests[0].role)
            seen.add(step.key)
        for step in got:
            self.i += 1
            yield step
        if len(got) < len(keys):
            if self.i >= len(self.steps):
                raise StretchEnd
            self._diverge(self.steps[self.i], keys, seen, requests[0].role)

    @staticmethod
    def _diverge(step: Step, keys: Sequence[str], seen: set[str], role: Role) -> None:
        want = ", ".join(k[:10] for k in keys if k not in seen)
        raise Divergence(step.number, f"step {step.number}: the journal tested {step.key[:10]} ({step.role.value}) "
                                      f"but the search chooses {want} ({role.value})")


@dataclass
class _Stretch:
    jobs: int | None
    steps: list[Step]
    # The step limit of this run: a `resume` event records it (None: no limit); before it did,
    # the start's limit counted every step of the session (`OLD_LIMIT`).
    max_steps: int | None | str = None


OLD_LIMIT = "total"


def _stretches(events: list[dict[str, Any]], axis: str) -> list[_Stretch]:
    """The steps that still count (after `undo`), split at `resume` events; crossings (code/data
    attribution after the search) are not decisions of the search and are left out."""
    kept = {id(e) for e in apply_undo(events)}
    out: list[_Stretch] = []
    for e in events:
        if e["event"] in ("start", "resume"):
            limit = (e.get("search") or {}).get("max_steps") if e["event"] == "start" else e.get("max_steps", OLD_LIMIT)
            out.append(_Stretch(e.get("jobs"), [], limit))
        elif id(e) in kept and out:
            step = decode_step(e, axis)
            if step.role is not Role.CROSSING:
                out[-1].steps.append(step)
    return out


def replay(journal: Path | str, repo: Path | str | None = None) -> ReplayResult:
    """Re-run the decisions of a journal against a fresh search; OK or the first divergence."""
    path = Path(journal)
    events = read_events(path)
    start = next((e for e in events if e["event"] == "start"), None)
    if start is None:
        raise UsageError(f"{path} has no start event: it is not a complete journal")
    if repo is None:
        # <repo>/.bisector/sessions/<id>.jsonl, else the current directory's repository.
        guess = path.resolve().parent.parent.parent
        repo = guess if (guess / ".git").exists() else Path(".")
    repo = repo_root(Path(repo))
    end = next((e for e in reversed(events) if e["event"] == "end"), None)
    stretches = _stretches(events[events.index(start):], start.get("axis") or "code")
    checked = 0
    try:
        c = load_start_candidates(repo, start)
        if list(c.merge_bases) != list(start.get("merge_bases", [])) or len(c) != start.get("candidates", len(c)):
            raise Divergence(None, f"the candidates changed since the session ({len(c)} now, "
                                   f"{start.get('candidates')} then): history between the bounds was rewritten")
        settings = dict(start.get("search") or {})
        first = stretches[0].steps
        baseline = any(e["event"] == "baseline" for e in events) or (
            stretches[0].jobs is not None and len(first) > 1 and first[0].role is Role.GOOD_BOUND
            and first[0].key == c.goods[0] and first[1].round != first[0].round)
        history: list[Step] = []
        outcome: Outcome | None = None
        left: list[Step] = []
        noisy = False
        for k, stretch in enumerate(stretches):
            runner = JournalRunner(stretch.steps, numbered=stretch.jobs is not None)
            try:
                limit = stretch.max_steps
                if limit == OLD_LIMIT:
                    total = settings.get("max_steps")
                    limit = None if total is None else max(0, total - len(history))
                b = Bisection(c, lambda: Search.from_settings(c, settings), jobs=stretch.jobs or 1,
                              max_steps=limit, needs_baseline=baseline, history=history,
                              bounds=str(start.get("bounds") or "check"), overlap=bool(start.get("overlap")),
                              trusted=trusted_bounds(start))
                noisy = b.noisy
                try:
                    outcome = b.run(runner)
                finally:
                    checked += runner.i
                    history = list(b.steps)
            except StretchEnd:
                continue
            except (BoundsError, ContradictionError, ProbeAbort) as exc:
                outcome = Outcome(STATUS_OF[type(exc)], message=str(exc))
            else:
                if b.limited and k + 1 < len(stretches) and not runner.left:
                    continue  # paused at the step limit; the next run went on
            left = runner.left + [s for later in stretches[k + 1:] for s in later.steps]
            break
        if left:
            s = left[0]
            raise Divergence(s.number, f"step {s.number}: the journal tested {s.key[:10]} ({s.role.value}) "
                                       "after the search had stopped")
        if outcome is None:
            if end is not None and end.get("status") not in ("abort", "reset", "bounds"):
                raise Divergence(None, f"the journal ends ({end.get('status')}) after {checked} steps "
                                       "but the search needed more")
            what = "unfinished" if end is None else end.get("status")
            return ReplayResult(True, f"OK: {checked} steps replayed; the session is {what}", checked)
        status = outcome.status.value
        if end is None and events[-1]["event"] == "pause" and outcome.status is Status.UNDECIDED:
            return ReplayResult(True, f"OK: {checked} steps replayed, every choice matches; the session is paused "
                                      "at its step limit", checked)
        if end is None:
            return ReplayResult(True, f"OK: {checked} steps replayed; the search had ended ({status}) "
                                      "but the journal has no end event", checked)
        if end.get("status") == "reset":
            return ReplayResult(True, f"OK: {checked} steps replayed; the session was reset", checked)
        same = end.get("status") == status and end.get("culprit") == outcome.culprit
        if same and status == "ambiguous" and not noisy:  # noisy results keep only the top 5
            same = sorted(end.get("candidates", [])) == sorted(outcome.candidates)
        if not same:
            theirs = f"{end.get('status')} {(end.get('culprit') or '')[:10]}".strip()
            ours = f"{status} {(outcome.culprit or '')[:10]}".strip()
            raise Divergence(None, f"the journal's result is {theirs} but the replayed search gives {ours}")
    except Divergence as d:
        return ReplayResult(False, f"DIVERGED: {d}", checked, d.step)
    what = f"first bad commit {outcome.culprit}" if outcome.status is Status.FOUND else status
    return ReplayResult(True, f"OK: {checked} steps replayed, every choice matches; result {what}", checked)

