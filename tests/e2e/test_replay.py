"""`replay` runs the session's own loop on the journal: every kind of session replays OK."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from bisector.core.model import Verdict
from bisector.journal.read import read_events
from bisector.journal.replay import replay
from bisector.probes.base import Observation, ProbeContext
from bisector.probes.suite import SuiteResult
from bisector.run.session import Handler, RunOptions, Session
from tests.fixtures.dvcrepos import template
from tests.fixtures.repos import GitRepo, linear_history


class SequenceSuite:
    """Per-commit verdict sequences (the last one repeats); KeyboardInterrupt after `stop_after` runs."""

    name = "scripted"

    def __init__(self, sequences: dict[str, list[Verdict]], stop_after: int | None = None):
        self.sequences = sequences
        self.calls: list[str] = []
        self.stop_after = stop_after
        self.lock = threading.Lock()

    def config(self) -> dict[str, Any]:
        return {"probes": [{"name": "scripted"}]}

    def run(self, ctx: ProbeContext) -> SuiteResult:
        with self.lock:
            if self.stop_after is not None and len(self.calls) >= self.stop_after:
                raise KeyboardInterrupt
            i = self.calls.count(ctx.commit)
            self.calls.append(ctx.commit)
        seq = self.sequences[ctx.commit]
        v = seq[min(i, len(seq) - 1)]
        return SuiteResult(v, [Observation(probe="scripted", verdict=v, summary=v.value)])


def run_session(repo: GitRepo, suite: SequenceSuite, **opts: Any) -> Any:
    return Session(RunOptions(repo=repo.path, probe="true", **opts), Handler(), suite_factory=lambda *a: suite).run()


def first_bad(shas: list[str], i: int) -> dict[str, list[Verdict]]:
    return {s: [Verdict.BAD if k >= i else Verdict.GOOD] for k, s in enumerate(shas)}


def journal_of(repo: GitRepo) -> Path:
    return sorted((repo.path / ".bisector" / "sessions").glob("*.jsonl"))[-1]


def assert_replays(journal: Path, culprit: str, repo: Path | None = None) -> None:
    r = replay(journal, repo)
    assert r.ok, r.message
    assert r.message.startswith("OK: ") and f"first bad commit {culprit}" in r.message, r.message


def test_replay_of_a_parallel_session(repo: GitRepo) -> None:
    shas = linear_history(repo, 60, culprit=23)
    result = run_session(repo, SequenceSuite(first_bad(shas, 22)), bad="main", goods=[shas[0]], jobs=3)
    assert result.culprit == shas[22]
    events = read_events(result.journal)
    assert events[0]["jobs"] == 3
    steps = [e for e in events if e["event"] == "step"]
    rounds = [e["round"] for e in steps]
    assert len(set(rounds)) > 2 and max(rounds.count(r) for r in rounds) == 3  # numbered rounds of up to 3
    assert_replays(result.journal, shas[22])


def test_replay_of_a_resumed_parallel_session(repo: GitRepo) -> None:
    shas = linear_history(repo, 60, culprit=40)
    verdicts = first_bad(shas, 39)
    # Both bounds in the first round, as every bisector did: the journal below is also made old.
    (repo.path / "bisector.toml").write_text('[search]\nbounds = "check"\n')
    with pytest.raises(KeyboardInterrupt):
        run_session(repo, SequenceSuite(verdicts, stop_after=7), bad="main", goods=[shas[0]], jobs=3)
    journal = journal_of(repo)
    assert replay(journal).message.startswith("OK: ") and "unfinished" in replay(journal).message
    result = run_session(repo, SequenceSuite(verdicts), jobs=2)  # resumed with another number of workers
    assert result.resumed and result.culprit == shas[39]
    events = read_events(journal)
    assert [e.get("jobs") for e in events if e["event"] in ("start", "resume")] == [3, 2]
    assert_replays(journal, shas[39])
    # The same journal as an older bisector wrote it (no `jobs`; only search rounds numbered,
    # from 1 in each run; bounds 0, confirmations the last number): round sizes are guessed.
    old = journal.with_name("old.jsonl")
    lines, number, last = [], 0, None
    for e in events:
        e.pop("jobs", None)
        if e["event"] == "resume":
            number, last = 0, None
        if e["event"] == "step":
            if e["role"] in ("search", "calibrate") and e["round"] != last:
                number, last = number + 1, e["round"]
            e["round"] = 0 if e["role"].endswith("bound") else number
        lines.append(json.dumps(e))
    old.write_text("\n".join(lines) + "\n")
    assert_replays(old, shas[39], repo.path)


def test_replay_of_a_noisy_session(repo: GitRepo) -> None:
    shas = linear_history(repo, 40, culprit=20)
    seqs = first_bad(shas, 19)
    seqs[shas[9]] = [Verdict.BAD, Verdict.GOOD]  # a flipped answer
    result = run_session(repo, SequenceSuite(seqs), bad="main", goods=[shas[0]], noise=0.1, jobs=2)
    assert result.culprit == shas[19]
    assert any(e["event"] == "posterior" for e in read_events(result.journal))
    assert_replays(result.journal, shas[19])


@pytest.mark.slow
def test_replay_of_a_data_axis_session(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    tpl, c = template(tmp_path_factory)
    r = tpl.copy_to(tmp_path / "copy")
    probe = tmp_path / "probe.sh"
    probe.write_text("#!/bin/sh\n! grep -q charlie model.txt\n")
    probe.chmod(0o755)
    cli = [sys.executable, "-m", "bisector.cli"]
    args = ["run", "--axis", "data", "--good", c["init"], "--bad", c["images"], "--probe", str(probe)]
    res = subprocess.run([*cli, *args], cwd=r.path, capture_output=True, text=True, env=r.env, timeout=300)
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{c['both']} is the first bad commit" in res.stdout
    journal = sorted((r.path / ".bisector" / "sessions").glob("*.jsonl"))[-1]
    res = subprocess.run([*cli, "replay", str(journal)], cwd=r.path, capture_output=True, text=True, env=r.env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("OK: ") and f"first bad commit {c['both']}" in res.stdout
    assert "DIVERGED" not in res.stdout


@pytest.mark.parametrize("jobs", [1, 2])
def test_replay_of_lazy_bounds_overlapping_the_search(repo: GitRepo, jobs: int) -> None:
    shas = linear_history(repo, 30, culprit=12)
    result = run_session(repo, SequenceSuite(first_bad(shas, 11)), bad="main", goods=[shas[0]], jobs=jobs)
    assert result.culprit == shas[11]
    steps = [e for e in read_events(result.journal) if e["event"] == "step"]
    first = sorted(e["role"] for e in steps if e["round"] == 1)
    # -j 2: the bad bound shares the first round; -j 1: a bad candidate implied it, never probed.
    assert first == (["bad-bound", "search"] if jobs == 2 else ["search"])
    assert jobs == 2 or "bad-bound" not in {e["role"] for e in steps}
    assert_replays(result.journal, shas[11])
