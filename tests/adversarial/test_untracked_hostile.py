"""`--with-untracked` against hostile revisions and probes: nothing is written through a symlink
out of the step's work tree, and the user's files are never the ones a probe writes to."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fixtures.cli import bisector
from tests.fixtures.repos import GitRepo, snapshot


def test_a_revision_symlink_or_a_probe_symlink_never_carries_the_copy_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine\n")
    repo = GitRepo.init(tmp_path / "repo")
    repo.write({".gitignore": "assets/model.bin\n"})
    shas = [repo.commit({"n.txt": "0\n"}, "start")]
    os.symlink(outside, repo.path / "assets")  # a revision where `assets` leads out of the checkout
    repo.git("add", "assets")
    shas.append(repo.commit({"n.txt": "1\n"}, "assets is a symlink"))
    repo.git("rm", "-q", "assets")
    (repo.path / "assets").mkdir()
    (repo.path / "assets" / "model.bin").write_text("weights\n")
    for i in range(2, 9):
        shas.append(repo.commit({"n.txt": f"{i}\n", "state.txt": "broken\n" if i >= 2 else "ok\n"}, f"c{i}"))
    probe = tmp_path / "check.sh"  # reads the weights when they are there, then swaps them for a symlink out
    probe.write_text(f"#!/bin/sh\necho $BISECTOR_COMMIT >> {tmp_path}/tested\ncat assets/model.bin >/dev/null 2>&1\n"
                     f"[ -L assets ] || {{ rm -rf assets/model.bin; ln -s {outside}/keep.txt assets/model.bin; }}\n"
                     "! grep -q broken state.txt\n")
    probe.chmod(0o755)
    before = snapshot(repo.path)
    r = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", str(probe),
                 "--with-untracked", "assets/model.bin")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{shas[2]} is the first bad commit" in r.stdout
    assert shas[1] in (tmp_path / "tested").read_text().split()  # the revision where `assets` leads out
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "mine\n"
    assert (repo.path / "assets" / "model.bin").read_text() == "weights\n"
    assert snapshot(repo.path) == before
