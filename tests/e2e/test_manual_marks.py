"""A session marked by hand from two processes (`bisector start`, then `good/bad/skip` and `view`
from another), with custom terms and a skip range, against real `git bisect` on a copy."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.cli import bisector_process
from tests.fixtures.repos import GitRepo

pytestmark = pytest.mark.e2e

N = 20
SKIP = (5, 8)  # `skip c5..c8`: c6, c7, c8


def _repo(tmp_path: Path) -> tuple[GitRepo, list[str]]:
    repo = GitRepo.init(tmp_path / "repo")
    shas = [repo.commit({"f.txt": f"{i}\n"}, f"c{i}") for i in range(N)]
    return repo, shas


def _git_bisect(src: Path, tmp_path: Path, shas: list[str], culprit: int) -> tuple[set[str], str]:
    """The same marks with real git bisect in a clone: (what `visualize` lists after the skip,
    the last message)."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(src), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"} | {"GIT_PAGER": "cat"}

    def git(*args: str, check: bool = True) -> str:
        return subprocess.run(["git", "-C", str(clone), *args], check=check, capture_output=True, text=True,
                              env=env).stdout

    git("bisect", "start", "--term-old", "fast", "--term-new", "slow", shas[-1], shas[0])
    git("bisect", "skip", f"{shas[SKIP[0]]}..{shas[SKIP[1]]}")
    view = set(git("bisect", "visualize", "--format=%H").split())
    out = ""
    for _ in range(N):
        head = git("rev-parse", "HEAD").strip()
        # git exits 2 when only skipped commits are left
        out = git("bisect", "slow" if shas.index(head) >= culprit else "fast", check=False)
        if "first slow commit" in out or "could be any of" in out:
            break
    return view, out


@pytest.mark.parametrize("culprit", [13, 7], ids=["found", "in-skipped-range"])
def test_marks_from_another_process_match_git_bisect(tmp_path: Path, culprit: int) -> None:
    repo, shas = _repo(tmp_path)
    started = bisector_process(repo.path, "start", "--good", shas[0], "--bad", shas[-1],
                               "--term-old", "fast", "--term-new", "slow")
    assert started.returncode == 0, started.stderr
    assert "bisector fast | bisector slow | bisector skip" in started.stdout

    skipped = bisector_process(repo.path, "skip", f"{shas[SKIP[0]]}..{shas[SKIP[1]]}")
    assert skipped.returncode == 0, skipped.stderr
    view = bisector_process(repo.path, "view")
    assert view.returncode == 0, view.stderr
    listed = re.findall(r"\* ([0-9a-f]{7,}) c(\d+)", view.stdout)
    git_view, git_out = _git_bisect(repo.path, tmp_path, shas, culprit)
    assert {shas[int(i)] for _, i in listed} == git_view
    assert all(f"c{i}  (skipped)" in view.stdout for i in range(SKIP[0] + 1, SKIP[1] + 1))

    out = skipped.stdout
    for _ in range(N):
        asked = re.search(r"^\[([0-9a-f]{40})\]", out, re.M)
        if asked is None:
            break
        term = "slow" if shas.index(asked.group(1)) >= culprit else "fast"
        marked = bisector_process(repo.path, term)  # the revision the session asks
        assert marked.returncode in (0, 1), marked.stderr
        out = marked.stdout
    if "could be any of" not in git_out:
        first = re.search(r"^([0-9a-f]{40}) is the first slow commit", git_out, re.M)
        assert first and f"{first.group(1)} is the first slow commit" in out
        assert marked.returncode == 0
    else:
        theirs = set(re.findall(r"^([0-9a-f]{40})", git_out.split("could be any of:")[1], re.M))
        ours = set(re.findall(r"^([0-9a-f]{40})", out.split("could be any of:")[1], re.M))
        assert ours == theirs and len(ours) > 1
        assert marked.returncode == 1
    # The session ended: nothing is left to view, and the journal replays.
    assert bisector_process(repo.path, "view").returncode == 2
    journal = next((repo.path / ".bisector" / "sessions").glob("*.jsonl"))
    replayed = bisector_process(repo.path, "replay", str(journal))
    assert replayed.returncode == 0 and replayed.stdout.startswith("OK"), replayed.stdout + replayed.stderr
