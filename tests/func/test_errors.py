"""Every bad input is one line `Error: ...` naming the fix, exit code 2, no traceback."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest

from tests.fixtures.cli import CliResult
from tests.fixtures.cli import bisector as run
from tests.fixtures.repos import GitRepo, linear_history


def assert_error(res: CliResult, fragment: str, code: int = 2) -> None:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("Error: ")
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in res.stderr


@pytest.fixture
def history(repo: GitRepo) -> list[str]:
    return linear_history(repo, 5, culprit=4)


PROBE = "test ! -e nothing"


def test_not_a_git_repository(tmp_path: Path) -> None:
    d = tmp_path / "plain"
    d.mkdir()
    assert_error(run(d, "run", "--good", "a", "--bad", "b", "--probe", PROBE), "not a git repository")


def test_unknown_revision(repo: GitRepo, history: list[str]) -> None:
    assert_error(run(repo.path, "run", "--good", "nosuchrev", "--bad", "main", "--probe", PROBE), "unknown good revision: nosuchrev")
    assert_error(run(repo.path, "run", "--good", history[0], "--bad", "v9.9", "--probe", PROBE), "unknown bad revision: v9.9")


def test_good_equals_bad(repo: GitRepo, history: list[str]) -> None:
    assert_error(run(repo.path, "run", "--good", "main", "--bad", history[-1], "--probe", PROBE), "good and bad are the same commit")


def test_bad_is_ancestor_of_good(repo: GitRepo, history: list[str]) -> None:
    assert_error(run(repo.path, "run", "--good", "main", "--bad", history[0], "--probe", PROBE), "did you swap --good and --bad?")


def test_empty_range(repo: GitRepo, history: list[str]) -> None:
    assert_error(
        run(repo.path, "run", "--good", history[0], "--bad", "main", "--probe", PROBE, "--", "no/such/dir"),
        "empty range",
    )


def test_missing_good(repo: GitRepo, history: list[str]) -> None:
    assert_error(run(repo.path, "run", "--bad", "main", "--probe", PROBE), "no good revision")


def test_probe_not_found(repo: GitRepo, history: list[str]) -> None:
    assert_error(run(repo.path, "run", "--good", history[0], "--bad", "main", "--probe", "no-such-program --x"), "probe command not found: no-such-program")
    assert_error(run(repo.path, "run", "--good", history[0], "--bad", "main", "--probe", "./missing.sh"), "probe command not found: ./missing.sh")


def test_probe_not_executable(repo: GitRepo, history: list[str], tmp_path: Path) -> None:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    assert_error(run(repo.path, "run", "--good", history[0], "--bad", "main", "--probe", str(script)), "not executable")


def test_no_probe(repo: GitRepo, history: list[str]) -> None:
    assert_error(run(repo.path, "run", "--good", history[0], "--bad", "main"), "no probe")


def test_build_command_missing(repo: GitRepo, history: list[str]) -> None:
    assert_error(run(repo.path, "run", "--good", history[0], "--bad", "main", "--probe", PROBE, "--build", " "), "the build command is empty")


def test_state_folder_not_writable(repo: GitRepo, history: list[str]) -> None:
    (repo.path / ".git" / "bisector").write_text("in the way\n")  # a file where the folder goes
    assert_error(run(repo.path, "run", "--good", history[0], "--bad", "main", "--probe", PROBE), "state folder not writable")


def test_session_already_running(repo: GitRepo, history: list[str]) -> None:
    lock = repo.path / ".git" / "bisector" / "lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write("4242")
        f.flush()
        assert_error(run(repo.path, "run", "--good", history[0], "--bad", "main", "--probe", PROBE), "already running")


def test_incompatible_journal(repo: GitRepo, history: list[str]) -> None:
    d = repo.path / ".bisector" / "sessions"
    d.mkdir(parents=True)
    (d / "20200101-000000-abcd.jsonl").write_text(json.dumps({"v": 99, "event": "start", "session": "x"}) + "\n")
    assert_error(run(repo.path, "run", "--good", history[0], "--bad", "main", "--probe", PROBE), "incompatible bisector")


def test_bad_config_file(repo: GitRepo, history: list[str]) -> None:
    (repo.path / "bisector.toml").write_text("[build\ncommand = 1\n")
    assert_error(run(repo.path, "run", "--good", history[0], "--bad", "main", "--probe", PROBE), "bisector.toml: invalid TOML")


def test_unknown_session_in_journal(repo: GitRepo, history: list[str]) -> None:
    assert_error(run(repo.path, "journal"), "no sessions")


def test_verbose_shows_traceback(repo: GitRepo, history: list[str]) -> None:
    res = run(repo.path, "-v", "run", "--good", "nosuchrev", "--bad", "main", "--probe", PROBE)
    assert res.returncode == 2
    assert "Traceback" in res.stderr and "Error: unknown good revision" in res.stderr
