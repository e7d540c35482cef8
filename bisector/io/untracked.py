"""`--with-untracked`: files of the user's checkout that git does not track (a dataset, weights)
and that every step needs, checked at the start and copied into each step's work tree."""

from __future__ import annotations

import os
import posixpath
import shutil
from pathlib import Path
from typing import Sequence

from bisector.core.errors import UsageError


def untracked_inputs(repo: Path, paths: Sequence[str]) -> list[str]:
    """`--with-untracked` / `[workspace] untracked`, checked: each a path inside the checkout
    (`a/b`, no `..`, not absolute, not under `.git`) that exists there; normalized (`./data/`
    is `data`), in order, each once."""
    out: list[str] = []
    for given in paths:
        text = str(given).strip()
        rel = posixpath.normpath(text).strip("/") if text else ""
        parts = rel.split("/")
        if rel in ("", ".") or text.startswith("/") or ".." in parts or parts[0] in (".git", ".bisector"):
            raise UsageError(f"--with-untracked {given!r}: give a path inside your checkout (as `data/` or `weights.pt`)")
        if not (repo / rel).exists() and not (repo / rel).is_symlink():
            raise UsageError(f"--with-untracked {given!r}: no such file or folder in your checkout {repo}")
        out.append(rel)
    return list(dict.fromkeys(out))


def describe_untracked(path: Path) -> str:
    """`a symlink to X`, or the size of a file or folder (`12 files, 3.4 MB`), for the start line."""
    if path.is_symlink():
        return f"a symlink to {os.readlink(path)} (copied as a symlink)"
    if not path.is_dir():
        return f"{path.stat().st_size / 1e6:.1f} MB"
    files = size = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(root, name)).st_size
    return f"{files} files, {size / 1e6:.1f} MB"


def stat_tree(path: Path) -> object:
    """What a copy looks like, cheaply: (path, size, mtime, mode) of everything under `path`."""
    if path.is_symlink() or not path.is_dir():
        try:
            st = os.lstat(path)
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns, st.st_mode)
    out = []
    for root, dirs, files in os.walk(path):
        for name in sorted(dirs + files):
            p = os.path.join(root, name)
            st = os.lstat(p)
            out.append((os.path.relpath(p, path), st.st_size, st.st_mtime_ns, st.st_mode))
    return sorted(out)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
