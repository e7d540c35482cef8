"""Copy a file as a reflink where the filesystem can (btrfs, XFS, APFS-like CoW), else a plain copy.

A reflink shares the blocks until either side writes, so a restored build output or a placed
data input costs no bytes and no time, and a write in the workspace can never reach the
cache's copy (unlike a hardlink). On filesystems without reflinks (ext4) it is `copyfile`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
_reflinks_fail: set[int] = set()  # st_dev of filesystems where a reflink already failed


def clone_file(src: Path | str, dst: Path | str, *, keep_mode: bool = False) -> None:
    """Make `dst` (absent) a copy of `src`'s bytes: a reflink when possible. `keep_mode`: also
    `src`'s permission bits (an executable stays one), else the default mode."""
    dev = os.stat(src).st_dev
    done = False
    if dev not in _reflinks_fail:
        with open(src, "rb") as fs, open(dst, "wb") as fd:
            try:
                fcntl.ioctl(fd.fileno(), _FICLONE, fs.fileno())
                done = True
            except OSError:
                _reflinks_fail.add(dev)
    if not done:
        shutil.copyfile(src, dst)
    if keep_mode:
        shutil.copymode(src, dst)


def clone_tree(src: Path, dst: Path, *, keep_mode: bool = False) -> None:
    """`clone_file` of every file under `src` into `dst` (symlinks kept as links)."""
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files + [d for d in dirs if (Path(root) / d).is_symlink()]:
            s, d = Path(root) / name, dst / rel / name
            if s.is_symlink():
                os.symlink(os.readlink(s), d)
            else:
                clone_file(s, d, keep_mode=keep_mode)
