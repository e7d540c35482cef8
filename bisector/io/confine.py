"""Writes confined to a folder: no symlink (committed in an old revision) is followed out of it.

A checkout of an old revision may hold symlinks to anywhere (`data -> /home/me`, `.dvc ->
/etc`); writing `data/x.dvc` there would write outside the folder bisector owns. Every path
bisector writes under such a folder goes through `confined` first.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from bisector.core.errors import UsageError


def confined(root: Path, rel: str | os.PathLike[str], *, last: bool = True) -> Path:
    """`root / rel`, refused with one line when `rel` leaves `root` (`..`, absolute) or when one
    of its existing components (with `last=False`, but the last) is a symlink that leads out of `root`."""
    root = Path(root)
    real_root = os.path.realpath(root)
    parts = PurePosixPath(str(rel).replace(os.sep, "/")).parts
    if not parts or PurePosixPath(str(rel)).is_absolute() or ".." in parts:
        raise UsageError(f"{rel!s:.200} is not a path inside {root}: refused")
    here = root
    for i, part in enumerate(parts):
        here = here / part
        if not os.path.islink(here) or (not last and i == len(parts) - 1):
            continue
        target = os.path.realpath(here)
        if target != real_root and not target.startswith(real_root + os.sep):
            raise UsageError(f"{here} is a symlink out of {root} (to {os.readlink(here)!s:.200}): "
                             "bisector does not write through it; remove it or restore another revision")
    return root / Path(*parts)


def write_confined(root: Path, rel: str, data: bytes) -> Path:
    """Write `data` to `root / rel` (folders made as needed): a symlink in the way is replaced,
    never written through, and no folder above it may lead out of `root`."""
    path = confined(root, rel, last=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    confined(root, rel, last=False)  # again, now that the folders exist
    if os.path.islink(path):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path
