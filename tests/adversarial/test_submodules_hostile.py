"""Hostile `.gitmodules` of an old revision: no URL of the repository is ever cloned or fetched,
and a submodule name or path cannot lead a checkout out of the step's work tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.fixtures.cli import bisector, journal_events
from tests.fixtures.repos import GitRepo, linear_history, snapshot


def test_an_old_revisions_gitmodules_cannot_fetch_or_escape(repo: GitRepo, tmp_path: Path) -> None:
    evil = GitRepo.init(tmp_path / "evil")
    evil_sha = evil.commit({"payload.sh": "#!/bin/sh\ntouch /tmp/pwned\n"}, "payload")
    evil.git("config", "uploadpack.allowAnySHA1InWant", "true")
    shas = linear_history(repo, 4, culprit=99)
    # Three gitlinks: a name that climbs out of .git/modules, a path that climbs out of the work
    # tree, and a plain name the user never cloned; every URL is the attacker's repository.
    repo.write({".gitmodules": "".join(
        f'[submodule "{name}"]\n\tpath = {path}\n\turl = {evil.path}\n'
        for name, path in (("../../../../x", "vendor/a"), ("b", "../../outside"), ("c", "vendor/c")))})
    repo.git("add", ".gitmodules")
    for path in ("vendor/a", "vendor/c"):
        repo.git("update-index", "--add", "--cacheinfo", f"160000,{evil_sha},{path}")
    repo.git("commit", "-q", "-m", "submodules")
    shas.append(repo.rev("HEAD"))
    for i in range(4):  # (not `git add -A`: it would stage the gitlinks' removal)
        repo.write({"state.txt": "ok\n" if i < 1 else "broken\n", "n.txt": f"after {i}\n"})
        repo.git("add", "state.txt", "n.txt")
        repo.git("commit", "-q", "-m", f"after {i}")
        shas.append(repo.rev("HEAD"))
    report = tmp_path / "seen.txt"
    probe = tmp_path / "check.sh"
    probe.write_text(f"#!/bin/sh\nfind vendor/a vendor/c -mindepth 1 2>/dev/null | wc -l >> {report}\ngrep -qx ok state.txt\n")
    probe.chmod(0o755)
    before = snapshot(repo.path)
    r = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", str(probe))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{shas[6]} is the first bad commit" in r.stdout
    assert set(report.read_text().split()) == {"0"}  # nothing of the attacker's repository was checked out
    assert not (tmp_path / "outside").exists() and not (repo.path.parent / "outside").exists()
    assert subprocess.run(["git", "-C", str(repo.path), "cat-file", "-e", evil_sha]).returncode != 0  # never fetched
    assert snapshot(repo.path) == before
    states = [e["build"].get("data", {}).get("submodules") for e in journal_events(repo.path)
              if e.get("event") == "step" and e.get("commit") in shas[5:]]
    assert states and all(s == {"vendor/c": s["vendor/c"]} and "not cloned" in s["vendor/c"] for s in states), states


def test_a_probe_that_swaps_a_submodule_folder_for_a_symlink_gets_nothing_written_through_it(tmp_path: Path) -> None:
    from tests.func.test_submodules import app_with_lib

    app, _, shas, _ = app_with_lib(tmp_path, 10, bump=7)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine\n")
    probe = tmp_path / "check.sh"
    probe.write_text(f"#!/bin/sh\nv=$(cat vendor/lib/api.txt)\nrm -rf vendor/lib; ln -s {outside} vendor/lib\n"
                     "test \"$v\" = 'api v1'\n")
    probe.chmod(0o755)
    r = bisector(app.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", str(probe))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{shas[6]} is the first bad commit" in r.stdout
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "mine\n"
