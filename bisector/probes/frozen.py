"""Frozen copies of the user's probe files: content-addressed, verified before every use.

A frozen copy lives in `.bisector/frozen/<digest[:12]>-<name>` of the user's checkout. That
folder may hold anything a commit put there, and a probe can rewrite its own copy, so a
copy is never trusted by its name: it is written from the bytes bisector read (replacing
whatever was there, symlinks included, never writing through one) and its sha256 is checked
before each use. A copy that does not match is rewritten from those bytes, or, when bisector
has no such bytes (a resumed session whose copy changed), refused with one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

from bisector.core.errors import UsageError

_MAX_FROZEN = 64 * 1024 * 1024  # a probe script or adapter larger than this is not a script


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def suite_digest(probe_configs: object) -> str:
    """Which probe suite judged a revision: the digest of its probes' configs (commands, the
    sha256 of each frozen script, timeouts): a pin records it, a run with the same one trusts it."""
    return digest_of(json.dumps(probe_configs, sort_keys=True, default=str).encode())[:16]


def frozen_name(digest: str, name: str) -> str:
    return f"{digest[:12]}-{name}"


def _check_dir(frozen_dir: Path) -> None:
    """The frozen folder and its parent (`.bisector`) must be real folders, not symlinks."""
    for d in (frozen_dir.parent, frozen_dir):
        if d.is_symlink():
            raise UsageError(f"{d} is a symlink (committed to the repository?): bisector does not write "
                             "through it; remove it")
        if d.exists() and not d.is_dir():
            raise UsageError(f"{d} is not a folder: remove it")


def read_regular(path: Path) -> bytes | None:
    """The bytes of `path` when it is a regular file (a symlink is not followed), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_FROZEN:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(_MAX_FROZEN + 1)
    finally:
        os.close(fd)


def _write(target: Path, data: bytes, mode: int) -> None:
    """Replace `target` by a new file holding `data` (a symlink there is replaced, not followed)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_frozen(frozen_dir: Path, name: str, data: bytes, mode: int = 0o755) -> Path:
    """The verified frozen copy of `data` named `name`: written unless an identical one is there."""
    frozen_dir = Path(frozen_dir)
    _check_dir(frozen_dir)
    frozen_dir.mkdir(parents=True, exist_ok=True)
    target = frozen_dir / frozen_name(digest_of(data), name)
    if read_regular(target) != data:
        _write(target, data, mode)
    return target


def verify_frozen(path: Path, digest: str, data: bytes | None = None) -> bool:
    """Check the frozen copy at `path` holds the content `digest` before it is used.

    A copy that does not match (rewritten by a probe, replaced by a commit, a symlink) is
    rewritten from `data` when given (returns True: it was restored); without `data`, one
    UsageError. Returns False when the copy was intact.
    """
    path = Path(path)
    found = read_regular(path)
    if found is not None and digest_of(found) == digest:
        return False
    if data is not None and digest_of(data) == digest:
        _check_dir(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, data, 0o755)
        return True
    raise UsageError(f"the frozen probe file {path} does not hold what was frozen (sha256 {digest[:12]}): "
                     "it changed since the session started (a probe or a commit wrote it), so it is not run; "
                     "drop the session with `bisector reset` and start again")


def load_frozen(path: Path, digest: str | None) -> bytes:
    """The bytes of a frozen copy named on resume, checked against `digest` (the one recorded at
    the session's start) or, without one, against the digest its name carries."""
    path = Path(path)
    data = read_regular(path)
    if digest is None:
        prefix = path.name.split("-", 1)[0]
        ok = data is not None and len(prefix) == 12 and digest_of(data)[:12] == prefix
    else:
        ok = data is not None and digest_of(data) == digest
    if not ok:
        raise UsageError(f"the frozen probe file {path} does not hold what its session froze: it is not run; "
                         "give the probe from your own file (--probe), or drop the session with `bisector reset`")
    assert data is not None
    return data
