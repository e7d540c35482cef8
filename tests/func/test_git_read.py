"""io.git through gitpython: repository discovery, commit metadata in any encoding, blobs, parents."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bisector.core.errors import GitError, UsageError
from bisector.io.git import Blobs, commits, parents, repo_root, show
from bisector.io.commits import commit_info
from tests.fixtures.repos import GitRepo


def _commit_raw(repo: GitRepo, message: bytes, *, encoding: str | None = None) -> str:
    """Commit with a message given as raw bytes (git stores them as they are)."""
    (repo.path / "msg").write_bytes(message)
    args = ["git", "-C", str(repo.path)]
    if encoding:
        args += ["-c", f"i18n.commitEncoding={encoding}"]
    env = {**os.environ, "GIT_AUTHOR_DATE": "@1767225600 +0200", "GIT_COMMITTER_DATE": "@1767225600 +0200"}
    subprocess.run([*args, "commit", "-q", "--allow-empty", "--cleanup=verbatim", "-F", str(repo.path / "msg")],
                   check=True, capture_output=True, env=env)
    (repo.path / "msg").unlink()
    return repo.rev("HEAD")


def test_a_latin1_message_with_its_encoding_header_is_decoded(repo: GitRepo) -> None:
    sha = _commit_raw(repo, "Réglage du modèle\n\ncorps\n".encode("latin-1"), encoding="ISO-8859-1")
    info = commit_info(repo.path, [sha])[sha]
    assert info.subject == "Réglage du modèle"
    assert info.author == "Test Author <author@example.com>"
    assert info.date == "2026-01-01T02:00:00+02:00"  # the author's own time zone, as git log --date=iso-strict


def test_latin1_bytes_without_a_header_do_not_crash(repo: GitRepo) -> None:
    sha = _commit_raw(repo, "caf\xe9 au lait\n".encode("latin-1"))
    subject = commit_info(repo.path, [sha])[sha].subject
    assert subject.startswith("caf") and subject.endswith(" au lait")  # the bad byte replaced


@pytest.mark.parametrize("byte", ["\x1f", "\x1e"])
def test_separator_bytes_in_a_subject_are_kept(repo: GitRepo, byte: str) -> None:
    first = repo.commit({"a": "1"}, "first")
    sha = _commit_raw(repo, f"odd{byte}subject\n".encode())
    info = commit_info(repo.path, [sha, first])
    assert info[sha].subject == f"odd{byte}subject"
    assert info[first].subject == "first"
    assert list(info) == [sha, first]


def test_subject_is_the_first_paragraph_on_one_line(repo: GitRepo) -> None:
    sha = repo.commit({"a": "1"}, "one\ntwo\n\nbody")
    assert commit_info(repo.path, [sha])[sha].subject == "one two"


def test_an_unknown_commit_is_a_git_error(repo: GitRepo) -> None:
    repo.commit({"a": "1"}, "first")
    with pytest.raises(GitError):
        commit_info(repo.path, ["0" * 40])


def test_blobs_at_many_revisions_through_one_reader(repo: GitRepo) -> None:
    a = repo.commit({"f.txt": "one\r\n", "dir/x": "x"}, "a")
    b = repo.commit({"f.txt": "two\n"}, "b")
    with Blobs(repo.path) as blobs:
        assert blobs.text(a, "f.txt") == "one\r\n"  # bytes as stored, CRLF kept
        assert blobs.text(b, "f.txt") == "two\n"
        assert blobs.text(b, "missing.txt") is None
        assert blobs.text(b, "dir") is None  # a folder is not a file
        assert blobs.text("nosuchrev", "f.txt") is None
    assert show(repo.path, a, "dir/x") == "x"


def test_parents_of_a_merge_a_root_and_a_plain_commit(repo: GitRepo) -> None:
    root = repo.commit({"a": "1"}, "root")
    repo.git("checkout", "-q", "-b", "side")
    side = repo.commit({"b": "1"}, "side")
    repo.git("checkout", "-q", "main")
    main = repo.commit({"c": "1"}, "main")
    repo.git("merge", "-q", "--no-ff", "-m", "merge", "side")
    merge = repo.rev("HEAD")
    assert parents(repo.path, merge) == [main, side]
    assert parents(repo.path, main) == [root]
    assert parents(repo.path, root) == []


def test_repo_root_from_a_subfolder_and_outside_a_repository(repo: GitRepo, tmp_path: Path) -> None:
    repo.commit({"sub/deep/f": "1"}, "a")
    assert repo_root(repo.path / "sub" / "deep") == repo.path.resolve()
    outside = tmp_path / "plain"
    outside.mkdir()
    with pytest.raises(UsageError, match="not a git repository"):
        repo_root(outside)
    with pytest.raises(UsageError, match="not a directory"):
        repo_root(tmp_path / "missing")


def test_a_bare_repository_has_no_checkout_to_run_in(repo: GitRepo, tmp_path: Path) -> None:
    repo.commit({"f": "1"}, "a")
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(bare)], check=True)
    with pytest.raises(UsageError, match="not a git repository"):
        repo_root(bare)


def test_many_commits_in_one_read_keep_their_own_metadata(repo: GitRepo) -> None:
    shas = [repo.commit({"f": str(i)}, f"subject {i}\n\nbody {i}") for i in range(5)]
    got = commits(repo.path, reversed(shas))
    assert list(got) == shas[::-1]
    assert [got[s].subject for s in shas] == [f"subject {i}" for i in range(5)]
    assert all(got[s].sha == s and got[s].author.endswith(">") for s in shas)
