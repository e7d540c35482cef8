"""The session loop driven by scripted verdicts (a fake probe suite) on real git repositories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bisector.probes.base import Observation, ProbeContext
from bisector.probes.suite import SuiteResult
from bisector.session import Handler, RunOptions, Session
from bisector.verdict import Verdict
from repos import GitRepo, linear_history


class ScriptedSuite:
    """Verdicts from a table; raises KeyboardInterrupt after `stop_after` runs (a simulated Ctrl-C)."""

    name = "scripted"

    def __init__(self, verdicts: dict[str, Verdict], stop_after: int | None = None):
        self.verdicts = verdicts
        self.calls: list[str] = []
        self.stop_after = stop_after

    def config(self) -> dict[str, Any]:
        return {"probes": [{"name": "scripted"}]}

    def run(self, ctx: ProbeContext) -> SuiteResult:
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            raise KeyboardInterrupt
        self.calls.append(ctx.commit)
        assert (ctx.workspace / "n.txt").exists()  # the step's checkout is materialized
        v = self.verdicts[ctx.commit]
        return SuiteResult(v, [Observation(probe="scripted", verdict=v, summary=v.value)])


def session(repo: GitRepo, suite: ScriptedSuite, **opts: Any) -> Session:
    options = RunOptions(repo=repo.path, probe="true", **opts)
    return Session(options, Handler(), suite_factory=lambda *a: suite)


def test_scripted_linear_search_uses_log2_steps(repo: GitRepo) -> None:
    shas = linear_history(repo, 65, culprit=40)
    verdicts = {s: Verdict.BAD if i >= 39 else Verdict.GOOD for i, s in enumerate(shas)}
    suite = ScriptedSuite(verdicts)
    result = session(repo, suite, bad="main", goods=[shas[0]]).run()
    assert result.status == "found" and result.culprit == shas[39]
    assert result.steps["search"] <= 6  # 64 candidates
    assert len(suite.calls) == len(set(suite.calls))


def test_interrupted_session_resumes_without_repeating(repo: GitRepo) -> None:
    shas = linear_history(repo, 33, culprit=7)
    verdicts = {s: Verdict.BAD if i >= 6 else Verdict.GOOD for i, s in enumerate(shas)}
    first = ScriptedSuite(verdicts, stop_after=4)
    with pytest.raises(KeyboardInterrupt):
        session(repo, first, bad="main", goods=[shas[0]]).run()
    second = ScriptedSuite(verdicts)
    result = session(repo, second).run()  # no bounds: resume
    assert result.resumed and result.culprit == shas[6]
    assert not set(first.calls) & set(second.calls)


def test_skips_step_around(repo: GitRepo) -> None:
    shas = linear_history(repo, 17, culprit=9)
    verdicts = {s: Verdict.BAD if i >= 8 else Verdict.GOOD for i, s in enumerate(shas)}
    for i in (4, 5, 6):
        verdicts[shas[i]] = Verdict.SKIP
    suite = ScriptedSuite(verdicts)
    result = session(repo, suite, bad="main", goods=[shas[0]]).run()
    assert result.status == "found" and result.culprit == shas[8]


def test_parallel_rounds(repo: GitRepo) -> None:
    shas = linear_history(repo, 81, culprit=30)
    verdicts = {s: Verdict.BAD if i >= 29 else Verdict.GOOD for i, s in enumerate(shas)}
    suite = ScriptedSuite(verdicts)
    s = session(repo, suite, bad="main", goods=[shas[0]], jobs=2)
    result = s.run()
    assert result.culprit == shas[29]
    assert s.rounds <= 5  # ceil(log3(80)) + 1
