"""The Markdown report of a demo run: its structure, the culprit, the evidence table and the plot,
and a reproduce command that re-runs the search to the same culprit.

Issue acceptance: "The Markdown report of a demo run renders (checked by its structure), contains
the culprit, the evidence table and the plot, and its reproduce command re-runs the search to the
same culprit".
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from bisector.demo.plain import CULPRIT, make_demo_repo
from tests.fixtures.cli import bisector, journals

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def end_event(journal: Path) -> dict:
    events = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    assert events[-1]["event"] == "end"
    return events[-1]


def sections(text: str) -> dict[str, str]:
    """`## Title` -> the body up to the next `## ` heading."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2])}


def pipe_tables(body: str) -> list[list[list[str]]]:
    """The Markdown pipe tables of a text: each a list of rows of cells (separator row checked and dropped)."""
    tables, current = [], []
    for line in body.splitlines() + [""]:
        if line.startswith("|") and line.rstrip().endswith("|"):
            current.append([c.strip() for c in line.strip()[1:-1].split("|")])
            continue
        if current:
            assert len(current) >= 2 and all(re.fullmatch(r":?-{3,}:?", c) for c in current[1]), current[:2]
            assert all(len(r) == len(current[0]) for r in current), f"ragged table: {current}"
            tables.append([current[0], *current[2:]])
            current = []
    return tables


def reproduce_of(repo: Path, session: str) -> str:
    """The reproduce command of a session's report, built in-process (no plot: faster than `bisector report`)."""
    from bisector.journal.read import find_session
    from bisector.review.report import build_report

    text = build_report(repo, find_session(repo, session), None)
    return code_block(sections(text)["Reproduce"], "sh")


def code_block(body: str, lang: str) -> str:
    m = re.search(rf"^```{lang}\n(.*?)\n```$", body, flags=re.M | re.S)
    assert m, f"no ```{lang} block in:\n{body}"
    return m.group(1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], Path, Path]:
    """The plain demo bisected with `bisector run --good FIRST --bad main`, then `bisector report -o
    report.md`; returns (repo, shas, journal, report)."""
    root = tmp_path_factory.mktemp("demo")
    home = root / "home"
    home.mkdir()
    # The session-scoped hermetic git of conftest is function-scoped: set the same environment here.
    env = {"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
           "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.com",
           "GIT_COMMITTER_NAME": "Test Committer", "GIT_COMMITTER_EMAIL": "committer@example.com"}
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n")
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    try:
        repo, shas = make_demo_repo(root)
        res = bisector(repo, "run", "--good", shas[0], "--bad", "main")
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"{shas[CULPRIT - 1]} is the first bad commit" in res.stdout
        (journal,) = journals(repo)
        # `bisector report -o FILE` right after the run: the latest (and only) session.
        out = root / "review" / "report.md"
        res = bisector(repo, "report", "-o", str(out))
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"Wrote {out}" in res.stdout
        yield repo, shas, journal, out
    finally:
        mp.undo()


def test_report_structure_culprit_table_and_plot(demo: tuple[Path, list[str], Path, Path]) -> None:
    pytest.importorskip("matplotlib")
    repo, shas, journal, out = demo
    text = out.read_text(encoding="utf-8")
    culprit = shas[CULPRIT - 1]
    steps = [json.loads(line) for line in journal.read_text().splitlines() if '"event": "step"' in line]

    # Structure: one H1, the H2 sections in order, one H3 per step; code fences balanced.
    assert text.splitlines()[0] == f"# Bisection report: session {journal.stem}"
    assert len(re.findall(r"^# ", text, flags=re.M)) == 1
    h2 = re.findall(r"^## (.+)$", text, flags=re.M)
    assert h2 == ["The question", "The answer", "The evidence", "The environment", "Reproduce"]
    h3 = re.findall(r"^### Step (\d+): ", text, flags=re.M)
    assert [int(x) for x in h3] == [e["step"] for e in steps] and len(steps) >= 3
    assert len(re.findall(r"^```", text, flags=re.M)) % 2 == 0
    body = sections(text)

    # The question: the bounds with their subjects.
    assert f"- **Good:** `{shas[0]}` Colour classifier: loader, training, accuracy check" in body["The question"]
    assert f"- **Bad:** `{shas[-1]}` Change {len(shas)}: notes" in body["The question"]
    assert "- **Candidates:** 39 commits" in body["The question"]

    # The answer: the culprit, its subject, and its diff stat.
    answer = body["The answer"]
    assert f"**`{culprit}` is the first bad commit** (probability 1.00)" in answer
    assert "> Refactor loader: unpack channels in one go" in answer
    assert "loader.py |" in code_block(answer, "")
    assert end_event(journal)["culprit"] == culprit

    # The evidence: the plot link (a real PNG next to the report) and the step table.
    evidence = body["The evidence"]
    links = re.findall(r"!\[([^\]]+)\]\(([^)]+\.png)\)", evidence)
    assert len(links) == 1, evidence[:500]
    png = out.parent / links[0][1]
    assert png == out.with_suffix(".png")
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000
    tables = pipe_tables(evidence.split("\n### ")[0])
    assert len(tables) == 1
    header, *rows = tables[0]
    assert header == ["step", "role", "commit", "subject", "build", "verdict", "probe"]
    assert len(rows) == len(steps)
    for row, e in zip(rows, steps):
        assert row[0] == str(e["step"]) and row[2] == f"`{e['commit'][:10]}`" and row[5] == e["verdict"]
        assert row[4].startswith("ok (")  # the build ran at every step
        assert row[6].startswith("command: exit ")
    # The default bounds policy: the bad bound only when no candidate was bad (a bad one implies it);
    # the good bound only when the culprit's parent is it.
    assert rows[0][1] == "search" and "check good" not in [r[1] for r in rows[:-1]]
    culprit_rows = [r for r in rows if r[2] == f"`{culprit[:10]}`"]
    assert culprit_rows and culprit_rows[0][5] == "bad"
    assert culprit_rows[0][3] == "Refactor loader: unpack channels in one go"
    # Each step's section: revision, build, probe with its numbers, the reviewer's boxes.
    for e in steps:
        assert f"- Revision: `{e['commit']}`" in evidence
    assert evidence.count("- Reviewer: [ ] accept  [ ] challenge") == len(steps)
    assert "exit 1: accuracy 0.365 on 200 samples [exit_code=1, timed_out=False]" in evidence

    # The environment table.
    (env_table,) = pipe_tables(body["The environment"])
    assert {r[0] for r in env_table[1:]} >= {"bisector", "python"}


def test_reproduce_command_reruns_the_search_to_the_same_culprit(demo: tuple[Path, list[str], Path, Path]) -> None:
    repo, shas, journal, out = demo
    text = out.read_text(encoding="utf-8")
    reproduce = sections(text)["Reproduce"]
    command = code_block(reproduce, "sh")
    assert "\n" not in command, command
    words = shlex.split(command)
    assert words[:2] == ["bisector", "run"], command
    assert words[words.index("--bad") + 1] == shas[-1] and words[words.index("--good") + 1] == shas[0]
    replay = re.findall(r"^```sh\n(bisector replay .*)\n```$", reproduce, flags=re.M)
    assert replay == [f"bisector replay {shlex.quote(str(journal))}"]

    before = set(journals(repo))
    res = bisector(repo, *words[1:])  # `bisector run ...` as the CLI's `run ...`
    assert res.returncode == 0, f"`{command}` failed:\n{res.stdout}\n{res.stderr}"
    culprit = shas[CULPRIT - 1]
    assert f"{culprit} is the first bad commit" in res.stdout, res.stdout + res.stderr
    (new,) = set(journals(repo)) - before  # a fresh session, not a resumed or replayed one
    assert end_event(new)["culprit"] == end_event(journal)["culprit"] == culprit
    # The journal named in the report replays as written.
    res = bisector(repo, *shlex.split(replay[0])[1:])
    assert res.returncode == 0 and res.stdout.startswith("OK: ") and culprit in res.stdout, res.stdout + res.stderr


def test_reproduce_command_keeps_quoted_options_and_the_pathspec(demo: tuple[Path, list[str], Path, Path]) -> None:
    """Options with spaces and a pathspec survive the round trip through the report."""
    repo, shas, _, _ = demo
    before = set(journals(repo))
    res = bisector(repo, "run", f"--good={shas[0]}", "--bad", "main", "--probe", "python check.py",
                   "--build", "python train.py", "--timeout", "60", "--", "loader.py", "train.py")
    assert res.returncode == 0, res.stdout + res.stderr
    culprit = shas[CULPRIT - 1]
    assert f"{culprit} is the first bad commit" in res.stdout
    command = reproduce_of(repo, sorted(set(journals(repo)) - before)[-1].stem)
    words = shlex.split(command)
    assert words[:2] == ["bisector", "run"]
    assert words[words.index("--probe") + 1] == "python check.py"
    assert words[words.index("--build") + 1] == "python train.py"
    assert words[words.index("--") + 1:] == ["loader.py", "train.py"]
    res = bisector(repo, *words[1:])
    assert res.returncode == 0, f"`{command}` failed:\n{res.stdout}\n{res.stderr}"
    assert f"{culprit} is the first bad commit" in res.stdout


def test_reproduce_command_of_a_pin_good_session_runs_as_is(demo: tuple[Path, list[str], Path, Path]) -> None:
    """`--pin-good NAME` is copied into the reproduce command; re-running it must not fail on the pin
    the first run made (today: exit 2, "a pin named 'demo-good' exists ... pass --force")."""
    repo, shas, _, _ = demo
    culprit = shas[CULPRIT - 1]
    before = set(journals(repo))
    res = bisector(repo, "run", "--good", shas[0], "--bad", "main", "--pin-good", "demo-good", "--", "loader.py")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Pinned @demo-good" in res.stdout
    command = reproduce_of(repo, sorted(set(journals(repo)) - before)[-1].stem)
    res = bisector(repo, *shlex.split(command)[1:])
    assert f"{culprit} is the first bad commit" in res.stdout, res.stdout + res.stderr
    assert res.returncode == 0, (
        f"the report's reproduce command `{command}` found the culprit but exited {res.returncode}: "
        f"{res.stderr.strip().splitlines()[-1]}")


def test_run_and_reproduce_with_a_relative_C_from_outside_the_checkout(demo: tuple[Path, list[str], Path, Path]) -> None:
    """`bisector run -C colour-model ...` from the repository's parent folder, then the report's
    reproduce command, which is meant to run in the repository (it drops `-C`)."""
    repo, shas, _, _ = demo
    culprit = shas[CULPRIT - 1]
    before = set(journals(repo))
    res = bisector(repo.parent, "run", "-C", repo.name, "--good", shas[0], "--bad", "main")
    assert res.returncode == 0, f"`bisector run -C {repo.name}` from {repo.parent} failed: {res.stdout}{res.stderr}"
    assert f"{culprit} is the first bad commit" in res.stdout
    command = reproduce_of(repo, sorted(set(journals(repo)) - before)[-1].stem)
    assert "-C" not in shlex.split(command)
    res = bisector(repo, *shlex.split(command)[1:])
    assert res.returncode == 0 and f"{culprit} is the first bad commit" in res.stdout, res.stdout + res.stderr


def test_run_with_an_absolute_C_reads_the_checkouts_probe_script(demo: tuple[Path, list[str], Path, Path]) -> None:
    """With `-C /abs/repo` from another folder, bisector.toml comes from the repository, so its
    `python check.py` must be found there too (today it is looked up in the process's cwd)."""
    repo, shas, _, _ = demo
    res = bisector(repo.parent, "run", "-C", str(repo), "--good", shas[0], "--bad", "main")
    assert res.returncode == 0, f"`bisector run -C {repo}` from {repo.parent} failed: {res.stdout}{res.stderr}"
    assert f"{shas[CULPRIT - 1]} is the first bad commit" in res.stdout
