"""Model weights in git-lfs, as ML repositories keep them: the real git-lfs client, a real LFS
server (HTTP, the batch API) and the user's LFS store, which bisector reads and never writes."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.cli import bisector
from tests.fixtures.lfs import lfs_repo, lfs_server, needs_lfs, oid, store_files
from tests.fixtures.repos import snapshot

pytestmark = needs_lfs

V1, V2 = b"weights v1", b"weights v2"


def found(stdout: str) -> str:
    return next(line.split()[0] for line in stdout.splitlines() if line.endswith("is the first bad commit"))


def test_weights_in_the_users_lfs_store_are_linked_not_copied_and_the_store_is_not_written(tmp_path: Path) -> None:
    repo, shas = lfs_repo(tmp_path / "repo", 12, culprit=7)
    before, store = snapshot(repo.path), store_files(repo.path / ".git")
    r = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", "./check.sh")
    assert r.returncode == 0, r.stderr + r.stdout
    assert found(r.stdout) == shas[6]
    assert snapshot(repo.path) == before
    assert store_files(repo.path / ".git") == store  # no object, log or tmp file of git-lfs in the user's .git/lfs
    ours = store_files(repo.path / ".git" / "bisector")
    linked = {v for k, v in ours.items() if k.startswith("objects/")}
    assert linked == {v for k, v in store.items() if k.startswith("objects/")}  # same content, same inodes


def test_git_lfs_set_up_in_the_repository_config_only_smudges_in_the_clone_too(tmp_path: Path) -> None:
    """`git lfs install --local`: the filter is in .git/config, not the global config; without
    it the steps would see LFS pointers (every step bad)."""
    repo, shas = lfs_repo(tmp_path / "repo", 10, culprit=4, local=True)
    assert "filter" not in (Path.home() / ".gitconfig").read_text()
    r = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", "./check.sh")
    assert r.returncode == 0, r.stderr + r.stdout
    assert found(r.stdout) == shas[3]
    assert bisector(repo.path, "pin", "add", "ok", "--rev", shas[0]).returncode == 0
    r = bisector(repo.path, "restore", "ok", str(tmp_path / "copy"))
    assert r.returncode == 0, r.stderr + r.stdout
    assert (tmp_path / "copy" / "model.bin").read_bytes() == V1


def test_weights_never_fetched_are_downloaded_from_the_users_lfs_server(tmp_path: Path) -> None:
    repo, shas = lfs_repo(tmp_path / "repo", 12, culprit=7)
    # As after `git clone` + `git lfs pull`: only the checked-out revision's weights are local.
    for p in (repo.path / ".git" / "lfs" / "objects").rglob(oid(V1)):
        p.unlink()
    with lfs_server({oid(V1): V1, oid(V2): V2}) as server:
        repo.git("remote", "add", "origin", server.url)
        before, store = snapshot(repo.path), store_files(repo.path / ".git")
        r = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", "./check.sh")
        assert r.returncode == 0, r.stderr + r.stdout
        assert found(r.stdout) == shas[6]
        assert ("GET", f"/objects/{oid(V1)}") in server.requests
        assert ("GET", f"/objects/{oid(V2)}") not in server.requests  # the local one was used
    assert snapshot(repo.path) == before
    assert store_files(repo.path / ".git") == store  # downloaded into bisector's store, not the user's
    assert any(k.endswith(oid(V1)) for k in store_files(repo.path / ".git" / "bisector"))
    # `bisector cache` shows the store (the download is its own bytes; the rest links), `--prune` empties it.
    shown = bisector(repo.path, "cache")
    assert shown.returncode == 0 and "git-lfs store: 2 objects, 0.0 MB of their own" in shown.stdout, shown.stdout
    pruned = bisector(repo.path, "cache", "--prune")
    assert pruned.returncode == 0 and "Removed 2 git-lfs objects" in pruned.stdout, pruned.stdout
    assert not [k for k in store_files(repo.path / ".git" / "bisector") if k.startswith("objects/")]
    assert store_files(repo.path / ".git") == store


def test_weights_neither_local_nor_on_the_server_are_one_error_line_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    repo, shas = lfs_repo(tmp_path / "repo", 8, culprit=5)
    for p in (repo.path / ".git" / "lfs" / "objects").rglob(oid(V1)):
        p.unlink()
    with lfs_server({oid(V2): V2}) as server:  # never pushed
        repo.git("remote", "add", "origin", server.url)
        before = snapshot(repo.path)
        r = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", "./check.sh")
    assert r.returncode == 2, r.stderr + r.stdout
    err = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(err) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "git-lfs could not get model.bin" in err[0] and "git lfs fetch --all" in err[0]
    assert server.url.split("/team")[0] in err[0]
    assert snapshot(repo.path) == before


def test_restore_of_a_pin_brings_its_weights_local_or_from_the_users_lfs_server(tmp_path: Path) -> None:
    repo, shas = lfs_repo(tmp_path / "repo", 4, culprit=3)
    assert bisector(repo.path, "pin", "add", "v1-ok", "--rev", shas[0]).returncode == 0
    r = bisector(repo.path, "restore", "v1-ok", str(tmp_path / "local"))
    assert r.returncode == 0, r.stderr + r.stdout
    assert (tmp_path / "local" / "model.bin").read_bytes() == V1
    # The weights of the pin are no longer local (a fresh clone + `git lfs pull` of main).
    for p in (repo.path / ".git" / "lfs" / "objects").rglob(oid(V1)):
        p.unlink()
    with lfs_server({oid(V1): V1, oid(V2): V2}) as server:
        repo.git("remote", "add", "origin", server.url)
        store = store_files(repo.path / ".git")
        r = bisector(repo.path, "restore", "v1-ok", str(tmp_path / "fetched"))
        assert r.returncode == 0, r.stderr + r.stdout
        assert ("GET", f"/objects/{oid(V1)}") in server.requests
    assert (tmp_path / "fetched" / "model.bin").read_bytes() == V1
    assert store_files(repo.path / ".git") == store
