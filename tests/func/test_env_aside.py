"""A step's environment copy kept across the next checkout when the key is unchanged.

`set_aside` moves the copy out of the workspace before `git clean`; `restore(..., aside=...)`
moves it back only when it is of the same key, for the same folder, and nothing in it was
added, removed or replaced since it was restored. Real files and a real worktree; no resolver.
"""

from __future__ import annotations

import os
from pathlib import Path

from bisector.io.envcache import EnvCache, fingerprint, set_aside
from bisector.io.workspace import Workspace
from tests.fixtures.repos import GitRepo

KEY, OTHER = "ab" * 12, "cd" * 12
SITE = "lib/python3.11/site-packages"


def _env(target: Path, version: str = "1.0") -> str:
    (target / "bin").mkdir(parents=True)
    (target / SITE / "tinydep").mkdir(parents=True)
    (target / SITE / "tinydep/__init__.py").write_text(f"VERSION = {version!r}\n")
    (target / "bin/tool").write_text(f"#!{target}/bin/python\n")
    os.symlink("/usr/bin/python3", target / "bin/python")
    (target / "pyvenv.cfg").write_text("version_info = 3.11.7\n")
    return ""


def _cache(tmp_path: Path) -> EnvCache:
    cache = EnvCache(tmp_path / "envs")
    cache.ensure(KEY, _env)
    cache.ensure(OTHER, lambda t: _env(t, "2.0"))
    return cache


def _step(cache: EnvCache, ws: Workspace, rev: str, key: str) -> bool:
    """What execute_step does: set aside, checkout (git clean), restore."""
    aside = ws.path.parent / "env-aside"
    set_aside(ws.path / ".venv", aside)
    ws.checkout(rev)
    return cache.restore(key, ws.path / ".venv", aside)


def test_same_key_unchanged_is_moved_back_and_a_changed_or_other_key_is_restored(repo: GitRepo, tmp_path: Path) -> None:
    a = repo.commit({"a.txt": "1\n"})
    b = repo.commit({"a.txt": "2\n"})
    cache = _cache(tmp_path)
    ws = Workspace(repo.path, tmp_path / "session")
    ws.open(a)
    venv = ws.path / ".venv"
    assert _step(cache, ws, a, KEY) is False  # first step: restored by links
    inode = os.stat(venv / "pyvenv.cfg").st_ino
    (venv / SITE / "tinydep/__pycache__").mkdir()  # Python's bytecode: not a change
    (venv / SITE / "tinydep/__pycache__/__init__.cpython-311.pyc").write_bytes(b"pyc")
    assert _step(cache, ws, b, KEY) is True  # same key, unchanged: the very same folder
    assert (venv / SITE / "tinydep/__pycache__").is_dir() and os.stat(venv / "pyvenv.cfg").st_ino == inode
    assert (venv / "bin/tool").read_text() == f"#!{venv}/bin/python\n"
    assert not (ws.path.parent / "env-aside" / "env").exists()

    # A build installs into the environment (a file added): the next step gets a fresh copy.
    (venv / SITE / "app.pth").write_text(str(ws.path))
    assert _step(cache, ws, a, KEY) is False
    assert not (venv / SITE / "app.pth").exists()
    # A file replaced (what installers do) is a change too.
    os.replace(ws.path / "a.txt", venv / SITE / "tinydep/__init__.py")
    assert _step(cache, ws, b, KEY) is False
    assert (venv / SITE / "tinydep/__init__.py").read_text() == "VERSION = '1.0'\n"
    # Another key: the set-aside copy is removed, the other environment restored.
    assert _step(cache, ws, a, OTHER) is False
    assert (venv / SITE / "tinydep/__init__.py").read_text() == "VERSION = '2.0'\n"
    assert not (ws.path.parent / "env-aside" / "env").exists()
    # The cache itself never changed.
    assert (cache.env_path(KEY) / SITE / "tinydep/__init__.py").read_text() == "VERSION = '1.0'\n"
    assert not (cache.env_path(KEY) / SITE / "app.pth").exists()
    ws.close()


def test_a_venv_bisector_did_not_restore_is_left_to_the_clean(repo: GitRepo, tmp_path: Path) -> None:
    a = repo.commit({"a.txt": "1\n"})
    ws = Workspace(repo.path, tmp_path / "session")
    ws.open(a)
    (ws.path / ".venv").mkdir()  # made by a build, not by a restore: no state recorded
    assert set_aside(ws.path / ".venv", ws.path.parent / "env-aside") is False
    ws.checkout(a)
    assert not (ws.path / ".venv").exists()
    ws.close()


def test_the_fingerprint_sees_adds_removes_and_writes_but_not_bytecode(tmp_path: Path) -> None:
    env = tmp_path / "env"
    _env(env)
    first = fingerprint(env)
    assert fingerprint(env) == first
    (env / SITE / "__pycache__").mkdir()
    (env / SITE / "__pycache__/x.pyc").write_bytes(b"1")
    assert fingerprint(env) == first
    (env / "new.txt").write_text("x")
    assert fingerprint(env) != first
    (env / "new.txt").unlink()
    assert fingerprint(env) == first
    (env / "pyvenv.cfg").write_text("version_info = 3.12.0\n")
    assert fingerprint(env) != first
