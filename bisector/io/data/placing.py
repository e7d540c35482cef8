"""Data inputs put in place without DVC: what a warm step needs instead of `dvc checkout`.

`InPlace` remembers, for each input a checkout wrote, its hash and the (inode, size, mtime)
of its files, the fingerprint DVC's own state database trusts: while both hold, the bytes are
still there and the step needs no checkout for it. `place_input` copies (reflinks where the
filesystem can) an input from the DVC cache into the worktree, as `dvc checkout` does with the
link types `reflink,copy`, without starting DVC (~0.4 s a call).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Iterable, Sequence

from bisector.io.clone import clone_file
from bisector.io.data.files import DataInput

Stats = tuple[tuple[str, int, int, int], ...]


def path_stats(root: Path, rel: str) -> Stats:
    """(path, inode, size, mtime_ns) of the file `rel` under `root`, or of every file under the
    folder `rel`; () when there is nothing."""
    base = root / rel
    paths = sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else [base]
    found = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        found.append((str(p.relative_to(root)), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)


class InPlace:
    """Which inputs of a worktree are known to hold their declared bytes."""

    def __init__(self, root: Path):
        self.root = root
        self._known: dict[str, tuple[str, Stats]] = {}

    def holds(self, i: DataInput) -> bool:
        return self._known.get(i.path) == (i.hash, path_stats(self.root, i.path))

    def forget(self) -> None:
        self._known = {}

    def record(self, inputs: Iterable[DataInput]) -> None:
        """After a checkout that wrote `inputs` (all of the step's): their fingerprints now."""
        self._known = {}
        for i in inputs:
            stats = path_stats(self.root, i.path)
            if stats:
                self._known[i.path] = (i.hash, stats)


def place_input(root: Path, i: DataInput, objects: Sequence[Path] | None, link_types: Sequence[str],
                verified: set[Path]) -> bool:
    """Copy input `i` from its cache `objects` (a file's object, or a folder's manifest then its
    entries' objects, all present) into `root`. Only a file, or a folder that is not there yet
    (`dvc checkout` updates an existing folder in place, cheaper than copying it again).
    False when not done: link types other than reflink/copy first, unknown objects, an error, a
    DVC 2 object, or one that does not hash right (`corrupted_object`; `verified` remembers the
    good ones): those are left to `dvc checkout`, which trusts them, so `dvc repro` never
    rebuilds on bytes that its dvc.lock does not name, and no build-cache entry is made of them."""
    target = root / i.path
    if not objects or i.legacy or link_types[0] not in ("reflink", "copy"):
        return False
    if corrupted_object(i, objects, verified) is not None:
        return False
    if i.is_dir and (target.exists() or target.is_symlink()):
        return False
    try:
        if not i.is_dir:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            target.unlink(missing_ok=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            clone_file(objects[0], target)
            return True
        entries = json.loads(objects[0].read_text())
        if len(entries) != len(objects) - 1:
            return False
        for e, obj in zip(entries, objects[1:]):
            dst = target / e["relpath"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            clone_file(obj, dst)
        return True
    except (OSError, ValueError, KeyError, TypeError):
        if i.is_dir:
            shutil.rmtree(target, ignore_errors=True)
        return False  # `dvc checkout --force` makes it right


def corrupted_object(i: DataInput, objects: Iterable[Path], verified: set[Path]) -> str | None:
    """The first of `i`'s cache objects whose md5 is not its name (DVC 3 layout), described;
    None when all hash right (each object is hashed once: `verified` remembers them)."""
    if i.legacy:
        return None  # DVC 2 objects of text files were hashed after dos2unix: not comparable
    for obj in objects:
        if obj in verified or not obj.is_file():
            continue
        h = hashlib.md5()
        with open(obj, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        expected = obj.parent.name + obj.name.removesuffix(".dir")
        if h.hexdigest() != expected:
            return f"cache object {obj} hashes to {h.hexdigest()[:8]}, not {expected[:8]}"
        verified.add(obj)
    return None
