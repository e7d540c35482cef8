"""Hostile git-lfs content of an old revision: its `.lfsconfig` cannot move the downloads."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.cli import bisector
from tests.fixtures.lfs import lfs_repo, lfs_server, needs_lfs, oid
from tests.fixtures.repos import snapshot

pytestmark = needs_lfs


def test_an_old_revisions_lfsconfig_cannot_send_the_downloads_to_another_server(tmp_path: Path) -> None:
    v1, v2 = b"weights v1", b"weights v2"
    with lfs_server({oid(v1): v1, oid(v2): v2}) as theirs, lfs_server({oid(v1): b"evil", oid(v2): b"evil"}) as evil:
        repo, _ = lfs_repo(tmp_path / "repo", 1, culprit=99)
        good = repo.rev("HEAD")
        # An old revision points git-lfs at another server; the user's checkout no longer does.
        shas = [repo.commit({".lfsconfig": f'[lfs]\n\turl = "{evil.url}/info/lfs"\n', "log.txt": "x\n"}, "mirror")]
        shas += [repo.commit({"log.txt": f"epoch {i}\n", **({"model.bin": v2} if i == 4 else {})}, f"train {i}")
                 for i in range(2, 7)]
        shas.append(repo.commit({".lfsconfig": None}, "drop the mirror"))
        for p in (repo.path / ".git" / "lfs" / "objects").rglob(oid(v1)):
            p.unlink()
        repo.git("remote", "add", "origin", theirs.url)
        before = snapshot(repo.path)
        r = bisector(repo.path, "run", "--good", good, "--bad", shas[-1], "--probe", "./check.sh")
        assert r.returncode == 0, r.stderr + r.stdout
        assert f"{shas[3]} is the first bad commit" in r.stdout
        assert evil.requests == []
        assert ("GET", f"/objects/{oid(v1)}") in theirs.requests
    assert snapshot(repo.path) == before
