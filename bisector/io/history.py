"""The candidate DAG between the bounds, and commit metadata, from git."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from bisector.core.errors import UsageError
from bisector.io.git import commits, git, is_ancestor, resolve


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str
    date: str  # ISO 8601

    @property
    def short(self) -> str:
        return self.sha[:10]


@dataclass
class Candidates:
    """What the search works on: every commit that may be the first bad one.

    `parents` maps each candidate to its parents that are candidates too, in
    `git rev-list` order (newest first). `bad` is in it; known goods are not.
    `merge_bases` are commits that must be checked good first (a good bound that is
    not an ancestor of the bad one, as `git bisect` does).
    """

    bad: str
    goods: list[str]
    parents: dict[str, tuple[str, ...]]
    merge_bases: list[str] = field(default_factory=list)
    first_parent: bool = False
    paths: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.parents)


def load_candidates(
    repo: Path,
    bad: str,
    goods: Sequence[str],
    *,
    first_parent: bool = False,
    paths: Sequence[str] = (),
) -> Candidates:
    """Resolve the bounds and list the candidates, or raise a UsageError saying why not."""
    if not goods:
        raise UsageError("no good revision: pass --good REV (a commit where the probe passes)")
    bad_sha = resolve(repo, bad, "bad revision")
    good_shas: list[str] = []
    for g in goods:
        sha = resolve(repo, g, "good revision")
        if sha == bad_sha:
            raise UsageError(f"good and bad are the same commit ({sha[:10]}): pass an older --good")
        if sha not in good_shas:
            good_shas.append(sha)
    merge_bases: list[str] = []
    for g in good_shas:
        if is_ancestor(repo, bad_sha, g):
            raise UsageError(
                f"bad {bad_sha[:10]} is an ancestor of good {g[:10]}: did you swap --good and --bad?"
            )
        if not is_ancestor(repo, g, bad_sha):
            # As git bisect: the merge bases must be good for the search to make sense.
            for mb in git(repo, "merge-base", "--all", g, bad_sha).split():
                if mb not in merge_bases and mb not in good_shas:
                    merge_bases.append(mb)
            if first_parent:
                raise UsageError(
                    f"good {g[:10]} is not on the first-parent line of bad {bad_sha[:10]}: "
                    "drop --first-parent or pick a good revision that is an ancestor of the bad one"
                )
    args = ["rev-list", "--parents"]
    if first_parent:
        args.append("--first-parent")
    args += [bad_sha, "--not", *good_shas, "--"]
    args += list(paths)
    order: list[str] = []
    raw: dict[str, list[str]] = {}
    for line in git(repo, *args).splitlines():
        shas = line.split()
        if not shas:
            continue
        order.append(shas[0])
        raw[shas[0]] = shas[1:2] if first_parent else shas[1:]
    if not order:
        if paths:
            raise UsageError(
                f"empty range: no commit between good and bad {bad_sha[:10]} changes {' '.join(paths)}: widen the pathspec"
            )
        raise UsageError(f"empty range: no commits between good and bad {bad_sha[:10]}")
    in_set = set(order)
    parents = {sha: tuple(p for p in raw[sha] if p in in_set) for sha in order}
    if bad_sha not in parents:
        # Pathspec-limited: the bad bound itself did not touch the paths. It stays the
        # head of the DAG (known bad), its parents the heads of the limited set.
        children = {p for ps in parents.values() for p in ps}
        heads = tuple(sha for sha in order if sha not in children)
        parents = {bad_sha: heads, **parents}
    return Candidates(
        bad=bad_sha,
        goods=good_shas,
        parents=parents,
        merge_bases=merge_bases,
        first_parent=first_parent,
        paths=list(paths),
    )


def commit_info(repo: Path, shas: Iterable[str]) -> dict[str, Commit]:
    """Metadata for many commits, read through one `git cat-file` (see io.git.commits)."""
    return {sha: Commit(m.sha, m.subject, m.author, m.date) for sha, m in commits(repo, shas).items()}


def show_stat(repo: Path, sha: str) -> str:
    """`git show --stat` of a commit (the result's code diff summary)."""
    return git(repo, "show", "--stat", "--format=", "--no-color", sha).strip("\n")
