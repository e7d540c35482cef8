"""A person answering the manual probe at odd moments: `undo` as the first answer (nothing to
take back), at the bounds, during the search, at the confirmation and at the late bad-bound
check, twice in a row, and `undo` after `skip`. Every run ends with the right culprit, exit 0,
and no traceback. Before the fix, `undo` at the confirmation ended "not confirmed" and `undo`
at a bound was a StopIteration traceback."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from tests.fixtures.cli import journal_events, start_bisector
from tests.fixtures.repos import GitRepo, linear_history


def ask(repo: Path, args: list[str], answer: Callable[[str, int], str]) -> tuple[int, str, str, list[str]]:
    """Like `answer_questions`, keeping stderr: (exit code, stdout, stderr, the shas asked)."""
    proc = start_bisector(repo, *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin and proc.stderr and proc.stdout
    asked: list[str] = []
    err: list[str] = []
    for line in proc.stderr:
        err.append(line)
        if line.startswith("== step "):
            asked.append(line.split("revision ")[1].split()[0])
            try:
                proc.stdin.write(answer(asked[-1], len(asked)) + "\n")
                proc.stdin.flush()
            except BrokenPipeError:
                break
    out = proc.stdout.read()
    err.append(proc.stderr.read())
    return proc.wait(60), out, "".join(err), asked


# (policy, the questions answered `undo` (1-based), then `skip` for these)
CASES = {
    "undo-first-lazy": ("lazy", {1}, set()),
    "undo-first-check": ("check", {1}, set()),
    "undo-second-check": ("check", {2}, set()),
    "undo-at-every-third": ("lazy", {3, 6, 9}, set()),
    "undo-twice-in-a-row": ("lazy", {3, 4}, set()),
    "undo-after-skip": ("lazy", {4}, {3}),
    "undo-last-questions-check": ("check", {5, 6, 7}, set()),
    "undo-last-questions-lazy": ("lazy", {4, 5, 6}, set()),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_undo_at_any_moment_still_finds_the_culprit(repo: GitRepo, case: str) -> None:
    policy, undo_at, skip_at = CASES[case]
    shas = linear_history(repo, 12, culprit=8)
    repo.write({"bisector.toml": f'[search]\nbounds = "{policy}"\n'})

    def answer(sha: str, n: int) -> str:
        if n in undo_at:
            return "undo"
        if n in skip_at:
            return "skip"
        return "bad" if shas.index(sha) >= 7 else "good"

    code, out, err, asked = ask(repo.path, ["run", "--good", shas[0], "--bad", "main", "--probe", "manual"], answer)
    assert "Traceback" not in err, err[-2000:]
    assert code == 0, err[-2000:]
    assert f"{shas[7]} is the first bad commit" in out
    assert len(asked) <= 30  # no endless asking
    undos = [e for e in journal_events(repo.path) if e["event"] == "undo"]
    assert len(undos) <= len(undo_at)  # "nothing to undo" journals nothing


def test_undo_at_the_late_bad_bound(repo: GitRepo) -> None:
    """Lazy bounds, one worker, a culprit that is the bad bound itself: the bad bound is asked
    last; `undo` there takes back the answer before it and the search asks again."""
    shas = linear_history(repo, 10, culprit=9)
    n_questions: list[int] = []

    def honest(sha: str, n: int) -> str:
        return "bad" if shas.index(sha) >= 9 else "good"

    code, out, _, asked = ask(repo.path, ["run", "--good", shas[0], "--bad", "main", "--probe", "manual"], honest)
    assert code == 0 and asked[-1] == shas[9], (out, asked)  # the bad bound is the last question
    n_questions.append(len(asked))
    shutil.rmtree(repo.path / ".bisector")  # a fresh session

    def undo_last(sha: str, n: int) -> str:
        return "undo" if n == n_questions[0] else honest(sha, n)

    code, out, err, asked = ask(repo.path, ["run", "--good", shas[0], "--bad", "main", "--probe", "manual"], undo_last)
    assert "Traceback" not in err and code == 0, err[-2000:]
    assert f"{shas[9]} is the first bad commit" in out
    assert asked[n_questions[0]] == asked[n_questions[0] - 2]  # the answer before it, asked again
