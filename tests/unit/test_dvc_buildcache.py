"""The content-addressed build cache: keys, round trip, atomicity, entries, prune."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bisector.build.cache import BuildCache, cache_key, dvc_outputs


def make_ws(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_key_depends_on_every_part() -> None:
    base = dict(tree="t1", data={"a": "md5:1", "b": "md5:2"}, command="dvc repro", config={"x": 1})
    k = cache_key(**base)
    assert k == cache_key(**{**base, "data": {"b": "md5:2", "a": "md5:1"}})  # order-free
    for change in ({"tree": "t2"}, {"data": {"a": "md5:1"}}, {"command": "make"}, {"config": {"x": 2}}):
        assert cache_key(**{**base, **change}) != k
    assert len(k) == 64


def test_round_trip_files_and_folders(tmp_path: Path) -> None:
    ws = make_ws(tmp_path / "ws", {"model.txt": "m1", "out/a.bin": "A", "out/sub/b.bin": "B", "src.py": "code"})
    cache = BuildCache(tmp_path / "cache")
    key = cache_key(tree="t", command="c")
    assert not cache.lookup(key)
    entry = cache.store(key, ws, ["model.txt", "out"])
    assert cache.lookup(key) and entry.size == 4 and entry.outputs == ("model.txt", "out")

    other = make_ws(tmp_path / "ws2", {"model.txt": "stale", "out/old.bin": "X", "src.py": "code"})
    assert cache.restore(key, other) == ["model.txt", "out"]
    assert (other / "model.txt").read_text() == "m1"
    assert sorted(str(p.relative_to(other / "out")) for p in (other / "out").rglob("*") if p.is_file()) == ["a.bin", "sub/b.bin"]
    assert (other / "src.py").read_text() == "code"
    assert not list((tmp_path / "cache" / "tmp").iterdir())  # nothing half-written left


def test_missing_output_leaves_no_entry(tmp_path: Path) -> None:
    ws = make_ws(tmp_path / "ws", {"model.txt": "m"})
    cache = BuildCache(tmp_path / "cache")
    key = cache_key(tree="t")
    with pytest.raises(FileNotFoundError):
        cache.store(key, ws, ["model.txt", "missing.txt"])
    assert not cache.lookup(key) and cache.entries() == []


def test_crash_debris_is_invisible_and_pruned(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path / "cache")
    debris = tmp_path / "cache" / "tmp" / "123-dead"
    (debris / "files").mkdir(parents=True)
    (debris / "meta.json").write_text("{}")
    assert cache.entries() == []
    cache.prune()
    assert not debris.exists()


def test_entries_and_prune(tmp_path: Path) -> None:
    ws = make_ws(tmp_path / "ws", {"a": "x" * 100, "b": "y" * 200, "c": "z" * 300})
    cache = BuildCache(tmp_path / "cache")
    keys = {name: cache_key(tree=name) for name in "abc"}
    now = time.time()
    for age, name in ((3000, "a"), (2000, "b"), (1000, "c")):
        cache.store(keys[name], ws, [name])
        d = tmp_path / "cache" / keys[name][:2] / keys[name]
        os.utime(d / "used", (now - age, now - age))
    assert [e.key for e in cache.entries()] == [keys["a"], keys["b"], keys["c"]]  # least recently used first
    assert [e.size for e in cache.entries()] == [100, 200, 300]

    assert [e.key for e in cache.prune(older_than=2500)] == [keys["a"]]
    cache.restore(keys["b"], tmp_path / "ws3")  # b is used now: c becomes the oldest
    assert [e.key for e in cache.prune(max_bytes=250)] == [keys["c"]]
    assert [e.key for e in cache.entries()] == [keys["b"]]
    assert cache.prune(max_bytes=0)[0].key == keys["b"] and cache.entries() == []


def test_store_is_idempotent(tmp_path: Path) -> None:
    ws = make_ws(tmp_path / "ws", {"m": "1"})
    cache = BuildCache(tmp_path / "cache")
    key = cache_key(tree="t")
    first = cache.store(key, ws, ["m"])
    (ws / "m").write_text("2")
    assert cache.store(key, ws, ["m"]).created == first.created
    assert len(cache.entries()) == 1


def test_dvc_outputs_from_lock_or_yaml(tmp_path: Path) -> None:
    ws = make_ws(tmp_path / "ws", {"dvc.yaml": "stages:\n  train:\n    cmd: x\n    outs: [model.pt]\n"
                                              "    metrics:\n    - metrics.json:\n        cache: false\n"
                                              "    plots:\n    - plots/${item}.csv\n"})
    assert dvc_outputs(ws) == ["metrics.json", "model.pt"]
    (ws / "dvc.lock").write_text("schema: '2.0'\nstages:\n  train:\n    cmd: x\n    outs:\n"
                                 "    - path: model.pt\n      md5: 1\n    - path: sub/m.json\n      md5: 2\n")
    assert dvc_outputs(ws) == ["model.pt", "sub/m.json"]
    assert dvc_outputs(tmp_path) == []


def test_restore_keeps_executables_links_and_never_shares_bytes_with_the_entry(tmp_path: Path) -> None:
    """Restored by reflink where the filesystem has them, else by copy: either way a write in
    the workspace leaves the entry's bytes alone, and an executable stays one."""
    ws = make_ws(tmp_path / "ws", {"bin/tool": "#!/bin/sh\n", "out/a.txt": "A"})
    (ws / "bin" / "tool").chmod(0o755)
    (ws / "out" / "link").symlink_to("a.txt")
    cache = BuildCache(tmp_path / "cache")
    key = cache_key(tree="t", command="make")
    cache.store(key, ws, ["bin/tool", "out"])
    other = tmp_path / "ws2"
    cache.restore(key, other)
    assert os.access(other / "bin" / "tool", os.X_OK)
    assert os.readlink(other / "out" / "link") == "a.txt"
    with open(other / "out" / "a.txt", "w") as f:  # in place, as a careless probe would
        f.write("changed")
    again = tmp_path / "ws3"
    cache.restore(key, again)
    assert (again / "out" / "a.txt").read_text() == "A"
