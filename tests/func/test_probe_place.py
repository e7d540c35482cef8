"""A probe script from the repository runs as if it lived there: today's frozen copy placed at
its own path in each step's worktree (so `import app` works), or each commit's own copy with
`--probe-from commit` (as `git bisect run` runs a tracked script)."""

from __future__ import annotations

from tests.fixtures.cli import bisector, journal_events
from tests.fixtures.repos import GitRepo

CHECK_TODAY = "import sys\nimport app\nsys.exit(0 if app.VALUE < 5 else 1)\n"


def history(repo: GitRepo) -> list[str]:
    """app.VALUE = i at commit i; check.py imports app. Its old copies expect VALUE < 100."""
    shas = []
    for i in range(1, 11):
        files = {"app.py": f"VALUE = {i}\n",
                 "check.py": "import sys\nimport app\nsys.exit(0 if app.VALUE < 100 else 1)\n"}
        if i == 10:
            files["check.py"] = CHECK_TODAY
        shas.append(repo.commit(files, f"commit {i}"))
    return shas


def test_frozen_probe_script_imports_the_project(repo: GitRepo) -> None:
    shas = history(repo)
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", "python check.py")
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{shas[4]} is the first bad commit" in res.stdout  # VALUE 5: today's expectation
    assert "placed at its own path" in res.stderr
    start = journal_events(repo.path)[0]
    assert start["probe_from"] == "frozen"
    assert start["config"]["probe_specs"][0]["place"][0][1] == "check.py"


def test_probe_from_commit_runs_each_commits_own_script(repo: GitRepo) -> None:
    shas = history(repo)
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", "python check.py",
                   "--probe-from", "commit")
    assert res.returncode == 0, res.stderr + res.stdout
    # Only the last commit's own check.py fails (VALUE 10 >= 5); the older ones expect < 100.
    assert f"{shas[9]} is the first bad commit" in res.stdout
    assert "each commit's own copy" in res.stderr
    assert journal_events(repo.path)[0]["config"]["probe_specs"][0]["probe_from"] == "commit"
