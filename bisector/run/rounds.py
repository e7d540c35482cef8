"""Runners: how the loop's rounds reach an executor (and an earlier session's observations).

`ExecutorRunner` sends a round to an executor and yields each `Step` as it finishes. An
infrastructure failure (a lost worker, a dropped connection) is not a verdict on the commit:
the step is retried once, then journaled as a skip whose note says why. The loop never sees
those exceptions. `ReuseRunner` answers from an old session (`run --from`) what it can and
sends the rest on. `MarksRunner` hands the loop what a person marked from another terminal
(`bisector good/bad/skip` while the session runs).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from bisector.core.errors import BisectorError
from bisector.core.loop import Runner
from bisector.core.model import BuildInfo, Candidates, Role, Step, StepRequest, StepResult, Verdict, hand_step
from bisector.journal.codec import decode_mark
from bisector.journal.read import read_events
from bisector.journal.reuse import Reusable, find_reusable


class ExecutorRunner:
    """Rounds on `executor` (`run_round(requests, logs)`), step N logging to `logs/step-N`."""

    def __init__(self, executor: Any, logs: Path):
        self.executor = executor
        self.logs = logs

    def run_round(self, requests: Sequence[StepRequest]) -> Iterator[Step]:
        attempts: dict[int, int] = {}
        notes: dict[int, list[str]] = {}
        todo = list(requests)
        while todo:
            retry = []
            for req, result in self.executor.run_round(todo, self.logs):
                if isinstance(result, BaseException):
                    if isinstance(result, (KeyboardInterrupt, BisectorError)):
                        raise result
                    attempts[req.step] = attempts.get(req.step, 0) + 1
                    note = f"infrastructure failure ({type(result).__name__}: {str(result)[:200]})"
                    if attempts[req.step] < 2:
                        notes.setdefault(req.step, []).append(note + "; retried once")
                        retry.append(req)
                        continue
                    result = StepResult(Verdict.SKIP, BuildInfo("lost"), notes=(note + "; retried once, then skipped",))
                if notes.get(req.step):
                    result = dataclasses.replace(result, notes=(*notes[req.step], *result.notes))
                yield Step(req, result)
            todo = retry


class ReuseRunner:
    """Steps an earlier session already ran with the same code, data and probe: its
    observations (marked `reused_from`) instead of building and probing again. A repeated
    run at a revision (noisy search) is never reused: it must be a new sample."""

    def __init__(self, inner: Runner, repo: Path, reusable: Reusable, session: str):
        self.inner = inner
        self.repo = repo
        self.reusable = reusable
        self.session = session

    def run_round(self, requests: Sequence[StepRequest]) -> Iterator[Step]:
        todo = []
        for req in requests:
            old = None if req.run > 1 else find_reusable(self.repo, self.reusable, req.point.code, req.point.data)
            if old is None:
                todo.append(req)
                continue
            note = f"reused from session {self.session} step {old.step.number}"
            result = dataclasses.replace(old.step.result, duration=0.0, worker="reused", notes=(note,))
            yield Step(req, result, reused_from=old.step.number)
        if todo:
            yield from self.inner.run_round(todo)


class MarksRunner:
    """Rounds go to `inner`; between rounds, the `mark` events that another terminal appended to
    the session's journal become hand-marked steps (each mark once: `taken` holds their ids)."""

    def __init__(self, inner: Runner, journal: Path, candidates: Candidates, taken: set[str]):
        self.inner = inner
        self.journal = journal
        self.candidates = candidates
        self.taken = taken
        self._read = 0  # bytes of the journal already looked through for marks

    def run_round(self, requests: Sequence[StepRequest]) -> Iterator[Step]:
        yield from self.inner.run_round(requests)

    def incoming(self, next_step: int) -> list[Step]:
        if not self._news():
            return []
        out = []
        for e in read_events(self.journal):
            if e["event"] != "mark":
                continue
            mark, rev, verdict = decode_mark(e)
            if mark in self.taken:
                continue
            self.taken.add(mark)
            if rev in self.candidates.parents:
                out.append(hand_step(next_step + len(out), self.candidates.point(rev), Role.SEARCH, verdict, mark=mark))
        return out

    def _news(self) -> bool:
        """Whether the lines appended since the last look may hold a mark: only then is the
        journal read and checked whole (before, every round re-read all of it)."""
        try:
            with open(self.journal, "rb") as f:
                if f.seek(0, os.SEEK_END) < self._read:  # cut shorter (a torn line removed)
                    self._read = 0
                f.seek(self._read)
                new = f.read()
        except OSError:
            return True  # let read_events say what is wrong
        complete = new[: new.rfind(b"\n") + 1]
        self._read += len(complete)
        return b'"mark"' in complete
