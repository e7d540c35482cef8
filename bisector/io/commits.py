"""Commit metadata for the views (subjects, authors, diff stats): light, no numpy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from bisector.io.git import commits, git


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str
    date: str  # ISO 8601

    @property
    def short(self) -> str:
        return self.sha[:10]


def commit_info(repo: Path, shas: Iterable[str]) -> dict[str, Commit]:
    """Metadata for many commits, read through one `git cat-file` (see io.git.commits)."""
    return {sha: Commit(m.sha, m.subject, m.author, m.date) for sha, m in commits(repo, shas).items()}


def show_stat(repo: Path, sha: str) -> str:
    """`git show --stat` of a commit (the result's code diff summary), or "" when git cannot
    make it: in a partial clone it needs the commit's blobs, which git fetches from the promisor
    remote as your own `git show` would, and which an offline machine cannot get. The summary
    is an extra: its absence never fails the command that shows it."""
    return git(repo, "show", "--stat", "--format=", "--no-color", sha, check=False).strip("\n")
