"""What `bisector run` shows while it runs: golden transcripts of the live view (on a terminal
and not), `--json` (the journal's events, decoded by the codec), `--quiet`, and resuming after
`--max-steps`. Regenerate the transcripts with UPDATE_GOLDEN=1."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from bisector.journal.codec import decode_outcome, decode_step
from bisector.review.render import CliHandler
from bisector.run.session import RunOptions, Session
from tests.fixtures.cli import bisector, journal_events
from tests.fixtures.repos import GitRepo, linear_history

pytestmark = pytest.mark.func

GOLDEN = Path(__file__).parent / "golden"
N, CULPRIT = 12, 9


@pytest.fixture
def repo(tmp_path: Path) -> tuple[GitRepo, list[str]]:
    r = GitRepo.init(tmp_path / "repo")
    return r, linear_history(r, N, CULPRIT)


def _tools(tmp_path: Path) -> tuple[Path, Path]:
    """A probe that prints what it sees, and a build that fails at commit 6 (a skip, with its log)."""
    probe = tmp_path / "probe.sh"
    probe.write_text("#!/bin/sh\necho \"checking $(cat n.txt)\"\ngrep -q broken state.txt && exit 1\nexit 0\n")
    build = tmp_path / "build.sh"
    build.write_text("#!/bin/sh\necho compiling\nif [ \"$(cat n.txt)\" = 6 ]; then echo 'error: n.c:3: missing ;'; exit 2; fi\n")
    for p in (probe, build):
        p.chmod(0o755)
    return probe, build


def _normalize(text: str, repo: GitRepo, shas: list[str]) -> str:
    for i, sha in enumerate(shas, start=1):
        text = text.replace(sha, f"<c{i}>").replace(sha[:10], f"<c{i}>")
    text = text.replace(str(repo.path), "<repo>")
    text = re.sub(r"\d{8}-\d{6}\.\d{3}-[0-9a-f]{4}", "<session>", text)
    text = re.sub(r"\d+\.\d+s\b", "<t>s", text)
    text = re.sub(r"~\d+(\.\d+)?\s?(s|ms|min|m|h)\b", "~<t>", text)
    text = re.sub(r"in \d+(\.\d+)?\s?(s|ms|min|m|h)\b", "in <t>", text)
    text = re.sub(r"\b\d+:\d\d\b", "<m:ss>", text)
    return text.replace("\x1b", "\\e").replace("\r", "\\r")


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"transcript differs from {path} (UPDATE_GOLDEN=1 rewrites it)"


def test_plain_lines_when_not_a_terminal(repo: tuple[GitRepo, list[str]], tmp_path: Path) -> None:
    r, shas = repo
    probe, build = _tools(tmp_path)
    res = bisector(r.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", str(probe), "--build", str(build))
    assert res.returncode == 0, res.stderr
    err = _normalize(res.stderr, r, shas)
    assert "    | error: n.c:3: missing ;" in err  # the failed build's last lines
    _golden("live_plain.txt", err)
    assert f"{shas[CULPRIT - 1]} is the first bad commit" in res.stdout


def test_live_view_on_a_terminal(repo: tuple[GitRepo, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r, shas = repo
    probe, build = _tools(tmp_path)
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100, color_system=None, highlight=False)
    ticks = iter(range(0, 10_000, 7))  # a clock that moves 7 s per reading
    handler = CliHandler(live=True, console=console, clock=lambda: float(next(ticks)), auto_refresh=False)
    monkeypatch.chdir(r.path)
    opts = RunOptions(repo=r.path, bad=shas[-1], goods=[shas[0]], probe=str(probe), build=str(build),
                      term_old="fast", term_new="slow")
    result = Session(opts, handler).run()
    assert result.culprit == shas[CULPRIT - 1]
    out = _normalize(buf.getvalue(), r, shas)
    # The phases of a step, with their elapsed time, the candidates left and the ETA, in the terms.
    assert re.search(r"step \d+: testing <c\d+>: build <m:ss> \(step <m:ss>\)", out)
    assert re.search(r"step \d+: testing <c\d+>: probe <m:ss>", out)
    assert "candidates left, about" in out and re.search(r"<c\d+> is slow", out)
    assert "    | error: n.c:3: missing ;" in out
    _golden("live_tty.txt", out)


def test_json_is_the_journal(repo: tuple[GitRepo, list[str]], tmp_path: Path) -> None:
    r, shas = repo
    probe, _ = _tools(tmp_path)
    res = bisector(r.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", str(probe), "--json")
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert events == journal_events(r.path)  # the same events, the same schema
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and "step" in kinds
    for e in events:
        assert e["v"] == 1
        if e["event"] == "step":
            assert decode_step(e).commit in shas
    assert decode_outcome(events[-1]).culprit == shas[CULPRIT - 1]
    assert res.stderr == ""


def test_quiet_prints_only_the_result(repo: tuple[GitRepo, list[str]], tmp_path: Path) -> None:
    r, shas = repo
    probe, _ = _tools(tmp_path)
    res = bisector(r.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", str(probe), "--quiet")
    assert res.returncode == 0
    assert res.stderr == ""
    assert res.stdout.startswith(f"{shas[CULPRIT - 1]} is the first bad commit\n")


def test_resume_after_max_steps_finds_the_same_culprit(repo: tuple[GitRepo, list[str]], tmp_path: Path) -> None:
    r, shas = repo
    probe, _ = _tools(tmp_path)
    twin = tmp_path / "twin"
    shutil.copytree(r.path, twin)
    whole = bisector(twin, "run", "--good", shas[0], "--bad", shas[-1], "--probe", str(probe))
    assert whole.returncode == 0

    first = bisector(r.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", str(probe), "--max-steps", "1")
    assert first.returncode == 1
    assert "Paused at the step limit" in first.stdout and "skipped" not in first.stdout.replace("none of them skipped", "")
    assert journal_events(r.path)[-1]["event"] == "pause"
    second = bisector(r.path, "run", "--max-steps", "1")  # one more step, then pause again
    assert second.returncode == 1 and "Resuming" in second.stderr
    rest = bisector(r.path, "run")
    assert rest.returncode == 0, rest.stderr
    assert f"{shas[CULPRIT - 1]} is the first bad commit" in rest.stdout
    assert f"{shas[CULPRIT - 1]} is the first bad commit" in whole.stdout
    # The same questions, in the same order, as the uninterrupted run; and the journal replays.
    asked = [e["commit"] for e in journal_events(r.path) if e["event"] == "step"]
    assert asked == [e["commit"] for e in journal_events(twin) if e["event"] == "step"]
    journal = sorted((r.path / ".bisector" / "sessions").glob("*.jsonl"))[-1]
    replayed = bisector(r.path, "replay", str(journal))
    assert replayed.returncode == 0 and replayed.stdout.startswith("OK"), replayed.stdout
