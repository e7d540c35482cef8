"""Pins and past sessions wired into `bisector run`: @NAME, no --good, --pin-good, --from, manual undo."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.fixtures.repos import GitRepo, linear_history
from tests.fixtures.cli import BISECTOR, bisector, completed_runs, journal_events, probe_script


def test_pins_as_good_bound(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 16, culprit=11)
    probe = probe_script(tmp_path)
    res = bisector(repo.path, "pin", "monday", "--rev", shas[2], "--note", "last known good")
    assert res.returncode == 0, res.stderr
    res = bisector(repo.path, "run", "--good", "@monday", "--bad", "main", "--probe", str(probe))
    assert res.returncode == 0, res.stderr
    assert f"{shas[10]} is the first bad commit" in res.stdout
    assert journal_events(repo.path)[0]["goods"] == [shas[2]]
    # No --good: the most recent pin before the bad revision is offered.
    res = bisector(repo.path, "run", "--bad", "main", "--probe", str(probe), "--pin-good", "friday")
    assert res.returncode == 0, res.stderr
    assert "using pin @monday" in res.stderr
    assert "Pinned @friday" in res.stdout
    pins = bisector(repo.path, "pins")
    assert "friday" in pins.stdout and "monday" in pins.stdout
    show = bisector(repo.path, "pin", "show", "friday")
    assert shas[9] in show.stdout  # the culprit's parent, observed good
    res = bisector(repo.path, "run", "--good", "@nosuchpin", "--bad", "main", "--probe", str(probe))
    assert res.returncode == 2 and res.stderr.startswith("Error: ") and "nosuchpin" in res.stderr


def test_from_reuses_valid_observations(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 30, culprit=20)
    probe = probe_script(tmp_path)
    first = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe))
    assert first.returncode == 0, first.stderr
    session = journal_events(repo.path)[0]["session"]
    runs = len(completed_runs(tmp_path))
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe), "--from", session)
    assert res.returncode == 0, res.stderr
    assert f"{shas[19]} is the first bad commit" in res.stdout
    assert len(completed_runs(tmp_path)) == runs  # nothing probed again
    steps = [e for e in journal_events(repo.path) if e["event"] == "step"]
    assert steps and all(e.get("reused_from") for e in steps)


def test_manual_probe_with_undo(repo: GitRepo) -> None:
    shas = linear_history(repo, 12, culprit=8)
    proc = subprocess.Popen([*BISECTOR, "run", "--good", shas[0], "--bad", "main", "--probe", "manual"],
                            cwd=repo.path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin and proc.stderr and proc.stdout
    asked = []
    for line in proc.stderr:
        if line.startswith("== step "):
            sha = line.split("revision ")[1].split()[0]
            asked.append(sha)
            right = "bad" if shas.index(sha) >= 7 else "good"
            wrong = "good" if right == "bad" else "bad"
            answer = {3: wrong, 4: "undo"}.get(len(asked), right)
            proc.stdin.write(answer + "\n")
            proc.stdin.flush()
    out = proc.stdout.read()
    assert proc.wait(60) == 0, out
    assert f"{shas[7]} is the first bad commit" in out
    events = journal_events(repo.path)
    undo = [e for e in events if e["event"] == "undo"]
    assert len(undo) == 1
    undone = next(e for e in events if e["event"] == "step" and e["step"] == undo[0]["step"])
    assert undone["commit"] == asked[2]
    assert asked[4] == asked[2]  # the retracted question is asked again
    replay = bisector(repo.path, "replay", str(sorted((repo.path / ".bisector" / "sessions").glob("*.jsonl"))[-1]))
    assert replay.returncode == 0, replay.stdout + replay.stderr
