"""The isolated workspace: one detached git worktree per session, outside the user's tree.

Invariant: nothing here writes the user's working tree, index, HEAD or stash. Every
command runs with `-C <worktree>`, except `git worktree add/remove/prune`, which only
touch `.git/worktrees/` and are undone on close (and on the next start after a crash).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path
from typing import Sequence

from bisector.core.errors import GitError, LockedError, UsageError
from bisector.io.git import git, git_common_dir


def state_dir(repo: Path) -> Path:
    """Disposable state (worktrees, logs, build cache): inside the repository's .git folder."""
    return git_common_dir(repo) / "bisector"


class RepoLock:
    """One bisector session per repository: an flock, released by the kernel if we die."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(
                f"state folder not writable: {self.path.parent} ({exc.strerror}): check its permissions"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                try:
                    holder = self.path.read_text().strip()
                except OSError:
                    holder = "?"
                raise LockedError(
                    f"a bisector session is already running in this repository (pid {holder or '?'}): "
                    "wait for it, or stop it first"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RepoLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def kill_processes_in(path: Path) -> list[int]:
    """SIGKILL every process whose working directory is inside `path` (Linux /proc).

    A killed bisector cannot kill its steps' process groups, and PR_SET_PDEATHSIG reaches
    only each group's leader; the rest still run in the stale worktree. Only processes
    working inside bisector's own disposable worktree are touched.
    """
    import signal

    root = str(path.resolve())
    killed = []
    proc = Path("/proc")
    if not proc.is_dir():
        return killed
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + "/"):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except OSError:
                pass
    return killed


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
            kill_processes_in(wt)  # steps a SIGKILLed bisector left running (their own sessions)
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
