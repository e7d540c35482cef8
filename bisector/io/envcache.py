"""The cache of built environments, shared by every step, session and worker of a repository.

Layout under the state folder (`<git-common-dir>/bisector/envs/`):

    <root>/<key>/env/          the environment (a virtualenv, or what `[env] command` made)
    <root>/<key>/meta.json     key, created, size, python, packages, build seconds, output tail
    <root>/<key>/used          its mtime is the last use
    <root>/locks/<key>         flock held while the key is built: parallel workers build it once
    <root>/tmp/                entries being removed

Invariant: an entry is complete when its `meta.json` exists (written last, by rename). A build
holds the key's flock, so a second worker waits and then finds the entry; a crashed build
leaves an entry without `meta.json`, which the next build of that key removes first.

Restoring links every file of the entry into the step's folder (`os.link`: no bytes copied,
~1 s for a 1 GB environment) and recreates folders and symbolic links. Scripts in `bin/`
that name the entry's path (shebangs, activate) are rewritten, not linked, to name the new one.

Between two steps of the same key the copy need not be removed and linked again: `set_aside`
moves it out of the worktree before the checkout's clean, and `restore(..., aside=...)` moves
it back when its `fingerprint` is still the one taken right after it was restored.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bisector.io.lru import to_prune
from bisector.core.errors import BisectorError
from bisector.io.state import state_dir


class EnvError(BisectorError):
    """An environment could not be built or restored: the step is a skip with this message."""

    def __init__(self, message: str, tail: str = ""):
        super().__init__(message + (": " + " | ".join(tail.strip().splitlines()[-3:]) if tail.strip() else ""))
        self.tail = tail
        self.info: dict[str, Any] = {}


@dataclass(frozen=True)
class EnvEntry:
    key: str
    size: int  # bytes
    created: float
    last_used: float
    kind: str
    python: str
    packages: int


def installed_packages(env: Path) -> dict[str, str]:
    """{normalized name: version} of the distributions installed in a virtualenv."""
    found: dict[str, str] = {}
    for site in sorted(env.glob("lib/python*/site-packages")) + sorted(env.glob("Lib/site-packages")):
        for info in site.glob("*.dist-info"):
            name, _, version = info.name[: -len(".dist-info")].partition("-")
            found[name.replace("_", "-").replace(".", "-").lower()] = version
    return dict(sorted(found.items()))


def _size(path: Path) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _python_of(env: Path) -> str:
    cfg = env / "pyvenv.cfg"
    if cfg.is_file():
        for line in cfg.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version_info", "version"):
                return value.strip()
    return ""


class EnvCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def for_repo(cls, repo: Path) -> EnvCache:
        return cls(state_dir(repo) / "envs")

    def _dir(self, key: str) -> Path:
        if len(key) < 8 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not an environment key: {key!r}")
        return self.root / key

    def env_path(self, key: str) -> Path:
        return self._dir(key) / "env"

    def lookup(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads((self._dir(key) / "meta.json").read_text())
        except (OSError, ValueError):
            return None

    def ensure(self, key: str, build: Callable[[Path], str | None],
               describe: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
        """The entry's meta, building it first (once, under the key's flock) if it is missing.

        `build(folder)` makes the environment in `folder` and returns its output's last lines.
        Returns (meta, built): built is True for the one caller that ran `build`.
        """
        meta = self.lookup(key)
        if meta is not None:
            return meta, False
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / key, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            meta = self.lookup(key)
            if meta is not None:
                return meta, False
            entry = self._dir(key)
            shutil.rmtree(entry, ignore_errors=True)  # debris of a crashed build
            entry.mkdir(parents=True)
            t0 = time.monotonic()
            try:
                log_tail = build(entry / "env") or ""
            except BaseException:
                shutil.rmtree(entry, ignore_errors=True)
                raise
            env = entry / "env"
            if not env.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                raise EnvError(f"the environment {key[:12]} was not made: nothing at $BISECTOR_ENV_DIR")
            meta = {
                **dict(describe or {}),
                "key": key,
                "created": time.time(),
                "build_seconds": round(time.monotonic() - t0, 3),
                "size": _size(env),
                "python": _python_of(env),
                "packages": installed_packages(env),
                "tail": log_tail,
            }
            tmp = entry / f"meta.json.{secrets.token_hex(4)}"
            tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
            os.replace(tmp, entry / "meta.json")
            (entry / "used").touch()
            return meta, True

    def restore(self, key: str, dest: Path, aside: Path | None = None) -> bool:
        """Make `dest` a copy of the entry's environment, by hard links (a copy across file systems).

        `aside`: the folder `set_aside` moved the previous step's copy to. When that copy is of
        the same key, for the same `dest`, and its fingerprint is the one taken right after it
        was restored (nothing added, removed or replaced since), it is moved back instead (a
        rename); else it is removed. Returns True when the copy was moved back.
        """
        src = self.env_path(key)
        if not src.is_dir():
            raise EnvError(f"the environment {key[:12]} is not in the cache (pruned while in use?)")
        kept = aside is not None and _take_aside(key, dest, aside)
        if not kept:
            if dest.exists() or dest.is_symlink():
                shutil.rmtree(dest) if dest.is_dir() and not dest.is_symlink() else dest.unlink()
            old, new = os.fsencode(str(src)), os.fsencode(str(dest))
            try:
                _link_tree(str(src), str(dest), old, new)
            except OSError as exc:
                shutil.rmtree(dest, ignore_errors=True)
                raise EnvError(f"cannot restore the environment {key[:12]} into {dest}: {exc.strerror or exc}") from None
        if aside is not None:
            aside.mkdir(parents=True, exist_ok=True)
            state = {"key": key, "dest": str(dest), "fingerprint": fingerprint(dest)}
            (aside / ASIDE_STATE).write_text(json.dumps(state))
        try:
            (self._dir(key) / "used").touch()
        except OSError:
            pass
        return kept

    def entries(self) -> list[EnvEntry]:
        """Every complete entry, least recently used first."""
        found = []
        if self.root.is_dir():
            for d in self.root.iterdir():
                if d.name in ("tmp", "locks") or not d.is_dir():
                    continue
                meta = self.lookup(d.name) if _is_key(d.name) else None
                if meta is None:
                    continue
                try:
                    used = (d / "used").stat().st_mtime
                except OSError:
                    used = meta.get("created", 0.0)
                found.append(EnvEntry(d.name, int(meta.get("size", 0)), float(meta.get("created", 0.0)), used,
                                      str(meta.get("kind", "")), str(meta.get("python", "")),
                                      len(meta.get("packages", {}))))
        return sorted(found, key=lambda e: (e.last_used, e.key))

    def remove(self, key: str) -> None:
        d = self._dir(key)
        if d.exists():
            tmp = self.root / "tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            gone = tmp / f"{os.getpid()}-{secrets.token_hex(6)}"
            os.rename(d, gone)  # gone from lookups at once
            shutil.rmtree(gone, ignore_errors=True)

    def prune(self, older_than: float | None = None, max_bytes: int | None = None) -> list[EnvEntry]:
        """Drop entries unused for `older_than` seconds, then least recently used ones until the
        total is at most `max_bytes`; also clear crash debris. Returns the dropped entries."""
        shutil.rmtree(self.root / "tmp", ignore_errors=True)
        dropped = to_prune(self.entries(), older_than, max_bytes)
        for e in dropped:
            self.remove(e.key)
        return dropped


ASIDE_STATE = "state.json"  # in the aside folder: the key, dest and fingerprint of the last restore
ASIDE_ENV = "env"


def fingerprint(env: Path) -> str:
    """A hash of every entry under `env` (its path, and for a file its inode, size, mtime and
    mode): a file added, removed, replaced or written changes it. `__pycache__` folders are
    left out (Python writes them on import; each .pyc records the source it was made from)."""
    h = hashlib.blake2b(digest_size=16)
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(env, rel)) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.name == "__pycache__":
                continue
            r = f"{rel}/{e.name}" if rel else e.name
            if e.is_dir(follow_symlinks=False):
                stack.append(r)
                h.update(f"d {r}\0".encode(errors="surrogateescape"))
                continue
            st = e.stat(follow_symlinks=False)
            h.update(f"f {r}\0{st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_mode}\0".encode(errors="surrogateescape"))
    return h.hexdigest()


def set_aside(dest: Path, aside: Path) -> bool:
    """Before a checkout cleans the workspace: move the environment restored at `dest` (one
    `restore(..., aside=aside)` made, nothing else) into `aside`, by a rename. True if moved."""
    try:
        state = json.loads((aside / ASIDE_STATE).read_text())
    except (OSError, ValueError):
        return False
    if state.get("dest") != str(dest) or not dest.is_dir() or dest.is_symlink():
        return False
    shutil.rmtree(aside / ASIDE_ENV, ignore_errors=True)
    try:
        os.rename(dest, aside / ASIDE_ENV)
    except OSError:
        return False
    return True


def _take_aside(key: str, dest: Path, aside: Path) -> bool:
    """Move the set-aside copy back to `dest` if it is still exactly what was restored for `key`."""
    env = aside / ASIDE_ENV
    try:
        state = json.loads((aside / ASIDE_STATE).read_text())
    except (OSError, ValueError):
        state = {}
    (aside / ASIDE_STATE).unlink(missing_ok=True)
    if not env.is_dir():
        return False
    same = (state.get("key") == key and state.get("dest") == str(dest) and not dest.exists()
            and not dest.is_symlink() and fingerprint(env) == state.get("fingerprint"))
    if same:
        try:
            os.rename(env, dest)
            return True
        except OSError:
            pass
    shutil.rmtree(env, ignore_errors=True)
    return False


def _is_key(name: str) -> bool:
    return len(name) >= 8 and all(c in "0123456789abcdef" for c in name)


def _link_tree(src: str, dest: str, old: bytes, new: bytes) -> None:
    """Folders made, symbolic links recreated, files hard-linked; bin/ scripts naming `old` rewritten.

    One `os.scandir` per folder: the entry types come from the directory listing, so no file
    is stat'ed (only the bin/ scripts, to read them); the rest is one `link` call per file.
    """
    os.makedirs(dest)
    cross_device = False
    link, symlink, mkdir, readlink = os.link, os.symlink, os.mkdir, os.readlink
    stack = [(src, dest, True, False)]  # (from, to, the top folder, its bin/ or Scripts/)
    while stack:
        s_dir, d_dir, top, rewrite = stack.pop()
        with os.scandir(s_dir) as it:
            entries = list(it)
        for e in entries:
            s, t = e.path, d_dir + os.sep + e.name
            if e.is_symlink():
                symlink(readlink(s), t)
                continue
            if e.is_dir(follow_symlinks=False):
                mkdir(t)
                stack.append((s, t, False, top and e.name in ("bin", "Scripts")))
                continue
            if rewrite and e.stat(follow_symlinks=False).st_size < 1 << 20:
                with open(s, "rb") as fh:
                    blob = fh.read()
                if old in blob:
                    with open(t, "wb") as fh:
                        fh.write(blob.replace(old, new))
                    shutil.copymode(s, t)
                    continue
            if not cross_device:
                try:
                    link(s, t)
                    continue
                except OSError as exc:
                    if exc.errno not in (18, 1, 31):  # EXDEV, EPERM, EMLINK: copy instead
                        raise
                    cross_device = exc.errno == 18
            shutil.copy2(s, t)
