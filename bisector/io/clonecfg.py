"""What a private clone takes from the *user's* configuration, so that its checkouts give the
files the user's own checkout gives: the repository config's filter drivers, a partial clone's
promisor remotes, git-lfs's store and server. Never anything from the repository's content.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bisector.core.errors import GitError
from bisector.io.git import MissingObjectsError, git, lfs_endpoint
from bisector.io.lru import to_prune

# Where a clone's promisor remote pushes: nowhere (a path that is no repository).
NO_PUSH = "/nonexistent/bisector-clones-do-not-push"


def promisor_remotes(repo: Path, source: Path) -> dict[str, dict[str, str]]:
    """For a partial clone (`git clone --filter=blob:none`, whose pack folder holds `.promisor`
    files): its promisor remotes (name -> url, promisor, partialclonefilter, a `pushurl` that
    goes nowhere), so the clone fetches the blobs and trees an old revision needs from the same
    server as `git checkout` in the user's checkout would. They land in the clone's own object
    folder, never in the user's. None for a full clone."""
    if not any((source / "objects" / "pack").glob("*.promisor")):
        return {}
    pattern = r"^(remote\..*\.(url|promisor|partialclonefilter)|extensions\.partialclone)$"
    found: dict[str, dict[str, str]] = {}
    default = None
    for line in git(repo, "config", "--get-regexp", pattern, check=False).splitlines():
        key, _, value = line.partition(" ")
        if key == "extensions.partialclone":
            default = value
            continue
        name, var = key[len("remote."):].rsplit(".", 1)
        found.setdefault(name, {})[var] = value
    return {name: {"url": r["url"], "promisor": "true", "pushurl": NO_PUSH,
                   **({"partialclonefilter": r["partialclonefilter"]} if "partialclonefilter" in r else {})}
            for name, r in found.items() if "url" in r and (r.get("promisor") == "true" or name == default)}


def promisor_error(exc: GitError, rev: str, remotes: Mapping[str, str]) -> MissingObjectsError | None:
    """The error for a checkout of `rev` whose files a partial clone's promisor remotes (name ->
    url) did not give (offline, gone), or None for another failure."""
    if not remotes or "from promisor remote" not in exc.stderr:
        return None
    named = ", ".join(f"{name} ({url})" for name, url in remotes.items())
    return MissingObjectsError(f"cannot check out {rev[:10]}: your repository is a partial clone and git could not "
                               f"fetch that revision's files from its promisor remote {named}; make the remote "
                               "reachable and run again", stderr=exc.stderr)


def local_filters(source: Path) -> dict[str, dict[str, str]]:
    """The filter drivers of the user's repository config (`filter.NAME.*`, which `git lfs
    install --local` writes there): without them the clone would check out what the filter
    stores (git-lfs pointers) instead of the files. The user's own settings, not the repository's."""
    try:
        if b"[filter" not in (source / "config").read_bytes().lower():
            return {}
    except OSError:
        return {}
    found: dict[str, dict[str, str]] = {}
    out = git(source, f"--git-dir={source}", "config", "--local", "--get-regexp", r"^filter\.", check=False)
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        name, _, var = key[len("filter."):].rpartition(".")
        if name and var:
            found.setdefault(name, {})[var] = value
    return found


def quoted(value: str) -> str:
    """A value or subsection name for a git config file, to go between double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def lfs_settings(repo: Path, source: Path) -> dict[str, str]:
    """The clone's `[lfs]` settings for a repository that uses git-lfs (it has `.git/lfs` and
    git-lfs is installed), else none: bisector's own store, and the user's LFS server."""
    if not (source / "lfs").is_dir() or shutil.which("git-lfs") is None:
        return {}
    settings = {"storage": str(source / "bisector" / "lfs")}
    url = lfs_endpoint(repo)
    if url:
        settings["url"] = url
    return settings


@dataclass(frozen=True)
class LfsObject:
    path: Path
    size: int  # bytes of its own: 0 for a hard link to your `.git/lfs` (it costs nothing)
    last_used: float


def lfs_objects(state: Path) -> list[LfsObject]:
    """The objects of bisector's LFS store (`<state>/lfs/objects`), least recently used first:
    hard links to your own objects, and the ones downloaded for old revisions."""
    root = state / "lfs" / "objects"
    out = []
    for p in root.rglob("*") if root.is_dir() else ():
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            out.append(LfsObject(p, st.st_size if st.st_nlink == 1 else 0, max(st.st_atime, st.st_mtime)))
    return sorted(out, key=lambda o: o.last_used)


def prune_lfs(state: Path, older_than: float | None = None, max_bytes: int | None = None) -> list[LfsObject]:
    """Remove the store's objects unused for `older_than` seconds, then the least recently used
    until the rest holds at most `max_bytes` of its own. A later step links or downloads again."""
    dropped = to_prune(lfs_objects(state), older_than, max_bytes)
    for o in dropped:
        o.path.unlink(missing_ok=True)
    return dropped

