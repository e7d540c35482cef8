"""DvcWorkspace on real git + DVC repositories: code A + data B, repro, missing data, cache safety."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from tests.fixtures.dvcrepos import DvcRepo, template
from tests.fixtures.repos import snapshot

from bisector.build.run import BuildConfig, run_build
from bisector.build.cache import BuildCache, dvc_outputs, step_key
from bisector.io.data import (
    CROSS_DEVICE,
    LINK_UNSUPPORTED,
    NOT_COMBINABLE,
    NOT_PUSHED,
    PLUGIN_MISSING,
    REMOTE_UNREACHABLE,
    DataUnavailable,
    DvcWorkspace,
    after_build_check,
    default_build_command,
)


@pytest.fixture
def ml(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> tuple[DvcRepo, dict[str, str]]:
    """A private copy of the standard history (see dvcrepos.ml_history)."""
    tpl, commits = template(tmp_path_factory)
    return tpl.copy_to(tmp_path / "u"), commits


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "sessions" / "s1"


@contextlib.contextmanager
def opened(repo_path: Path, session_dir: Path, rev: str, **options: object) -> Iterator[DvcWorkspace]:
    """A DvcWorkspace opened at `rev`, closed on the way out."""
    ws = DvcWorkspace(repo_path, session_dir, **options)  # type: ignore[arg-type]
    ws.open(rev)
    try:
        yield ws
    finally:
        ws.close()


def read(ws: DvcWorkspace, rel: str) -> str:
    return (ws.path / rel).read_text()


def build(ws: DvcWorkspace, command: str) -> None:
    res = run_build(BuildConfig(command=command), ws.path, ws.session_dir / "build.log", env=ws.env())
    assert res.ok, res.tail or Path(res.log or "").read_text()


def test_code_a_with_data_b_and_back(ml, session_dir) -> None:
    repo, c = ml
    with open(repo.path / ".dvc" / "config.local", "a") as f:  # the user's own link type is not used
        f.write("    type = hardlink\n    shared = group\n")
    before = snapshot(repo.path)
    with opened(repo.path, session_dir, rev=c["codeV2"]) as ws:
        conf = ws.path / ".dvc" / "config.local"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600
        text = conf.read_text()
        assert f"dir = {repo.cache.resolve()}" in text and f"url = {repo.remote.resolve()}" in text
        assert "reflink,copy" in text and "hardlink" not in text and "shared = group" in text
        assert str(session_dir / "dvc-site") in text

        ws.checkout(c["codeV2"], data_rev=c["init"])
        assert read(ws, "train.py") == repo.git("show", f"{c['codeV2']}:train.py")
        assert read(ws, "data/raw.txt") == "alpha\n" and read(ws, "data/labels.txt") == "L1\n"
        # Never the data revision's dvc.lock: the code revision's stays.
        assert read(ws, "dvc.lock") == repo.git("show", f"{c['codeV2']}:dvc.lock")
        assert ws.step_info["overlaid"] == ["data/labels.txt.dvc", "data/raw.txt.dvc"]
        assert ws.inputs()["data/raw.txt"].source == "data/raw.txt.dvc"

        ws.checkout(c["codeV2"])  # back to the code revision's own data
        assert read(ws, "data/raw.txt") == "bravo\n"
        assert repo.git("-C", str(ws.path), "status", "--porcelain") == ""

        ws.data_paths = ("data/labels.txt",)  # a data axis over the labels only
        ws.checkout(c["both"], data_rev=c["init"])
        assert read(ws, "data/labels.txt") == "L1\n" and read(ws, "data/raw.txt") == "charlie\n"
        assert ws.step_info["overlaid"] == ["data/labels.txt.dvc"]
    assert not ws.path.exists() and not (session_dir / "dvc-site").exists()
    assert snapshot(repo.path) == before


def test_repro_trains_on_the_overlaid_data_and_build_cache_round_trip(ml, session_dir) -> None:
    repo, c = ml
    cache = BuildCache(session_dir.parent.parent / "cache")
    with opened(repo.path, session_dir, rev=c["codeV2"]) as ws:
        ws.checkout(c["codeV2"], data_rev=c["init"])
        command = default_build_command(ws.path)
        assert command == "dvc repro"
        build(ws, command)
        assert read(ws, "model.txt") == "v2:alpha:L1:1\n"
        assert after_build_check(ws) == []

        data = {p: i.hash for p, i in ws.inputs().items()}
        key = step_key(repo.path, c["codeV2"], data, command)
        assert not cache.lookup(key)
        outputs = dvc_outputs(ws.path)
        assert outputs == ["metrics.json", "model.txt"]
        cache.store(key, ws.path, outputs)
        assert cache.lookup(key) and key != step_key(repo.path, c["codeV2"], None, command)

        ws.checkout(c["codeV2"], data_rev=c["init"])  # the model of codeV2's own lock again
        assert read(ws, "model.txt") != "v2:alpha:L1:1\n"
        assert cache.restore(key, ws.path) == outputs
        assert read(ws, "model.txt") == "v2:alpha:L1:1\n"


def test_commit_before_dvc_init_is_code_only(ml, session_dir) -> None:
    repo, c = ml
    with opened(repo.path, session_dir, rev=c["pre"]) as ws:
        ws.checkout(c["pre"])
        assert ws.step_info == {"dvc": False}
        assert sorted(p.name for p in ws.path.iterdir() if p.name != ".git") == [".dvc", "README.md"]
        assert after_build_check(ws) == []
        with pytest.raises(DataUnavailable) as exc:
            ws.checkout(c["pre"], data_rev=c["init"])
        assert exc.value.cause == NOT_COMBINABLE
        ws.checkout(c["dataB"])  # config.local survived the clean
        assert read(ws, "data/raw.txt") == "bravo\n"


def test_not_pushed_names_file_revision_and_cause(ml, session_dir) -> None:
    repo, c = ml
    repo.cache_object(repo.md5_of("data/raw.txt.dvc", c["unpushed"])).unlink()
    with opened(repo.path, session_dir, rev=c["unpushed"]) as ws:
        with pytest.raises(DataUnavailable) as exc:
            ws.checkout(c["labels"], data_rev=c["unpushed"])
        err = exc.value
        assert (err.path, err.rev, err.cause) == ("data/raw.txt", c["unpushed"], NOT_PUSHED)
        msg = str(err)
        assert "data/raw.txt" in msg and c["unpushed"][:10] in msg and "not pushed" in msg and "\n" not in msg


def test_unreachable_remote(ml, session_dir) -> None:
    repo, c = ml
    repo.cache_object(repo.md5_of("data/raw.txt.dvc", c["dataB"])).unlink()
    shutil.rmtree(repo.remote)
    with opened(repo.path, session_dir, rev=c["dataB"]) as ws:
        with pytest.raises(DataUnavailable) as exc:
            ws.checkout(c["dataB"])
        assert (exc.value.path, exc.value.rev, exc.value.cause) == ("data/raw.txt", c["dataB"], REMOTE_UNREACHABLE)
        assert str(repo.remote.resolve()) in str(exc.value)


def test_fetch_restores_an_object_missing_from_the_cache(ml, session_dir) -> None:
    repo, c = ml
    obj = repo.cache_object(repo.md5_of("data/raw.txt.dvc", c["dataB"]))
    obj.unlink()
    with opened(repo.path, session_dir, rev=c["dataB"]) as ws:
        ws.checkout(c["dataB"])
        assert ws.step_info["fetched"] and read(ws, "data/raw.txt") == "bravo\n" and obj.is_file()


def test_in_place_write_leaves_the_user_cache_intact(ml, session_dir) -> None:
    repo, c = ml
    md5 = repo.md5_of("data/raw.txt.dvc", c["dataB"])
    obj = repo.cache_object(md5)
    with opened(repo.path, session_dir, rev=c["dataB"]) as ws:
        ws.checkout(c["dataB"])
        build(ws, "echo corrupted > data/raw.txt")  # truncates and rewrites the same inode
        assert read(ws, "data/raw.txt") == "corrupted\n"
        assert obj.read_text() == "bravo\n" and hashlib.md5(obj.read_bytes()).hexdigest() == md5
        assert after_build_check(ws) == ["data/raw.txt"]


def test_default_cache_dir_inside_the_repo(ml, session_dir) -> None:
    repo, c = ml
    os.rename(repo.cache, repo.path / ".dvc" / "cache")
    (repo.path / ".dvc" / "config.local").unlink()
    with opened(repo.path, session_dir, rev=c["dataB"]) as ws:
        assert f"dir = {(repo.path / '.dvc' / 'cache').resolve()}" in (ws.path / ".dvc" / "config.local").read_text()
        ws.checkout(c["dataB"])
        assert read(ws, "data/raw.txt") == "bravo\n" and not ws.step_info["fetched"]


def test_unsupported_link_type(ml, session_dir) -> None:
    repo, c = ml
    with opened(repo.path, session_dir, link_type="reflink", rev=c["dataB"]) as ws:  # ext4/tmpfs: no reflinks
        try:
            ws.checkout(c["dataB"])
        except DataUnavailable as exc:
            assert exc.cause == LINK_UNSUPPORTED and "reflink,copy" in str(exc)
        else:
            pytest.skip("this filesystem supports reflinks")


def test_missing_plugin_for_the_remote(ml, session_dir) -> None:
    repo, c = ml
    repo.cache_object(repo.md5_of("data/raw.txt.dvc", c["dataB"])).unlink()
    with open(repo.path / ".dvc" / "config.local", "a") as f:
        f.write("['remote \"store\"']\n    url = s3://bisector-test-bucket/data\n")
    with opened(repo.path, session_dir, rev=c["dataB"]) as ws:
        with pytest.raises(DataUnavailable) as exc:
            ws.checkout(c["dataB"])
        if exc.value.cause != PLUGIN_MISSING:
            pytest.skip("dvc-s3 is installed here")  # then the bucket is unreachable instead
        assert exc.value.path == "data/raw.txt" and "dvc[s3]" in str(exc.value)


def test_hardlinks_across_filesystems(ml) -> None:
    repo, c = ml
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == repo.cache.stat().st_dev:
        pytest.skip("no second filesystem")
    session_dir = Path(tempfile.mkdtemp(dir=shm)) / "s1"
    ws = DvcWorkspace(repo.path, session_dir, link_type="hardlink")
    ws.open(c["dataB"])
    try:
        with pytest.raises(DataUnavailable) as exc:
            ws.checkout(c["dataB"])
        assert exc.value.cause == CROSS_DEVICE and "reflink,copy" in str(exc.value)
    finally:
        ws.close()
        shutil.rmtree(session_dir.parent, ignore_errors=True)


def test_folder_input_with_an_entry_never_pushed(ml, session_dir) -> None:
    repo, c = ml
    entry = hashlib.md5(b"image c\n").hexdigest()
    repo.cache_object(entry).unlink()
    (repo.remote / "files" / "md5" / entry[:2] / entry[2:]).unlink()
    with opened(repo.path, session_dir, rev=c["images"]) as ws:
        with pytest.raises(DataUnavailable) as exc:
            ws.checkout(c["images"])
        assert (exc.value.path, exc.value.rev, exc.value.cause) == ("data/images", c["images"], NOT_PUSHED)
        ws.checkout(c["both"])  # the folder is not an input there: fine
        assert not (ws.path / "data" / "images").exists()
