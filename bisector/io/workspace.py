"""The isolated workspace: one detached git worktree per session, outside the user's tree.

Invariant: nothing here writes the user's working tree, index, HEAD or stash. Every
command runs with `-C <worktree>`, except `git worktree add/remove/prune`, which only
touch `.git/worktrees/` and are undone on close (and on the next start after a crash).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from bisector.core.errors import GitError, LockedError, UsageError
from bisector.io.git import git, git_common_dir
from bisector.io.process import kill_under


def state_dir(repo: Path) -> Path:
    """Disposable state (worktrees, logs, build cache): inside the repository's .git folder."""
    return git_common_dir(repo) / "bisector"


@contextmanager
def flock(path: Path | str, *, wait: bool = True) -> Iterator[int]:
    """Hold an exclusive flock on `path` (created if missing) for the `with` block; yields its fd.

    The kernel releases it when the process dies, so a crash never leaves it held. With
    `wait=False`, raises BlockingIOError at once when another process holds it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        yield fd
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


class RepoLock:
    """One bisector session per repository: an flock, released by the kernel if we die."""

    def __init__(self, path: Path):
        self.path = path
        self._held: ExitStack | None = None

    def acquire(self) -> None:
        held = ExitStack()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = held.enter_context(flock(self.path, wait=False))
        except BlockingIOError:
            try:
                holder = self.path.read_text().strip()
            except OSError:
                holder = "?"
            raise LockedError(
                f"a bisector session is already running in this repository (pid {holder or '?'}): "
                "wait for it, or stop it first"
            ) from None
        except OSError as exc:
            raise UsageError(
                f"state folder not writable: {self.path.parent} ({exc.strerror}): check its permissions"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._held = held

    def release(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    def __enter__(self) -> "RepoLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def prune_stale(repo: Path, sessions_dir: Path, keep: Sequence[Path] = ()) -> list[Path]:
    """Remove worktrees left behind by crashed sessions. Call with the repo lock held."""
    removed = []
    if sessions_dir.is_dir():
        keep_set = {p.resolve() for p in keep}
        # <session>/wt, <session>/slot-N/wt (local workers), <session>/remote/wPID/wt (engine workers)
        worktrees = [*sessions_dir.glob("*/wt"), *sessions_dir.glob("*/*/wt"), *sessions_dir.glob("*/*/*/wt")]
        for wt in sorted(worktrees):
            if wt.parent.resolve() in keep_set or not wt.is_dir():
                continue
            kill_under(wt)  # steps a SIGKILLed bisector left running (their own sessions)
            git(repo, "worktree", "remove", "--force", str(wt), check=False)
            shutil.rmtree(wt, ignore_errors=True)
            shutil.rmtree(wt.parent / "dvc-site", ignore_errors=True)
            removed.append(wt)
    git(repo, "worktree", "prune", check=False)
    return removed


class Workspace:
    """A detached worktree at `<session_dir>/wt`, reused for every step of the session."""

    # Files a step keeps across `git clean` (tool-written config, e.g. DVC's config.local).
    keep: tuple[str, ...] = ()

    def __init__(self, repo: Path, session_dir: Path):
        self.repo = repo
        self.session_dir = session_dir
        self.path = session_dir / "wt"
        self.current: str | None = None
        self.step_info: dict[str, object] = {}  # what the last checkout did (for the journal)

    def env(self) -> dict[str, str]:
        """Extra environment for the build and probes in this workspace."""
        return {}

    def inputs(self) -> dict[str, object]:
        """Data inputs materialized beside the code (none for a plain git workspace)."""
        return {}

    def open(self, first_rev: str) -> None:
        self.session_dir.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            git(self.repo, "worktree", "remove", "--force", str(self.path), check=False)
            shutil.rmtree(self.path, ignore_errors=True)
        git(self.repo, "worktree", "prune", check=False)
        try:
            git(self.repo, "worktree", "add", "--detach", "--force", str(self.path), first_rev)
        except GitError as exc:
            raise UsageError(f"cannot create the workspace {self.path}: {exc}") from None
        self.current = first_rev

    def checkout(self, rev: str) -> None:
        """Make the worktree exactly `rev`: forced checkout, then remove everything untracked."""
        git(self.path, "checkout", "--quiet", "--force", "--detach", rev)
        keep = [*self.keep, *("/" + p.strip("/") for p in self.keep_paths(rev))]
        excludes = [arg for k in keep for arg in ("-e", k)]
        git(self.path, "clean", "-ffdxq", *excludes)
        self.current = rev

    def keep_paths(self, rev: str) -> list[str]:
        """Ignored paths `git clean` must leave for the next step to update in place (none here)."""
        return []

    def close(self) -> None:
        if self.path.exists():
            git(self.repo, "worktree", "remove", "--force", str(self.path), check=False)
            shutil.rmtree(self.path, ignore_errors=True)
        git(self.repo, "worktree", "prune", check=False)
