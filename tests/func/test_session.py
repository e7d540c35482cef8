"""The session loop driven by scripted verdicts (a fake probe suite) on real git repositories."""

from __future__ import annotations

from typing import Any

import pytest

from bisector.probes.base import Observation, ProbeContext
from bisector.probes.suite import SuiteResult
from bisector.run.session import Handler, RunOptions, Session
from bisector.core.model import Verdict
from tests.fixtures.repos import GitRepo, linear_history


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


class SequenceSuite(ScriptedSuite):
    """Per-commit verdict sequences (the last one repeats): a flaky probe, scripted."""

    def __init__(self, sequences: dict[str, list[Verdict]]):
        super().__init__({})
        self.sequences = sequences

    def run(self, ctx: ProbeContext) -> SuiteResult:
        i = self.calls.count(ctx.commit)
        self.calls.append(ctx.commit)
        seq = self.sequences[ctx.commit]
        v = seq[min(i, len(seq) - 1)]
        return SuiteResult(v, [Observation(probe="scripted", verdict=v, summary=v.value)])


def test_noisy_search_survives_a_flipped_verdict(repo: GitRepo) -> None:
    shas = linear_history(repo, 64, culprit=30)
    seqs = {s: [Verdict.BAD if i >= 29 else Verdict.GOOD] for i, s in enumerate(shas)}
    # The first run at commit 16 (good) and at 40 (bad) lie.
    seqs[shas[15]] = [Verdict.BAD, Verdict.GOOD]
    seqs[shas[39]] = [Verdict.GOOD, Verdict.BAD]
    suite = SequenceSuite(seqs)
    s = session(repo, suite, bad="main", goods=[shas[0]], noise=0.1)
    result = s.run()
    assert result.status == "found" and result.culprit == shas[29]
    assert result.probability >= 0.99
    events = [e for e in __import__("bisector.journal.read", fromlist=["x"]).read_events(result.journal)]
    assert any(e["event"] == "posterior" for e in events)


def test_noisy_bad_bound_that_failed_by_chance_is_no_culprit(repo: GitRepo) -> None:
    shas = linear_history(repo, 32, culprit=99)
    seqs = {s: [Verdict.GOOD] for s in shas}
    seqs[shas[-1]] = [Verdict.BAD, Verdict.GOOD]
    suite = SequenceSuite(seqs)
    result = session(repo, suite, bad="main", goods=[shas[0]], noise=0.1).run()
    assert result.status == "no_culprit", result
    assert result.probability >= 0.95
    assert result.exit_code == 1
