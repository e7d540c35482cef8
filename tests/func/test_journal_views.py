"""Viewing damaged journals: one-line warnings, and whatever can be read is shown."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.repos import GitRepo, linear_history
from tests.fixtures.cli import bisect, bisector, probe_script


def _journal(repo: GitRepo) -> Path:
    return sorted((repo.path / ".bisector" / "sessions").glob("*.jsonl"))[-1]


def test_corrupt_and_truncated_journal_is_shown_with_warnings(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 16, culprit=9)
    assert bisect(repo.path, shas[0], probe_script(tmp_path)).returncode == 0
    path = _journal(repo)
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = "{this is not json\n"  # an edited middle line
    path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # and a torn last line
    res = bisector(repo.path, "journal")
    assert res.returncode == 0, res.stderr
    warnings = res.stderr.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("Warning: ") and ":4: unreadable journal line skipped" in warnings[0]
    assert "search" in res.stdout and "unfinished" in res.stdout  # the end event was torn off
    res = bisector(repo.path, "sessions")
    assert res.returncode == 0, res.stderr
    assert path.stem in res.stdout
    assert "Warning: " in res.stderr


def test_journal_without_start_event(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 8, culprit=5)
    assert bisect(repo.path, shas[0], probe_script(tmp_path)).returncode == 0
    path = _journal(repo)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("garbage\n" + "".join(lines[1:]))
    res = bisector(repo.path, "journal")
    assert res.returncode == 0, res.stderr
    assert "no readable start event" in res.stderr
    assert "search" in res.stdout
