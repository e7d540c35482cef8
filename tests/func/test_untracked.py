"""`--with-untracked PATH`: a dataset or weights that live untracked in the user's checkout (as
`git bisect` finds them in place) are copied into every step, never written back, and a copy a
probe changed is made again before the next step."""

from __future__ import annotations

from pathlib import Path

from bisector.build.run import BuildConfig
from bisector.core.model import Verdict
from bisector.io.untracked import untracked_inputs
from bisector.run.step import execute_step
from bisector.run.wiring import make_suite, make_workspace
from tests.fixtures.cli import bisector, journal_events
from tests.fixtures.repos import GitRepo, snapshot

# Good while the code's scale times the untracked data's value is 10; writes into the data too.
PROBE = ('#!/bin/sh\nv=$(cat data/value.txt)\ns=$(cat scale.txt)\necho scribble >> data/value.txt\n'
         'echo junk > data/new.txt\ntest $((v * s)) -eq 10\n')


def project(tmp_path: Path, n: int, culprit: int) -> tuple[GitRepo, list[str]]:
    repo = GitRepo.init(tmp_path / "repo")
    repo.write({".gitignore": "data/\n", "check.sh": PROBE})
    (repo.path / "check.sh").chmod(0o755)
    shas = [repo.commit({"scale.txt": "5\n" if i < culprit else "7\n", "n.txt": f"{i}\n"}, f"c{i}")
            for i in range(1, n + 1)]
    (repo.path / "data").mkdir()
    (repo.path / "data" / "value.txt").write_text("2\n")
    return repo, shas


def test_untracked_data_is_copied_into_every_step_and_never_written_back(tmp_path: Path) -> None:
    repo, shas = project(tmp_path, 12, culprit=8)
    before = snapshot(repo.path)
    r = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", "./check.sh")
    assert r.returncode == 1, r.stdout + r.stderr  # without it, no step has the data: the good bound fails
    r = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", "./check.sh",
                 "--with-untracked", "data/")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{shas[7]} is the first bad commit" in r.stdout  # every step read "2": each scribble was undone
    assert snapshot(repo.path) == before
    assert (repo.path / "data" / "value.txt").read_text() == "2\n" and not (repo.path / "data" / "new.txt").exists()
    assert "Untracked input data: 1 files, 0.0 MB" in r.stdout + r.stderr
    start = next(e for e in journal_events(repo.path) if e["event"] == "start")
    assert start["untracked"] == ["data"]
    assert untracked_inputs(repo.path, ["./data/", "data", "data//"]) == ["data"]


def test_untracked_from_the_config_file_and_a_revision_that_tracks_the_path_keeps_its_own(tmp_path: Path) -> None:
    repo, shas = project(tmp_path, 6, culprit=99)
    # A later revision tracks a file at that path: its own version wins there.
    repo.write({".gitignore": "", "data/value.txt": "5\n"})
    repo.git("add", "-f", ".gitignore", "data/value.txt")
    repo.git("commit", "-q", "-m", "track the data")
    shas.append(repo.rev("HEAD"))
    repo.git("rm", "-q", "--cached", "data/value.txt")
    repo.write({".gitignore": "data/\n", "data/value.txt": "2\n"})
    repo.git("add", ".gitignore")
    repo.git("commit", "-q", "-m", "untrack it again")
    shas.append(repo.rev("HEAD"))
    (repo.path / "bisector.toml").write_text('[workspace]\nuntracked = ["data"]\n[search]\nbounds = "check"\n')
    r = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", "./check.sh")
    assert r.returncode == 1, r.stdout + r.stderr  # the last commit is good again: bounds do not reproduce
    seen = {e["commit"]: e["verdict"] for e in journal_events(repo.path) if e.get("event") == "step"}
    assert seen.get(shas[-1]) == "good"  # the user's "2" is back once the revision stops tracking the file
    r = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[-2], "--probe", "./check.sh")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{shas[6]} is the first bad commit" in r.stdout  # 5 * 5: the tracked version, not the user's "2"


def test_untracked_paths_that_leave_the_checkout_or_do_not_exist_are_one_error_line(tmp_path: Path) -> None:
    repo, shas = project(tmp_path, 3, culprit=2)
    for bad, why in (("../outside", "inside your checkout"), ("/etc", "inside your checkout"),
                     (".git", "inside your checkout"), ("nope/", "no such file or folder"),
                     ("data/../../x", "inside your checkout"), ("./", "inside your checkout")):
        r = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", "./check.sh",
                     "--with-untracked", bad)
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.count("Error:") == 1 and why in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_an_untracked_input_gone_from_the_checkout_is_a_note_on_each_step(tmp_path: Path) -> None:
    """As on a worker whose machine has no copy: the step runs without it and says so."""
    repo, shas = project(tmp_path, 3, culprit=99)
    ws = make_workspace(repo.path, tmp_path / "session", untracked=["data"])
    (repo.path / "data" / "value.txt").unlink()
    (repo.path / "data").rmdir()
    suite = make_suite([{"type": "command", "run": "test ! -e data"}], repo.path, tmp_path / "frozen")
    try:
        ws.open(shas[0])
        result = execute_step(ws, suite, BuildConfig(), shas[1], 1, tmp_path / "logs")
    finally:
        ws.close()
    assert result.verdict is Verdict.GOOD
    assert any("untracked input data is not in the checkout" in n for n in result.notes), result.notes
