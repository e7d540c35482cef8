"""The submodules a revision records, and the user's own clones of them (for the private clones).

`.gitmodules` is the repository's content, so untrusted: it is read with `git config --file`
(no includes), a name or path that climbs out (`..`), is absolute or holds a backslash is
ignored, and no URL of it is ever used. The commit each submodule is at comes from the tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from bisector.io.git import git

# Submodules: how deep nested ones are followed, and how many of one repository.
MAX_SUBMODULE_DEPTH = 8
MAX_SUBMODULES = 1000


def recorded_submodules(work_tree: Path, run: Callable[..., str]) -> dict[str, tuple[str, str]]:
    """The submodules of the revision checked out in `work_tree`: path -> (name, the commit it
    records). `.gitmodules` is read with `git config --file` (no includes); a name or path that
    is absolute, has a `..` component or a backslash is ignored, as git ignores it; the commit
    comes from the tree (`run("ls-tree", ...)`: git in that work tree), not from the file."""
    modules = work_tree / ".gitmodules"
    if not modules.is_file() or modules.is_symlink():
        return {}
    out = git(work_tree, "config", "--file", str(modules), "--get-regexp", r"^submodule\..*\.path$", check=False)
    names = {}
    for line in out.splitlines()[:MAX_SUBMODULES]:
        key, _, path = line.partition(" ")
        name = key[len("submodule."):-len(".path")]
        if _plain_relative(name) and _plain_relative(path):
            names[path.strip("/")] = name
    if not names:
        return {}
    found = {}
    for entry in run("ls-tree", "-z", "HEAD", "--", *names).split("\0"):
        meta, _, path = entry.partition("\t")
        if meta and meta.split()[1] == "commit" and path in names:
            found[path] = (names[path], meta.split()[2])
    return found


def submodule_source(common: Path, work_tree: Path | None, path: str, name: str) -> Path | None:
    """The user's own clone of submodule `name`: `<common>/modules/<name>` (where git keeps
    it), or an old-style `<work_tree>/<path>/.git` folder; None when there is none."""
    for cand in (common / "modules" / name, work_tree / path / ".git" if work_tree is not None else None):
        if cand is not None and cand.is_dir() and (cand / "HEAD").is_file() and (cand / "objects").is_dir():
            return cand
    return None


def _plain_relative(path: str) -> bool:
    """A submodule name or path as git accepts it: relative, no `..` component, no backslash."""
    parts = path.strip("/").split("/")
    return bool(path) and not path.startswith("/") and "\\" not in path and ".." not in parts and "\0" not in path
