"""bisector's disposable state in `<git-common-dir>/bisector/`: the repository lock, and the
removal of what a crashed session or a killed `pin --verify` left (plain folders, no git call)."""

from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from bisector.core.errors import LockedError, UsageError
from bisector.io.git import git_common_dir
from bisector.io.process import alive, kill_under


def state_dir(repo: Path) -> Path:
    """Disposable state (clones, logs, build cache): inside the repository's .git folder."""
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
    """Remove the clones left behind by crashed sessions (killing what still runs in them), and
    the worktree registrations an older bisector made. Call with the repo lock held."""
    removed = []
    if sessions_dir.is_dir():
        keep_set = {p.resolve() for p in keep}
        # <session>/, <session>/slot-N/ (local slots), <session>/remote/wPID/ (engine workers)
        roots = {p.parent for depth in ("*", "*/*", "*/*/*") for name in ("wt", "git")
                 for p in sessions_dir.glob(f"{depth}/{name}")}
        for root in sorted(roots):
            if root.resolve() in keep_set:
                continue
            if (root / "wt").is_dir():
                kill_under(root / "wt")  # steps a SIGKILLed bisector left running (their own sessions)
            remove_checkout(root)
            removed.append(root / "wt")
    forget_old_worktrees(repo, sessions_dir)
    return removed


def prune_dead_owners(folder: Path) -> list[Path]:
    """Remove the `<pid>-<name>` checkouts under `folder` whose process is gone (a `pin --verify`
    that was SIGKILLed), killing what still runs in them. A checkout of a live process, or of a
    pid now reused by another process, is left; a zombie owner counts as gone."""
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        pid = entry.name.split("-", 1)[0]
        if not pid.isdigit() or entry.is_symlink() or not entry.is_dir() or alive(int(pid)):
            continue
        if (entry / "wt").is_dir():
            kill_under(entry / "wt")
        remove_checkout(entry)
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def remove_checkout(root: Path) -> None:
    """Remove the clone at `root` (`wt`, `git`, the DVC site cache): plain folders, no git call."""
    for name in ("wt", "git", "dvc-site", "modules"):
        shutil.rmtree(root / name, ignore_errors=True)


def forget_old_worktrees(repo: Path, under: Path) -> None:
    """Drop the `.git/worktrees/<name>` entries whose worktree lies in `under` (made by a bisector
    that used linked worktrees and crashed). Only ours: `git worktree prune` would also forget the
    user's worktrees on an unmounted disk."""
    admin = git_common_dir(repo) / "worktrees"
    if not admin.is_dir():
        return
    root = os.path.realpath(under) + os.sep
    for entry in admin.iterdir():
        try:
            target = os.path.realpath((entry / "gitdir").read_text().strip())
        except OSError:
            continue
        if target.startswith(root):
            shutil.rmtree(entry, ignore_errors=True)
