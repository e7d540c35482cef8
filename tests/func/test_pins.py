"""Pins in process: pin (verified), list, show, restore, @NAME revisions, broken files, lost commits (DVC data: tests/e2e)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bisector.core.errors import UsageError
from bisector.journal.read import list_journals, summarize
from bisector.review.pins.make import pin_from_session
from bisector.review.pins.store import (
    PINS_FILE, Pin, dumps, expand_rev, latest_ancestor_pin, load_pins, parse, resolve_pin,
)
from bisector.journal.reuse import find_reusable, reusable_observations
from tests.fixtures.cli import bisector
from tests.fixtures.repos import GitRepo, linear_history, snapshot, tree_sha as tree


def with_probe(repo: GitRepo) -> None:
    """bisector.toml and its probe in the user's checkout (untracked): bad when state.txt says broken."""
    repo.write({
        "check.sh": "grep -q broken state.txt && exit 1\nexit 0\n",
        "bisector.toml": '[probe]\nrun = "sh check.sh"\ntimeout = 30\n',
    })


def test_pin_verify_list_show_restore(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 6, culprit=4)
    with_probe(repo)
    before = snapshot(repo.path)
    res = bisector(repo.path, "pin", "tuesday", "--rev", shas[2], "--verify", "--note", "last good run")
    assert res.returncode == 0, res.stderr
    assert f"Pinned tuesday = {shas[2]}" in res.stdout and "verified good" in res.stdout
    assert snapshot(repo.path) == before  # verification ran in a throwaway worktree
    text = (repo.path / PINS_FILE).read_text()
    assert f'commit = "{shas[2]}"' in text and 'note = "last good run"' in text
    assert 'verdict = "good"' in text and "[pins.tuesday.probes.command]" in text
    assert "[pins.tuesday.environment]" in text and "torch = " in text and "python = " in text
    assert '"probe.run" = "sh check.sh"' in text
    # Deterministic: the writer gives back the same text for what it reads.
    assert dumps(load_pins(repo.path).values()) == text

    # A bad revision is refused by --verify (exit 1), and nothing is written.
    res = bisector(repo.path, "pin", "broken", "--rev", "main", "--verify")
    assert res.returncode == 1 and "is bad for the probe" in res.stderr
    assert "broken" not in load_pins(repo.path)
    # An existing name needs --force.
    res = bisector(repo.path, "pin", "tuesday", "--rev", shas[1])
    assert res.returncode == 2 and "pass --force" in res.stderr

    listed = bisector(repo.path, "pins")
    assert listed.returncode == 0 and "tuesday" in listed.stdout and shas[2][:10] in listed.stdout
    shown = bisector(repo.path, "pin", "show", "tuesday")
    assert shown.returncode == 0 and shown.stdout.startswith("[pins.tuesday]")

    # @NAME as a revision (the CLI expands it before resolving).
    assert expand_rev(repo.path, "@tuesday") == shas[2]
    assert expand_rev(repo.path, "@tuesday~1") == shas[2] + "~1"
    assert repo.rev(expand_rev(repo.path, "@tuesday~1")) == shas[1]
    assert expand_rev(repo.path, "main") == "main" and expand_rev(repo.path, "@{-1}") == "@{-1}"
    with pytest.raises(UsageError, match="no pin named 'monday'"):
        expand_rev(repo.path, "@monday")

    # restore: the same code tree in a new folder, which must be empty.
    dest = tmp_path / "restored"
    res = bisector(repo.path, "restore", "tuesday", str(dest))
    assert res.returncode == 0, res.stderr
    assert tree(dest) == tree(repo.path, shas[2])
    assert (dest / "state.txt").read_text() == "ok\n" and (dest / "n.txt").read_text() == "3\n"
    assert subprocess.run(["git", "-C", str(dest), "status", "--porcelain"], capture_output=True, text=True).stdout == ""
    res = bisector(repo.path, "restore", "tuesday", str(dest))
    assert res.returncode == 2 and "is not empty" in res.stderr
    assert snapshot(repo.path) == before

    res = bisector(repo.path, "pin", "rm", "tuesday")
    assert res.returncode == 0 and load_pins(repo.path) == {}


def test_broken_pins_file_names_the_line(repo: GitRepo) -> None:
    shas = linear_history(repo, 3, culprit=3)
    good = dumps([Pin("monday", shas[0]), Pin("tuesday", shas[1], note="x")])
    lines = good.splitlines()
    n = next(i for i, line in enumerate(lines, 1) if line == f'commit = "{shas[1]}"')
    lines[n - 1] = 'commit = "abc123"'
    (repo.path / ".bisector").mkdir()
    (repo.path / PINS_FILE).write_text("\n".join(lines) + "\n")
    res = bisector(repo.path, "pins")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f'Error: .bisector/pins.toml:{n}: pin "tuesday": commit must be a 40-hex sha '
        "(fix that line, or drop the pin with `bisector pin rm tuesday`)"
    ]
    # A TOML syntax error: tomllib's position.
    lines[n - 1] = "commit = "
    (repo.path / PINS_FILE).write_text("\n".join(lines) + "\n")
    res = bisector(repo.path, "pins")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert f".bisector/pins.toml:{n}: invalid TOML" in res.stderr
    # Field checks name the line of the field.
    text = good.replace('note = "x"', "note = 3")
    with pytest.raises(UsageError) as exc:
        parse(text)
    line = text.splitlines().index("note = 3") + 1
    assert str(exc.value).startswith(f'.bisector/pins.toml:{line}: pin "tuesday": note must be a string')
    with pytest.raises(UsageError, match=r"pins.toml:\d+: pin \"monday\": unknown field 'colour'"):
        parse(good.replace(f'commit = "{shas[0]}"', f'commit = "{shas[0]}"\ncolour = "red"'))


def test_pin_of_a_rewritten_commit_is_a_clear_error(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 4, culprit=4)
    assert bisector(repo.path, "pin", "gone", "--rev", shas[3]).returncode == 0
    # Rewrite history: drop the last commit and let git forget it.
    repo.git("reset", "-q", "--hard", shas[2])
    repo.git("reflog", "expire", "--expire=now", "--all")
    repo.git("gc", "-q", "--prune=now")
    for args in (["restore", "gone", str(tmp_path / "out")], ["pin", "show", "gone"]):
        res = bisector(repo.path, *args)
        assert res.returncode == 2, res.stderr
        assert res.stderr.strip().splitlines() == [
            f"Error: pin 'gone': commit {shas[3][:10]} no longer exists in this repository (history rewritten?): "
            "re-pin with `bisector pin gone --force --rev REV`, or drop it with `bisector pin rm gone`"
        ]
    with pytest.raises(UsageError, match="no longer exists"):
        resolve_pin(repo.path, "@gone")
    assert not (tmp_path / "out").exists()
    assert "commit missing" in bisector(repo.path, "pins").stdout


def test_latest_ancestor_pin(repo: GitRepo) -> None:
    shas = linear_history(repo, 6, culprit=6)
    repo.git("checkout", "-q", "-b", "side", shas[1])
    side = repo.commit({"side.txt": "x\n"}, "side work")
    repo.git("checkout", "-q", "main")
    for name, rev in (("old", shas[0]), ("newer", shas[3]), ("side", side), ("head", shas[5])):
        assert bisector(repo.path, "pin", name, "--rev", rev).returncode == 0
    pin = latest_ancestor_pin(repo.path, shas[5])
    assert pin is not None and pin.name == "newer"
    assert latest_ancestor_pin(repo.path, shas[0]) is None


def test_pin_from_session_and_reuse(repo: GitRepo) -> None:
    shas = linear_history(repo, 10, culprit=7)
    with_probe(repo)
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main")
    assert res.returncode == 0, res.stderr
    s = summarize(list_journals(repo.path)[-1])
    pin = pin_from_session(repo.path, s, "lastgood")
    assert pin.commit == shas[5]  # the culprit's parent, observed good
    assert pin.source == f"session {s.id}" and pin.probes["command"]["verdict"] == "good"
    assert load_pins(repo.path)["lastgood"].commit == shas[5]

    probes = s.start["config"]["probes"]
    reuse = reusable_observations(s, probes, build_config=s.start["config"]["build"], repo=repo.path)
    assert set(reuse) == {st.commit for st in s.steps}
    assert all(e.session == s.id for e in reuse.values())
    assert reusable_observations(s, {**probes, "stop_early": not probes["stop_early"]}) == {}
    # A commit with the same tree (a rebased copy) reuses the observation; another tree does not.
    tested = next(c for c in reuse if c in shas[1:9])
    parent = repo.rev(f"{tested}~1")
    copy = repo.git("commit-tree", f"{tested}^{{tree}}", "-p", parent, "-m", "rebased copy").strip()
    found = find_reusable(repo.path, reuse, copy)
    assert found is not None and found.commit == copy and found.reused_commit == tested
    assert found.verdict == reuse[tested].verdict
    empty_tree = repo.git("mktree", input="").strip()
    other = repo.git("commit-tree", empty_tree, "-m", "unrelated").strip()
    assert find_reusable(repo.path, reuse, other) is None
