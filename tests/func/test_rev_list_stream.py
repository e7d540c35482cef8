"""The candidates from one streamed `git rev-list --parents`, parsed a read buffer at a time,
are exactly what a line-by-line reading of git's output gives, on every history shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from bisector.io.history import load_candidates
from bisector.io.process import iter_line_chunks
from tests.fixtures.gitgen import SHAPES, build, candidates


@pytest.mark.parametrize("kind", SHAPES)
def test_candidates_match_git_rev_list_on_every_shape(kind: str, tmp_path: Path) -> None:
    repo = build(kind, 300, [120], path=tmp_path / kind)
    got = load_candidates(repo.path, repo.bad, [repo.good])
    assert dict(got.parents.items()) == candidates(repo, repo.bad, repo.good)
    rows = [ln.split() for ln in repo.git("rev-list", "--parents", repo.bad, f"^{repo.good}").stdout.splitlines()]
    inset = {r[0] for r in rows}
    # A candidate's own parents are kept apart where some of them is not a candidate (the good).
    assert got.true_parents == {r[0]: tuple(r[1:]) for r in rows if any(p not in inset for p in r[1:])}


@pytest.mark.parametrize("kind", ["bubbles", "octopus"])
def test_first_parent_candidates_match_git(kind: str, tmp_path: Path) -> None:
    repo = build(kind, 200, [90], path=tmp_path / kind)
    got = load_candidates(repo.path, repo.bad, [repo.good], first_parent=True)
    rows = [ln.split() for ln in repo.git("rev-list", "--first-parent", "--parents", repo.bad, f"^{repo.good}").stdout.splitlines()]
    inset = {r[0] for r in rows}
    assert dict(got.parents.items()) == {r[0]: tuple(p for p in r[1:2] if p in inset) for r in rows}


def test_chunks_end_on_line_boundaries_whatever_the_buffer_size(tmp_path: Path) -> None:
    repo = build("bubbles", 150, [60], path=tmp_path / "r")
    cmd = ["git", "-C", str(repo.path), "rev-list", "--parents", repo.bad]
    whole = repo.git("rev-list", "--parents", repo.bad).stdout.encode()
    chunks = list(iter_line_chunks(cmd, cwd=repo.path, env=repo.env, chunk=7))
    assert len(chunks) > 10 and all(c.endswith(b"\n") for c in chunks)
    assert b"".join(chunks) == whole
