"""The `pytest` probe: today's test files judge every commit; pytest's 2-5 are skips with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from bisector.core.errors import UsageError
from bisector.core.model import Verdict
from bisector.probes.base import ProbeContext
from bisector.probes.registry import make_probe
from tests.fixtures.cli import bisector, journal_events
from tests.fixtures.repos import GitRepo

OLD_TEST = "from calc import f\n\ndef test_small():\n    assert f(2) == 4\n"
NEW_TEST = OLD_TEST + "\n@pytest.mark.big\ndef test_big():\n    assert f(20) == 40\n"
NEW_TEST = "import pytest\n" + NEW_TEST
GOOD = "def f(x):\n    return x * 2\n"
BUGGY = "def f(x):\n    return x * 2 if x < 10 else x * 3\n"


def history(repo: GitRepo) -> dict[str, str]:
    """c1 good; c2 noise; c3 the bug (the old test cannot see it); c4 calc.py does not parse;
    c5 parses again; c6 today's test file, which catches the bug."""
    c = {"c1": repo.commit({"calc.py": GOOD, "tests/test_calc.py": OLD_TEST,
                            "pytest.ini": "[pytest]\nmarkers =\n    big: big inputs\n"}, "c1")}
    c["c2"] = repo.commit({"n.txt": "2\n"}, "c2")
    c["c3"] = repo.commit({"calc.py": BUGGY}, "c3: the bug")
    c["c4"] = repo.commit({"calc.py": "def f(x:\n"}, "c4: does not parse")
    c["c5"] = repo.commit({"calc.py": BUGGY}, "c5: parses again")
    c["c6"] = repo.commit({"tests/test_calc.py": NEW_TEST}, "c6: a test for big inputs")
    return c


def probe_at(repo: GitRepo, tmp_path: Path, **spec: object):
    return make_probe({"type": "pytest", "tests": ["tests/test_calc.py"], **spec}, user_cwd=repo.path,
                      frozen_dir=repo.path / ".bisector" / "frozen")


def run_on(probe, repo: GitRepo, rev: str, tmp_path: Path):
    ws = tmp_path / f"ws-{rev[:7]}"
    repo.git("worktree", "add", "-q", "--detach", str(ws), rev)
    return probe.run(ProbeContext(workspace=ws, commit=rev, step=1, log_dir=tmp_path / f"logs-{rev[:7]}"))


def test_every_commit_is_judged_by_todays_test_file(repo: GitRepo, tmp_path: Path) -> None:
    c = history(repo)
    repo.write({"bisector.toml": '[probe]\ntype = "pytest"\ntests = ["tests/test_calc.py"]\n'})
    res = bisector(repo.path, "run", "--good", c["c1"], "--bad", c["c6"])
    assert res.returncode == 0, res.stdout + res.stderr
    # With each commit's own test file, c3..c5 would pass and c6 would be blamed.
    assert f"{c['c3']} is the first bad commit" in res.stdout
    verdicts = {e["commit"]: e["verdict"] for e in journal_events(repo.path) if e["event"] == "step"}
    assert verdicts[c["c3"]] == "bad" and verdicts[c["c2"]] == "good"
    assert verdicts.get(c["c4"], "skip") == "skip"  # a collection error is never "bad"
    assert (repo.path / "tests/test_calc.py").read_text() == NEW_TEST  # the user's checkout is untouched


def test_old_commits_get_todays_file_and_collection_errors_skip(repo: GitRepo, tmp_path: Path) -> None:
    c = history(repo)
    probe = probe_at(repo, tmp_path)
    verdicts = {name: run_on(probe, repo, c[name], tmp_path) for name in ("c1", "c3", "c4", "c6")}
    assert verdicts["c1"].verdict is Verdict.GOOD
    assert verdicts["c3"].verdict is Verdict.BAD  # the old commit, judged by today's test_big
    assert "1 failed" in verdicts["c3"].summary
    assert verdicts["c3"].evidence["failed"] == 1 and verdicts["c3"].evidence["passed"] == 1
    skipped = verdicts["c4"]
    assert skipped.verdict is Verdict.SKIP
    assert skipped.evidence["exit_code"] == 2 and "collection error" in skipped.summary
    assert "SyntaxError" in skipped.evidence["log_tail"] or "error" in skipped.evidence["log_tail"].lower()
    assert verdicts["c6"].verdict is Verdict.BAD


def test_k_and_markers_select_tests_and_nothing_collected_is_a_skip(repo: GitRepo, tmp_path: Path) -> None:
    c = history(repo)
    assert run_on(probe_at(repo, tmp_path, k="small"), repo, c["c3"], tmp_path).verdict is Verdict.GOOD
    assert run_on(probe_at(repo, tmp_path, markers="not big"), repo, c["c5"], tmp_path).verdict is Verdict.GOOD
    none = run_on(probe_at(repo, tmp_path, k="no_such_test"), repo, c["c6"], tmp_path)
    assert none.verdict is Verdict.SKIP and none.evidence["exit_code"] == 5
    assert none.summary.startswith("no tests collected")


def test_a_folder_freezes_its_test_files_and_conftest(repo: GitRepo, tmp_path: Path) -> None:
    c = history(repo)
    repo.write({"tests/conftest.py": "BIG = 20\n"})
    probe = make_probe({"type": "pytest", "tests": ["tests"]}, user_cwd=repo.path,
                       frozen_dir=repo.path / ".bisector" / "frozen")
    assert sorted(probe.config()["frozen"]) == ["tests/conftest.py", "tests/test_calc.py"]
    assert run_on(probe, repo, c["c3"], tmp_path).verdict is Verdict.BAD


@pytest.mark.parametrize("spec, message", [
    ({"tests": ["tests/missing.py"]}, "test path not found: tests/missing.py"),
    ({}, "a pytest probe needs `tests"),
    ({"tests": ["tests"], "kk": "x"}, "did you mean `k`?"),
    ({"tests": ["tests"], "args": 3}, "`args` must be a list"),
])
def test_spec_errors(repo: GitRepo, tmp_path: Path, spec: dict, message: str) -> None:
    history(repo)
    with pytest.raises(UsageError) as err:
        make_probe({"type": "pytest", **spec}, user_cwd=repo.path, frozen_dir=repo.path / ".bisector" / "frozen")
    assert message in str(err.value)
