"""Thin access to the git CLI: run a git command, turn failures into GitError."""

from __future__ import annotations

import os
from pathlib import Path

from bisector.core.errors import GitError, UsageError
from bisector.io.process import capture

# Keep git from prompting or paging, whatever the user's config says.
_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}


def git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(_ENV)
    return env


def git(repo: Path | str, *args: str, input: str | None = None, check: bool = True) -> str:
    """Run `git -C repo args...` and return stdout; raise GitError with git's message on failure."""
    res = capture(["git", "-C", str(repo), *args], cwd=repo, input=input, env=git_env())
    if check and res.returncode != 0:
        msg = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
        raise GitError(f"git {args[0]} failed: {msg}")
    return res.stdout


def git_ok(repo: Path | str, *args: str) -> bool:
    return capture(["git", "-C", str(repo), *args], cwd=repo, env=git_env()).returncode == 0


def repo_root(path: Path | str) -> Path:
    """The top of the working tree containing `path`, or a UsageError."""
    p = Path(path).resolve()
    if not p.is_dir():
        raise UsageError(f"not a directory: {p}")
    res = capture(["git", "-C", str(p), "rev-parse", "--show-toplevel"], cwd=p, env=git_env())
    if res.returncode != 0:
        raise UsageError(f"not a git repository: {p.resolve()} (run bisector inside a git checkout, or pass -C DIR)")
    return Path(res.stdout.strip())


def git_common_dir(repo: Path) -> Path:
    out = git(repo, "rev-parse", "--git-common-dir").strip()
    p = Path(out)
    return p if p.is_absolute() else (repo / p).resolve()


def resolve(repo: Path, rev: str, what: str = "revision") -> str:
    """Full sha of a commit-ish, or a UsageError that names the revision (a pin's `@NAME` is
    expanded by the caller: `review.pins.store.expand_rev`)."""
    if not rev or rev.startswith("-"):
        raise UsageError(f"invalid {what}: {rev!r}")
    res = capture(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        cwd=repo,
        env=git_env(),
    )
    if res.returncode != 0:
        raise UsageError(f"unknown {what}: {rev} (check `git log --oneline` for a commit that exists)")
    return res.stdout.strip()


def is_ancestor(repo: Path, a: str, b: str) -> bool:
    """True when a is an ancestor of b (or equal)."""
    return git_ok(repo, "merge-base", "--is-ancestor", a, b)
