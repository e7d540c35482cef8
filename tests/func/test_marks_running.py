"""`bisector good/bad/skip REV` from another process while `bisector run` runs: the mark is
journaled as a `mark` event, and the session takes it (a hand-marked step) before its next round."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.fixtures.cli import bisector, journal_events
from tests.fixtures.repos import GitRepo, linear_history

pytestmark = pytest.mark.func


def test_a_running_session_takes_marks_from_another_process(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    shas = linear_history(repo, 16, 11)
    flag = tmp_path / "marked"
    probe = tmp_path / "probe.sh"
    # At its first search step, the probe marks commit 12 bad from a second bisector process.
    probe.write_text(
        "#!/bin/sh\n"
        f"if [ ! -e {flag} ] && [ \"$(cat n.txt)\" != 16 ] && [ \"$(cat n.txt)\" != 1 ]; then\n"
        f"  touch {flag}; {sys.executable} -m bisector.cli bad -C {repo.path} {shas[11]} > {tmp_path}/mark.out || exit 200\n"
        "fi\n"
        "grep -q broken state.txt && exit 1\nexit 0\n"
    )
    probe.chmod(0o755)
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", str(probe))
    assert res.returncode == 0, res.stderr
    assert f"{shas[10]} is the first bad commit" in res.stdout
    assert "for the running session" in (tmp_path / "mark.out").read_text()
    events = journal_events(repo.path)
    marks = [e for e in events if e["event"] == "mark"]
    assert [(m["rev"], m["verdict"]) for m in marks] == [(shas[11], "bad")]
    hand = [e for e in events if e["event"] == "step" and e["observations"][0]["probe"] == "hand"]
    assert [(e["commit"], e["verdict"], e["observations"][0]["evidence"]["mark"]) for e in hand] == [
        (shas[11], "bad", marks[0]["id"])]
    assert shas[11] not in [e["commit"] for e in events if e["event"] == "step" and e not in hand]
    journal = sorted((repo.path / ".bisector" / "sessions").glob("*.jsonl"))[-1]
    assert bisector(repo.path, "replay", str(journal)).stdout.startswith("OK")
