"""Journal review in process: sessions table, Markdown report (+ plot), replay, the manual probe on stdin."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from bisector.probes.base import ProbeContext
from bisector.probes.manual import ManualProbe, is_undo
from tests.fixtures.cli import bisect, bisector, journals, shell_probe
from tests.fixtures.repos import GitRepo, linear_history


def probe(tmp_path: Path) -> Path:
    return shell_probe(tmp_path, "grep -q broken state.txt && exit 1\nexit 0\n", name="probe.sh")


@pytest.fixture
def session(repo: GitRepo, tmp_path: Path) -> tuple[GitRepo, list[str], Path]:
    """A finished session on 16 commits, culprit commit 11; returns (repo, shas, journal)."""
    shas = linear_history(repo, 16, culprit=11)
    res = bisect(repo.path, shas[0], probe(tmp_path))
    assert res.returncode == 0, res.stderr
    return repo, shas, journals(repo.path)[-1]


def test_sessions_table(session: tuple[GitRepo, list[str], Path]) -> None:
    repo, shas, journal = session
    res = bisector(repo.path, "sessions")
    assert res.returncode == 0, res.stderr
    header, _, row = res.stdout.splitlines()[:3]
    assert header.split() == ["session", "started", "bounds", "probe", "steps", "status", "culprit"]
    assert row.startswith(journal.stem)
    assert f"{shas[0][:7]}..{shas[15][:7]}" in row and " found " in row and shas[10][:10] in row


def test_sessions_table_shows_the_slurm_job_ids_of_a_session(session: tuple[GitRepo, list[str], Path]) -> None:
    repo, shas, journal = session
    # The same journal as the Slurm executor writes it: each step's worker is slurm:<job>@host:pid.
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    for i, e in enumerate(steps):
        e["worker"] = f"slurm:{4100 + i % 3}@node1:{200 + i}"
    journal.write_text("".join(json.dumps(e) + "\n" for e in events))
    res = bisector(repo.path, "sessions")
    assert res.returncode == 0, res.stderr
    header, _, row = res.stdout.splitlines()[:3]
    assert header.split()[-1] == "jobs" and row.split()[-1] == "4100,4101,4102"
    # Many jobs: first..last and the count (a step run twice makes it more than four).
    events[-1:-1] = [dict(e) for e in steps[:2]]
    steps = [e for e in events if e["event"] == "step"]
    for i, e in enumerate(steps):
        e["worker"] = f"slurm:{981000 + i * 7}@node1:1"
    journal.write_text("".join(json.dumps(e) + "\n" for e in events))
    row = bisector(repo.path, "sessions").stdout.splitlines()[2]
    n = len(steps)
    assert row.endswith(f"981000..{981000 + (n - 1) * 7} ({n} jobs)") and n >= 5


def test_report_without_matplotlib(session: tuple[GitRepo, list[str], Path], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    repo, shas, journal = session
    # A matplotlib that cannot be imported, whatever is installed (or already imported).
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    out = tmp_path / "review" / "report.md"
    res = bisector(repo.path, "report", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "pip install 'bisector[plot]'" in res.stdout
    text = out.read_text()
    for section in ("# Bisection report: session " + journal.stem, "## The question", "## The answer",
                    "## The evidence", "## The environment", "## Reproduce"):
        assert section in text
    assert f"**`{shas[10]}` is the first bad commit** (probability 1.00)" in text
    assert f"- **Good:** `{shas[0]}` commit 1" in text and f"- **Bad:** `{shas[15]}` commit 16" in text
    assert "state.txt | 2 +-" in text  # git show --stat of the culprit
    assert "pip install 'bisector[plot]'" in text and "![" not in text
    steps = [json.loads(line) for line in journal.read_text().splitlines() if '"event": "step"' in line]
    for e in steps:
        assert f"### Step {e['step']}: " in text and f"- Revision: `{e['commit']}`" in text
    assert "- Probe `command`: **bad**: exit 1 [exit_code=1, timed_out=False]" in text
    assert f"bisector run --bad {shas[15]} --good {shas[0]} --probe " in text
    assert f"bisector replay {journal}" in text
    assert not out.with_suffix(".png").exists()


def test_report_with_plot(session: tuple[GitRepo, list[str], Path], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    repo, shas, journal = session
    out = tmp_path / "report.md"
    res = bisector(repo.path, "report", journal.stem, "-o", str(out))
    assert res.returncode == 0, res.stderr
    png = tmp_path / "report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](report.png)" in out.read_text()


def test_replay_ok_and_tampered(session: tuple[GitRepo, list[str], Path], tmp_path: Path) -> None:
    repo, shas, journal = session
    res = bisector(tmp_path, "replay", str(journal))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("OK: ") and f"first bad commit {shas[10]}" in res.stdout
    # Flip the verdict of the first search step: the next choice differs from the journal's.
    lines = journal.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if '"role": "search"' in line)
    e = json.loads(lines[i])
    flipped = {"good": "bad", "bad": "good"}[e["verdict"]]
    lines[i] = json.dumps({**e, "verdict": flipped})
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    res = bisector(repo.path, "replay", str(tampered))
    assert res.returncode == 1
    assert res.stdout.startswith(f"DIVERGED: step {e['step'] + 1}: the journal tested ")
    assert "but the search chooses" in res.stdout
    # A journal whose end claims another culprit.
    lines = journal.read_text().splitlines()
    end = json.loads(lines[-1])
    lines[-1] = json.dumps({**end, "culprit": shas[9]})
    tampered.write_text("\n".join(lines) + "\n")
    res = bisector(repo.path, "replay", str(tampered))
    assert res.returncode == 1 and "the journal's result is found" in res.stdout


def test_manual_probe_through_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "probe-command.log").write_text("loss 0.25\naccuracy 0.91\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("maybe\ngood\nb\n\nundo\n"))  # not a terminal: one answer a line
    probe = ManualProbe({"name": "eyes"})
    answers = [probe.run(ProbeContext(workspace=Path("/ws"), commit="c" * 40, step=step, log_dir=tmp_path))
               for step in range(1, 5)]
    assert [a.verdict.value for a in answers] == ["good", "bad", "skip", "abort"]
    assert [is_undo(a) for a in answers] == [False, False, True, False]
    assert answers[3].summary.startswith("no answer (end of input)")
    err = capsys.readouterr().err
    assert "== step 1: revision " + "c" * 40 in err and "workspace: /ws" in err
    assert "probe command log" in err and "| accuracy 0.91" in err  # the earlier probe's evidence
    assert "not an answer: 'maybe'" in err


def test_replay_parallel_rounds_and_failed_bounds(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 20, culprit=13)
    p = str(probe(tmp_path))
    assert bisect(repo.path, shas[0], p, "-j", "3").returncode == 0
    # The good bound is bad: both bounds are probed in one round, then the session stops.
    assert bisect(repo.path, shas[14], p).returncode == 1
    assert len(journals(repo.path)) == 2
    parallel, bounds = (bisector(repo.path, "replay", str(j)) for j in journals(repo.path))
    assert parallel.returncode == 0 and f"first bad commit {shas[12]}" in parallel.stdout
    assert bounds.returncode == 0 and "result bounds" in bounds.stdout


def test_noisy_session_report_shows_posteriors_and_replays(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 12, culprit=8)
    res = bisect(repo.path, shas[0], probe(tmp_path), "--noise", "0.1")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "noisy.md"
    assert bisector(repo.path, "report", "-o", str(out)).returncode == 0
    assert "- Posterior after this step: `" in out.read_text() and "noise rates [0.1, 0.9]" in out.read_text()
    res = bisector(repo.path, "replay", str(journals(repo.path)[-1]))
    assert res.returncode == 0 and f"first bad commit {shas[7]}" in res.stdout
